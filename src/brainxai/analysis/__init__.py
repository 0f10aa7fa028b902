"""Analysis of scans and explanations: head mask, relevance region."""

from brainxai.analysis.region import brain_mask, relevance_region

__all__ = ["brain_mask", "relevance_region"]
