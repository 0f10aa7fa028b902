#!/usr/bin/env bash
# How the default model's recipe was chosen: EfficientNet-Lite0 candidates trained in parallel on one GPU,
# ranked by validation only (Testing is never looked at here). Each run is capped by TIME_BUDGET minutes.
#
#   round 1: five recipes, 20% validation split; the three best by validation go to
#   round 2: the same three recipes again with a 5% validation split (more training data); the best by
#            validation is shipped (scripts/train_default_model.sh is that recipe).
#
# Ranking: highest validation accuracy at each run's best checkpoint, ties by lower validation loss
# (plain cross-entropy). Results and the test figures of every candidate:
# experiments/default_model_selection/candidates.md.
#
# Usage: experiments/default_model_selection/default_model_sweep.sh ROUND [DATA_ROOT] [RUNS_DIR]   env: TIME_BUDGET (minutes, default 6.5), TRAIN_OPTS
set -euo pipefail
round="${1:?round 1 or 2}"
data="${2:-../shared/data/brain-tumor-mri}"
runs="${3:-runs/sweep}/round$round"
budget="${TIME_BUDGET:-6.5}"
mkdir -p "$runs"

declare -A recipe=(
  [c1]="--lr 1e-3 --epochs 40 --patience 8"
  [c2]="--lr 3e-4 --epochs 40 --patience 8"
  [c3]="--lr 1e-3 --lr-schedule cosine --epochs 30 --patience 30 --label-smoothing 0.1"
  [c4]="--lr 5e-4 --lr-schedule cosine --epochs 30 --patience 30 --hflip"
  [c5]="--lr 5e-4 --lr-schedule cosine --epochs 30 --patience 30 --label-smoothing 0.1 --hflip"
)
if [ "$round" = 1 ]; then names=(c1 c2 c3 c4 c5); val=0.2; else names=(c3 c4 c5); val=0.05; fi

for name in "${names[@]}"; do
  # shellcheck disable=SC2086
  brainxai train --data "$data" --model efficientnet-lite0 --seed 0 --val-fraction "$val" --workers 2 \
    --time-budget "$budget" ${TRAIN_OPTS:-} ${recipe[$name]} --out "$runs/$name" > "$runs/$name.log" 2>&1 &
done
wait

python - "$runs" <<'PY'
import json, pathlib, sys
rows = []
for p in sorted(pathlib.Path(sys.argv[1]).glob("c*/best.json")):
    m = json.loads(p.read_text())
    rows.append((-m["metrics"]["val_accuracy"], m["metrics"]["val_loss"], p.parent.name, m["metrics"]["best_epoch"], len(m["history"])))
for acc, loss, name, best, n in sorted(rows):
    print(f"{name} val_accuracy {-acc:.6f} val_loss {loss:.6f} best_epoch {best} epochs {n}")
PY
