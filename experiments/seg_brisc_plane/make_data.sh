#!/bin/bash
# Issue 22: the BRISC rows of runs/seg/data-brisc-nodev without the sagittal and coronal pituitary tumours.
cd "$(dirname "$0")/../.."
src=runs/seg/data-brisc-nodev/brisc-masks-dev
dst=runs/seg/data-brisc-nodev-nosapi/brisc-masks-dev
mkdir -p "$dst"
ln -sfn "$(readlink -f "$src/images")" "$dst/images"
ln -sfn "$(readlink -f "$src/masks")" "$dst/masks"
.venv/bin/python - "$src/slices.csv" "$dst/slices.csv" <<'PY'
import csv
import sys

with open(sys.argv[1], newline="") as f:
    rows = list(csv.DictReader(f))
keep = [r for r in rows if not (r["label"] == "pituitary" and r["plane"] in ("sagittal", "coronal"))]
with open(sys.argv[2], "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(keep)
print(f"{len(keep)} of {len(rows)} rows kept")
PY
