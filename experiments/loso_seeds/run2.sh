#!/bin/bash
# Issue 21, part 2 (rule: README.md): `--augment mr-histogram` + mask head on the reduced leave-one-source-out
# recipe, seeds 1-3, folds SARTAJ and Br35H (Part 1's `mr` runs are the baseline); then source_look on the six
# SARTAJ-held-out models. Two jobs at a time, 1 thread each.
cd "$(dirname "$0")/../.."
train() {  # train SEED HELD_OUT
  OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/loso.py --data ../shared/data/brain-tumor-mri \
    --out "runs/seeds/mr-histogram-s$1/report-$2" --runs "runs/seeds/mr-histogram-s$1" --held-out "$2" \
    --epochs 4 --img-size 128 --limit-per-class 600 --max-test-per-class 300 --lr-schedule cosine --device cpu \
    --seed "$1" --augment mr-histogram --grounding multitask --masks-brisc ../shared/data/brisc-masks-dev \
    --masks-figshare ../shared/data/figshare-masks-dev > "runs/seeds/mr-histogram-s$1-$2.log" 2>&1
}
look() {  # look RECIPE SEED
  OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python experiments/source_look/run.py \
    --checkpoint "runs/seeds/$1-s$2/sartaj/best.safetensors" --out "runs/seeds/source_look-$1-s$2" \
    > "runs/seeds/source_look-$1-s$2.log" 2>&1
}
mkdir -p runs/seeds
train 1 sartaj & train 2 sartaj & wait
train 3 sartaj & train 1 br35h & wait
train 2 br35h & train 3 br35h & wait
for seed in 1 2 3; do
  look mr "$seed" & look mr-histogram "$seed" & wait
done
echo "part 2 done $(date)" >> runs/seeds/done.log
