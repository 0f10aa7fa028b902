#!/usr/bin/env bash
# Recreates the model shipped in src/brainxai/weights/default.* from the shared data, then evaluates it.
# Safe to interrupt: re-running continues from the last completed epoch (--resume).
#
# Usage: scripts/train_default_model.sh [DATA_ROOT] [RUN_DIR]
set -euo pipefail
data="${1:-../shared/data/brain-tumor-mri}"
run="${2:-runs/lite0-default}"

# EfficientNet-Lite0 from its ImageNet weights, progressive unfreezing in four phases:
# classifier; + head and last block; + the 192-channel stage; + the 112-channel stage.
brainxai train --data "$data" --model efficientnet-lite0 --schedule progressive \
  --phase-epochs 2,5,8,10 --phase-lrs 1e-3,5e-4,2e-4,1e-4 --patience 3 \
  --out "$run" --seed 0 --resume

cp "$run/best.safetensors" src/brainxai/weights/default.safetensors
cp "$run/best.json" src/brainxai/weights/default.json
brainxai evaluate --data "$data" --out benchmarks/default_model
