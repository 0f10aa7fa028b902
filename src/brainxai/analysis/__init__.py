"""Analysis of scans and explanations: head mask, relevance region."""

from brainxai.analysis.region import brain_mask, relevance_region

__all__ = ["brain_mask", "relevance_region"]

# Spatial parameters of a finding (brainxai.analysis.spatial).
from brainxai.analysis.spatial import SpatialParameter, compute_spatial_parameters  # noqa: E402

__all__ += ["SpatialParameter", "compute_spatial_parameters"]
