"""Out-of-domain score: how far an image's penultimate features lie from what the model was trained on.

A class-conditional Gaussian model of the classifier's penultimate features (the input of its
classification head) with one covariance shared by all classes, shrunk towards a scaled identity by
the Ledoit-Wolf rule (:func:`ledoit_wolf`): the Mahalanobis distance to the nearest class mean. When
calibrated with logits, it is combined with the energy score ``-logsumexp(logits)`` (:func:`energy`):
each is put on a common scale by its held-out median and 99th percentile, ``(x - median) / (p99 -
median)``, and the score is the larger of the two (an image far out on either counts). Higher means
further from the training data. A threshold, calibrated on training images held out from the fit,
turns the score into ``in_domain``.

Pure numpy, so scoring adds nothing heavy to the classify path. Stored beside a checkpoint as
``<stem>.domain.npz`` (:func:`domain_path`), tied to the weights it was fitted for by their SHA-256.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainxai.util.files import atomic_write

#: Shown instead of a finding when an image is out of domain.
NOT_ASSESSABLE = "Outside what this model was trained on: not assessable"
#: Version of the stored format.
DOMAIN_FORMAT_VERSION = 1
#: Suffix of the file stored beside a checkpoint's weights.
DOMAIN_SUFFIX = ".domain.npz"

_ARRAYS = ("mean", "whitener", "class_means", "norms")


class DomainModelError(ValueError):
    """A domain-statistics file is missing, malformed or inconsistent."""


def domain_path(checkpoint: str | Path) -> Path:
    """``<stem>.domain.npz`` for a checkpoint given as its stem or either of its files."""
    p = Path(checkpoint)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + DOMAIN_SUFFIX)


def ledoit_wolf(residuals: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance of centred rows (Ledoit & Wolf, 2004; sklearn's formula).

    Args:
        residuals: ``(N, D)`` rows already centred (here: features minus their class mean).

    Returns:
        ``(covariance (D, D) float64, shrinkage in [0, 1])``: ``(1 - s) S + s * mean(diag S) * I``.
    """
    x = np.asarray(residuals, dtype=np.float64)
    n, d = x.shape
    emp = x.T @ x / n
    mu = float(np.trace(emp)) / d
    x2 = x**2
    beta_ = float(np.sum(x2.T @ x2))
    delta_ = float(np.sum(emp**2))  # = sum((X^T X)^2) / n^2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * float(np.trace(emp)) + d * mu**2) / d
    shrinkage = 0.0 if delta <= 0 else float(min(beta, delta) / delta)
    cov = (1.0 - shrinkage) * emp
    cov[np.diag_indices(d)] += shrinkage * mu
    return cov, shrinkage


@dataclass
class DomainModel:
    """Class-conditional Gaussian model of penultimate features with a shared, shrunk covariance.

    Attributes:
        mean: ``(D,)`` mean of the fitted features (features are centred on it before whitening).
        whitener: ``(D, K)`` maps centred features to a space where the shared covariance is the identity.
        class_means: ``(C, K)`` class means in that space.
        norms: ``(2, 2)`` ``[[median, scale]]`` of the Mahalanobis distance and the energy on the held-out
            part, when the score combines them (set by :meth:`calibrate` with logits); ``(0, 2)`` otherwise.
        threshold: Scores above it are out of domain (``nan`` until calibrated).
        info: JSON-serialisable record of how it was fitted and calibrated.
    """

    mean: np.ndarray
    whitener: np.ndarray
    class_means: np.ndarray
    norms: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    threshold: float = float("nan")
    info: dict[str, Any] = field(default_factory=dict)
    # The whitener in float32 once, not per call: converting a stored float16 one costs ~10 ms an image.
    _whitener32: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._whitener32 = np.asarray(self.whitener, dtype=np.float32)

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, dtype: str = "float32") -> DomainModel:
        """Fits class means and the shared Ledoit-Wolf covariance.

        Args:
            features: ``(N, D)`` penultimate features.
            labels: ``(N,)`` integer class labels (every class needs at least one image).
            dtype: Storage precision of the whitener (``"float32"`` or ``"float16"``).
        """
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels)
        if x.ndim != 2 or len(x) != len(y) or len(x) < 2:
            raise ValueError(f"need (N, D) features with N >= 2 labels, got {x.shape} and {y.shape}")
        classes = np.unique(y)
        mean = x.mean(axis=0)
        means = np.stack([x[y == c].mean(axis=0) for c in classes])
        residuals = x - means[np.searchsorted(classes, y)]
        cov, shrinkage = ledoit_wolf(residuals)
        vals, vecs = np.linalg.eigh(cov)
        whitener = vecs / np.sqrt(np.maximum(vals, 1e-12))
        info = {"n_fit": int(len(x)), "dim": int(x.shape[1]), "classes": [int(c) for c in classes]}
        info["shrinkage"] = shrinkage
        return cls(
            mean=mean.astype(np.float32),
            whitener=whitener.astype(dtype),
            class_means=((means - mean) @ whitener).astype(np.float32),
            info=info,
        )

    @property
    def calibrated(self) -> bool:
        """Whether a threshold has been set."""
        return bool(np.isfinite(self.threshold))

    def distances(self, features: np.ndarray) -> np.ndarray:
        """``(N, C)`` Mahalanobis distance of each image to each class mean."""
        x = np.atleast_2d(np.asarray(features, dtype=np.float32))
        if self._whitener32.shape != self.whitener.shape:  # the whitener was replaced after construction
            self._whitener32 = np.asarray(self.whitener, dtype=np.float32)
        z = (x - self.mean) @ self._whitener32
        # ||z - m||^2 = ||z||^2 - 2 z.m + ||m||^2, clipped at 0 against rounding.
        d2 = (z**2).sum(axis=1, keepdims=True) - 2.0 * z @ self.class_means.T + (self.class_means**2).sum(axis=1)
        return np.sqrt(np.maximum(d2, 0.0))

    def mahalanobis(self, features: np.ndarray) -> np.ndarray:
        """``(N,)`` Mahalanobis distance to the nearest class mean."""
        return self.distances(features).min(axis=1).astype(np.float64)

    @property
    def uses_logits(self) -> bool:
        """Whether :meth:`score` combines the distance with the energy of the logits (and needs them)."""
        return self.norms.shape[0] == 2

    def score(self, features: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
        """``(N,)`` out-of-domain score (higher = further out).

        The Mahalanobis distance; or, when calibrated with logits, the larger of the distance and the
        energy, each scaled by its held-out median and 99th percentile (then ``logits`` are required).
        """
        distance = self.mahalanobis(features)
        if not self.uses_logits:
            return distance
        if logits is None:
            raise ValueError("this domain model combines the features with the logits: pass logits")
        (m_med, m_scale), (e_med, e_scale) = self.norms
        return np.maximum((distance - m_med) / m_scale, (energy(logits) - e_med) / e_scale)

    def calibrate(self, held_out: np.ndarray, quantile: float = 0.99, logits: np.ndarray | None = None) -> float:
        """Sets the threshold to the ``quantile`` of held-out in-domain images' scores and returns it.

        With ``logits`` (of the same images), the score becomes the combination with the energy and
        the two scales are taken from these images first.
        """
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        if logits is not None:
            parts = (self.mahalanobis(held_out), energy(logits))
            med = [float(np.median(v)) for v in parts]
            scale = [max(float(np.quantile(v, 0.99)) - m, 1e-12) for v, m in zip(parts, med, strict=True)]
            self.norms = np.array([med, scale], dtype=np.float64).T
        scores = self.score(held_out, logits)
        self.threshold = float(np.quantile(scores, quantile))
        self.info.update(quantile=quantile, n_calibration=int(len(scores)))
        return self.threshold

    def in_domain(self, scores: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: score at or below the threshold."""
        if not self.calibrated:
            raise DomainModelError("domain model has no threshold; calibrate it first")
        return np.asarray(scores) <= self.threshold

    # -- storage -----------------------------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays and a JSON header, as stored in the ``.npz`` file."""
        header = {"format_version": DOMAIN_FORMAT_VERSION, "threshold": self.threshold, "info": self.info}
        return {**{k: getattr(self, k) for k in _ARRAYS}, "header": np.array(json.dumps(header))}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> DomainModel:
        """Inverse of :meth:`to_arrays`."""
        try:
            header = json.loads(str(arrays["header"]))
            parts = {k: np.asarray(arrays[k]) for k in _ARRAYS if k != "norms"}
            parts["norms"] = np.asarray(arrays.get("norms", np.zeros((0, 2))))
        except (KeyError, ValueError) as exc:
            raise DomainModelError(f"malformed domain statistics: {exc}") from exc
        if header.get("format_version") != DOMAIN_FORMAT_VERSION:
            raise DomainModelError(f"unsupported domain statistics version {header.get('format_version')!r}")
        d, k = parts["whitener"].shape
        bad_norms = parts["norms"].shape not in ((0, 2), (2, 2))
        if (
            parts["mean"].shape != (d,)
            or parts["class_means"].ndim != 2
            or parts["class_means"].shape[1] != k
            or bad_norms
        ):
            raise DomainModelError("domain statistics arrays have inconsistent shapes")
        return cls(**parts, threshold=float(header["threshold"]), info=dict(header.get("info") or {}))

    def save(self, path: str | Path) -> Path:
        """Writes the ``.npz`` file atomically (compressed)."""

        def write(tmp: Path) -> None:
            # Through a file object: given a name, np.savez would append ".npz" to the temporary one.
            arrays: dict[str, Any] = self.to_arrays()
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

        return atomic_write(Path(path), write)

    @classmethod
    def load(cls, path: str | Path) -> DomainModel:
        """Reads a file written by :meth:`save`."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                return cls.from_arrays({k: z[k] for k in z.files})
        except (OSError, ValueError) as exc:
            if isinstance(exc, DomainModelError):
                raise
            raise DomainModelError(f"cannot read domain statistics {path}: {exc}") from exc


def energy(logits: np.ndarray) -> np.ndarray:
    """``(N,)`` energy score ``-logsumexp(logits)`` (Liu et al., 2020): higher = further out."""
    z = np.atleast_2d(np.asarray(logits, dtype=np.float64))
    top = z.max(axis=1)
    return -(top + np.log(np.exp(z - top[:, None]).sum(axis=1)))


def not_assessable_message(score: float, threshold: float) -> str:
    """The warning shown for an out-of-domain image, with its score against the threshold."""
    return (
        f"{NOT_ASSESSABLE}. The image's out-of-domain score ({score:.2f}) is above the threshold ({threshold:.2f}, "
        "calibrated on held-out training images): it does not resemble the images the model "
        "was trained on (another sequence, plane, body part or kind of image?). The model output below is shown "
        "for reference only and is not a finding."
    )


#: MR sequences absent from the training data (the Kaggle set: contrast-enhanced T1 from figshare, T1- and
#: T2-weighted slices from SARTAJ and Br35H): a slice of one of these is not assessable whatever its score.
UNTRAINED_SEQUENCES = frozenset({"DWI", "perfusion"})
#: Sequences present in the training data only in part, on which accuracy has not been measured here.
UNMEASURED_SEQUENCES = frozenset({"T2", "FLAIR"})


def sequence_verdict(sequence: str | None) -> tuple[bool, str | None]:
    """Whether a slice of this MR sequence can be assessed, and what to tell the user about it.

    Args:
        sequence: The sequence as named by :func:`brainxai.io.sequence.sequence_from_text` (or stated by the
            user); None when unknown.

    Returns:
        ``(assessable, message)``: ``(False, why)`` for a sequence the model never saw, ``(True, caution)``
        for one whose accuracy is unmeasured, ``(True, None)`` otherwise (T1 or unknown).
    """
    if sequence in UNTRAINED_SEQUENCES:
        return False, (
            f"{NOT_ASSESSABLE}. The slice is {sequence}; the model was trained on T1-weighted (mostly "
            "contrast-enhanced) and some T2-weighted slices, never on this sequence. The model output below is "
            "shown for reference only and is not a finding."
        )
    if sequence in UNMEASURED_SEQUENCES:
        return True, (
            f"The slice is {sequence}: the model was trained mostly on contrast-enhanced T1 slices and its accuracy "
            f"on {sequence} has not been measured; an independent check on other sources found it much lower on "
            "sequences other than contrast-enhanced T1. Interpret the finding with particular caution."
        )
    return True, None
