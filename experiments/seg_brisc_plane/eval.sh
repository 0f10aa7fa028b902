#!/bin/bash
# Issue 22: judge runs/seg/cvbrisc12s224kaggle-nosapi by the rule in README.md (after train_cv.sh), with the shipped
# mask rule (threshold 0.5, holes filled); then the Kaggle Testing/notumor check (part of the rule here).
cd "$(dirname "$0")/../.."
out=experiments/seg_brisc_plane
run=runs/seg/cvbrisc12s224kaggle-nosapi
OMP_NUM_THREADS=2 .venv/bin/python benchmarks/segmentation/robustness.py --runs "$run" \
  --data ../shared/data/figshare-masks-dev --extra ../shared/data/brisc-masks-dev --out "$out/robustness"
OMP_NUM_THREADS=2 .venv/bin/python benchmarks/segmentation/notumor_check.py \
  --checkpoint nosapi-f0="$run/fold0/best.safetensors" --checkpoint nosapi-f1="$run/fold1/best.safetensors" \
  --kaggle "$(cd ../shared/data/brain-tumor-mri && pwd)" --brisc ../shared/data/brisc-masks-dev --out "$out/notumor"
