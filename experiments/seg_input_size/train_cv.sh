#!/bin/bash
# Issue 22: the shipped recipe (runs/seg/cvneg12) at 224 px, the whole 12-epoch schedule. Rule: README.md.
# Usage: train_cv.sh [kaggle]   ("kaggle": also the Kaggle Training/notumor negatives of
#   ../seg_brisc_masks/make_kaggle_notumor.py, run runs/seg/cvneg12s224kaggle)
cd "$(dirname "$0")/../.."
run=runs/seg/cvneg12s224
extra=(--extra-data ../shared/data/brisc-masks-dev)
if [ "$1" = kaggle ]; then extra+=(--extra-data runs/seg/data-kaggle-notumor/kaggle-notumor); run="${run}kaggle"; fi
mkdir -p "$run"
for i in 0 1; do
  OMP_NUM_THREADS=1 nice -n 5 .venv/bin/brainxai train-seg --data ../shared/data/figshare-masks-dev \
    "${extra[@]}" --extra-labels notumor --out "$run/fold$i" \
    --folds 2 --fold $i --epochs 12 --img-size 224 --amp bf16 --threads 1 --val-limit 200 --patience 12 \
    > "$run/fold$i.log" 2>&1 &
done
wait
echo "train done $(date)" >> "$run/done.log"
