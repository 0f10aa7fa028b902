#!/usr/bin/env bash
# Recreates the model shipped in src/brainxai/weights/default.* from the shared data, then evaluates it.
# Safe to interrupt: re-running continues each stage from its last completed epoch (--resume).
# Uses the GPU when there is one (--device auto); on a CPU each stage takes hours (on Intel Xeons with AMX,
# AMP=bf16 trains under bfloat16 autocast, about 1.2x faster there).
#
# Usage: scripts/train_default_model.sh [DATA_ROOT] [RUN_DIR]
#   env: WORKERS (DataLoader processes, default 2), AMP (auto | bf16 | off, default auto)
set -euo pipefail
data="${1:-../shared/data/brain-tumor-mri}"
run="${2:-runs/lite0-default}"
recipe=(--model efficientnet-lite0 --schedule single --epochs 30 --patience 30 --lr 1e-3 --lr-schedule cosine
  --label-smoothing 0.1 --workers "${WORKERS:-2}" --amp "${AMP:-auto}" --seed 0 --resume)

# Stage 1, choosing: EfficientNet-Lite0 from its ImageNet weights, every layer trained: Adam 1e-3 with a
# cosine schedule over 30 epochs, label smoothing 0.1, the default augmentation (no flips), 5% of Training
# held out. The validation split picks the epoch (lowest validation loss) and fits the softmax temperature.
# The recipe itself was chosen among candidates by validation accuracy (scripts/default_model_sweep.sh).
brainxai train --data "$data" "${recipe[@]}" --val-fraction 0.05 --out "$run"
best_epoch=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['metrics']['best_epoch'])" "$run/best.json")

# Stage 2, the shipped model: the same recipe on all of Training, stopped at the chosen epoch (the cosine
# schedule still spans 30 epochs), and the temperature carried over from stage 1.
brainxai train --data "$data" "${recipe[@]}" --val-fraction 0 --stop-after "$best_epoch" --out "$run/refit"
brainxai calibrate --checkpoint "$run/refit/best" --from "$run/best"

cp "$run/refit/best.safetensors" src/brainxai/weights/default.safetensors
cp "$run/refit/best.json" src/brainxai/weights/default.json
brainxai evaluate --data "$data" --out benchmarks/default_model
