"""A timm-style model registry: ``@register_model`` + ``create_model(name, **kw)``.

Each registered model carries a :class:`ModelConfig` describing how to feed it (input size, channels,
normalisation) and what explanation methods need to know (the CAM target layer, the LRP canonizers).
The config is attached to every created model as ``model.brainxai_config``.

The built-in models register themselves when their modules are imported, which importing any part
of ``brainxai.models`` does (the package imports them all); this module imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

from torch import nn

from brainxai.constants import CLASSES
from brainxai.data.preprocess import PreprocessConfig


@dataclass(frozen=True)
class ModelConfig:
    """Static description of a registered model.

    Attributes:
        name: Registry name.
        preprocess: How inputs are prepared for this model.
        target_layer: Dotted path of the module whose activations CAM methods use.
        stages: Groups of dotted module paths, from the classifier head backwards, used by the
            progressive unfreezing schedule (phase ``i`` trains the modules of ``stages[: i + 1]``).
        classes: Output classes, in order.
        description: One line for ``brainxai models``.
        supports_lrp: Whether zennit LRP is meaningful for this architecture.
        cam_cell_offset: Input pixel at which cell 0 of the target layer's map is centred, with cells
            one stride (input size / map size) apart: ``0.0`` for symmetric ``kernel // 2`` padding.
            ``None``: measured at run time (``brainxai.explain.cam.cam_grid``); a test checks the
            registered values against that measurement.
        lrp_canonizers: Names of the LRP canonizers the model's blocks need beyond the batch-norm
            merge every model gets (keys of ``brainxai.explain.lrp.canonizers.CANONIZERS``, e.g.
            ``"resnet-basic-block"``); names, so that this module needs no zennit.
        output: What the model outputs: ``"classes"`` (one logit per class) or ``"probability-map"``
            (one logit per input pixel and class, e.g. the tumour segmenter's single map).
    """

    name: str
    preprocess: PreprocessConfig
    target_layer: str
    stages: tuple[tuple[str, ...], ...]
    classes: tuple[str, ...] = CLASSES
    description: str = ""
    supports_lrp: bool = True
    cam_cell_offset: float | None = None
    lrp_canonizers: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    output: str = "classes"


_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_CONFIGS: dict[str, ModelConfig] = {}


def register_model(config: ModelConfig) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Registers a model factory under ``config.name``.

    The factory is called as ``factory(num_classes=..., pretrained=..., img_size=..., **kwargs)``.
    """

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if config.name in _FACTORIES:
            raise ValueError(f"model {config.name!r} is already registered")
        _FACTORIES[config.name] = factory
        _CONFIGS[config.name] = config
        return factory

    return decorator


def unregister_model(name: str) -> None:
    """Removes a registered model (for plugins and tests that register one temporarily); unknown names are ignored."""
    _FACTORIES.pop(name, None)
    _CONFIGS.pop(name, None)


def list_models(output: str | None = "classes") -> list[str]:
    """Names of the registered models with that ``output`` (default: the classifiers; None: all), sorted."""
    return sorted(name for name, config in _CONFIGS.items() if output is None or config.output == output)


def get_model_config(name: str) -> ModelConfig:
    """Returns the registered config for ``name``.

    Raises:
        KeyError: Unknown model; the message lists the known names.
    """
    if name not in _CONFIGS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_CONFIGS))}")
    return _CONFIGS[name]


def create_model(
    name: str,
    *,
    pretrained: bool = True,
    num_classes: int | None = None,
    img_size: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Builds a registered model.

    Args:
        name: Registry name (see :func:`list_models`).
        pretrained: Start from ImageNet weights where the model has them (falls back to random
            initialisation with a warning when they are unavailable offline).
        num_classes: Number of outputs; defaults to the config's class count.
        img_size: Overrides the config's input size (the returned model's config reflects it).
        **kwargs: Passed to the factory.

    Returns:
        The model, with ``brainxai_config`` set to its (possibly adjusted) :class:`ModelConfig`.
    """
    config = get_model_config(name)
    n = num_classes if num_classes is not None else len(config.classes)
    if img_size is not None and img_size != config.preprocess.img_size:
        config = replace(config, preprocess=config.preprocess.replace(img_size=img_size))
    model = _FACTORIES[name](num_classes=n, pretrained=pretrained, img_size=config.preprocess.img_size, **kwargs)
    attach_model_config(model, config)
    return model


def find_model_config(model: nn.Module) -> ModelConfig | None:
    """The :class:`ModelConfig` that :func:`create_model` attached to ``model``, or None for a foreign model."""
    # nn.Module types unknown attributes as Tensor | Module; create_model stores a ModelConfig there.
    return cast("ModelConfig | None", getattr(model, "brainxai_config", None))


def model_config(model: nn.Module) -> ModelConfig:
    """The :class:`ModelConfig` of a model made by :func:`create_model` (see :func:`find_model_config`).

    Raises:
        ValueError: The model was not made by :func:`create_model`.
    """
    config = find_model_config(model)
    if config is None:
        raise ValueError(f"{type(model).__name__} has no brainxai ModelConfig; build it with create_model")
    return config


def attach_model_config(model: nn.Module, config: ModelConfig) -> None:
    """Stores ``config`` as ``model.brainxai_config``, where :func:`model_config` reads it."""
    # nn.Module.__setattr__ is typed for Tensor | Module values only; any object is stored as a plain attribute.
    model.brainxai_config = config  # type: ignore[assignment]


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    """Resolves a dotted module path such as ``"layer4"`` or ``"blocks.15"``."""
    try:
        return model.get_submodule(path)
    except AttributeError as exc:
        raise KeyError(f"{type(model).__name__} has no submodule {path!r}") from exc


def get_target_layer(model: nn.Module) -> nn.Module:
    """The layer that CAM methods target, from the model's config."""
    return get_submodule(model, model_config(model).target_layer)
