#!/bin/bash
# Issue 22: judge runs/seg/cvneg12s224 against runs/seg/cvneg12 by the rule in README.md (after train_cv.sh).
cd "$(dirname "$0")/../.."
out=experiments/seg_input_size
OMP_NUM_THREADS=2 .venv/bin/python benchmarks/segmentation/robustness.py --runs runs/seg/cvneg12 runs/seg/cvneg12s224 \
  --data ../shared/data/figshare-masks-dev --extra ../shared/data/brisc-masks-dev --out "$out/robustness"
OMP_NUM_THREADS=2 .venv/bin/python experiments/seg_threshold.py --runs runs/seg/cvneg12s224 \
  --data ../shared/data/figshare-masks-dev --extra ../shared/data/brisc-masks-dev --out "$out/seg_threshold.json"
for ckpt in src/brainxai/weights/segmentation.json runs/seg/cvneg12s224/fold0/best.json; do
  name=$(basename "$(dirname "$ckpt")")
  .venv/bin/python benchmarks/segmentation/timing.py --threads 1 2 --repeats 30 --segmenter "$ckpt" \
    --out "$out/timing_$name.json"
done
