#!/usr/bin/env bash
# Trains the seed architectures, evaluates every one on the same raw and de-duplicated Testing sets, and
# writes benchmarks/models.{md,json} (via benchmarks/models.py).
#
# BUDGET_MIN caps each training run's wall clock. On a 2-core CPU a ResNet-50 epoch takes longer than a
# whole budget, so such rows report a partial epoch, and say so. With a GPU, pass the device in TRAIN_OPTS,
# raise BUDGET_MIN (0: no budget) and set PARALLEL=1 to train all five at once on the one GPU.
#
# Usage: scripts/compare_models.sh [DATA_ROOT] [RUNS_DIR]
# env:   BUDGET_MIN (default 10), SMALL_BUDGET_MIN (6, for cnn-lstm), TRAIN_OPTS (extra `brainxai train`
#        options, e.g. "--device cuda --workers 2"), EVAL_OPTS (extra `brainxai evaluate` options),
#        PARALLEL (0|1), SKIP_TABLE (1: stop after the evaluations, e.g. on a machine without the shipped model)
set -euo pipefail
data="${1:-../shared/data/brain-tumor-mri}"
runs="${2:-runs/compare}"
budget="${BUDGET_MIN:-10}"
small="${SMALL_BUDGET_MIN:-6}"
train_opts="${TRAIN_OPTS:-}"
eval_opts="${EVAL_OPTS:-}"
mkdir -p "$runs"

budget_opt() { if [ "$1" != "0" ]; then echo "--time-budget $1"; fi; }

# One audit, shared by every evaluation, so all rows use the identical de-duplicated list.
[ -f "$runs/audit/audit_dedup_test.txt" ] || brainxai audit-data "$data" --out "$runs/audit/audit.json"

train() {  # name, budget, train options...
  local name="$1" minutes="$2"; shift 2
  if [ ! -f "$runs/$name/best.safetensors" ]; then
    # shellcheck disable=SC2046,SC2086
    brainxai train --data "$data" --out "$runs/$name" --seed 0 $(budget_opt "$minutes") $train_opts "$@" \
      > "$runs/$name.log" 2>&1
  fi
}

evaluate() {  # name
  # shellcheck disable=SC2086
  [ -f "$runs/$1/eval/metrics.json" ] || brainxai evaluate --data "$data" --checkpoint "$runs/$1/best" \
    --dedup-list "$runs/audit/audit_dedup_test.txt" --out "$runs/$1/eval" $eval_opts > "$runs/$1/eval.log" 2>&1
}

names=(cnn-lstm resnet18 resnet50-mlp resnet50-gap-aug resnet50-gap-noaug)
jobs_=()
launch() {  # name, budget, options...: in the background with PARALLEL=1
  if [ "${PARALLEL:-0}" = 1 ]; then train "$@" & jobs_+=($!); else train "$@"; fi
}
launch cnn-lstm "$small" --model cnn-lstm --lr 1e-3
launch resnet18 "$budget" --model resnet18 --lr 1e-3
launch resnet50-mlp "$budget" --model resnet50-mlp --schedule progressive
launch resnet50-gap-aug "$budget" --model resnet50-gap --lr 1e-3 --augment
launch resnet50-gap-noaug "$budget" --model resnet50-gap --lr 1e-3 --no-augment
status=0
for j in "${jobs_[@]}"; do wait "$j" || status=1; done
[ "$status" = 0 ] || { echo "a training run failed; see $runs/*.log" >&2; exit 1; }

for name in "${names[@]}"; do evaluate "$name"; done

[ "${SKIP_TABLE:-0}" = 1 ] || python benchmarks/models.py --runs "$runs" --data "$data" --out benchmarks/models
