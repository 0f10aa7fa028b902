"""Layer-wise relevance propagation with zennit, laid out as zennit is.

- :mod:`~brainxai.explain.lrp.canonizers`: make a model LRP-ready without changing what it computes;
  each ``ModelConfig`` names the ones its blocks need (``lrp_canonizers``);
- :mod:`~brainxai.explain.lrp.rules`: the rules zennit lacks (a z+ that skips an exactly-zero branch, a
  Flat rule without the stride lattice);
- :mod:`~brainxai.explain.lrp.composites`: the rule sets by name (:data:`COMPOSITES`);
- :mod:`~brainxai.explain.lrp.fast`: the private, hooked copy of the model that makes repeated calls fast;
- :mod:`~brainxai.explain.lrp.explainer`: the ``lrp`` method of the explainer registry.
"""

from brainxai.explain.lrp.canonizers import CANONIZERS, ExactMergeBatchNorm, MBConvCanonizer, canonizers_for
from brainxai.explain.lrp.composites import COMPOSITES, DEFAULT_COMPOSITE, build_composite, input_bounds
from brainxai.explain.lrp.explainer import LrpExplainer
from brainxai.explain.lrp.fast import PassThroughActivation
from brainxai.explain.lrp.rules import NonNegativeZPlus, UniformFlat

__all__ = [
    "CANONIZERS",
    "COMPOSITES",
    "DEFAULT_COMPOSITE",
    "ExactMergeBatchNorm",
    "LrpExplainer",
    "MBConvCanonizer",
    "NonNegativeZPlus",
    "PassThroughActivation",
    "UniformFlat",
    "build_composite",
    "canonizers_for",
    "input_bounds",
]
