"""Out-of-domain score of a checkpoint: how well it separates in-domain slices from out-of-domain images.

    python benchmarks/ood.py --data ../shared/data --out benchmarks/ood

Writes ``OUT/ood.json`` and ``OUT/ood.md``. Two stages, so that the score was chosen on other images
than the ones it is reported on:

- ``selection``: in-domain = the calibration part of Training (held out of the domain fit, recorded in
  the checkpoint's ``.domain.npz``); out-of-domain = synthetic images (seed 0) and transformed
  calibration slices. Candidate scores are compared here.
- ``report``: in-domain = Kaggle ``Testing`` and ``figshare-masks-dev`` (512 px, in-domain content);
  out-of-domain = synthetic images (seed 1), natural photos (``sklearn.datasets.load_sample_images``
  crops) and transformed ``Testing`` slices.

The synthetic and transformed sets are proxies made offline (noise, gradients, a drawn chest-like
radiograph, a drawn head phantom, drawn shapes; intensity inversion inside the head as a crude
T2-like proxy; rotations; zoomed crops). They are not real scans of other sequences or body parts.
Features are cached in ``--cache`` (keyed by the weights' SHA-256, the preprocessing, set name and size).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from brainxai.data.dataset import decode_samples, discover_samples
from brainxai.evaluation.metrics import wilson_interval
from brainxai.inference import Classifier, softmax
from brainxai.io import NotABrainScanError, check_brain_scan
from brainxai.io.raster import read_raster
from brainxai.models.domain import DomainModel, energy
from brainxai.training.domain import extract_features

logger = logging.getLogger("ood")
SIZE = 256
SHIPPED = "shipped: max(mahalanobis, energy), scaled"
COMMAND = "python benchmarks/ood.py --data ../shared/data --out benchmarks/ood"


# -- synthetic out-of-domain images -------------------------------------------------------------------


def _to_u8(img: np.ndarray) -> np.ndarray:
    lo, hi = float(img.min()), float(img.max())
    return np.clip((img - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)


def uniform_noise(rng: np.random.Generator) -> np.ndarray:
    """White noise, uniform grey levels."""
    return rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)


def smooth_noise(rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise blurred to blobs (a texture, not a scan)."""
    sigma = float(rng.uniform(2, 12))
    return _to_u8(cv2.GaussianBlur(rng.normal(size=(SIZE, SIZE)), (0, 0), sigma))


def gradient(rng: np.random.Generator) -> np.ndarray:
    """A linear or radial intensity gradient."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    if rng.random() < 0.5:
        a = rng.uniform(0, 2 * np.pi)
        g = np.cos(a) * xx + np.sin(a) * yy
    else:
        cx, cy = rng.uniform(0.2, 0.8, 2)
        g = -np.hypot(xx - cx, yy - cy)
    return _to_u8(g + rng.normal(0, 0.01, g.shape))


def chest_like(rng: np.random.Generator) -> np.ndarray:
    """A drawn frontal chest radiograph: torso, dark lungs, heart, spine, ribs, clavicles."""
    img = np.zeros((SIZE, SIZE), np.float32)
    j = lambda v, s=6: int(v + rng.normal(0, s))  # noqa: E731 (a jitter, local)
    cv2.ellipse(img, (j(128), j(150)), (j(118), j(125)), 0, 0, 360, 0.55, -1)
    for side in (-1, 1):
        cv2.ellipse(img, (j(128 + side * 48), j(125)), (j(38, 4), j(80, 6)), side * 8, 0, 360, 0.12, -1)
    cv2.ellipse(img, (j(140), j(165)), (j(36, 4), j(30, 4)), 20, 0, 360, 0.5, -1)
    cv2.rectangle(img, (120, 20), (136, 250), 0.85, -1)
    for k in range(9):
        y = 70 + 17 * k
        for side in (-1, 1):
            cv2.ellipse(img, (128, y), (90, 22), 0, 180 if side < 0 else 270, 270 if side < 0 else 360, 0.75, 3)
    for side in (-1, 1):
        cv2.line(img, (128, 55), (128 + side * 85, j(40)), 0.8, 5)
    return _to_u8(cv2.GaussianBlur(img, (0, 0), 2.5) + rng.normal(0, 0.03, img.shape))


def head_phantom(rng: np.random.Generator) -> np.ndarray:
    """A Shepp-Logan-like head phantom (ellipses): head-shaped, a hard case for any brain/non-brain check."""
    img = np.zeros((SIZE, SIZE), np.float32)
    c = SIZE // 2
    cv2.ellipse(img, (c, c), (int(0.69 * c), int(0.92 * c)), 0, 0, 360, 1.0, -1)
    cv2.ellipse(img, (c, c + 4), (int(0.66 * c), int(0.87 * c)), 0, 0, 360, 0.2, -1)
    for _ in range(int(rng.integers(3, 7))):
        x, y = (int(v) for v in rng.integers(c - 50, c + 50, 2))
        ax = (int(rng.integers(6, 30)), int(rng.integers(6, 40)))
        cv2.ellipse(img, (x, y), ax, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.0, 0.5)), -1)
    return _to_u8(img + rng.normal(0, 0.01, img.shape).astype(np.float32))


def shapes(rng: np.random.Generator) -> np.ndarray:
    """Drawn rectangles, circles and text on a dark background (a diagram, not a scan)."""
    img = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        v = int(rng.integers(60, 256))
        x0, y0 = (int(t) for t in rng.integers(0, SIZE - 40, 2))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(10, 120)), y0 + int(rng.integers(10, 120))), v, -1)
        else:
            cv2.circle(img, (x0, y0), int(rng.integers(5, 50)), v, -1)
    cv2.putText(img, "ABC 123", (10, int(rng.integers(20, SIZE))), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 255, 2)
    return img


def photos(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """``n`` random grayscale crops (20-100% of the side) of scikit-learn's two sample photos."""
    from sklearn.datasets import load_sample_images

    pics = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in load_sample_images().images]
    out = []
    for i in range(n):
        pic = pics[i % len(pics)]
        h, w = pic.shape
        side = int(min(h, w) * rng.uniform(0.2, 1.0))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        out.append(cv2.resize(pic[y : y + side, x : x + side], (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    return out


SYNTHETIC: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "uniform noise": uniform_noise,
    "smooth noise": smooth_noise,
    "gradient": gradient,
    "chest-like drawing": chest_like,
    "head phantom (drawn)": head_phantom,
    "shapes and text": shapes,
}


# -- transformed brain slices -----------------------------------------------------------------------


def invert_head(img: np.ndarray) -> np.ndarray:
    """Intensities inverted inside the head, background kept dark: a crude T2-like proxy (synthetic)."""
    head = cv2.GaussianBlur(img, (0, 0), 3) > 20
    return np.where(head, 255 - img, 0).astype(np.uint8)


def zoom_crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random quarter of the slice enlarged to the full size (a partial view)."""
    h, w = img.shape
    y, x = int(rng.integers(0, h // 2 + 1)), int(rng.integers(0, w // 2 + 1))
    return cv2.resize(img[y : y + h // 2, x : x + w // 2], (w, h), interpolation=cv2.INTER_LINEAR)


TRANSFORMS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "inverted inside head (T2-like proxy)": lambda im, _r: invert_head(im),
    "rotated 90°": lambda im, _r: np.ascontiguousarray(np.rot90(im)),
    "rotated 180°": lambda im, _r: np.ascontiguousarray(np.rot90(im, 2)),
    "zoomed quarter crop": zoom_crop,
}


# -- features -----------------------------------------------------------------------------------------


class Features:
    """Logits and features of named image sets, cached on disk per weights, set and size."""

    def __init__(self, clf: Classifier, cache: Path | None) -> None:
        self.clf, self.cache = clf, cache
        #: Per raw set: which images pass the analysis's brain-scan plausibility check (``check_brain_scan``).
        self.passes: dict[str, np.ndarray] = {}

    def get_raw(self, name: str, key: str, make: Callable[[], list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`get` for raw images, also recording which pass the brain-scan check in ``passes[name]``."""
        made: list[np.ndarray] = []

        def prepared() -> np.ndarray:
            made.extend(make())
            return _prepare(self.clf, made)

        logits, feats = self.get(key, prepared)
        check_key = f"{key} brain check"
        cached = self._load(check_key)
        if cached is None:
            ok = np.array([_passes_check(im) for im in (made or make())])
            self._save(check_key, ok=ok)
        else:
            ok = cached["ok"]
        self.passes[name] = ok
        return logits, feats

    def _path(self, key: str) -> Path | None:
        # The preprocessing is part of the key: the same weights fed another way (e.g. harmonised) give other features.
        prep = hashlib.sha256(json.dumps(self.clf.preprocess.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        name = f"{self.clf.checkpoint.sha256[:12]}-{prep}-{''.join(ch if ch.isalnum() else '_' for ch in key)}.npz"
        return self.cache / name if self.cache else None

    def _load(self, key: str) -> dict[str, np.ndarray] | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    def _save(self, key: str, **arrays: np.ndarray) -> None:
        path = self._path(key)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, **arrays)  # type: ignore[arg-type]

    def get(self, name: str, make: Callable[[], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(logits, features)`` of the prepared images ``make()`` returns (or the cached ones)."""
        cached = self._load(name)
        if cached is not None:
            return cached["logits"], cached["feats"]
        prepared = make()
        t = time.perf_counter()
        logits, feats = extract_features(self.clf, prepared, desc=name[:20])
        logger.info("%s: %d images, %.0f s", name, len(prepared), time.perf_counter() - t)
        self._save(name, logits=logits, feats=feats)
        return logits, feats


def _passes_check(image: np.ndarray) -> bool:
    try:
        check_brain_scan(image)
    except NotABrainScanError:
        return False
    return True


def _prepare(clf: Classifier, raw: list[np.ndarray]) -> np.ndarray:
    return np.stack([clf.prepare(im) for im in raw])


def _folder(clf: Classifier, folder: Path, cache: Path | None) -> tuple[np.ndarray, list[Path]]:
    decoded = decode_samples(discover_samples(folder), clf.preprocess, cache_dir=cache, progress=False)
    return decoded.images, [s.path for s in decoded.samples]


def _image_folder(clf: Classifier, folder: Path) -> np.ndarray:
    return _prepare(clf, [read_raster(p) for p in sorted(folder.rglob("*.jpg"))])


# -- scores -------------------------------------------------------------------------------------------

Score = Callable[[np.ndarray, np.ndarray], np.ndarray]


def candidate_scores(
    clf: Classifier, domain: DomainModel, fit: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> dict[str, Score]:
    """The scores compared (higher = further out), each a function of ``(logits, features)``."""
    fit_logits, fit_feats, fit_labels = fit
    # The same fit at the other storage precision: what storing the whitener as float16 (or not) costs.
    other = "float32" if domain.whitener.dtype == np.float16 else "float16"
    refit = DomainModel.fit(fit_feats, fit_labels, dtype=other)
    m_ref, e_ref = domain.mahalanobis(fit_feats), energy(fit_logits)

    def z_sum(lg: np.ndarray, ft: np.ndarray) -> np.ndarray:
        return (domain.mahalanobis(ft) - m_ref.mean()) / m_ref.std() + (energy(lg) - e_ref.mean()) / e_ref.std()

    return {
        SHIPPED: lambda lg, ft: domain.score(ft, lg),
        "mahalanobis": lambda lg, ft: domain.mahalanobis(ft),
        f"mahalanobis, {other} whitener": lambda lg, ft: refit.mahalanobis(ft),
        "energy": lambda lg, ft: energy(lg),
        "max softmax": lambda lg, ft: -softmax(lg, clf.temperature).max(axis=1),
        "mahalanobis + energy (z-sum)": z_sum,
    }


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """Probability that an out-of-domain image scores higher than an in-domain one (ties count half)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(y, np.r_[inside, outside]))


def _flagged(scores: np.ndarray, threshold: float) -> dict[str, Any]:
    k, n = int((scores > threshold).sum()), len(scores)
    lo, hi = wilson_interval(k, n)
    return {"k": k, "n": n, "share": k / n, "ci95": [lo, hi]}


def evaluate_stage(
    sets_in: dict[str, tuple[np.ndarray, np.ndarray]],
    sets_out: dict[str, tuple[np.ndarray, np.ndarray]],
    scores: dict[str, Score],
    thresholds: dict[str, float],
    passes: dict[str, np.ndarray],
) -> dict[str, Any]:
    """AUROC of every out-of-domain set against every in-domain set, and flagged shares, per score.

    ``stopped``: share of an out-of-domain set that the analysis would not report as a finding: rejected
    by the brain-scan check (``passes`` False) or flagged by the score.
    """
    s_in = {name: {c: f(*lf) for c, f in scores.items()} for name, lf in sets_in.items()}
    s_out = {name: {c: f(*lf) for c, f in scores.items()} for name, lf in sets_out.items()}
    return {
        "in_domain": {
            name: {"n": len(next(iter(v.values()))), "flagged": {c: _flagged(s, thresholds[c]) for c, s in v.items()}}
            for name, v in s_in.items()
        },
        "out_of_domain": {
            name: {
                "n": len(next(iter(v.values()))),
                "auroc": {i: {c: auroc(s_in[i][c], s) for c, s in v.items()} for i in s_in},
                "flagged": {c: _flagged(s, thresholds[c]) for c, s in v.items()},
                "passes_brain_check": float(passes[name].mean()),
                "stopped": {c: float(np.mean(~passes[name] | (s > thresholds[c]))) for c, s in v.items()},
            }
            for name, v in s_out.items()
        },
    }


# -- the two stages -----------------------------------------------------------------------------------


def _synthetic(make: Callable[[np.random.Generator], np.ndarray], rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return [make(rng) for _ in range(n)]


def _transformed(
    tf: Callable[[np.ndarray, np.random.Generator], np.ndarray], rng: np.random.Generator, slices: list[np.ndarray]
) -> list[np.ndarray]:
    return [tf(s, rng) for s in slices]


def _ood_sets(
    feats: Features, stage: str, seed: int, n_synth: int, slices: list[np.ndarray], photos_n: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (logits, features)}`` of the out-of-domain sets of a stage (brain-check results in ``feats.passes``)."""
    out = {}
    for i, (name, make) in enumerate(SYNTHETIC.items()):
        rng = np.random.default_rng([seed, i])
        out[name] = feats.get_raw(name, f"{stage} {name} {n_synth}", partial(_synthetic, make, rng, n_synth))
    if photos_n:
        rng = np.random.default_rng([seed, 100])
        out["natural photos"] = feats.get_raw(
            "natural photos", f"{stage} photos {photos_n}", partial(photos, rng, photos_n)
        )
    for i, (name, tf) in enumerate(TRANSFORMS.items()):
        rng = np.random.default_rng([seed, 200 + i])
        out[name] = feats.get_raw(name, f"{stage} {name} {len(slices)}", partial(_transformed, tf, rng, slices))
    return out


def _accuracy_by_flag(
    lf: tuple[np.ndarray, np.ndarray], labels: np.ndarray, scores: np.ndarray, threshold: float
) -> dict[str, Any]:
    """The classifier's accuracy on the in-domain images the score flags and on those it passes."""
    right = lf[0].argmax(axis=1) == labels
    out = {}
    for name, mask in (("flagged", scores > threshold), ("passed", scores <= threshold)):
        k, n = int(right[mask].sum()), int(mask.sum())
        out[name] = {"correct": k, "n": n, "accuracy": k / n if n else None}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    clf = Classifier.load(args.checkpoint, device="cpu")
    domain = clf.checkpoint.domain
    if domain is None:
        sys.exit("the checkpoint has no domain statistics: run `brainxai domain fit` first")
    feats = Features(clf, args.cache)
    mri = args.data / "brain-tumor-mri"
    train_images, train_paths = _folder(clf, mri / "Training", args.cache)
    rel = [str(p.relative_to(mri / "Training")) for p in train_paths]
    cal_set = set(domain.info["split"]["calibration_files"])
    is_cal = np.array([r in cal_set for r in rel])
    train_lf = feats.get(f"Training {len(rel)}", lambda: train_images)
    labels = np.array([domain.info["class_names"].index(Path(r).parts[0]) for r in rel])
    fit = (train_lf[0][~is_cal], train_lf[1][~is_cal], labels[~is_cal])
    scores = candidate_scores(clf, domain, fit)
    q = float(domain.info["quantile"])
    cal = (train_lf[0][is_cal], train_lf[1][is_cal])
    thresholds = {c: float(np.quantile(f(*cal), q)) for c, f in scores.items()}
    thresholds[SHIPPED] = domain.threshold
    rng = np.random.default_rng(args.seed)

    # Selection: the calibration part against synthetic images (seed 0) and its own transformed slices.
    cal_idx = rng.choice(np.flatnonzero(is_cal), args.n_transform_select, replace=False)
    cal_raw = [read_raster(train_paths[i]) for i in cal_idx]
    sel_out = _ood_sets(feats, "selection", 0, args.n_synth_select, cal_raw, 0)
    selection = evaluate_stage({"Training calibration part": cal}, sel_out, scores, thresholds, dict(feats.passes))

    # Report: Testing and figshare-masks-dev against synthetic images (seed 1), photos, transformed Testing slices.
    test_images, test_paths = _folder(clf, mri / "Testing", args.cache)
    test_lf = feats.get(f"Testing {len(test_paths)}", lambda: test_images)
    fig_dir = args.data / "figshare-masks-dev" / "images"
    fig_lf = feats.get(f"figshare-masks-dev {len(list(fig_dir.glob('*.jpg')))}", lambda: _image_folder(clf, fig_dir))
    pick = rng.choice(len(test_paths), args.n_transform_report, replace=False)
    test_raw = [read_raster(test_paths[i]) for i in pick]
    rep_out = _ood_sets(feats, "report", 1, args.n_synth_report, test_raw, args.n_photos)
    report = evaluate_stage(
        {"Kaggle Testing": test_lf, "figshare-masks-dev": fig_lf}, rep_out, scores, thresholds, dict(feats.passes)
    )
    test_classes = np.array([domain.info["class_names"].index(p.parent.name) for p in test_paths])
    shipped = scores[SHIPPED](*test_lf)
    names = domain.info["class_names"]
    per_class = {c: _flagged(shipped[test_classes == k], domain.threshold) for k, c in enumerate(names)}
    fig_classes = np.array([names.index(p.stem.rsplit("_", 1)[0]) for p in sorted(fig_dir.rglob("*.jpg"))])
    accuracy = {
        "Kaggle Testing": _accuracy_by_flag(test_lf, test_classes, shipped, domain.threshold),
        "figshare-masks-dev": _accuracy_by_flag(fig_lf, fig_classes, scores[SHIPPED](*fig_lf), domain.threshold),
    }
    return {
        "command": COMMAND,
        "checkpoint": {
            "weights_sha256": clf.checkpoint.sha256,
            "threshold": domain.threshold,
            "quantile": q,
            "shrinkage": domain.info.get("shrinkage"),
            "n_fit": domain.info.get("n_fit"),
            "n_calibration": domain.info.get("n_calibration"),
            "whitener_dtype": str(domain.whitener.dtype),
            "preprocess": clf.preprocess.to_dict(),
        },
        "thresholds": thresholds,
        "selection": selection,
        "report": report,
        "testing_flagged_per_class": per_class,
        "accuracy_by_flag": accuracy,
        "environment": {"python": platform.python_version(), "machine": platform.machine()},
    }


# -- report -------------------------------------------------------------------------------------------


def _pct(f: dict[str, Any]) -> str:
    return f"{100 * f['share']:.1f}% ({f['k']}/{f['n']}; 95% CI {100 * f['ci95'][0]:.1f}–{100 * f['ci95'][1]:.1f}%)"


def _candidate_table(stage: dict[str, Any], in_name: str) -> list[str]:
    sets = list(stage["out_of_domain"])
    cands = list(next(iter(stage["out_of_domain"].values()))["auroc"][in_name])
    lines = ["| score | " + " | ".join(sets) + " | mean |", "|---|" + "---:|" * (len(sets) + 1)]
    for c in cands:
        vals = [stage["out_of_domain"][s]["auroc"][in_name][c] for s in sets]
        lines.append(f"| {c} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.mean(vals):.3f} |")
    return lines


def _preprocess_text(prep: dict[str, Any] | None) -> str:
    if not prep:
        return "not recorded"
    return ", ".join(f"{k}={v}" for k, v in prep.items())


def markdown(res: dict[str, Any]) -> str:
    ck, rep = res["checkpoint"], res["report"]
    ins = list(rep["in_domain"])
    lines = [
        "# Out-of-domain score: measured separation",
        "",
        f"Command: `{res['command']}` (features cached in `--cache`). Research use only.",
        "",
        "Shipped score: the larger of (a) the Mahalanobis distance of the model's 1280 penultimate features to the "
        "nearest class mean, one covariance shared by the classes (Ledoit-Wolf shrinkage "
        f"{ck['shrinkage']:.3f}, whitener stored as {ck['whitener_dtype']}), fitted on {ck['n_fit']} Training images, "
        "and (b) the energy -logsumexp(logits), each scaled as (x - median) / (p99 - median) on the "
        f"{ck['n_calibration']} Training images held out of that fit; threshold {ck['threshold']:.3f} = quantile "
        f"{ck['quantile']} of the held-out images' scores (weights sha256 `{ck['weights_sha256'][:12]}`). "
        "The shipped classifier was trained on all of Training, held-out part included, so the threshold is set "
        "on images the classifier has seen: on unseen in-domain images more than 1% may be flagged (measured below).",
        "",
        f"Every image, in-domain or not, is fed as the checkpoint says (`{_preprocess_text(ck.get('preprocess'))}`): "
        "with `harmonize` set, each is first re-exported as the training copy was (size, JPEG quality), "
        "out-of-domain images included.",
        "",
        "AUROC: probability that an out-of-domain image scores higher than an in-domain one (1 = perfect "
        "separation, 0.5 = none). Flagged: share of images above the threshold, 95% Wilson interval. Passes brain "
        "check: share that the analysis's plausibility check (`brainxai.io.check_brain_scan`, run before "
        "classifying) lets through; stopped: share either rejected by it or flagged by the score, i.e. not reported "
        "as a finding by `analyze`.",
        "",
        "## Report stage (shipped score)",
        "",
        "| set | n | " + " | ".join(f"AUROC vs {i}" for i in ins) + " | flagged out of domain | passes brain check | "
        "stopped (rejected or flagged) |",
        "|---|---:|" + "---:|" * len(ins) + "---|---:|---:|",
    ]
    for name, v in rep["out_of_domain"].items():
        aucs = " | ".join(f"{v['auroc'][i][SHIPPED]:.3f}" for i in ins)
        lines.append(
            f"| {name} | {v['n']} | {aucs} | {_pct(v['flagged'][SHIPPED])} | {100 * v['passes_brain_check']:.0f}% | "
            f"{100 * v['stopped'][SHIPPED]:.0f}% |"
        )
    lines += ["", "In-domain images flagged (false alarms):", ""]
    for name, v in {**res["selection"]["in_domain"], **rep["in_domain"]}.items():
        lines.append(f"- {name}: {_pct(v['flagged'][SHIPPED])}")
    lines += ["", "Kaggle Testing flagged, per class:", ""]
    lines += [f"- {c}: {_pct(f)}" for c, f in res["testing_flagged_per_class"].items()]
    lines += [
        "",
        "Classifier accuracy on in-domain images, flagged against passed (is a flag also a warning sign?):",
        "",
    ]
    for name, acc in res["accuracy_by_flag"].items():
        parts = [
            f"{k} {v['correct']}/{v['n']}" + (f" = {100 * v['accuracy']:.1f}%" if v["n"] else "")
            for k, v in acc.items()
        ]
        lines.append(f"- {name}: " + "; ".join(parts))
    lines += [
        "",
        "## Candidate scores",
        "",
        "Selection stage (AUROC vs the Training calibration part; the choice was made here):",
        "",
    ]
    lines += _candidate_table(res["selection"], "Training calibration part")
    for i in ins:
        lines += ["", f"Report stage (AUROC vs {i}):", ""]
        lines += _candidate_table(rep, i)
    cands = list(res["thresholds"])
    for stage in ("selection", "report"):
        lines += [
            "",
            f"Flagged at each score's own threshold (its 99th percentile on the calibration part), {stage} stage:",
            "",
        ]
        lines += ["| set | " + " | ".join(cands) + " |", "|---|" + "---:|" * len(cands)]
        for name, v in {**res[stage]["in_domain"], **res[stage]["out_of_domain"]}.items():
            lines.append(f"| {name} | " + " | ".join(f"{100 * v['flagged'][c]['share']:.1f}%" for c in cands) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder with brain-tumor-mri/ etc.")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/ood"))
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--cache", type=Path, default=Path(".cache/brainxai/ood"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-synth-select", type=int, default=30)
    ap.add_argument("--n-transform-select", type=int, default=100)
    ap.add_argument("--n-synth-report", type=int, default=60)
    ap.add_argument("--n-transform-report", type=int, default=200)
    ap.add_argument("--n-photos", type=int, default=60)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t = time.perf_counter()
    res = run(args)
    res["seconds"] = round(time.perf_counter() - t, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ood.json").write_text(json.dumps(res, indent=2))
    (args.out / "ood.md").write_text(markdown(res))
    logger.info("wrote %s (%.0f s)", args.out / "ood.md", res["seconds"])


if __name__ == "__main__":
    main()
