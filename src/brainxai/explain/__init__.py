"""Explanation methods: one interface, a registry, and the maps' views and quality metrics.

>>> from brainxai.explain import create_explainer, list_explainers
>>> with create_explainer("lrp", model) as explainer:      # doctest: +SKIP
...     explanations = explainer.explain(x)                # x: (N, C, H, W), normalised

Methods (:mod:`brainxai.explain.methods`): ``lrp`` (zennit), ``gradcam``, ``gradcam++``, ``hirescam``
(pytorch-grad-cam), ``guided-backprop`` and ``guided-gradcam``. Importing the package is cheap: the
methods' modules, and the libraries behind them, are imported on the registry's first lookup.
"""

from brainxai.explain.base import (
    Explainer,
    Explanation,
    UnsupportedModelError,
    add_builtin_source,
    create_explainer,
    list_explainers,
    register_explainer,
)


def builtin_explainers() -> tuple[type[Explainer], ...]:
    """The classes of the built-in methods (imports their modules, with pytorch-grad-cam and zennit)."""
    from brainxai.explain.cam import GradCamExplainer, GradCamPlusPlusExplainer, HiResCamExplainer
    from brainxai.explain.guided import GuidedBackpropExplainer, GuidedGradCamExplainer
    from brainxai.explain.lrp import LrpExplainer

    return (
        LrpExplainer,
        GradCamExplainer,
        GradCamPlusPlusExplainer,
        HiResCamExplainer,
        GuidedBackpropExplainer,
        GuidedGradCamExplainer,
    )


add_builtin_source(builtin_explainers)

__all__ = [
    "Explainer",
    "Explanation",
    "UnsupportedModelError",
    "builtin_explainers",
    "create_explainer",
    "list_explainers",
    "register_explainer",
]
