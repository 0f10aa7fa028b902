"""Analysis of scans and explanations: head mask, relevance region, and the spatial parameters of a finding."""

from brainxai.analysis.region import brain_mask, relevance_region
from brainxai.analysis.spatial import SpatialParameter, compute_spatial_parameters

__all__ = ["SpatialParameter", "brain_mask", "compute_spatial_parameters", "relevance_region"]
