#!/bin/bash
# Issue 22: ../seg_brisc_224/train_cv.sh without the sagittal and coronal BRISC pituitary tumours (make_data.sh
# first). Rule fixed first: README.md. Re-running continues each fold from its last.pt.
cd "$(dirname "$0")/../.."
run=runs/seg/cvbrisc12s224kaggle-nosapi
mkdir -p "$run"
for i in 0 1; do
  resume=()
  [ -f "$run/fold$i/last.pt" ] && resume=(--resume)
  OMP_NUM_THREADS=1 nice -n 5 .venv/bin/brainxai train-seg --data ../shared/data/figshare-masks-dev \
    --extra-data runs/seg/data-brisc-nodev-nosapi/brisc-masks-dev --extra-data runs/seg/data-kaggle-notumor/kaggle-notumor \
    --out "$run/fold$i" --folds 2 --fold $i --epochs 12 --img-size 224 --amp bf16 --threads 1 --val-limit 200 \
    --patience 12 "${resume[@]}" >> "$run/fold$i.log" 2>&1 &
done
wait
echo "train done $(date)" >> "$run/done.log"
