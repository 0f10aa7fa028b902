"""The one inference path: checkpoint -> preprocessing -> probabilities.

Everything that classifies (evaluation, the analysis service, the web app, benchmarks) goes through
:class:`Classifier`, so preprocessing is always the checkpoint's own, and so is the softmax
temperature: probabilities are ``softmax(logits / T)`` with the checkpoint's calibrated ``T``
(1.0 when it was never calibrated). Explainers work on ``Classifier.model`` and its raw logits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from brainxai.data.preprocess import PreprocessConfig, prepare, to_tensor
from brainxai.models.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from brainxai.models.fusion import fold_batchnorm
from brainxai.models.onnx import CLASSIFIER, OnnxClassifier, OnnxSlot
from brainxai.util.blas import single_threaded_blas
from brainxai.util.device import resolve_device
from brainxai.util.heap import keep_freed_heap

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_NAME = "default"


def default_checkpoint_path() -> Path:
    """Path (stem) of the model shipped inside the package."""
    return Path(str(resources.files("brainxai") / "weights" / DEFAULT_CHECKPOINT_NAME))


@dataclass
class Prediction:
    """One classification result.

    ``in_domain`` is False when the image lies outside what the model was trained on (its
    out-of-domain score ``domain_score`` exceeds the threshold stored with the checkpoint): the
    prediction is then not assessable. Both are None for a checkpoint without domain statistics.
    """

    label: str
    index: int
    probabilities: dict[str, float]
    in_domain: bool | None = None
    domain_score: float | None = None

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]


class Classifier:
    """A loaded model plus its preprocessing.

    Classification (logits, probabilities, penultimate features) is served by ONNX Runtime on the CPU
    (:mod:`brainxai.models.onnx`: the checkpoint exported once, cached, checked against torch; about 2x
    faster, same probabilities to 1e-5), by torch otherwise. Explanations always use torch (``model``).

    Args:
        loaded: A restored checkpoint.
        device: Where to run.
        backend: What serves classification: ``"onnx"``, ``"torch"`` or ``"auto"`` (default): the
            ``BRAINXAI_BACKEND`` environment variable if set, else ONNX Runtime on the CPU for a
            checkpoint read from a file (its sha256 keys the export cache), torch otherwise, and
            torch, with one logged warning, when onnxruntime is missing or the export fails. A forced
            ``"onnx"`` raises instead of falling back, and on a CUDA device.
    """

    def __init__(self, loaded: LoadedCheckpoint, device: str | torch.device = "auto", backend: str = "auto") -> None:
        self.device = resolve_device(device)
        self.checkpoint = loaded
        self.model: nn.Module = loaded.model.to(self.device).eval()
        if self.device.type == "cpu":
            keep_freed_heap()  # no page faults on every forward pass of a fresh process (util/heap.py)
        # Classification runs on a BatchNorm-folded copy (same outputs, ~1.8x faster on a CPU for
        # EfficientNet-Lite0); explainers use ``self.model`` whose real layers they hook.
        self._classify_model: nn.Module = fold_batchnorm(self.model)
        self._onnx = OnnxSlot(
            loaded.meta.model, backend, self.device, loaded.sha256, self._export_source, CLASSIFIER, OnnxClassifier
        )
        self.classes: tuple[str, ...] = tuple(loaded.meta.classes)
        self.preprocess: PreprocessConfig = loaded.meta.preprocess
        # Probabilities are softmax(logits / temperature) (post-hoc temperature scaling, fitted on the
        # checkpoint's validation split); it never changes the arg-max, nor the explanations.
        self.temperature: float = float(loaded.meta.temperature)

    @classmethod
    def load(
        cls, checkpoint: str | Path | None = None, device: str | torch.device = "auto", backend: str = "auto"
    ) -> Classifier:
        """Loads a checkpoint, or the shipped default model when ``checkpoint`` is None (``backend``: see the class)."""
        path = Path(checkpoint) if checkpoint is not None else default_checkpoint_path()
        try:
            loaded = load_checkpoint(path)
        except CheckpointError:
            if checkpoint is None:
                raise CheckpointError(
                    "no default model is shipped with this installation "
                    f"(looked for {path}.safetensors); pass a checkpoint path"
                ) from None
            raise
        return cls(loaded, device=device, backend=backend)

    @property
    def name(self) -> str:
        return self.checkpoint.meta.model

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Crop and resize a 2-D ``uint8`` scan the way this model was trained."""
        return prepare(image, self.preprocess)

    def tensor(self, prepared: np.ndarray) -> torch.Tensor:
        """Prepared ``uint8`` image(s) -> normalised tensor on the model's device."""
        return to_tensor(prepared, self.preprocess).to(self.device)

    def _logits(self, prepared: np.ndarray, batch_size: int) -> list[torch.Tensor]:
        """Float32 logits of prepared images ``(N, H, W)`` (or one ``(H, W)``), one tensor per batch."""
        if prepared.ndim == 2:
            prepared = prepared[None]
        session = self.onnx_session()
        if session is not None:
            return [
                torch.from_numpy(session.run(self.tensor(prepared[i : i + batch_size]).numpy())[0])
                for i in range(0, len(prepared), batch_size)
            ]
        return [
            self._classify_model(self.tensor(prepared[i : i + batch_size])).float()
            for i in range(0, len(prepared), batch_size)
        ]

    @property
    def backend(self) -> str:
        """What serves classification: ``"onnx"`` or ``"torch"`` (after a failed export, torch)."""
        return self._onnx.backend

    def onnx_session(self) -> OnnxClassifier | None:
        """The ONNX Runtime session serving classification (exported or read at first use); None for torch."""
        return self._onnx.session()

    def _export_source(self) -> tuple[nn.Module, tuple[int, int, int]]:
        """The model ONNX Runtime serves (the BatchNorm-folded copy) and the shape of one input."""
        return self._classify_model, (self.preprocess.channels, self.preprocess.img_size, self.preprocess.img_size)

    @torch.inference_mode()
    def logits_and_features_prepared(self, prepared: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Raw logits ``(N, C)`` and penultimate features ``(N, D)`` (float32) of prepared images.

        The features are the input of the model's classification head (its last ``nn.Linear``), e.g.
        the 1280 pooled channels of EfficientNet-Lite0: what an out-of-domain score models. One
        forward pass gives both.
        """
        if prepared.ndim == 2:
            prepared = prepared[None]
        session = self.onnx_session() if len(prepared) else None
        if session is not None:
            outs = [
                session.run(self.tensor(prepared[i : i + batch_size]).numpy())
                for i in range(0, len(prepared), batch_size)
            ]
            return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])
        captured: list[torch.Tensor] = []
        handle = self._head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
        try:
            logits = self.logits_prepared(prepared, batch_size=batch_size)
        finally:
            handle.remove()
        dim = self._head.in_features
        feats = [torch.flatten(f, 1).float().cpu().numpy() for f in captured]
        return logits, (np.concatenate(feats) if feats else np.zeros((0, dim), dtype=np.float32))

    @property
    def _head(self) -> nn.Linear:
        """The classification head of the classify model: its last ``nn.Linear``."""
        linears = [m for m in self._classify_model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise TypeError(f"{self.name}: model has no nn.Linear head to take features from")
        return linears[-1]

    @torch.inference_mode()
    def logits_prepared(self, prepared: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Raw logits (no temperature) for prepared images ``(N, H, W)``; returns ``(N, C)`` float32."""
        out = [logits.cpu().numpy() for logits in self._logits(prepared, batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), dtype=np.float32)

    @torch.inference_mode()
    def predict_proba_prepared(self, prepared: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Class probabilities ``softmax(logits / temperature)`` for prepared images ``(N, H, W)``;
        returns ``(N, C)`` float64."""
        out = []
        for logits in self._logits(prepared, batch_size):
            if self.temperature != 1.0:
                logits = logits / self.temperature
            out.append(torch.softmax(logits, dim=1).cpu().double().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)))

    def predict(self, images: list[np.ndarray] | np.ndarray) -> list[Prediction]:
        """Classifies raw 2-D ``uint8`` scans (any size)."""
        if isinstance(images, np.ndarray) and images.ndim == 2:
            images = [images]
        prepared = np.stack([self.prepare(im) for im in images])
        probs, scores = self.assess_prepared(prepared)
        if scores is None:
            return [self._to_prediction(p) for p in probs]
        return [self._to_prediction(p, s) for p, s in zip(probs, scores, strict=True)]

    def _to_prediction(self, probs: np.ndarray, domain_score: float | None = None) -> Prediction:
        idx = int(np.argmax(probs))
        domain = self.checkpoint.domain
        in_domain = None if domain is None or domain_score is None else bool(domain_score <= domain.threshold)
        return Prediction(
            label=self.classes[idx],
            index=idx,
            probabilities={c: float(p) for c, p in zip(self.classes, probs)},
            in_domain=in_domain,
            domain_score=None if domain_score is None else float(domain_score),
        )

    def assess_prepared(self, prepared: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities ``(N, C)`` and out-of-domain scores ``(N,)`` of prepared images, from one forward pass.

        The scores are None when the checkpoint has no domain statistics (then this is
        :meth:`predict_proba_prepared`). Compare them with :attr:`domain_threshold`: above is out of domain.
        """
        domain = self.checkpoint.domain
        if domain is None:
            return self.predict_proba_prepared(prepared, batch_size=batch_size), None
        logits, features = self.logits_and_features_prepared(prepared, batch_size=batch_size)
        return self.assess_outputs(logits, features)

    def assess_outputs(self, logits: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`assess_prepared` from raw logits ``(N, C)`` and penultimate features ``(N, D)`` computed elsewhere.

        E.g. by an explanation's own forward pass (``brainxai.pipeline.steps.assess_and_explain``), which
        then needs no classification pass of its own. Scores are None without domain statistics.
        """
        domain = self.checkpoint.domain
        if domain is None:
            return softmax(logits, self.temperature), None
        with single_threaded_blas():  # small products; no OpenBLAS threads left spinning (util/blas.py)
            scores = domain.score(features, logits)
        return softmax(logits, self.temperature), scores

    @property
    def domain_threshold(self) -> float | None:
        """Out-of-domain scores above this are outside what the model was trained on; None without statistics."""
        domain = self.checkpoint.domain
        return None if domain is None else domain.threshold


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` row-wise, computed in float32 like the torch path, returned as float64."""
    z = np.asarray(logits, dtype=np.float32)
    if temperature != 1.0:
        z = z / np.float32(temperature)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float64)
