"""How names appear in reports: explanation methods, dates and the segmentation's mask rule."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

#: Display names of the explanation methods.
METHOD_TITLES: dict[str, str] = {
    "lrp": "LRP",
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "hirescam": "HiResCAM",
    "guided-backprop": "Guided Backprop",
    "guided-gradcam": "Guided Grad-CAM",
}


def method_title(method: str) -> str:
    """Display name of an explanation method (``gradcam`` -> ``Grad-CAM``); unknown names unchanged."""
    return METHOD_TITLES.get(method, method)


def date_text(iso: str) -> str:
    """``2025-01-02T03:04:05+00:00`` -> ``2025-01-02 03:04 UTC``; unparsable strings unchanged."""
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    offset = dt.utcoffset()
    if offset is not None and offset.total_seconds() == 0:
        return dt.strftime("%Y-%m-%d %H:%M UTC")
    return dt.strftime("%Y-%m-%d %H:%M %z").strip()


def mask_rule_text(segmentation: Mapping[str, Any]) -> str:
    """How a result's tumour outline was made from the probability map (``tumour probability ≥ 0.5, holes filled``).

    Results written before the rule was named carry only the threshold.
    """
    model = segmentation.get("model") or {}
    return str(model.get("mask_rule") or f"tumour probability ≥ {segmentation.get('threshold', 0.5):g}")
