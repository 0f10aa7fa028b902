"""Explanation methods: one interface, a registry, and the maps' views and quality metrics.

>>> from brainxai.explain import create_explainer, list_explainers
>>> with create_explainer("lrp", model) as explainer:      # doctest: +SKIP
...     explanations = explainer.explain(x)                # x: (N, C, H, W), normalised

Methods: ``lrp`` (zennit), ``gradcam``, ``gradcam++``, ``hirescam`` (pytorch-grad-cam),
``guided-backprop`` and ``guided-gradcam``.
"""

from brainxai.explain import cam, guided, lrp  # noqa: F401  (registers the built-in methods)
from brainxai.explain.base import (
    Explainer,
    Explanation,
    UnsupportedModelError,
    create_explainer,
    list_explainers,
    register_explainer,
)

__all__ = [
    "Explainer",
    "Explanation",
    "UnsupportedModelError",
    "create_explainer",
    "list_explainers",
    "register_explainer",
]
