#!/usr/bin/env bash
# The script's stages 1-3 exactly as configured (seed 0, runs/demo/...), one thread.
set -euo pipefail
cd /work/main
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
O=runs/demo
stamp() { echo "$1 $(date +%s) $(date -u +%H:%M:%S)" >> $O/times.txt; }
stamp start
for s in stage1 stage2 stage3; do
  python -m emo_model.train --config configs/demo/$s.json > $O/$s.console.log 2>&1
  stamp $s
done
