"""Does the shipped classifier follow a slice's intensity distribution (its source's look) rather than its lesion?

Each Kaggle ``Testing`` image of the subject groups is histogram-matched, inside the head, to reference images
drawn from each reference pool (seeded), and classified by the shipped model as ``brainxai analyze`` would
(harmonisation, crop, ONNX/torch, temperature). Matching changes only the grey-level distribution of the head:
every pixel keeps its rank, so the anatomy and the lesion stay where and what they are. Per subject group and
reference pool: the share called each class, the share flagged out of domain and the median probability of the
subject's own class. Sources: ``experiments/source_derivation/sources.csv`` (every Testing glioma is figshare
content; the no-tumour images are Br35H or SARTAJ; 118 meningiomas are SARTAJ content).

    python experiments/source_look/run.py --data ../shared/data/brain-tumor-mri --out experiments/source_look

Research use only, not a diagnostic device.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
#: Pixels at or below this grey level count as background (left unchanged, not matched).
BACKGROUND = 10
#: (group name, label, source, figshare content) of the subject and reference groups.
GROUPS = {
    "glioma (figshare)": ("glioma", None, "1"),
    "pituitary (figshare)": ("pituitary", "figshare", "1"),
    "meningioma (SARTAJ content)": ("meningioma", "SARTAJ", "0"),
    "no tumour (Br35H)": ("notumor", "Br35H", "0"),
    "no tumour (SARTAJ)": ("notumor", "SARTAJ", "0"),
}
SUBJECTS = ("glioma (figshare)", "meningioma (SARTAJ content)", "no tumour (Br35H)", "no tumour (SARTAJ)")


def match_head_histogram(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``image`` with its head's grey levels mapped onto the distribution of ``reference``'s head.

    Head = pixels above :data:`BACKGROUND`; background pixels are left as they are. Rank-preserving: the
    i-th quantile of the image's head gets the i-th quantile of the reference's head.
    """
    out = image.copy()
    head = image > BACKGROUND
    src = image[head]
    ref = np.sort(reference[reference > BACKGROUND])
    if src.size == 0 or ref.size == 0:
        return out
    values, inverse, counts = np.unique(src, return_inverse=True, return_counts=True)
    quantiles = (np.cumsum(counts) - 0.5 * counts) / src.size  # mid-rank of each grey level
    mapped = np.interp(quantiles, (np.arange(ref.size) + 0.5) / ref.size, ref)
    out[head] = np.clip(np.round(mapped), 0, 255).astype(np.uint8)[inverse]
    return out


def load_groups(data: Path) -> dict[str, list[Path]]:
    rows = list(csv.DictReader((ROOT / "experiments/source_derivation/sources.csv").open()))
    groups: dict[str, list[Path]] = {}
    for name, (label, source, content) in GROUPS.items():
        groups[name] = [
            data / r["file"]
            for r in rows
            if r["split"] == "Testing"
            and r["label"] == label
            and (source is None or r["source"] == source)
            and r["figshare_content"] == content
        ]
    return groups


def run(data: Path, refs_per_image: int, seed: int, checkpoint: Path | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    from brainxai.inference import Classifier
    from brainxai.io import read_raster

    clf = Classifier.load(checkpoint, device="cpu")
    groups = load_groups(data)
    pixels = {p: read_raster(p) for paths in groups.values() for p in paths}
    rng = np.random.default_rng(seed)
    results: dict[str, dict[str, Any]] = {}
    for subject in SUBJECTS:
        label = GROUPS[subject][0]
        per_pool: dict[str, Any] = {}
        for pool in ("as stored", *GROUPS):
            images = []
            for path in groups[subject]:
                if pool == "as stored":
                    images.append(pixels[path])
                    continue
                candidates = [p for p in groups[pool] if p != path]
                for ref in rng.choice(len(candidates), size=refs_per_image, replace=False):
                    images.append(match_head_histogram(pixels[path], pixels[candidates[int(ref)]]))
            preds = []
            for start in tqdm(range(0, len(images), 64), desc=f"{subject} <- {pool}", leave=False):
                preds += clf.predict(images[start : start + 64])
            counts: dict[str, int] = defaultdict(int)
            for p in preds:
                counts[p.label] += 1
            per_pool[pool] = {
                "n": len(preds),
                "called": {c: round(counts[c] / len(preds), 4) for c in clf.classes},
                "out_of_domain": round(sum(p.in_domain is False for p in preds) / len(preds), 4),
                # What the external target counts: called "no tumour" without the out-of-domain flag.
                "notumor_in_domain": round(
                    sum(p.label == "notumor" and p.in_domain is not False for p in preds) / len(preds), 4
                ),
                "median_p_own_class": round(float(np.median([p.probabilities[label] for p in preds])), 4),
            }
        results[subject] = {"images": len(groups[subject]), "pools": per_pool}
    return {
        "refs_per_image": refs_per_image,
        "seed": seed,
        "background_threshold": BACKGROUND,
        "model_sha256": clf.checkpoint.sha256,
        "checkpoint": str(checkpoint) if checkpoint else "shipped",
        "results": results,
    }


def to_markdown(result: dict[str, Any], command: str) -> str:
    lines = [
        f"Command: `{command}`; model {result.get('checkpoint', 'shipped')}, sha256 {result['model_sha256'][:12]}; "
        f"{result['refs_per_image']} reference "
        f"images per subject image and pool (seed {result['seed']}); "
        f"head = grey level > {result['background_threshold']}.",
        "",
        "| subject (Testing) | head histogram of | n | glioma | meningioma | no tumour | pituitary | out of domain "
        "| no tumour, in domain | median P(own class) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for subject, r in result["results"].items():
        for pool, f in r["pools"].items():
            c = f["called"]
            lines.append(
                f"| {subject} ({r['images']}) | {pool} | {f['n']} | {c['glioma']:.3f} | {c['meningioma']:.3f} "
                f"| {c['notumor']:.3f} | {c['pituitary']:.3f} | {f['out_of_domain']:.3f} "
                f"| {f['notumor_in_domain']:.3f} | {f['median_p_own_class']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/brain-tumor-mri")
    ap.add_argument("--refs", type=int, default=2, help="Reference images per subject image and pool.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", type=Path, default=None, help="Classifier checkpoint (default: the shipped one).")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments/source_look")
    args = ap.parse_args(argv)
    result = run(args.data, args.refs, args.seed, args.checkpoint)
    command = "python experiments/source_look/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result["command"] = command
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    md = to_markdown(result, command)
    (args.out / "results.md").write_text(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
