"""Fitting a checkpoint's out-of-domain statistics (:class:`~brainxai.models.domain.DomainModel`).

The training folder is split, seeded and stratified by class, into a fit part (class means and the
shared covariance) and a calibration part (the threshold: a quantile of its scores). The split, the
dataset fingerprint and the weights' SHA-256 are recorded in the stored file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from brainxai.data.dataset import Sample, class_counts, decode_samples, discover_samples, fingerprint
from brainxai.data.splits import stratified_split
from brainxai.models.domain import DomainModel, domain_path
from brainxai.training.split import resolve_training_folder

if TYPE_CHECKING:
    from brainxai.inference import Classifier

logger = logging.getLogger(__name__)


def extract_features(
    classifier: Classifier, images: np.ndarray, *, batch_size: int = 32, progress: bool = True, desc: str = "features"
) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits ``(N, C)`` and penultimate features ``(N, D)`` of prepared images, with a progress bar."""
    logits, feats = [], []
    with tqdm(total=len(images), unit="img", desc=desc, disable=not progress, leave=False) as bar:
        for i in range(0, len(images), batch_size):
            lg, ft = classifier.logits_and_features_prepared(images[i : i + batch_size], batch_size=batch_size)
            logits.append(lg)
            feats.append(ft)
            bar.update(len(ft))
    if not feats:
        return np.zeros((0, len(classifier.classes)), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(logits), np.concatenate(feats)


@dataclass
class DomainFit:
    """A fitted and calibrated domain model, and the calibration part's scores."""

    model: DomainModel
    calibration_scores: np.ndarray
    path: Path | None = None


def fit_domain(
    classifier: Classifier,
    data: str | Path,
    *,
    samples: Sequence[Sample] | None = None,
    calibration_fraction: float = 0.2,
    seed: int = 0,
    quantile: float = 0.99,
    dtype: str = "float32",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    with_energy: bool = True,
) -> DomainFit:
    """Fits the domain model on part of a training folder and calibrates its threshold on the rest.

    Args:
        classifier: The loaded checkpoint whose features are modelled.
        data: Dataset root (with ``Training/``) or the training folder.
        samples: The training folder's images to use (e.g. a leave-one-source-out fold's training pool);
            None: every image in it.
        calibration_fraction: Share of each class held out of the fit to calibrate the threshold.
        seed: Seed of the stratified split.
        quantile: Threshold = this quantile of the calibration part's scores (0.99: about 1% of
            in-domain images like the calibration part are flagged).
        dtype: Storage precision of the whitening matrix.
        cache_dir: Where decoded images are cached.
        progress: Show progress bars.
        with_energy: Combine the distance with the energy of the logits (else the distance alone).
    """
    folder = resolve_training_folder(data)
    chosen = list(samples) if samples is not None else discover_samples(folder)
    decoded = decode_samples(chosen, classifier.preprocess, cache_dir=cache_dir, progress=progress)
    labels = decoded.labels
    fit_idx, cal_idx = stratified_split(labels, calibration_fraction, seed)
    logits, feats = extract_features(classifier, decoded.images, progress=progress, desc="features")
    model = DomainModel.fit(feats[fit_idx], labels[fit_idx], dtype=dtype)
    model.calibrate(feats[cal_idx], quantile, logits=logits[cal_idx] if with_energy else None)
    classes = list(classifier.classes)
    model.info.update(
        method="max of scaled mahalanobis (nearest class mean, shared Ledoit-Wolf covariance) and energy"
        if with_energy
        else "mahalanobis (nearest class mean, shared Ledoit-Wolf covariance)",
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        weights_sha256=classifier.checkpoint.sha256,
        class_names=classes,
        data_folder=folder.name,
        dataset_fingerprint=fingerprint(decoded.samples, folder),
        split={
            "seed": seed,
            "calibration_fraction": calibration_fraction,
            "fit_counts": class_counts(labels[fit_idx], classes),
            "calibration_counts": class_counts(labels[cal_idx], classes),
            "calibration_files": [os.path.relpath(decoded.samples[i].path, folder) for i in cal_idx],
        },
    )
    return DomainFit(model=model, calibration_scores=model.score(feats[cal_idx], logits[cal_idx]))


def fit_and_save(classifier: Classifier, checkpoint: str | Path, data: str | Path, **kwargs: object) -> DomainFit:
    """:func:`fit_domain`, then stores the result beside the checkpoint as ``<stem>.domain.npz``."""
    result = fit_domain(classifier, data, **kwargs)  # type: ignore[arg-type]
    result.path = result.model.save(domain_path(checkpoint))
    logger.info("domain statistics written to %s", result.path)
    return result
