#!/usr/bin/env bash
# Trains the seed architectures under one wall-clock budget each, evaluates every one on the same raw and
# de-duplicated Testing sets, and writes benchmarks/models.{md,json} (via benchmarks/models.py).
#
# The budget exists because the issue asks for all five on whatever hardware is at hand: on a 2-core CPU a
# ResNet-50 epoch takes longer than a whole budget, so those rows report a partial epoch, and say so.
# With a GPU, raise BUDGET_MIN (or set it to 0 for no budget) and the same script trains to convergence.
#
# Usage: scripts/compare_models.sh [DATA_ROOT] [RUNS_DIR]     env: BUDGET_MIN (default 10), SMALL_BUDGET_MIN (6)
set -euo pipefail
data="${1:-../shared/data/brain-tumor-mri}"
runs="${2:-runs/compare}"
budget="${BUDGET_MIN:-10}"
small="${SMALL_BUDGET_MIN:-6}"
mkdir -p "$runs"

budget_opt() { if [ "$1" != "0" ]; then echo "--time-budget $1"; fi; }

# One audit, shared by every evaluation, so all rows use the identical de-duplicated list.
[ -f "$runs/audit/audit_dedup_test.txt" ] || brainxai audit-data "$data" --out "$runs/audit/audit.json"

run() {  # name, budget, train options...
  local name="$1" minutes="$2"; shift 2
  if [ ! -f "$runs/$name/best.safetensors" ]; then
    # shellcheck disable=SC2046
    brainxai train --data "$data" --out "$runs/$name" --seed 0 $(budget_opt "$minutes") "$@"
  fi
  [ -f "$runs/$name/eval/metrics.json" ] || brainxai evaluate --data "$data" --checkpoint "$runs/$name/best" \
    --dedup-list "$runs/audit/audit_dedup_test.txt" --out "$runs/$name/eval"
}

run cnn-lstm "$small" --model cnn-lstm --lr 1e-3
run resnet18 "$budget" --model resnet18 --lr 1e-3
run resnet50-mlp "$budget" --model resnet50-mlp --schedule progressive
run resnet50-gap-aug "$budget" --model resnet50-gap --lr 1e-3 --augment
run resnet50-gap-noaug "$budget" --model resnet50-gap --lr 1e-3 --no-augment

python benchmarks/models.py --runs "$runs" --data "$data" --out benchmarks/models
