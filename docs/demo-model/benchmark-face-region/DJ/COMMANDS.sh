# Run DJ as run (2026-12-08, DECISION_RULE addendum 7): main checkout with the generator's --face-box
# option (uncommitted at the time), OMP threads at the default (2), nothing else running.
set -e
cd /work/main
export PYTHONPATH=/work/main
T=runs/dj/times
date +"start %s %T" > $T
python -m emo_model.synthetic.generate runs/dj/data --identities 64 --clips-per-identity 2 --seconds 4 \
    --resolution 128 --holdout-identities 8 --seed 0 --face-box detector > runs/dj/gen.log 2>&1
date +"data %s %T" >> $T
D='--set data=["runs/dj/data/train"]'
S='--set face_mask_span="sample" --set face_mask_widen=1.6'
python -m emo_model.train.vae --config configs/demo/vae.json $D --set output_dir='"runs/dj/vae"' > runs/dj/vae.log 2>&1
date +"vae %s %T" >> $T
V='--set vae="runs/dj/vae/vae.safetensors"'
python -m emo_model.train --config configs/demo/stage1.json $D $V $S --set output_dir='"runs/dj/stage1"' > runs/dj/stage1.log 2>&1
date +"stage1 %s %T" >> $T
python -m emo_model.train --config configs/demo/stage2.json $D $S --set output_dir='"runs/dj/stage2"' --set init_checkpoint='"runs/dj/stage1/emo.safetensors"' > runs/dj/stage2.log 2>&1
date +"stage2 %s %T" >> $T
python -m emo_model.train --config configs/demo/stage3.json $D $S --set output_dir='"runs/dj/stage3"' --set init_checkpoint='"runs/dj/stage2/emo.safetensors"' > runs/dj/stage3.log 2>&1
date +"stage3 %s %T" >> $T
python docs/demo-model/benchmark-face-region/W/product_masks.py runs/dj/data/eval 8 1.2 runs/dj/stage3/emo.safetensors > runs/dj/pm12.log 2>&1
date +"product masks %s %T" >> $T
python -m emo_model.synthetic.benchmark --checkpoint runs/dj/stage3/emo.safetensors --data runs/dj/data/eval --speed-clips 0 --no-ablations --audio-cfg 2.5 --motion-cfg 0.5 --overlap 2 --shared-noise --color-match video --json runs/dj/bench8.json > runs/dj/bench8.out 2> runs/dj/bench8.console.log
date +"bench %s %T" >> $T
