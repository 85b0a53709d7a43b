#!/usr/bin/env bash
# After the paired runs: the README's benchmark of the seed-0 draw (two threads), then the same without the
# colour match (still-head rows only), then the reliance probes.
set -euo pipefail
cd /work/main
export PYTHONPATH=/work/main
M=runs/cv; C=runs/demo/stage3/emo.safetensors
while [ ! -e $M/s1_eval_done ]; do sleep 20; done
stamp() { echo "$1 $(date -u +%H:%M:%S)" >> $M/full_times.txt; }
stamp start
python -m emo_model.synthetic.benchmark --checkpoint $C --data runs/demo/data/eval \
    --audio-cfg 5 --overlap 2 --shared-noise --color-match video --json $M/benchmark.json > $M/benchmark.console.log 2>&1
stamp full
export OMP_NUM_THREADS=1
python -m emo_model.synthetic.benchmark --checkpoint $C --data runs/demo/data/eval --speed-clips 0 --no-ablations \
    --audio-cfg 5 --overlap 2 --shared-noise --json $M/benchmark_without_color_match.json > $M/benchmark_without_color_match.console.log 2>&1 &
python -m emo_model.train.reliance --checkpoint $C --data runs/demo/data/train --json $M/reliance.json > $M/reliance.console.log 2>&1 \
  && python -m emo_model.train.reliance --checkpoint $C --data runs/demo/data/eval --json $M/reliance_eval.json > $M/reliance_eval.console.log 2>&1 &
wait
stamp extras
