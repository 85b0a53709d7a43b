#!/usr/bin/env bash
# Cosine-decayed mouth-weighted VAE, seeds given as args, one thread each, side by side.
set -euo pipefail
cd /work/main
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
for s in "$@"; do
  python -m emo_model.train.vae --config configs/demo/vae.json --set mouth_loss_weight=20 --set lr_schedule=cosine \
      --set seed=$s --set output_dir=runs/cv/vae_s$s > runs/cv/vae_s$s.console.log 2>&1 &
done
wait
