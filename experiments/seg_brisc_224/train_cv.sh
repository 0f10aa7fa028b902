#!/bin/bash
# Issue 22: the shipped segmenter's recipe (runs/seg/cvneg12s224kaggle: 224 px, 12 epochs, patience 12, the BRISC
# and Kaggle no-tumour slices) plus the 977 BRISC tumour masks whose images are not figshare-dev copies.
# Rule fixed first: README.md. Data: python experiments/seg_brisc_masks/make_data.py and make_kaggle_notumor.py.
cd "$(dirname "$0")/../.."
run=runs/seg/cvbrisc12s224kaggle
mkdir -p "$run"
for i in 0 1; do
  OMP_NUM_THREADS=1 nice -n 5 .venv/bin/brainxai train-seg --data ../shared/data/figshare-masks-dev \
    --extra-data runs/seg/data-brisc-nodev/brisc-masks-dev --extra-data runs/seg/data-kaggle-notumor/kaggle-notumor \
    --out "$run/fold$i" --folds 2 --fold $i --epochs 12 --img-size 224 --amp bf16 --threads 1 --val-limit 200 \
    --patience 12 > "$run/fold$i.log" 2>&1 &
done
wait
echo "train done $(date)" >> "$run/done.log"
