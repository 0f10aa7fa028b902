#!/bin/bash
# Issue 21: `--augment mr` against `--augment mr-histogram` on the reduced leave-one-source-out recipe of
# benchmarks/loso_mr (4 epochs, 128 px, <= 600 images per class, lesion-mask head), folds SARTAJ and Br35H,
# then experiments/source_look on each SARTAJ-held-out model. Rule: README.md. Two runs at a time, 1 thread each.
cd "$(dirname "$0")/../.."
fold() {  # fold AUGMENT HELD_OUT
  OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/loso.py --data ../shared/data/brain-tumor-mri \
    --out "runs/hist/$1/report-$2" --runs "runs/hist/$1" --held-out "$2" --epochs 4 --img-size 128 \
    --limit-per-class 600 --max-test-per-class 300 --lr-schedule cosine --device cpu --augment "$1" \
    --grounding multitask --masks-brisc ../shared/data/brisc-masks-dev --masks-figshare ../shared/data/figshare-masks-dev \
    > "runs/hist/$1-$2.log" 2>&1
}
mkdir -p runs/hist
for held in sartaj br35h; do
  fold mr "$held" & fold mr-histogram "$held" & wait
done
for aug in mr mr-histogram; do
  OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python experiments/source_look/run.py --checkpoint "runs/hist/$aug/sartaj/best.safetensors" \
    --out "experiments/histogram_shift/source_look-$aug" > "runs/hist/source_look-$aug.log" 2>&1 &
done
wait
echo "done $(date)" >> runs/hist/done.log
