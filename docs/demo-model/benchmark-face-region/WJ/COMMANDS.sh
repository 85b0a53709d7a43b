# Run WJ as run (2026-12-08, addendum 4): a git worktree of main at 1e41c78 (the options on main),
# runs/ linked to the main checkout's; OMP threads at the default (2).
set -e
cd /work/exp
export PYTHONPATH=/work/exp
S='--set face_mask_span="sample" --set face_mask_widen=1.6'
date +"start %s %T" > runs/wj.times
python -m emo_model.train --config configs/demo/stage1.json $S --set output_dir='"runs/wj/stage1"' > runs/wj.stage1.log 2>&1
date +"stage1 %s %T" >> runs/wj.times
python -m emo_model.train --config configs/demo/stage2.json $S --set output_dir='"runs/wj/stage2"' --set init_checkpoint='"runs/wj/stage1/emo.safetensors"' > runs/wj.stage2.log 2>&1
date +"stage2 %s %T" >> runs/wj.times
python -m emo_model.train --config configs/demo/stage3.json $S --set output_dir='"runs/wj/stage3"' --set init_checkpoint='"runs/wj/stage2/emo.safetensors"' > runs/wj.stage3.log 2>&1
date +"stage3 %s %T" >> runs/wj.times
python docs/demo-model/benchmark-face-region/W/product_masks.py runs/demo/data/eval 8 1.2 runs/wj/stage3/emo.safetensors > runs/wj.pm12.log 2>&1
date +"product masks %s %T" >> runs/wj.times
python -m emo_model.synthetic.benchmark --checkpoint runs/wj/stage3/emo.safetensors --data runs/demo/data/eval --speed-clips 0 --no-ablations --audio-cfg 2.5 --motion-cfg 0.5 --overlap 2 --shared-noise --color-match video --json runs/wj/bench8.json > runs/wj/bench8.out 2> runs/wj/bench8.console.log
date +"bench %s %T" >> runs/wj.times
