"""Checkpoints: weights as safetensors plus a JSON metadata sidecar.

A checkpoint is a pair ``NAME.safetensors`` + ``NAME.json``. The JSON names the model, its classes,
its preprocessing, the training recipe, metrics, history, a fingerprint of the training data and
the softmax temperature (``temperature``, 1.0 when never calibrated, with how it was fitted in
``calibration``). Loading restores the preprocessing, so a model can never be fed differently from
how it was trained.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from brainxai.data.preprocess import PreprocessConfig
from brainxai.models.domain import DomainModel, DomainModelError, domain_path
from brainxai.models.registry import attach_model_config, create_model, model_config
from brainxai.util.files import atomic_write, atomic_write_bytes
from brainxai.version import __version__

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# ``calibration`` key naming the weights whose temperature was copied (``brainxai calibrate --from``).
CARRIED_OVER_KEY = "carried_over_from_sha256"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or inconsistent."""


@dataclass
class CheckpointMeta:
    """Metadata stored beside the weights."""

    model: str
    classes: list[str]
    preprocess: PreprocessConfig
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    dataset_fingerprint: str | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    brainxai_version: str = __version__
    dtype: str = "float32"
    # Probabilities are softmax(logits / temperature); fitted post hoc on the validation split.
    temperature: float = 1.0
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def temperature_carried_over(self) -> bool:
        """Whether the temperature was fitted for another checkpoint and copied here (a refit)."""
        return CARRIED_OVER_KEY in self.calibration

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "classes": list(self.classes),
            "preprocess": self.preprocess.to_dict(),
            "model_kwargs": self.model_kwargs,
            "recipe": self.recipe,
            "metrics": self.metrics,
            "history": self.history,
            "dataset_fingerprint": self.dataset_fingerprint,
            "created": self.created,
            "brainxai_version": self.brainxai_version,
            "dtype": self.dtype,
            "temperature": self.temperature,
            "calibration": self.calibration,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckpointMeta:
        temperature = data.get("temperature", 1.0)
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not (math.isfinite(temperature) and temperature > 0)
        ):
            raise CheckpointError(f"checkpoint temperature must be a finite number > 0, got {temperature!r}")
        try:
            return cls(
                model=data["model"],
                classes=list(data["classes"]),
                preprocess=PreprocessConfig.from_dict(data["preprocess"]),
                model_kwargs=data.get("model_kwargs", {}),
                recipe=data.get("recipe", {}),
                metrics=data.get("metrics", {}),
                history=data.get("history", []),
                dataset_fingerprint=data.get("dataset_fingerprint"),
                created=data.get("created", ""),
                brainxai_version=data.get("brainxai_version", "?"),
                dtype=data.get("dtype", "float32"),
                temperature=float(temperature),
                calibration=dict(data.get("calibration") or {}),
            )
        except KeyError as exc:
            raise CheckpointError(f"checkpoint metadata lacks required field {exc}") from exc


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """Returns ``(weights, metadata)`` paths for a checkpoint given either file or the stem."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def save_checkpoint(path: str | Path, model: nn.Module, meta: CheckpointMeta, half: bool = False) -> Path:
    """Saves weights (safetensors) and metadata (JSON).

    Args:
        path: Checkpoint stem or either file name.
        model: The model; its ``state_dict`` is saved.
        meta: Metadata to store.
        half: Store floating-point tensors as float16 (halves the size).

    Returns:
        The weights path.
    """
    weights_path, meta_path = checkpoint_paths(path)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        if half and v.is_floating_point():
            v = v.half()
        state[k] = v
    meta.dtype = "float16" if half else "float32"
    metadata = {"model": meta.model, "brainxai_version": meta.brainxai_version}
    atomic_write(weights_path, lambda tmp: save_file(state, str(tmp), metadata=metadata))
    atomic_write_bytes(meta_path, json.dumps(meta.to_dict(), indent=2).encode())
    return weights_path


def read_checkpoint_json(path: str | Path) -> dict[str, Any]:
    """The raw JSON metadata of a checkpoint (stem or either file).

    Raises:
        CheckpointError: The JSON file does not exist.
    """
    _, meta_path = checkpoint_paths(path)
    if not meta_path.is_file():
        raise CheckpointError(f"checkpoint file not found: {meta_path}")
    return json.loads(meta_path.read_text())


def update_checkpoint_meta(path: str | Path, **fields: Any) -> dict[str, Any]:
    """Sets top-level fields of a checkpoint's JSON in place (atomically) and returns the new content.

    The result must still load (e.g. a bad ``temperature`` is refused before anything is written).
    """
    _, meta_path = checkpoint_paths(path)
    data = read_checkpoint_json(path) | fields
    CheckpointMeta.from_dict(data)
    atomic_write_bytes(meta_path, json.dumps(data, indent=2).encode())
    return data


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class LoadedCheckpoint:
    """A model restored from disk with everything needed to feed it."""

    model: nn.Module
    meta: CheckpointMeta
    weights_path: Path
    sha256: str
    #: Out-of-domain statistics (``<stem>.domain.npz``) fitted for these weights; None when absent.
    domain: DomainModel | None = None

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.meta.preprocess


def build_model(meta: CheckpointMeta) -> nn.Module:
    """The architecture a checkpoint describes, untrained, configured with the checkpoint's preprocessing."""

    model = create_model(
        meta.model,
        pretrained=False,
        num_classes=len(meta.classes),
        img_size=meta.preprocess.img_size,
        **meta.model_kwargs,
    )
    # The checkpoint's preprocessing wins over the registry default.
    attach_model_config(model, replace(model_config(model), preprocess=meta.preprocess, classes=tuple(meta.classes)))
    return model


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Restores a model from a checkpoint, in eval mode, with float32 weights.

    Raises:
        CheckpointError: A file is missing or the weights do not fit the named model.
    """
    weights_path, meta_path = checkpoint_paths(path)
    for p in (weights_path, meta_path):
        if not p.is_file():
            raise CheckpointError(f"checkpoint file not found: {p}")
    meta = CheckpointMeta.from_dict(json.loads(meta_path.read_text()))
    model = build_model(meta)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights_path)).items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights_path} does not match model {meta.model!r}: {exc}") from exc
    model.to(device).eval()
    sha256 = file_sha256(weights_path)
    domain = load_domain(weights_path, sha256)
    return LoadedCheckpoint(model=model, meta=meta, weights_path=weights_path, sha256=sha256, domain=domain)


def load_domain(path: str | Path, sha256: str | None = None) -> DomainModel | None:
    """The checkpoint's out-of-domain statistics, or None when it has none (or none usable).

    Statistics fitted for other weights (``sha256`` differs from the one they record), unreadable or
    uncalibrated ones are ignored with a warning: scoring with them would be meaningless.
    """
    p = domain_path(path)
    if not p.is_file():
        return None
    try:
        domain = DomainModel.load(p)
    except DomainModelError as exc:
        logger.warning("ignoring out-of-domain statistics: %s", exc)
        return None
    fitted_for = domain.info.get("weights_sha256")
    if sha256 is not None and fitted_for != sha256:
        logger.warning("ignoring %s: fitted for other weights (sha256 %s)", p, str(fitted_for)[:12])
        return None
    if not domain.calibrated:
        logger.warning("ignoring %s: no threshold", p)
        return None
    return domain
