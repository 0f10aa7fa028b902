#!/bin/bash
# Issue 22: the shipped recipe (cvneg12) + BRISC tumour masks whose images are not copies of figshare-dev slices.
# Rule fixed first: experiments/seg_brisc_masks/README.md. Same patient folds as runs/seg/cvneg12.
# Data: python experiments/seg_brisc_masks/make_data.py --neg-copies 2
cd "$(dirname "$0")/../.."
mkdir -p runs/seg/cvbrisc12neg2
for i in 0 1; do
  OMP_NUM_THREADS=1 nice -n 5 .venv/bin/brainxai train-seg --data ../shared/data/figshare-masks-dev \
    --extra-data runs/seg/data-brisc-neg2/brisc-masks-dev --out runs/seg/cvbrisc12neg2/fold$i \
    --folds 2 --fold $i --epochs 12 --img-size 160 --amp bf16 --threads 1 --val-limit 200 --patience 3 \
    > runs/seg/cvbrisc12neg2/fold$i.log 2>&1 &
done
wait
echo "cvbrisc12neg2 train done $(date)" >> runs/seg/cvbrisc12neg2/done.log
