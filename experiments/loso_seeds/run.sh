#!/bin/bash
# Issue 21: plain training against `--augment mr --grounding multitask` on the reduced leave-one-source-out
# recipe, folds SARTAJ and Br35H, seeds 1-3 each (rule: README.md). Two trainings at a time, 1 thread each.
cd "$(dirname "$0")/../.."
train() {  # train RECIPE SEED HELD_OUT
  local extra=(--augment default)
  if [ "$1" = mr ]; then
    extra=(--augment mr --grounding multitask --masks-brisc ../shared/data/brisc-masks-dev
      --masks-figshare ../shared/data/figshare-masks-dev)
  fi
  OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/loso.py --data ../shared/data/brain-tumor-mri \
    --out "runs/seeds/$1-s$2/report-$3" --runs "runs/seeds/$1-s$2" --held-out "$3" --epochs 4 --img-size 128 \
    --limit-per-class 600 --max-test-per-class 300 --lr-schedule cosine --device cpu --seed "$2" "${extra[@]}" \
    > "runs/seeds/$1-s$2-$3.log" 2>&1
}
mkdir -p runs/seeds
for held in sartaj br35h; do
  for seed in 1 2 3; do
    train plain "$seed" "$held" & train mr "$seed" "$held" & wait
  done
done
echo "done $(date)" >> runs/seeds/done.log
