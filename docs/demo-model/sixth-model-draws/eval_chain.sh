#!/usr/bin/env bash
# After both draws: eval16 and val16 still-head runs (workflows' settings) of each, two one-thread jobs at a time.
set -euo pipefail
cd /work/main
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
M=runs/cv
COMMON="--clips 16 --speed-clips 0 --no-ablations --audio-cfg 5 --overlap 2 --shared-noise --color-match video"
while ! grep -q '^stage3' runs/demo/times.txt 2>/dev/null || ! grep -q '^stage3' $M/s1/times.txt 2>/dev/null; do sleep 20; done
bench() {  # NAME CKPT DATA SPLIT
  python -m emo_model.synthetic.benchmark --checkpoint $2 --data $3 $COMMON --json $M/benchmark_$1_$4.json > $M/benchmark_$1_$4.console.log 2>&1
}
bench s0 runs/demo/stage3/emo.safetensors runs/demo/data/eval eval16 &
bench s0 runs/demo/stage3/emo.safetensors runs/val16/eval val16 &
wait
touch $M/s0_eval_done
bench s1 $M/s1/stage3/emo.safetensors runs/demo/data/eval eval16 &
bench s1 $M/s1/stage3/emo.safetensors runs/val16/eval val16 &
wait
touch $M/s1_eval_done
