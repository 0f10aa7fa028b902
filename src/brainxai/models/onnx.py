"""ONNX Runtime serving of a classifier: exported once per checkpoint, cached on disk, exact fp32.

The exported graph takes the normalised input ``x`` ``(N, C, H, W)`` and returns two outputs, the
raw ``logits`` ``(N, classes)`` and the penultimate ``features`` ``(N, D)`` (the input of the model's
last ``nn.Linear``), so one run serves both classification and the out-of-domain score. It is
exported with the TorchScript exporter (``dynamo=False``: it needs only the ``onnx`` package, works
offline and imports nothing heavy), from the BatchNorm-folded classify copy of the model.

Exported files are cached under ``$BRAINXAI_ONNX_CACHE``, else ``$XDG_CACHE_HOME/brainxai/onnx``,
else ``~/.cache/brainxai/onnx``, keyed by the checkpoint's weights sha256 and :data:`EXPORT_FORMAT`
(bumped whenever the graph's outputs or opset change). Every session, fresh or cached, is checked
against the torch model on a fixed random batch before it is used (:func:`check_equivalence`), so a
stale or damaged cache entry is re-exported, never served.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from brainxai.util.files import atomic_write_bytes

logger = logging.getLogger(__name__)

OPSET = 17
EXPORT_FORMAT = f"logits+features-opset{OPSET}-v1"
# The cache keeps the newest few exports only (about 13 MB each for EfficientNet-Lite0).
CACHE_KEEP = 8
# Largest relative difference from torch accepted for logits and features (float32 rounding is ~1e-6).
TOLERANCE = 1e-4


class OnnxExportError(RuntimeError):
    """A model could not be exported to ONNX, or its export does not reproduce the torch outputs."""


def cache_dir() -> Path:
    """The folder of cached exports (see the module docs for how it is chosen)."""
    if os.environ.get("BRAINXAI_ONNX_CACHE"):
        return Path(os.environ["BRAINXAI_ONNX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "brainxai" / "onnx"


def cached_path(sha256: str) -> Path:
    """Where the export of the checkpoint with weights hash ``sha256`` is cached."""
    return cache_dir() / f"{sha256}.{EXPORT_FORMAT}.onnx"


def classification_head(model: nn.Module) -> nn.Linear:
    """The model's classification head: its last ``nn.Linear`` (whose input are the features)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError(f"{type(model).__name__}: model has no nn.Linear head to take features from")
    return linears[-1]


class _LogitsAndFeatures(nn.Module):
    """``model`` with its head's input as a second output."""

    def __init__(self, model: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        captured: list[torch.Tensor] = []
        handle = self.head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        return logits, torch.flatten(captured[-1], 1)


def export_onnx(model: nn.Module, input_shape: tuple[int, int, int]) -> bytes:
    """The ONNX graph (bytes) of an eval-mode ``model`` with outputs ``logits`` and ``features``.

    Args:
        model: The classifier (on the CPU, in eval mode).
        input_shape: ``(C, H, W)`` of one normalised input; the batch axis is dynamic.

    Raises:
        OnnxExportError: The export failed (untraceable model, no ``onnx`` package, ...).
    """
    wrapper = _LogitsAndFeatures(model, classification_head(model)).eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The legacy exporter is deprecated in favour of the dynamo one, which needs onnxscript and
            # imports torch._dynamo; this one is enough for a feed-forward CNN.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (torch.zeros(1, *input_shape),),
                buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
                dynamo=False,
                opset_version=OPSET,
                input_names=["x"],
                output_names=["logits", "features"],
                dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}, "features": {0: "n"}},
            )
    except Exception as exc:  # any exporter failure means: serve with torch
        raise OnnxExportError(f"ONNX export failed: {exc}") from exc
    return buf.getvalue()


class OnnxClassifier:
    """An ONNX Runtime CPU session returning ``(logits, features)`` for a normalised batch.

    Args:
        model_bytes: The exported graph (:func:`export_onnx`).
        threads: Intra-op threads; default: as many as torch uses.
    """

    def __init__(self, model_bytes: bytes, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # ORT's idle threads spin for a while after each run by default; between requests, and while
        # torch computes an explanation right after, that only takes the cores away from real work.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float32 ``(logits (N, C), features (N, D))`` of a normalised float32 batch ``(N, C, H, W)``."""
        logits, features = self.session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})
        return logits, features


def check_equivalence(session: OnnxClassifier, model: nn.Module, input_shape: tuple[int, int, int]) -> float:
    """Largest relative difference between the session's and ``model``'s logits and features.

    Measured on a fixed random batch of two; raises :class:`OnnxExportError` above :data:`TOLERANCE`.
    """
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref_logits, ref_feats = _LogitsAndFeatures(model, classification_head(model))(x)
    logits, feats = session.run(x.numpy())
    worst = 0.0
    for ours, ref in ((logits, ref_logits.numpy()), (feats, ref_feats.numpy())):
        if ours.shape != ref.shape:
            raise OnnxExportError(f"ONNX output shape {ours.shape} differs from torch's {ref.shape}")
        worst = max(worst, float(np.abs(ours - ref).max() / max(float(np.abs(ref).max()), 1e-12)))
    if not worst <= TOLERANCE:
        raise OnnxExportError(f"ONNX outputs differ from torch by {worst:.2e} (relative; limit {TOLERANCE:.0e})")
    return worst


def load_onnx_classifier(
    model: nn.Module, input_shape: tuple[int, int, int], sha256: str = "", threads: int | None = None
) -> tuple[OnnxClassifier, bool]:
    """A checked ONNX Runtime session for ``model``, from the cache when there is a valid entry.

    Args:
        model: The eval-mode classify model on the CPU (the BatchNorm-folded copy).
        input_shape: ``(C, H, W)`` of one normalised input.
        sha256: The checkpoint's weights hash, the cache key; empty: export in memory, cache nothing.
        threads: Intra-op threads (default: torch's).

    Returns:
        The session and whether it was exported now (False: read from the cache).

    Raises:
        ImportError: onnxruntime is not installed.
        OnnxExportError: The model cannot be exported, or its export does not match torch.
    """
    import onnxruntime  # noqa: F401  (fail before exporting when the runtime is missing)

    path = cached_path(sha256) if sha256 else None
    if path is not None and path.is_file():
        try:
            session = OnnxClassifier(path.read_bytes(), threads)
            check_equivalence(session, model, input_shape)
            return session, False
        except Exception as exc:  # a damaged or stale entry: export again below
            logger.warning("cached ONNX model %s is unusable (%s); exporting again", path, exc)
    data = export_onnx(model, input_shape)
    try:
        session = OnnxClassifier(data, threads)
    except Exception as exc:
        raise OnnxExportError(f"ONNX Runtime cannot load the exported model: {exc}") from exc
    check_equivalence(session, model, input_shape)
    if path is not None:
        _store(path, data)
    return session, True


def _store(path: Path, data: bytes) -> None:
    """Writes an export to the cache (atomically) and drops the oldest entries beyond :data:`CACHE_KEEP`."""
    try:
        atomic_write_bytes(path, data)
        entries = sorted(path.parent.glob("*.onnx"), key=_mtime, reverse=True)
        for old in entries[CACHE_KEEP:]:
            old.unlink(missing_ok=True)
    except OSError as exc:  # a read-only home: serve from memory, export again next time
        logger.warning("could not cache the ONNX model in %s: %s", path.parent, exc)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def describe(session: OnnxClassifier) -> dict[str, Any]:
    """ONNX Runtime version and thread setting of a session (for benchmark reports)."""
    import onnxruntime as ort

    opts = session.session.get_session_options()
    return {"onnxruntime": ort.__version__, "intra_op_threads": opts.intra_op_num_threads}
