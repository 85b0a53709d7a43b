#!/usr/bin/env bash
# draw.sh SEED OUT VAE: stages 1-3 of the new recipe (configs as in the working tree), one thread.
set -euo pipefail
cd /work/main
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
S=$1; O=$2; V=$3
mkdir -p $O
stamp() { echo "$1 $(date +%s) $(date -u +%H:%M:%S)" >> $O/times.txt; }
stamp start
python -m emo_model.train --config configs/demo/stage1.json --set seed=$S --set vae=$V --set output_dir=$O/stage1 > $O/stage1.console.log 2>&1
stamp stage1
python -m emo_model.train --config configs/demo/stage2.json --set seed=$S --set init_checkpoint=$O/stage1/emo.safetensors --set output_dir=$O/stage2 > $O/stage2.console.log 2>&1
stamp stage2
python -m emo_model.train --config configs/demo/stage3.json --set seed=$S --set init_checkpoint=$O/stage2/emo.safetensors --set output_dir=$O/stage3 > $O/stage3.console.log 2>&1
stamp stage3
