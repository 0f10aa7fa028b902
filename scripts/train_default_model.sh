#!/usr/bin/env bash
# Recreates the model shipped in src/brainxai/weights/default.* from the shared data, then evaluates it.
# Safe to interrupt: re-running continues from the last completed epoch (--resume).
# Uses the GPU when there is one (--device auto); on a CPU the same 30 epochs take many hours.
#
# Usage: scripts/train_default_model.sh [DATA_ROOT] [RUN_DIR]      env: WORKERS (DataLoader processes, default 2)
set -euo pipefail
data="${1:-../shared/data/brain-tumor-mri}"
run="${2:-runs/lite0-default}"

# EfficientNet-Lite0 from its ImageNet weights, every layer trained: Adam 1e-3 with a cosine schedule over
# 30 epochs, label smoothing 0.1, the default augmentation (no flips), 5% of Training held out for validation.
# The recipe was chosen among candidates by validation accuracy (scripts/default_model_sweep.sh).
brainxai train --data "$data" --model efficientnet-lite0 --schedule single --epochs 30 --patience 30 \
  --lr 1e-3 --lr-schedule cosine --label-smoothing 0.1 --val-fraction 0.05 \
  --workers "${WORKERS:-2}" --out "$run" --seed 0 --resume

cp "$run/best.safetensors" src/brainxai/weights/default.safetensors
cp "$run/best.json" src/brainxai/weights/default.json
brainxai evaluate --data "$data" --out benchmarks/default_model
