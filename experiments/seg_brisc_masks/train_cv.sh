#!/bin/bash
# Issue 22: the shipped recipe (cvneg12) + BRISC tumour masks whose images are not copies of figshare-dev slices.
# Rule fixed first: experiments/seg_brisc_masks/README.md. Same patient folds as runs/seg/cvneg12.
# Usage: train_cv.sh [NEG_COPIES] [kaggle]   (default 1; data: python experiments/seg_brisc_masks/make_data.py
#   --neg-copies N; with "kaggle" also make_kaggle_notumor.py's folder)
#   1 -> runs/seg/data-brisc-nodev, runs/seg/cvbrisc12;  N -> runs/seg/data-brisc-negN, runs/seg/cvbrisc12negN;
#   "kaggle" appends "kaggle" to the run's name; PATIENCE=N (default 3) appends "pN" when not 3
cd "$(dirname "$0")/../.."
copies="${1:-1}"
if [ "$copies" = 1 ]; then data=data-brisc-nodev; run=cvbrisc12; else data="data-brisc-neg$copies"; run="cvbrisc12neg$copies"; fi
extra=(--extra-data "runs/seg/$data/brisc-masks-dev")
if [ "$2" = kaggle ]; then extra+=(--extra-data runs/seg/data-kaggle-notumor/kaggle-notumor); run="${run}kaggle"; fi
patience="${PATIENCE:-3}"
if [ "$patience" != 3 ]; then run="${run}p$patience"; fi
mkdir -p "runs/seg/$run"
for i in 0 1; do
  OMP_NUM_THREADS=1 nice -n 5 .venv/bin/brainxai train-seg --data ../shared/data/figshare-masks-dev \
    "${extra[@]}" --out "runs/seg/$run/fold$i" \
    --folds 2 --fold $i --epochs 12 --img-size 160 --amp bf16 --threads 1 --val-limit 200 --patience "$patience" \
    > "runs/seg/$run/fold$i.log" 2>&1 &
done
wait
echo "$run train done $(date)" >> "runs/seg/$run/done.log"
