#!/bin/bash
# Issue 22: judge a 224-px CV run against runs/seg/cvneg12 by the rules in README.md (after train_cv.sh).
# Usage: eval.sh [kaggle]   ("kaggle": runs/seg/cvneg12s224kaggle, files with the suffix _kaggle; no timing)
cd "$(dirname "$0")/../.."
out=experiments/seg_input_size
if [ "$1" = kaggle ]; then
  run=runs/seg/cvneg12s224kaggle
  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/segmentation/robustness.py --runs runs/seg/cvneg12 "$run" \
    --data ../shared/data/figshare-masks-dev --extra ../shared/data/brisc-masks-dev --out "$out/robustness_kaggle"
  OMP_NUM_THREADS=2 .venv/bin/python experiments/seg_threshold.py --runs "$run" \
    --data ../shared/data/figshare-masks-dev --extra ../shared/data/brisc-masks-dev --out "$out/seg_threshold_kaggle.json"
  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/segmentation/notumor_check.py \
    --checkpoint s224kaggle-f0="$run/fold0/best.safetensors" --checkpoint s224kaggle-f1="$run/fold1/best.safetensors" \
    --brisc ../shared/data/brisc-masks-dev --out "$out/notumor_kaggle"
  exit
fi
OMP_NUM_THREADS=2 .venv/bin/python benchmarks/segmentation/robustness.py --runs runs/seg/cvneg12 runs/seg/cvneg12s224 \
  --data ../shared/data/figshare-masks-dev --extra ../shared/data/brisc-masks-dev --out "$out/robustness"
OMP_NUM_THREADS=2 .venv/bin/python experiments/seg_threshold.py --runs runs/seg/cvneg12s224 \
  --data ../shared/data/figshare-masks-dev --extra ../shared/data/brisc-masks-dev --out "$out/seg_threshold.json"
for ckpt in src/brainxai/weights/segmentation.json runs/seg/cvneg12s224/fold0/best.json; do
  name=$(basename "$(dirname "$ckpt")")
  .venv/bin/python benchmarks/segmentation/timing.py --threads 1 2 --repeats 30 --segmenter "$ckpt" \
    --out "$out/timing_$name.json"
done
