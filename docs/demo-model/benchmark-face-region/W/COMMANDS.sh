# Run W as run (2026-12-08): a git worktree of main at 9169cb0 with ../face_mask_window.patch applied,
# runs/ linked to the main checkout's; OMP threads left at the default (2), nothing else running.
# Output checkpoint runs/fmw/stage3/emo.safetensors (sha256 ebf6ccf8…, not committed).
set -e
cd /work/exp
export PYTHONPATH=/work/exp EMO_FACE_MASK_WINDOW=1
date +"start %s %T" > runs/fmw.times
python -m emo_model.train --config configs/demo/stage1.json --set output_dir='"runs/fmw/stage1"' > runs/fmw.stage1.log 2>&1
date +"stage1 %s %T" >> runs/fmw.times
python -m emo_model.train --config configs/demo/stage2.json --set output_dir='"runs/fmw/stage2"' --set init_checkpoint='"runs/fmw/stage1/emo.safetensors"' > runs/fmw.stage2.log 2>&1
date +"stage2 %s %T" >> runs/fmw.times
python -m emo_model.train --config configs/demo/stage3.json --set output_dir='"runs/fmw/stage3"' --set init_checkpoint='"runs/fmw/stage2/emo.safetensors"' > runs/fmw.stage3.log 2>&1
date +"stage3 %s %T" >> runs/fmw.times
python -m emo_model.synthetic.benchmark --checkpoint runs/fmw/stage3/emo.safetensors --data runs/demo/data/eval --speed-clips 0 --no-ablations --audio-cfg 2.5 --motion-cfg 0.5 --overlap 2 --shared-noise --color-match video --json runs/fmw/bench8.json > runs/fmw/bench8.out 2> runs/fmw/bench8.console.log
date +"bench %s %T" >> runs/fmw.times
