#!/bin/bash
# Issue 22: the recipe that passed its rule (224 px + BRISC and Kaggle Training/notumor negatives, README.md's
# follow-up) refitted on all dev patients and all no-tumour slices, last epoch kept. Resumable: add --resume.
cd "$(dirname "$0")/../.."
OMP_NUM_THREADS=2 nice -n 5 .venv/bin/brainxai train-seg --data ../shared/data/figshare-masks-dev \
  --extra-data ../shared/data/brisc-masks-dev --extra-data runs/seg/data-kaggle-notumor/kaggle-notumor \
  --extra-labels notumor --out runs/seg/refitneg12s224kaggle --val-fraction 0 --epochs 12 --img-size 224 \
  --amp bf16 --threads 2 "$@" >> runs/seg/refitneg12s224kaggle.log 2>&1
echo "refit done rc=$? $(date)" >> runs/seg/refitneg12s224kaggle.done
