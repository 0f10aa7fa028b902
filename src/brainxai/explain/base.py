"""The explainer interface, its result type and the registry of methods.

Every method is a small :class:`Explainer` subclass, registered by name; the built-ins (named in
:mod:`brainxai.explain.methods`) join the registry on its first lookup. The base class owns the
template in :meth:`Explainer.explain` (input checks, target resolution, eval mode, gradient
bookkeeping, result assembly); a subclass overrides the one step that differs,
:meth:`Explainer._attribute`.

Hooks are registered for the duration of one :meth:`Explainer.explain` call and removed before it
returns, also when it raises, so a model never keeps hooks from an explanation. (LRP keeps zennit's
hooks on a private, batch-norm-folded copy of the model between calls, for speed; the copy is rebuilt
when the model's weights change and released by :meth:`Explainer.close`.)
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
import torch
from torch import nn

from brainxai.constants import CLASSES
from brainxai.explain.methods import METHODS
from brainxai.models.registry import find_model_config


class UnsupportedModelError(ValueError):
    """An explanation method cannot be applied to a model."""


@dataclass
class Explanation:
    """One explained decision.

    Attributes:
        relevance: ``(H, W)`` float32 map at model-input resolution; positive values are evidence for
            ``target`` (for guided backprop: the magnitude of the guided gradient, see its docs).
        method: Registry name of the method.
        target: Index of the explained class.
        target_label: Name of the explained class.
        score: Softmax probability of ``target`` for this input.
    """

    relevance: np.ndarray
    method: str
    target: int
    target_label: str
    score: float


def model_name(model: nn.Module) -> str:
    """The registry name of a model (its class name when it has no ``brainxai_config``)."""
    config = find_model_config(model)
    return config.name if config is not None else type(model).__name__


def model_classes(model: nn.Module) -> tuple[str, ...]:
    """Class names in output order, from ``model.brainxai_config`` (the project default otherwise)."""
    config = find_model_config(model)
    return tuple(config.classes) if config is not None else CLASSES


class Explainer(ABC):
    """Base class of all explanation methods.

    Args:
        model: A classifier returning logits ``(N, num_classes)``.
        **kwargs: Method-specific options.

    Raises:
        UnsupportedModelError: The method cannot explain this model.

    Not thread-safe: an explanation temporarily changes the model (hooks, ``requires_grad``, and for
    LRP merged batch-norm parameters). Use one explainer per thread.
    """

    name: ClassVar[str]

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"{self.name}: unknown options {sorted(kwargs)}")
        self.model = model
        self.classes = model_classes(model)
        self._closed = False

    # -- template -------------------------------------------------------------------------------

    def explain(self, x: torch.Tensor, target: int | Sequence[int] | None = None) -> list[Explanation]:
        """Explains a batch of decisions.

        Args:
            x: ``(N, C, H, W)`` input, already normalised the way the model expects.
            target: Class index to explain, one per image, or ``None`` for each image's predicted class.

        Returns:
            One :class:`Explanation` per image, in input order.
        """
        if self._closed:
            raise RuntimeError(f"{self.name} explainer is closed")
        if x.ndim != 4:
            raise ValueError(f"expected an (N, C, H, W) batch, got shape {tuple(x.shape)}")
        n = x.shape[0]
        device = _model_device(self.model)
        targets = self._target_tensor(target, n, device)
        with _explaining(self.model):
            # A clone made here is an ordinary tensor even if the caller built x in inference mode. With the
            # weights frozen, the input is what makes the graph (and the gradients) exist.
            x = x.detach().to(device=device, dtype=torch.float32).clone().requires_grad_(True)
            relevance, logits = self._attribute(x, targets)
        chosen = targets if targets is not None else logits.argmax(dim=1)
        probs = torch.softmax(logits.detach().float(), dim=1)
        scores = probs.gather(1, chosen[:, None])[:, 0].cpu().numpy()
        chosen_list = chosen.cpu().tolist()
        relevance = np.asarray(relevance, dtype=np.float32)
        if relevance.shape != (n, *x.shape[-2:]):
            raise RuntimeError(f"{self.name}: map shape {relevance.shape} does not match input {tuple(x.shape)}")
        return [
            Explanation(
                relevance=np.ascontiguousarray(relevance[i]),
                method=self.name,
                target=int(chosen_list[i]),
                target_label=self.classes[chosen_list[i]]
                if chosen_list[i] < len(self.classes)
                else str(chosen_list[i]),
                score=float(scores[i]),
            )
            for i in range(n)
        ]

    @abstractmethod
    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor]:
        """Computes the maps.

        Args:
            x: ``(N, C, H, W)`` input on the model's device.
            targets: ``(N,)`` class indices, or ``None`` for the predicted classes (use
                :meth:`select_targets` on the logits).

        Returns:
            ``(N, H, W)`` maps and the ``(N, num_classes)`` logits of the same forward pass.
        """

    @staticmethod
    def select_targets(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """The requested targets, or each row's arg-max when none were requested."""
        return targets if targets is not None else logits.detach().argmax(dim=1)

    def _target_tensor(self, target: int | Sequence[int] | None, n: int, device: torch.device) -> torch.Tensor | None:
        if target is None:
            return None
        if isinstance(target, (int, np.integer)):
            values = [int(target)] * n
        else:
            values = [int(t) for t in target]
            if len(values) != n:
                raise ValueError(f"got {len(values)} targets for {n} images")
        bad = [t for t in values if not 0 <= t < len(self.classes)]
        if bad:
            raise ValueError(
                f"target class {bad[0]} out of range 0..{len(self.classes) - 1} ({', '.join(self.classes)})"
            )
        return torch.tensor(values, dtype=torch.long, device=device)

    # -- forward-pass capture -------------------------------------------------------------------

    @contextlib.contextmanager
    def capturing(self, layer: nn.Module) -> Iterator[list[torch.Tensor]]:
        """Collects ``layer``'s outputs (detached) from the forward passes of the explanations made inside the block.

        The hook sits on the module the method actually runs (:meth:`_run_module`) and is removed when the
        block ends, also on error. A method may run several forward passes per call (shift averaging,
        guided methods): callers that want the activations of *the* forward pass check there was one.
        """
        captured: list[torch.Tensor] = []
        handle = self._run_module(layer).register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
        try:
            yield captured
        finally:
            handle.remove()

    def _run_module(self, layer: nn.Module) -> nn.Module:
        """The module that plays ``layer``'s part when this method runs (itself; a copy's module for LRP)."""
        return layer

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Releases the explainer and marks it unusable (subclasses free what they cache)."""
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def unsupported(self, reason: str) -> UnsupportedModelError:
        """An error naming this method and the model."""
        return UnsupportedModelError(f"{self.name} cannot explain model {model_name(self.model)!r}: {reason}")


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextlib.contextmanager
def _explaining(model: nn.Module) -> Iterator[None]:
    """Eval mode, gradients on, parameters frozen; everything restored afterwards.

    Freezing the parameters means backward passes compute input/activation gradients only: faster,
    and no ``.grad`` is left on the weights.
    """
    was_training = model.training
    frozen = [p for p in model.parameters() if p.requires_grad]
    # ``eval()`` visits and sets every module: skipped when none is training (the usual case, every call).
    switched = any(m.training for m in model.modules())
    if switched:
        model.eval()
    for p in frozen:
        p.requires_grad_(False)
    has_rnn = any(isinstance(m, nn.RNNBase) for m in model.modules())
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad())
            if has_rnn:
                # cuDNN refuses RNN backward passes in eval mode; the native kernels do not.
                stack.enter_context(torch.backends.cudnn.flags(enabled=False))
            yield
    finally:
        for p in frozen:
            p.requires_grad_(True)
        if switched:
            model.train(was_training)


# -- registry ------------------------------------------------------------------------------------

_E = TypeVar("_E", bound=type[Explainer])
_REGISTRY: dict[str, type[Explainer]] = {}
#: Functions returning the built-in methods' classes. The package (``brainxai.explain``) adds the one
#: that imports them, so this module never imports its own subclasses, and pytorch-grad-cam and
#: zennit load only when a method is first looked up.
_BUILTIN_SOURCES: list[Callable[[], Iterable[type[Explainer]]]] = []


def add_builtin_source(source: Callable[[], Iterable[type[Explainer]]]) -> None:
    """Adds a function that returns built-in explainer classes, registered on the first lookup."""
    if source not in _BUILTIN_SOURCES:
        _BUILTIN_SOURCES.append(source)


def _registry() -> dict[str, type[Explainer]]:
    """The registered methods, the built-ins always among them."""
    for source in _BUILTIN_SOURCES:
        for cls in source():
            _REGISTRY.setdefault(cls.name, cls)
    return _REGISTRY


def register_explainer(cls: _E) -> _E:
    """Class decorator: registers an :class:`Explainer` subclass under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not name:
        raise ValueError(f"{cls.__name__} has no name")
    registry = _registry()
    if name in registry and registry[name] is not cls:
        raise ValueError(f"explainer {name!r} is already registered")
    registry[name] = cls
    return cls


def list_explainers() -> list[str]:
    """Names of the registered methods, in a fixed order (built-ins first, then others sorted)."""
    registry = _registry()
    builtin = [n for n in METHODS if n in registry]
    return builtin + sorted(n for n in registry if n not in METHODS)


def create_explainer(name: str, model: nn.Module, **kwargs: Any) -> Explainer:
    """Builds the explainer registered as ``name`` for ``model``.

    Raises:
        KeyError: Unknown method (the message lists the known ones).
        UnsupportedModelError: The method cannot explain this model.
    """
    registry = _registry()
    if name not in registry:
        raise KeyError(f"unknown explanation method {name!r}; available: {', '.join(list_explainers())}")
    return registry[name](model, **kwargs)
