#!/usr/bin/env bash
# Reproduces the bundled demo model models/emo/emo-demo.safetensors from nothing but this repository
# (synthetic data, our VAE trainer, our three-stage EMO trainer). 45 to 90 minutes on a 2-core CPU
# (machines differ, see the README); a GPU is used when there is one. Run from anywhere; everything
# is written under runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m emo_model.synthetic.generate runs/demo/data --identities 64 --clips-per-identity 2 --seconds 4 \
    --resolution 128 --holdout-identities 8 --seed 0
python -m emo_model.train.vae --config configs/demo/vae.json
python -m emo_model.train --config configs/demo/stage1.json
python -m emo_model.train --config configs/demo/stage2.json
python -m emo_model.train --config configs/demo/stage3.json
mkdir -p models/emo
cp runs/demo/stage3/emo.safetensors models/emo/emo-demo.safetensors
mkdir -p docs/demo-model
for run in vae stage1 stage2 stage3; do
    cp "runs/demo/$run/loss.jsonl" "docs/demo-model/$run.loss.jsonl"
    cp "runs/demo/$run/loss.png" "docs/demo-model/$run.loss.png"
done
echo "demo model: models/emo/emo-demo.safetensors"
