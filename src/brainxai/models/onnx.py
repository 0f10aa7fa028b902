"""ONNX Runtime serving of a model: exported once per checkpoint, cached on disk, exact fp32.

What is exported is an :class:`ExportKind`. For a classifier (:data:`CLASSIFIER`) the graph takes the
normalised input ``x`` ``(N, C, H, W)`` and returns two outputs, the raw ``logits`` ``(N, classes)``
and the penultimate ``features`` ``(N, D)`` (the input of the model's last ``nn.Linear``), so one run
serves both classification and the out-of-domain score; for a segmentation network
(:data:`SEGMENTER`) one output, the tumour ``probability`` ``(N, H, W)``. It is exported with the
TorchScript exporter (``dynamo=False``: it needs only the ``onnx`` package, works
offline and imports nothing heavy), from the BatchNorm-folded classify copy of the model.

Exported files are cached under ``$BRAINXAI_ONNX_CACHE``, else ``$XDG_CACHE_HOME/brainxai/onnx``,
else ``~/.cache/brainxai/onnx``, keyed by the checkpoint's weights sha256 and the kind's format
(bumped whenever the graph's outputs or opset change). Every session, fresh or cached, is checked
against the torch model on a fixed random batch before it is used (:func:`check_equivalence`), so a
stale or damaged cache entry is re-exported, never served.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch import nn

from brainxai.util.files import atomic_write_bytes

logger = logging.getLogger(__name__)

OPSET = 17
BACKENDS = ("auto", "torch", "onnx")
BACKEND_ENV = "BRAINXAI_BACKEND"
# The cache keeps the newest few exports only (about 13 MB each for EfficientNet-Lite0).
CACHE_KEEP = 8
# Largest difference from torch accepted: relative for logits and features, absolute for probabilities
# (ExportKind.bounded); float32 rounding is ~1e-6.
TOLERANCE = 1e-4


class OnnxExportError(RuntimeError):
    """A model could not be exported to ONNX, or its export does not reproduce the torch outputs."""


def cache_dir() -> Path:
    """The folder of cached exports (see the module docs for how it is chosen)."""
    if os.environ.get("BRAINXAI_ONNX_CACHE"):
        return Path(os.environ["BRAINXAI_ONNX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "brainxai" / "onnx"


def resolve_backend(backend: str, device: torch.device, cacheable: bool = True) -> tuple[str, bool]:
    """The backend that serves a model (``"onnx"`` or ``"torch"``) and whether it was forced.

    ``backend`` ``"auto"`` defers to ``$BRAINXAI_BACKEND``, then picks ONNX Runtime on a CPU when the
    export can be cached (``cacheable``: the checkpoint has a weights hash). Raises ``ValueError`` for an
    unknown name or ONNX forced on a non-CPU device.
    """
    choice = backend
    if choice == "auto":
        choice = os.environ.get(BACKEND_ENV, "").strip().lower() or "auto"
    if choice not in BACKENDS:
        raise ValueError(f"unknown backend {choice!r}; expected one of {', '.join(BACKENDS)}")
    if choice == "auto":
        return ("onnx" if device.type == "cpu" and cacheable else "torch"), False
    if choice == "onnx" and device.type != "cpu":
        raise ValueError(f"the ONNX backend runs on the CPU, not {device}; use backend='torch'")
    return choice, True


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


class _Probability(nn.Module):
    """A segmentation network whose one-channel logit map becomes the tumour probability ``(N, H, W)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.sigmoid(self.model(x)).squeeze(1),)


@dataclass(frozen=True)
class ExportKind:
    """What is exported of a model: the wrapper that gives its outputs, their names, the cache format.

    ``bounded``: the outputs are probabilities in [0, 1], compared with torch's in absolute terms (relative to
    their largest value, a confident model's near-zero probabilities on the check's random input would make
    float rounding look like a mismatch).
    """

    outputs: tuple[str, ...]
    wrap: Callable[[nn.Module], nn.Module]
    format: str
    bounded: bool = False


#: A classifier: raw logits and the penultimate features (the classification head's input).
CLASSIFIER = ExportKind(
    ("logits", "features"),
    lambda model: _LogitsAndFeatures(model, classification_head(model)),
    f"logits+features-opset{OPSET}-v1",
)
#: A segmentation network with one output channel: the sigmoid probability map.
SEGMENTER = ExportKind(("probability",), _Probability, f"probability-opset{OPSET}-v1", bounded=True)
#: The classifier's cache format (kept for callers of the first version of this module).
EXPORT_FORMAT = CLASSIFIER.format


def cached_path(sha256: str, kind: ExportKind = CLASSIFIER) -> Path:
    """Where the export of the checkpoint with weights hash ``sha256`` is cached."""
    return cache_dir() / f"{sha256}.{kind.format}.onnx"


def export_onnx(model: nn.Module, input_shape: tuple[int, int, int], kind: ExportKind = CLASSIFIER) -> bytes:
    """The ONNX graph (bytes) of an eval-mode ``model`` with the outputs of ``kind``.

    Args:
        model: The model (on the CPU, in eval mode).
        input_shape: ``(C, H, W)`` of one normalised input; the batch axis is dynamic.
        kind: What to export (default: a classifier's logits and features).

    Raises:
        OnnxExportError: The export failed (untraceable model, no ``onnx`` package, ...).
    """
    wrapper = kind.wrap(model).eval()
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
                output_names=list(kind.outputs),
                dynamic_axes={name: {0: "n"} for name in ("x", *kind.outputs)},
            )
    except Exception as exc:  # any exporter failure means: serve with torch
        raise OnnxExportError(f"ONNX export failed: {exc}") from exc
    return buf.getvalue()


class OnnxModel:
    """An ONNX Runtime CPU session of an exported graph with one input ``x``.

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

    def outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """The graph's float32 outputs, in export order, for a normalised float32 batch ``(N, C, H, W)``."""
        return list(self.session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)}))


class OnnxClassifier(OnnxModel):
    """A classifier's session (:data:`CLASSIFIER`): ``(logits, features)`` per batch."""

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float32 ``(logits (N, C), features (N, D))`` of a normalised float32 batch ``(N, C, H, W)``."""
        logits, features = self.outputs(x)
        return logits, features


def check_equivalence(
    session: OnnxModel, model: nn.Module, input_shape: tuple[int, int, int], kind: ExportKind = CLASSIFIER
) -> float:
    """Largest difference between the session's and ``model``'s outputs (of ``kind``; see :class:`ExportKind`).

    Measured on a fixed random batch of two; raises :class:`OnnxExportError` above :data:`TOLERANCE`.
    """
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        refs = [r.numpy() for r in kind.wrap(model).eval()(x)]
    worst = 0.0
    for ours, ref in zip(session.outputs(x.numpy()), refs, strict=True):
        if ours.shape != ref.shape:
            raise OnnxExportError(f"ONNX output shape {ours.shape} differs from torch's {ref.shape}")
        scale = 1.0 if kind.bounded else max(float(np.abs(ref).max()), 1e-12)
        worst = max(worst, float(np.abs(ours - ref).max() / scale))
    if not worst <= TOLERANCE:
        how = "absolute" if kind.bounded else "relative"
        raise OnnxExportError(f"ONNX outputs differ from torch by {worst:.2e} ({how}; limit {TOLERANCE:.0e})")
    return worst


S = TypeVar("S", bound=OnnxModel)


def load_onnx(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    sha256: str = "",
    threads: int | None = None,
    kind: ExportKind = CLASSIFIER,
    session_class: type[S] = OnnxModel,  # type: ignore[assignment]  # mypy cannot bind a TypeVar default
) -> tuple[S, bool]:
    """A checked ONNX Runtime session for ``model``, from the cache when there is a valid entry.

    Args:
        model: The eval-mode model on the CPU (for a classifier, the BatchNorm-folded copy).
        input_shape: ``(C, H, W)`` of one normalised input.
        sha256: The checkpoint's weights hash, the cache key; empty: export in memory, cache nothing.
        threads: Intra-op threads (default: torch's).
        kind: What is exported (:data:`CLASSIFIER`, :data:`SEGMENTER`).
        session_class: The session type to return.

    Returns:
        The session and whether it was exported now (False: read from the cache).

    Raises:
        ImportError: onnxruntime is not installed.
        OnnxExportError: The model cannot be exported, or its export does not match torch.
    """
    import onnxruntime  # noqa: F401  (fail before exporting when the runtime is missing)

    path = cached_path(sha256, kind) if sha256 else None
    if path is not None and path.is_file():
        try:
            session = session_class(path.read_bytes(), threads)
            check_equivalence(session, model, input_shape, kind)
            return session, False
        except Exception as exc:  # a damaged or stale entry: export again below
            logger.warning("cached ONNX model %s is unusable (%s); exporting again", path, exc)
    data = export_onnx(model, input_shape, kind)
    try:
        session = session_class(data, threads)
    except Exception as exc:
        raise OnnxExportError(f"ONNX Runtime cannot load the exported model: {exc}") from exc
    check_equivalence(session, model, input_shape, kind)
    if path is not None:
        _store(path, data)
    return session, True


class OnnxSlot(Generic[S]):
    """The ONNX Runtime session serving one model, made at first use; torch serves it when ONNX cannot.

    Args:
        name: The model's name, for log messages.
        backend: ``"onnx"``, ``"torch"`` or ``"auto"`` (:func:`resolve_backend`).
        device: Where the model runs (ONNX Runtime serves CPU models only).
        sha256: The checkpoint's weights hash (the cache key; empty: ``"auto"`` keeps torch).
        source: Returns the eval-mode CPU model to export and the ``(C, H, W)`` of one input.
        kind: What is exported.
        session_class: The session type.

    With ``"auto"``, a missing onnxruntime or a failed export logs one warning and switches
    :attr:`backend` to ``"torch"``; a forced ``"onnx"`` raises instead.
    """

    def __init__(
        self,
        name: str,
        backend: str,
        device: torch.device,
        sha256: str,
        source: Callable[[], tuple[nn.Module, tuple[int, int, int]]],
        kind: ExportKind,
        session_class: type[S],
    ) -> None:
        self.name = name
        self.backend, self._forced = resolve_backend(backend, device, bool(sha256))
        self._sha256, self._source, self._kind, self._session_class = sha256, source, kind, session_class
        self._session: S | None = None
        self._lock = threading.Lock()

    def session(self) -> S | None:
        """The session (exported or read from the cache at first use); None when torch serves the model."""
        if self.backend != "onnx":
            return None
        with self._lock:
            if self._session is None:
                model, shape = self._source()
                try:
                    self._session, exported = load_onnx(
                        model, shape, self._sha256, kind=self._kind, session_class=self._session_class
                    )
                except (ImportError, OnnxExportError, TypeError) as exc:
                    if self._forced:
                        raise
                    logger.warning("%s: running with torch, ONNX Runtime is unavailable (%s)", self.name, exc)
                    self.backend = "torch"
                    return None
                logger.info("%s: ONNX model %s", self.name, "exported and cached" if exported else "read from cache")
        return self._session


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


def describe(session: OnnxModel) -> dict[str, Any]:
    """ONNX Runtime version and thread setting of a session (for benchmark reports)."""
    import onnxruntime as ort

    opts = session.session.get_session_options()
    return {"onnxruntime": ort.__version__, "intra_op_threads": opts.intra_op_num_threads}
