"""Does the model need the tumour box? The box occlusion drop with the box enlarged 1x, 2x and 3x.

``brainxai xai-benchmark`` reports the drop of the explained class's probability when the tumour box is
blacked out. A small drop can mean the decision comes from elsewhere, or only that the box is tight and
the evidence spills over its edge; enlarging the box (about its centre, clipped to the model input)
tells the two apart. A large black square can lower the probability wherever it is, so each box is
compared with its mirror image (reflected left-right: the same place in the other hemisphere). Writes
``box_reliance.md``.

    python experiments/box_reliance/box_reliance.py --boxes ../shared/data/figshare-boxes-dev/boxes.csv \
        --out experiments/box_reliance
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from brainxai.constants import DISCLAIMER
from brainxai.explain.quality import box_to_input, mirrored_box, occlusion_drop
from brainxai.inference import Classifier
from brainxai.xai_benchmark import USES_BOX_DROP, load_box_images, read_boxes

SCALES = (1.0, 2.0, 3.0)


def _scaled(box: tuple[int, int, int, int], k: float, size: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, k * (x1 - x0) / 2, k * (y1 - y0) / 2
    return tuple(int(np.clip(round(v), 0, size)) for v in (cx - hw, cy - hh, cx + hw, cy + hh))  # type: ignore[return-value]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boxes", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    classifier = Classifier.load(args.checkpoint, device="cpu")
    records = read_boxes(args.boxes)
    data = load_box_images(records, classifier)
    size = data.prepared.shape[1]
    drops: dict[str, dict[float, list[float]]] = {}
    mirror: dict[str, dict[float, list[float]]] = {}
    for i, rec in enumerate(records):
        target = classifier.classes.index(rec.label)

        def score(batch: np.ndarray, target: int = target) -> np.ndarray:
            return torch.softmax(torch.from_numpy(classifier.logits_prepared(batch)), dim=1)[:, target].numpy()

        box = box_to_input(data.boxes[i], data.crops[i], size)
        image = data.prepared[i].astype(np.float32)
        for k in SCALES:
            scaled = _scaled(box, k, size)
            drops.setdefault(rec.label, {}).setdefault(k, []).append(occlusion_drop(score, image, scaled))
            mirror.setdefault(rec.label, {}).setdefault(k, []).append(
                occlusion_drop(score, image, mirrored_box(scaled, size))
            )

    checkpoint_arg = f" --checkpoint {args.checkpoint}" if args.checkpoint else ""
    lines = [
        "# Box occlusion drop with enlarged boxes",
        "",
        f"> {DISCLAIMER}",
        "",
        "Reproduce: `python experiments/box_reliance/box_reliance.py "
        f"--boxes {args.boxes}{checkpoint_arg} --out {args.out}` "
        f"(model `{classifier.name}`, sha256 `{classifier.checkpoint.sha256[:12]}`).",
        "",
        "Drop of the annotated class's probability when the tumour box, enlarged about its centre and clipped "
        "to the model input, is set to black, and the same for its mirror image (control). Median over the "
        f"images, and in brackets how many drop by {USES_BOX_DROP:g} or more.",
        "",
        "| label | n | " + " | ".join(f"box x{k:g} | mirror x{k:g}" for k in SCALES) + " |",
        "|---|---|" + "---|---|" * len(SCALES),
    ]

    def cell(v: list[float]) -> str:
        return f"{np.median(v):.3f} ({sum(d >= USES_BOX_DROP for d in v)})"

    for label, by_k in drops.items():
        cells = [f"{cell(by_k[k])} | {cell(mirror[label][k])}" for k in SCALES]
        lines.append(f"| {label} | {len(by_k[SCALES[0]])} | " + " | ".join(cells) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "box_reliance.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
