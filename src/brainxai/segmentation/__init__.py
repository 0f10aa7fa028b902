"""Tumour segmentation at inference: :class:`Segmenter` maps a decoded slice to a tumour probability map.

The segmenter crops and resizes a slice with the preprocessing recorded in its checkpoint, runs the
network and maps the probabilities back onto the slice's own pixel grid (0 outside the head crop).
Consumers accept any object with the same methods (:class:`SegmenterLike`), so their tests can use a stub.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from brainxai.data.preprocess import PreprocessConfig, prepare_with_box, to_array, to_tensor
from brainxai.models.checkpoint import LoadedCheckpoint, checkpoint_paths, load_checkpoint
from brainxai.models.fusion import fold_batchnorm
from brainxai.models.onnx import SEGMENTER, OnnxModel, OnnxSlot
from brainxai.segmentation.postprocess import PostProcess, mask_rule, probability_mask
from brainxai.util.device import resolve_device
from brainxai.version import __version__

#: Probability threshold of the mask when a checkpoint records none.
DEFAULT_THRESHOLD = 0.5


def default_segmenter_path() -> Path:
    """The shipped segmentation weights (``brainxai/weights/segmentation.safetensors``, with its ``.json``)."""
    return Path(__file__).resolve().parents[1] / "weights" / "segmentation.safetensors"


def default_segmenter_available() -> bool:
    """Whether the shipped segmentation checkpoint (weights and JSON) is present."""
    weights, meta = checkpoint_paths(default_segmenter_path())
    return weights.is_file() and meta.is_file()


class SegmenterLike(Protocol):
    """What consumers of a segmenter rely on (the pipeline, the web app, tests' stubs)."""

    name: str
    sha256: str
    threshold: float

    def info(self) -> dict[str, Any]: ...

    def probability(self, images: Sequence[np.ndarray], batch_size: int = 16) -> list[np.ndarray]: ...

    def segment(self, image: np.ndarray) -> np.ndarray: ...


def _gray(image: np.ndarray) -> np.ndarray:
    """A decoded slice as 2-D uint8: ``(H, W)`` as is, ``(H, W, 3)`` RGB through ITU-R 601 luma."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"expected a (H, W) or (H, W, 3) uint8 slice, got {image.shape} {image.dtype}")
    return image


def map_back(prob: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """A probability map of the model grid placed back into the crop ``box`` of a slice of ``shape`` (0 elsewhere)."""
    x0, y0, x1, y1 = box
    out = np.zeros(shape, np.float32)
    out[y0:y1, x0:x1] = cv2.resize(prob.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0)


@torch.inference_mode()
def predict_prepared(
    model: torch.nn.Module,
    prepared: np.ndarray,
    preprocess: PreprocessConfig,
    device: torch.device,
    batch_size: int = 16,
) -> np.ndarray:
    """Tumour probabilities ``(N, S, S)`` float32 of a segmentation network on prepared ``(N, S, S)`` uint8 slices."""
    model.eval()
    out = []
    for start in range(0, len(prepared), batch_size):
        x = to_tensor(prepared[start : start + batch_size], preprocess).to(device)
        out.append(torch.sigmoid(model(x)).squeeze(1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *prepared.shape[1:]), np.float32)


class Segmenter:
    """A trained tumour segmenter (see :meth:`load`).

    As for the classifier, the network is served by ONNX Runtime on a CPU when the export works (about
    2.4x faster than torch on the shipped model; probabilities equal to 1e-5, checked at every load) and by
    torch otherwise; ``backend``: ``"auto"``, ``"onnx"`` or ``"torch"`` (:func:`~brainxai.models.onnx.resolve_backend`).
    """

    def __init__(self, checkpoint: LoadedCheckpoint, meta: dict[str, Any], backend: str = "auto") -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.device = next(self.model.parameters()).device
        self.name: str = checkpoint.meta.model
        self.sha256: str = checkpoint.sha256
        self.threshold: float = float(meta.get("threshold", DEFAULT_THRESHOLD))
        #: The checkpoint's post-processing of the thresholded map (None: plain threshold).
        self.postprocess: PostProcess | None = PostProcess.from_dict(meta.get("postprocess"))
        self._meta = meta
        self._onnx = OnnxSlot(self.name, backend, self.device, self.sha256, self._export_source, SEGMENTER, OnnxModel)

    @property
    def backend(self) -> str:
        """What runs the network: ``"onnx"`` or ``"torch"``."""
        return self._onnx.backend

    def _export_source(self) -> tuple[torch.nn.Module, tuple[int, int, int]]:
        size = self.preprocess.img_size
        return fold_batchnorm(self.model), (self.preprocess.channels, size, size)

    @classmethod
    def load(cls, checkpoint: str | Path | None = None, device: str = "auto", backend: str = "auto") -> Segmenter:
        """Loads a segmentation checkpoint; None: the shipped default (``backend``: see the class).

        Raises:
            FileNotFoundError: A checkpoint file is missing (the message names it).
            ValueError: The checkpoint is not a segmentation model.
        """
        path = Path(checkpoint) if checkpoint is not None else default_segmenter_path()
        weights, meta_path = checkpoint_paths(path)
        for p in (weights, meta_path):
            if not p.is_file():
                raise FileNotFoundError(f"segmentation checkpoint file not found: {p}")
        meta = json.loads(meta_path.read_text())
        if meta.get("task") != "segmentation":
            raise ValueError(f"{meta_path} is not a segmentation checkpoint (task {meta.get('task')!r})")
        return cls(load_checkpoint(path, device=resolve_device(device)), meta, backend)

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.checkpoint.preprocess

    def info(self) -> dict[str, Any]:
        """Identity for reports: name, checkpoint, version, created, sha256, input size, mask rule (and in words)."""
        return {
            "name": self.name,
            "checkpoint": self.checkpoint.weights_path.name,
            "version": self._meta.get("brainxai_version", __version__),
            "created": self._meta.get("created", ""),
            "sha256": self.sha256,
            "input_size": self.preprocess.img_size,
            "threshold": self.threshold,
            **({} if self.postprocess is None else {"postprocess": self.postprocess.to_dict()}),
            "mask_rule": mask_rule(self.threshold, self.postprocess),
        }

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The model-grid slice (uint8) and its crop box in the original slice."""
        return prepare_with_box(_gray(image), self.preprocess)

    def can_run_in_worker(self) -> bool:
        """Whether :meth:`segment` runs without torch, so it may run in a worker thread beside the analysis.

        True when ONNX Runtime serves the network; its session is made here, on the calling thread, if it
        was not yet (the export runs torch). With torch serving it, False: torch in a second thread starts
        a second OpenMP team (:mod:`brainxai.util.pools`).
        """
        return self._onnx.session() is not None

    def probability_prepared(self, prepared: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Tumour probabilities ``(N, S, S)`` of prepared ``(N, S, S)`` uint8 slices."""
        session = self._onnx.session() if len(prepared) else None
        if session is None:
            return predict_prepared(self.model, prepared, self.preprocess, self.device, batch_size)
        return np.concatenate(
            [
                session.outputs(to_array(prepared[i : i + batch_size], self.preprocess))[0]
                for i in range(0, len(prepared), batch_size)
            ]
        )

    def probability(self, images: Sequence[np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
        """Tumour probability ``(H, W)`` float32 of each original slice, on that slice's pixel grid."""
        grays = [_gray(image) for image in images]
        if not grays:
            return []
        prepared = [self.prepare(g) for g in grays]
        probs = self.probability_prepared(np.stack([p for p, _ in prepared]), batch_size)
        return [map_back(prob, box, g.shape) for prob, (_, box), g in zip(probs, prepared, grays)]

    def use_mask_rule(self, meta: Mapping[str, Any]) -> None:
        """Makes masks by another checkpoint JSON's ``threshold`` and ``postprocess`` (e.g. a CV fold model judged
        by the rule chosen for its recipe afterwards, recorded in the shipped JSON only)."""
        self.threshold = float(meta["threshold"])
        self.postprocess = PostProcess.from_dict(meta.get("postprocess"))

    def mask(self, prob: np.ndarray) -> np.ndarray:
        """The tumour mask, bool ``(H, W)``, of a probability map (threshold, then the checkpoint's post-processing)."""
        return probability_mask(prob, self.threshold, self.postprocess)

    def segment(self, image: np.ndarray) -> np.ndarray:
        """The tumour mask, bool ``(H, W)``, of one slice (:meth:`mask` of its probability map)."""
        return self.mask(self.probability([image])[0])


__all__ = [
    "Segmenter",
    "SegmenterLike",
    "default_segmenter_available",
    "default_segmenter_path",
    "map_back",
    "predict_prepared",
    "probability_mask",
]
