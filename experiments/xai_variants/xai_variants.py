"""What was tried to raise the pointing game: variants of the explainers, measured on one box set.

``brainxai xai-benchmark`` measures the shipped explainers. This script measures variations of them on
the same images and the same metric (pointing game, 15 px tolerance at the original resolution, the
annotated class explained), so that a proposal to change a default can be judged by a number:

- smoothing the map with a Gaussian before taking its maximum (sigma in model-input pixels);
- LRP composites (epsilon-plus-flat, epsilon-gamma-box);
- Grad-CAM at other layers (the last MBConv block, 7x7; block 10, 14x14);
- shift-averaged Grad-CAM: the mean of the maps of the input shifted by sub-cell steps and shifted back
  (a finer effective grid; "augmented Grad-CAM", Morbidelli et al., 2020, without its super-resolution
  solver): here with circular shifts of 0..31 px, and as the library's ``shifts=4`` option (centred
  shifts, black fill), alone and inside guided Grad-CAM (`xai/shifted_cam.md`);
- contrastive targets: the target logit minus the "no tumour" logit, or minus the mean of the others;
- products of a pixel-level map with Grad-CAM (as guided Grad-CAM multiplies guided backprop with it);
- Relevance-CAM (Lee et al., 2021): CAM with channel weights from LRP relevance at the layer.

Selecting the best of many variants on the same 60 images is optimistic. The report therefore adds a
two-fold estimate: pick the best variant on one half (stratified by class, 100 random halvings) and
score it on the other half.

Built on the library's internals (the LRP explainer's prepared model and hooks); an exploration tool,
not an API.

    python experiments/xai_variants/xai_variants.py --boxes ../shared/data/figshare-boxes-dev/boxes.csv \
        --out experiments/xai_variants
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from tqdm.auto import tqdm

from brainxai.bench import hardware_summary
from brainxai.constants import DISCLAIMER
from brainxai.explain import create_explainer
from brainxai.explain.cam import align_to_receptive_fields, aligned_maps, cam_grid
from brainxai.explain.lrp import fast as lrp_module
from brainxai.explain.quality import pointing_game
from brainxai.explain.views import relevance_to_original
from brainxai.inference import Classifier
from brainxai.xai_benchmark import BoxImages, load_box_images, read_boxes

BATCH = 12


class _Contrast:
    """CAM target: a weighted sum of the logits."""

    def __init__(self, weights: torch.Tensor) -> None:
        self.weights = weights

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return (output * self.weights.to(output)).sum(-1)


def _batches(data: BoxImages, classifier: Classifier, targets: np.ndarray, fn: Callable) -> np.ndarray:
    out = []
    for start in range(0, len(targets), BATCH):
        idx = list(range(start, min(len(targets), start + BATCH)))
        out.append(fn(classifier.tensor(data.prepared[idx]), [int(targets[i]) for i in idx]))
    return np.concatenate(out).astype(np.float32)


def _explainer_maps(data: BoxImages, classifier: Classifier, targets: np.ndarray, name: str, **kwargs) -> np.ndarray:
    """A registered explainer's maps; one explainer for all batches, closed (hooks removed) after."""
    with create_explainer(name, classifier.model, **kwargs) as explainer:
        return _batches(
            data, classifier, targets, lambda x, t: np.stack([e.relevance for e in explainer.explain(x, t)])
        )


def _gradcam(
    model: nn.Module, layer: nn.Module, weights: Callable[[int], torch.Tensor] | None = None, shift: int = 0
) -> Callable:
    """Aligned Grad-CAM at ``layer``; ``shift`` > 0 averages over input shifts of 0..31 px in that step."""

    def one(x: torch.Tensor, t: list[int]) -> np.ndarray:
        targets = [ClassifierOutputTarget(k) if weights is None else _Contrast(weights(k)) for k in t]
        with GradCAM(model=model, target_layers=[layer]) as cam:
            maps = cam(input_tensor=x, targets=targets)
            return aligned_maps(maps, cam, model, layer, x)

    if not shift:
        return one

    def averaged(x: torch.Tensor, t: list[int]) -> np.ndarray:
        steps = range(0, 32, shift)
        # The scans have black margins, so a circular shift brings no tissue across the border.
        maps = [np.roll(one(torch.roll(x, (dy, dx), (2, 3)), t), (-dy, -dx), (1, 2)) for dy in steps for dx in steps]
        return np.mean(maps, axis=0)

    return averaged


def _lrp(
    model: nn.Module, layers: dict[str, nn.Module] | None = None, weights: Callable[[int], torch.Tensor] | None = None
):
    """LRP maps (optionally for a weighted sum of logits), and Relevance-CAMs at ``layers``."""
    explainer = create_explainer("lrp", model)
    prepared = explainer.prepared_model()
    named = dict(model.named_modules())
    prepared_named = dict(prepared.named_modules())
    layers = layers or {}
    acts: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_m: nn.Module, _i, out: torch.Tensor) -> None:
            out.retain_grad()
            acts[name] = out

        return hook

    handles = [prepared_named[path].register_forward_hook(keep(path)) for path in layers.values()]
    grids = {}

    def run(x: torch.Tensor, t: list[int]) -> dict[str, np.ndarray]:
        x = x.clone().requires_grad_(True)
        with lrp_module.main_pass():
            out = prepared(x)
        tt = torch.tensor(t)
        if weights is None:
            start = torch.zeros_like(out).scatter_(1, tt[:, None], 1.0) * out.detach()
        else:
            # The rules are linear in the output relevance: this is |logit| x LRP of the contrast.
            start = torch.stack([weights(k) for k in t]).to(out) * out.detach().gather(1, tt[:, None]).abs()
        out.backward(start)
        lrp_module.clear_call_state(explainer.hooks)
        maps = {"lrp": x.grad.sum(1).detach().cpu().numpy()}
        for label, path in layers.items():
            a = acts[path]
            # zennit's hooks put the relevance where the gradient was.
            alpha = a.grad.sum((2, 3), keepdim=True)
            cam = torch.relu((alpha * a).sum(1)).detach().cpu().numpy()
            ups = np.stack([cv2.resize(m, tuple(x.shape[-1:-3:-1]), interpolation=cv2.INTER_LINEAR) for m in cam])
            ups = ups / (ups.reshape(len(ups), -1).max(1)[:, None, None] + 1e-12)
            if path not in grids:
                grids[path] = cam_grid(model, named[path], tuple(x.shape[-2:]), x.shape[1])
            maps[label] = align_to_receptive_fields(ups.astype(np.float32), grids[path])
        return maps

    def close() -> None:
        for h in handles:
            h.remove()
        explainer.close()

    return run, close


def _normalised(maps: np.ndarray, sigma: float = 0.0) -> np.ndarray:
    pos = np.maximum(maps, 0.0).astype(np.float32)
    if sigma:
        pos = np.stack([cv2.GaussianBlur(m, (0, 0), sigma) for m in pos])
    return pos / (pos.reshape(len(pos), -1).max(1)[:, None, None] + 1e-12)


def _hits(maps: np.ndarray, data: BoxImages, sigma: float = 0.0) -> np.ndarray:
    smoothed = _normalised(maps, sigma)
    return np.array(
        [
            pointing_game(relevance_to_original(m, data.crops[i], data.originals[i].shape), data.boxes[i])
            for i, m in enumerate(smoothed)
        ],
        float,
    )


def _two_fold(
    hits: dict[str, np.ndarray], labels: np.ndarray, repeats: int = 100, seed: int = 0
) -> tuple[float, float]:
    """Mean over random stratified halvings of: best variant on one half, scored on the other."""
    rng = np.random.default_rng(seed)
    names = list(hits)
    table = np.stack([hits[n] for n in names])
    scores = []
    for _ in range(repeats):
        half = np.zeros(len(labels), bool)
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            half[rng.choice(idx, len(idx) // 2, replace=False)] = True
        for pick, score in ((half, ~half), (~half, half)):
            best = int(np.argmax(table[:, pick].mean(1)))
            scores.append(table[best, score].mean())
    return float(np.mean(scores)), float(np.std(scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boxes", required=True, type=Path)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()

    classifier = Classifier.load(args.checkpoint, device="cpu")
    model = classifier.model
    records = read_boxes(args.boxes)
    data = load_box_images(records, classifier)
    labels = np.array([classifier.classes.index(r.label) for r in records])
    k = len(classifier.classes)
    none_idx = classifier.classes.index("notumor") if "notumor" in classifier.classes else None

    def versus_none(t: int) -> torch.Tensor:
        w = torch.zeros(k)
        w[t] = 1.0
        w[none_idx] -= 1.0
        return w

    def versus_rest(t: int) -> torch.Tensor:
        w = torch.full((k,), -1.0 / (k - 1))
        w[t] = 1.0
        return w

    target_layer = dict(model.named_modules())[model.brainxai_config.target_layer]
    blocks = getattr(model, "blocks", None)
    maps: dict[str, np.ndarray] = {}
    for label, name, kwargs in (
        ("guided-backprop", "guided-backprop", {}),
        ("guided-gradcam", "guided-gradcam", {}),
        ("guided-gradcam, 4x4 shifts", "guided-gradcam", {"shifts": 4}),
        ("gradcam, 4x4 shifts (library: centred, black fill)", "gradcam", {"shifts": 4}),
        ("lrp-epsilon-gamma-box", "lrp", {"composite": "epsilon-gamma-box"}),
    ):
        maps[label] = _explainer_maps(data, classifier, labels, name, **kwargs)
    jobs: list[tuple[str, Callable]] = [
        ("gradcam", _gradcam(model, target_layer)),
        ("gradcam, 2x2 shifts of 16 px", _gradcam(model, target_layer, shift=16)),
        ("gradcam, 4x4 shifts of 8 px", _gradcam(model, target_layer, shift=8)),
    ]
    if none_idx is not None:
        jobs.append(("gradcam, target minus no-tumour logit", _gradcam(model, target_layer, versus_none)))
    jobs.append(("gradcam, target minus mean of others", _gradcam(model, target_layer, versus_rest)))
    relcam_layers = {"relevance-cam (head)": model.brainxai_config.target_layer}
    if blocks is not None and len(blocks) > 10:
        jobs.append((f"gradcam at blocks.{len(blocks) - 1}", _gradcam(model, blocks[-1])))
        jobs.append(("gradcam at blocks.10 (finer grid)", _gradcam(model, blocks[10])))
        relcam_layers[f"relevance-cam (blocks.{len(blocks) - 1})"] = f"blocks.{len(blocks) - 1}"
        relcam_layers["relevance-cam (blocks.10)"] = "blocks.10"
    for label, fn in tqdm(jobs, desc="variants"):
        maps[label] = _batches(data, classifier, labels, fn)
    run, close = _lrp(model, relcam_layers)
    lrp_maps: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(labels), BATCH):
        idx = list(range(start, min(len(labels), start + BATCH)))
        for key, value in run(classifier.tensor(data.prepared[idx]), [int(labels[i]) for i in idx]).items():
            lrp_maps.setdefault(key, []).append(value)
    close()
    maps = {"lrp (epsilon-plus-flat)": np.concatenate(lrp_maps.pop("lrp")), **maps}
    maps.update({key: np.concatenate(v) for key, v in lrp_maps.items()})
    for label, weights in (
        ("lrp, target minus no-tumour logit", versus_none if none_idx is not None else None),
        ("lrp, target minus mean of others", versus_rest),
    ):
        if weights is None:
            continue
        run, close = _lrp(model, weights=weights)
        maps[label] = _batches(data, classifier, labels, lambda x, t, run=run: run(x, t)["lrp"])
        close()
    for pixel in ("lrp (epsilon-plus-flat)", "lrp-epsilon-gamma-box", "guided-backprop"):
        for sigma in (0, 8):
            maps[f"{pixel} x gradcam" + (f" (pixel map smoothed, sigma {sigma})" if sigma else "")] = _normalised(
                maps[pixel], sigma
            ) * _normalised(maps["gradcam"])

    hits: dict[str, np.ndarray] = {}
    rows = []
    for label, m in maps.items():
        for sigma in (0, 2, 4, 8):
            if sigma and " x " in label:
                continue
            name = label + (f", smoothed sigma {sigma}" if sigma else "")
            h = _hits(m, data, sigma)
            hits[name] = h
            rows.append(
                {
                    "variant": name,
                    "pointing_game": float(h.mean()),
                    **{
                        c: float(h[labels == i].mean()) for i, c in enumerate(classifier.classes) if (labels == i).any()
                    },
                }
            )
    cv_mean, cv_std = _two_fold(hits, labels)
    best = max(rows, key=lambda r: r["pointing_game"])
    result = {
        "n": len(labels),
        "variants": rows,
        "best": best,
        "two_fold_selected": {"mean": cv_mean, "std": cv_std},
        "checkpoint": classifier.checkpoint.sha256,
        "hardware": hardware_summary(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "variants.json").write_text(json.dumps(result, indent=2) + "\n")
    classes = [c for i, c in enumerate(classifier.classes) if (labels == i).any()]
    lines = [
        "# What was tried: explainer variants on the pointing game",
        "",
        "Reproduce: `python experiments/xai_variants/xai_variants.py "
        "--boxes ../shared/data/figshare-boxes-dev/boxes.csv --out experiments/xai_variants`",
        (
            f"(model `{classifier.name}`, checkpoint sha256 `{classifier.checkpoint.sha256[:12]}`; "
            f"{len(labels)} images; annotated class explained;"
        ),
        (
            "15 px tolerance at the original resolution; sigma in model-input pixels). "
            "See the docstring of the script for each variant."
        ),
        "",
        f"> {DISCLAIMER}",
        "",
        "| variant | pointing game | " + " | ".join(classes) + " |",
        "|---|---|" + "---|" * len(classes),
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['pointing_game']:.3f} | " + " | ".join(f"{r[c]:.2f}" for c in classes) + " |"
        )
    lines += [
        "",
        f"Best on these images: **{best['variant']}**, {best['pointing_game']:.3f}. "
        f"Picking the best of the {len(rows)} "
        f"variants on one half of the images and scoring it on the other half (stratified, 100 random halvings, "
        f"both directions) gives {cv_mean:.3f} ± {cv_std:.3f}: what the best-looking variant can be expected "
        "to score on new images of the same kind.",
        "",
    ]
    (args.out / "variants.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
