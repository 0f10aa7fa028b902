"""Lesion masks for the images of a Kaggle-style ``Training`` folder, from two expert-mask sets.

* ``brisc-masks-dev`` names the Kaggle twin of each of its slices (``kaggle_twin``). Its images are the
  Kaggle images re-encoded at 256 px on the longest side, neither flipped nor cropped: resized back to
  the Kaggle image's size, 300 random pairs correlate at 0.990-0.998 (the flipped Kaggle image at
  0.49-0.96), and a +-4 px shift search picks (0, 0) in all 300. The mask is therefore resized (nearest
  neighbour) to the Kaggle image's size. Every pair is checked again here: a pair whose resized image
  correlates below ``min_correlation`` with the Kaggle image is dropped, not trusted.
* ``figshare-masks-dev``: the grayscale (L-mode) Kaggle tumour images are figshare slices mirrored
  left-right (``experiments/source_derivation/report.md``). A Kaggle image whose *flipped* pHash lies
  within 2 bits of a figshare slice gets that slice's mask, resized and flipped; the same correlation
  check (against the flipped Kaggle image) guards it.

Where both sets give a mask, BRISC's is used (the two are compared in :attr:`LesionMasks.agreement`).
Masks are bool arrays at the Kaggle image's own size, keyed by the path relative to the training folder
(``glioma/Tr-gl_0041.jpg``). :func:`prepared_masks` carries them through the model's preprocessing.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from brainxai.constants import CLASSES
from brainxai.data.audit import hamming_matrix, hash_samples
from brainxai.data.augment import apply_pair
from brainxai.data.dataset import MRIDataset, Sample, discover_samples
from brainxai.data.lesion import FILLS, fill_region, inpaint_regions, read_mask, resize_mask
from brainxai.data.preprocess import PreprocessConfig, contour_crop, to_tensor
from brainxai.io.raster import read_raster
from brainxai.util.files import atomic_write

logger = logging.getLogger(__name__)

#: pHash distance (bits) at or below which a flipped Kaggle image and a figshare slice are one slice.
FLIP_TWIN_BITS = 2
#: A resized twin must correlate at least this well with the Kaggle image (measured: >= 0.99 for true twins).
MIN_CORRELATION = 0.95
_CACHE_VERSION = 2


@dataclass
class LesionMasks:
    """Masks for training images and where they came from.

    Attributes:
        masks: Path relative to the training folder -> bool mask at that image's size.
        source: The same keys -> ``"brisc"`` or ``"figshare"``.
        rejected: Twins dropped by the correlation check, per source.
        agreement: Dice between the BRISC and figshare masks of images that have both (median, n).
    """

    masks: dict[str, np.ndarray] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """Masked images per source and class (the class is the key's folder)."""
        out: dict[str, dict[str, int]] = {}
        for key, src in self.source.items():
            cls = key.split("/", 1)[0]
            out.setdefault(src, {}).setdefault(cls, 0)
            out[src][cls] += 1
        return out

    def summary(self) -> dict[str, Any]:
        """What a checkpoint records: counts per source and class, rejections and agreement."""
        return {"n": len(self.masks), "counts": self.counts(), "rejected": self.rejected, "agreement": self.agreement}


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    x = a.astype(np.float64).ravel() - a.mean()
    y = b.astype(np.float64).ravel() - b.mean()
    return float(x @ y / np.sqrt((x @ x) * (y @ y) + 1e-12))


def _gray(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"cannot decode {path}")
    return img


def _resized(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def _brisc(train_root: Path, brisc_root: Path, min_correlation: float) -> tuple[dict[str, np.ndarray], int]:
    """BRISC masks of the Kaggle twins that exist under ``train_root`` and pass the correlation check."""
    out: dict[str, np.ndarray] = {}
    rejected = 0
    with open(brisc_root / "slices.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("kaggle_twin") and r.get("mask")]
    for row in rows:
        key = row["kaggle_twin"].split("/", 1)[1]  # "Training/glioma/x.jpg" -> "glioma/x.jpg"
        kaggle_path = train_root / key
        if not kaggle_path.is_file():
            continue
        kaggle = _gray(kaggle_path)
        brisc = _resized(_gray(brisc_root / row["file"]), kaggle.shape)
        if _correlation(brisc, kaggle) < min_correlation:
            rejected += 1
            continue
        out[key] = resize_mask(read_mask(brisc_root / row["mask"]), kaggle.shape)
    return out, rejected


def _figshare(
    samples: list[Sample], train_root: Path, figshare_root: Path, min_correlation: float
) -> tuple[dict[str, np.ndarray], int]:
    """figshare masks of the training images whose left-right mirror is a figshare slice (pHash twin)."""
    with open(figshare_root / "slices.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    refs = [Sample(figshare_root / r["file"], CLASSES.index(r["label"])) for r in rows]
    row_of = {id(ref): row for ref, row in zip(refs, rows, strict=True)}
    ref_hashes, _ = hash_samples(refs, progress=False)
    tumour, _ = hash_samples([s for s in samples if s.class_name != "notumor"], progress=False)
    flips = np.stack([np.asarray(h.flip_bits, dtype=bool) for h in tumour])  # hash_samples always sets them
    d = hamming_matrix(flips, np.stack([h.bits for h in ref_hashes]))
    out: dict[str, np.ndarray] = {}
    rejected = 0
    for i in np.flatnonzero(d.min(axis=1) <= FLIP_TWIN_BITS):
        sample = tumour[i].sample
        row = row_of[id(ref_hashes[int(d[i].argmin())].sample)]
        if row["label"] != sample.class_name:
            rejected += 1
            continue
        flipped = np.ascontiguousarray(_gray(sample.path)[:, ::-1])
        ref = _resized(_gray(figshare_root / row["file"]), flipped.shape)
        if _correlation(ref, flipped) < min_correlation:
            rejected += 1
            continue
        mask = resize_mask(read_mask(figshare_root / row["mask"]), flipped.shape)
        out[sample.path.relative_to(train_root).as_posix()] = np.ascontiguousarray(mask[:, ::-1])
    return out, rejected


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(int(a.sum()) + int(b.sum()), 1))


def _cache_key(train_root: Path, roots: list[Path | None], min_correlation: float) -> str:
    h = hashlib.sha256(f"v{_CACHE_VERSION}\t{train_root.resolve()}\t{min_correlation}".encode())
    for root in roots:
        if root is not None:
            st = (root / "slices.csv").stat()
            h.update(f"\t{root.resolve()}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def load_lesion_masks(
    train_root: str | Path,
    brisc_root: str | Path | None = None,
    figshare_root: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    min_correlation: float = MIN_CORRELATION,
) -> LesionMasks:
    """Masks for the images of ``train_root`` from BRISC twins and figshare flip-twins (see the module doc).

    Args:
        train_root: The class-per-folder training folder (``.../Training``).
        brisc_root: ``brisc-masks-dev`` (with ``slices.csv``), or None.
        figshare_root: ``figshare-masks-dev`` (with ``slices.csv``), or None.
        cache_dir: Keep the result as ``.npz`` there (keyed by the folders and the CSVs' sizes and times).
        min_correlation: Twins whose resized image correlates less with the Kaggle image are dropped.
    """
    train_root = Path(train_root)
    brisc = Path(brisc_root) if brisc_root else None
    fig = Path(figshare_root) if figshare_root else None
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"lesion-masks-{_cache_key(train_root, [brisc, fig], min_correlation)}.npz"
        if cache.is_file():
            return _read(cache)
    result = LesionMasks()
    b_masks: dict[str, np.ndarray] = {}
    if brisc is not None:
        b_masks, result.rejected["brisc"] = _brisc(train_root, brisc, min_correlation)
    f_masks: dict[str, np.ndarray] = {}
    if fig is not None:
        f_masks, result.rejected["figshare"] = _figshare(discover_samples(train_root), train_root, fig, min_correlation)
    both = sorted(set(b_masks) & set(f_masks))
    if both:
        result.agreement = {
            "median_dice": float(np.median([_dice(b_masks[k], f_masks[k]) for k in both])),
            "n": len(both),
        }
    for key, mask in sorted((f_masks | b_masks).items()):
        result.masks[key] = mask
        result.source[key] = "brisc" if key in b_masks else "figshare"
    if cache is not None:
        _write(cache, result)
    return result


def lesion_masks(
    train_root: str | Path, brisc_root: str | Path | None = None, figshare_root: str | Path | None = None
) -> dict[str, np.ndarray]:
    """Kaggle path (relative to ``train_root``) -> bool lesion mask at the image's size (:func:`load_lesion_masks`)."""
    return load_lesion_masks(train_root, brisc_root, figshare_root).masks


def _write(path: Path, result: LesionMasks) -> None:
    keys = list(result.masks)
    meta = {"source": result.source, "rejected": result.rejected, "agreement": result.agreement}
    shapes = np.array([result.masks[k].shape for k in keys], dtype=np.int64).reshape(-1, 2)
    flat = np.concatenate([result.masks[k].ravel() for k in keys]) if keys else np.zeros(0, bool)

    def write(tmp: Path) -> None:
        import json

        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                keys=np.array(keys, dtype=str),
                shapes=shapes,
                bits=np.packbits(flat),
                n=np.int64(flat.size),
                meta=np.array(json.dumps(meta)),
            )

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def _read(path: Path) -> LesionMasks:
    import json

    with np.load(path, allow_pickle=False) as z:
        flat = np.unpackbits(z["bits"], count=int(z["n"])).astype(bool)
        meta = json.loads(str(z["meta"]))
        result = LesionMasks(rejected=meta["rejected"], agreement=meta["agreement"])
        start = 0
        for key, (h, w) in zip(z["keys"].tolist(), z["shapes"].tolist()):
            result.masks[key] = flat[start : start + h * w].reshape(h, w)
            result.source[key] = meta["source"][key]
            start += h * w
    return result


def prepared_masks(
    samples: list[Sample], train_root: str | Path, masks: dict[str, np.ndarray], config: PreprocessConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The masks carried through :func:`brainxai.data.preprocess.prepare`: the same head crop, then resize.

    Args:
        samples: The training samples, aligned with the prepared images.
        train_root: The folder the keys of ``masks`` are relative to.
        masks: From :func:`lesion_masks`.
        config: The model's preprocessing.

    Returns:
        ``(N, S, S)`` bool masks (all False where there is none) and ``(N,)`` bool: has a mask.
    """
    s = config.img_size
    out = np.zeros((len(samples), s, s), dtype=bool)
    has = np.zeros(len(samples), dtype=bool)
    root = Path(train_root)
    for i, smp in enumerate(samples):
        if not Path(smp.path).is_relative_to(root):  # e.g. ``--extra-data`` images: no mask known
            continue
        mask = masks.get(Path(smp.path).relative_to(root).as_posix())
        if mask is None:
            continue
        if config.crop:
            image = read_raster(smp.path)
            if image.shape != mask.shape:  # the crop box must be found on the image the mask belongs to
                mask = resize_mask(mask, image.shape)
            _, (x0, y0, x1, y1) = contour_crop(image)
            mask = mask[y0:y1, x0:x1]
        out[i] = resize_mask(mask, (s, s))
        has[i] = bool(out[i].any())
    return out, has


class MaskedMRIDataset(MRIDataset):
    """:class:`MRIDataset` whose items also carry the lesion mask: ``(x, y, mask, has_mask, inpainted)``.

    ``mask`` is ``(1, S, S)`` float 0/1 (zeros where there is none), moved with the image by the
    geometric augmentation (``apply_pair``, the same random draws); ``has_mask`` and ``inpainted`` are
    0/1 floats. With ``inpaint_p`` > 0 an image with a mask has its lesion in-painted first (mask
    dilated by ``inpaint_dilate_px``, filled by ``fill``: :func:`brainxai.data.lesion.fill_region`), drawn
    from a generator of its own, so the augmentation draws are the same with and without in-painting.
    With ``control_p`` > 0, otherwise (the same draw) an image with a mask has the *control* area
    in-painted instead, with probability ``control_p``: the dilated lesion mirrored left-right, less
    the dilated lesion (:func:`brainxai.data.lesion.inpaint_regions`, the in-painting drop's control).
    It keeps its label and ``inpainted`` stays 0: an in-painted patch then appears on images of both
    targets, so the patch itself cannot tell the model "no tumour"; only the missing lesion can.

    Args:
        images: ``(N, S, S)`` uint8 prepared images.
        labels: ``(N,)`` labels.
        config: Preprocessing.
        masks: ``(N, S, S)`` bool prepared masks (from :func:`prepared_masks`).
        has_mask: ``(N,)`` bool.
        augment: A transform with ``apply_pair`` (e.g. :class:`brainxai.data.augment.Compose`), or None.
        seed: Base seed (as :class:`MRIDataset`).
        inpaint_p: Probability of in-painting an image that has a mask.
        inpaint_dilate_px: Dilation of the mask before in-painting (pixels of the prepared image).
        control_p: Probability of in-painting the mirrored control area of an image that has a mask
            (``inpaint_p + control_p`` <= 1).
        fill: How areas are filled (:data:`brainxai.data.lesion.FILLS`): ``telea`` (cv2's in-painting, as
            the xai-benchmark measures) or ``transplant`` (the slice's own tissue from a reflection).
        inpaint_labels: The labels whose images may be in-painted (lesion or control); None: every label.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        config: PreprocessConfig,
        masks: np.ndarray,
        has_mask: np.ndarray,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        seed: int = 0,
        inpaint_p: float = 0.0,
        inpaint_dilate_px: int = 5,
        control_p: float = 0.0,
        fill: str = "telea",
        inpaint_labels: Collection[int] | None = None,
    ) -> None:
        super().__init__(images, labels, config, augment=augment, seed=seed)
        if min(inpaint_p, control_p) < 0 or inpaint_p + control_p > 1:
            raise ValueError(f"inpaint_p {inpaint_p} and control_p {control_p} must be >= 0 and sum to <= 1")
        if masks.shape != images.shape or len(has_mask) != len(images):
            raise ValueError(f"masks {masks.shape} / has_mask {len(has_mask)} do not match images {images.shape}")
        # Only the rows with a mask are stored: most images of a real training set have none.
        self.has_mask = np.asarray(has_mask, dtype=bool)
        self.mask_row = np.cumsum(self.has_mask) - 1
        self.masks = np.ascontiguousarray(masks[self.has_mask])
        self.inpaint_p = inpaint_p
        self.inpaint_dilate_px = inpaint_dilate_px
        self.control_p = control_p
        if fill not in FILLS:
            raise ValueError(f"unknown fill {fill!r}; use one of {', '.join(FILLS)}")
        self.fill = fill
        eligible = self.has_mask if inpaint_labels is None else self.has_mask & np.isin(labels, list(inpaint_labels))
        self.inpaint_eligible = np.asarray(eligible, dtype=bool)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor, float, float]:  # type: ignore[override]
        img = self.images[index]
        has = bool(self.has_mask[index])
        mask = self.masks[self.mask_row[index]] if has else np.zeros(img.shape, dtype=bool)
        inpainted = False
        if self.inpaint_eligible[index] and self.inpaint_p + self.control_p > 0:
            draw = np.random.default_rng((self.seed, self.epoch, index, 1)).random()
            if draw < self.inpaint_p + self.control_p:
                lesion, control, _ = inpaint_regions(mask, self.inpaint_dilate_px)
                inpainted = draw < self.inpaint_p
                img = fill_region(img, lesion if inpainted else control, avoid=lesion, fill=self.fill)
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            img, moved = apply_pair(self.augment, img, mask, rng)
            mask = mask if moved is None else moved
        m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]
        return to_tensor(img, self.config), int(self.labels[index]), m, float(has), float(inpainted)
