"""Model zoo: a registry of classifiers and the tumour segmenter, each with its :class:`ModelConfig`."""

from brainxai.models import cnn_lstm, efficientnet_lite, resnet, segmentation  # noqa: F401  (registers models)
from brainxai.models.registry import (
    ModelConfig,
    create_model,
    get_model_config,
    get_submodule,
    get_target_layer,
    list_models,
    register_model,
)

__all__ = [
    "ModelConfig",
    "create_model",
    "get_model_config",
    "get_submodule",
    "get_target_layer",
    "list_models",
    "register_model",
]
