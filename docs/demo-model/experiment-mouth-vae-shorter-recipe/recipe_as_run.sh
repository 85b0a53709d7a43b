#!/usr/bin/env bash
# Candidate recipe: mouth-weighted whole VAE, stage 1, one stage 2 training spatial layers too, stage 3.
set -euo pipefail
cd /work/main
export PYTHONPATH=/work/main
M=runs/mv
stamp() { echo "$1 $(date +%s) $(date -u +%H:%M:%S)" >> $M/times.txt; }
stamp start
python -m emo_model.synthetic.generate runs/demo/data --identities 64 --clips-per-identity 2 --seconds 4 \
    --resolution 128 --holdout-identities 8 --seed 0 > $M/gen.console.log 2>&1
stamp data
python -m emo_model.train.vae --config configs/demo/vae.json --set mouth_loss_weight=20 --set output_dir=$M/vae > $M/vae.console.log 2>&1
stamp vae
python -m emo_model.train --config configs/demo/stage1.json --set vae=$M/vae/vae.safetensors --set output_dir=$M/stage1 > $M/stage1.console.log 2>&1
stamp stage1
python -m emo_model.train --config configs/demo/stage2.json --set init_checkpoint=$M/stage1/emo.safetensors \
    --set output_dir=$M/stage2 --set 'trainable=["temporal","audio","backbone_spatial"]' > $M/stage2.console.log 2>&1
stamp stage2
python -m emo_model.train --config configs/demo/stage3.json --set init_checkpoint=$M/stage2/emo.safetensors \
    --set output_dir=$M/stage3 --set vae=$M/vae/vae.safetensors > $M/stage3.console.log 2>&1
stamp stage3
