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
from brainxai.util.device import resolve_device

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_NAME = "default"


def default_checkpoint_path() -> Path:
    """Path (stem) of the model shipped inside the package."""
    return Path(str(resources.files("brainxai") / "weights" / DEFAULT_CHECKPOINT_NAME))


@dataclass
class Prediction:
    """One classification result."""

    label: str
    index: int
    probabilities: dict[str, float]

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]


class Classifier:
    """A loaded model plus its preprocessing.

    Args:
        loaded: A restored checkpoint.
        device: Where to run.
    """

    def __init__(self, loaded: LoadedCheckpoint, device: str | torch.device = "auto") -> None:
        self.device = resolve_device(device)
        self.checkpoint = loaded
        self.model: nn.Module = loaded.model.to(self.device).eval()
        # Classification runs on a BatchNorm-folded copy (same outputs, ~1.8x faster on a CPU for
        # EfficientNet-Lite0); explainers use ``self.model`` whose real layers they hook.
        self._classify_model: nn.Module = fold_batchnorm(self.model)
        self.classes: tuple[str, ...] = tuple(loaded.meta.classes)
        self.preprocess: PreprocessConfig = loaded.meta.preprocess
        # Probabilities are softmax(logits / temperature) (post-hoc temperature scaling, fitted on the
        # checkpoint's validation split); it never changes the arg-max, nor the explanations.
        self.temperature: float = float(loaded.meta.temperature)

    @classmethod
    def load(cls, checkpoint: str | Path | None = None, device: str | torch.device = "auto") -> Classifier:
        """Loads a checkpoint, or the shipped default model when ``checkpoint`` is None."""
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
        return cls(loaded, device=device)

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
        return [
            self._classify_model(self.tensor(prepared[i : i + batch_size])).float()
            for i in range(0, len(prepared), batch_size)
        ]

    @torch.inference_mode()
    def logits_and_features_prepared(self, prepared: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Raw logits ``(N, C)`` and penultimate features ``(N, D)`` (float32) of prepared images.

        The features are the input of the model's classification head (its last ``nn.Linear``), e.g.
        the 1280 pooled channels of EfficientNet-Lite0: what an out-of-domain score models. One
        forward pass gives both.
        """
        if prepared.ndim == 2:
            prepared = prepared[None]
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
        return [self._to_prediction(p) for p in self.predict_proba_prepared(prepared)]

    def _to_prediction(self, probs: np.ndarray) -> Prediction:
        idx = int(np.argmax(probs))
        return Prediction(
            label=self.classes[idx],
            index=idx,
            probabilities={c: float(p) for c, p in zip(self.classes, probs)},
        )
