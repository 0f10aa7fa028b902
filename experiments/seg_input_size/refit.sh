#!/bin/bash
# Issue 22: the 224-px recipe refitted on all dev patients and all BRISC no-tumour slices (only if README's rule passed).
cd "$(dirname "$0")/../.."
OMP_NUM_THREADS=2 nice -n 5 .venv/bin/brainxai train-seg --data ../shared/data/figshare-masks-dev \
  --extra-data ../shared/data/brisc-masks-dev --extra-labels notumor --out runs/seg/refitneg12s224 \
  --val-fraction 0 --epochs 12 --img-size 224 --amp bf16 --threads 2 > runs/seg/refitneg12s224.log 2>&1
echo "refit done rc=$? $(date)" >> runs/seg/refitneg12s224.done
