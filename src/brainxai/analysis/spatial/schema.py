"""What a spatial parameter is: its key, display name, value, unit, method note and status."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Parameter keys, in report order.
PARAMETER_KEYS: tuple[str, ...] = (
    "anatomical_region",
    "hemisphere",
    "spatial_relation",
    "area_volume",
    "maximum_dimensions",
    "texture",
    "midline_shift",
    "peritumoral_oedema",
    "rcbv",
    "confidence",
)

PARAMETER_NAMES: dict[str, str] = {
    "anatomical_region": "Approximate anatomical region",
    "hemisphere": "Hemisphere",
    "spatial_relation": "Spatial relation (intra-/extra-axial)",
    "area_volume": "Region area and estimated volume",
    "maximum_dimensions": "Maximum dimensions",
    "texture": "Texture (intensity heterogeneity)",
    "midline_shift": "Midline shift",
    "peritumoral_oedema": "Peritumoral oedema",
    "rcbv": "Relative cerebral blood volume (rCBV)",
    "confidence": "Confidence",
}

NOT_APPLICABLE_NO_TUMOUR = "not applicable (no tumour region)"


@dataclass
class SpatialParameter:
    """One measured (or explicitly unmeasurable) parameter.

    Attributes:
        key: Stable identifier (see :data:`PARAMETER_KEYS`).
        name: Display name.
        value: A number, a category string, a dict of named numbers, or a "not ..." string.
        unit: Unit of the numbers in ``value`` ("" when dimensionless or categorical).
        method: One line on how the value was obtained.
        status: ``measured``, ``estimated``, ``not_assessable`` or ``not_applicable``.
        text: The value written for people, with units.
        details: Supporting numbers (for JSON consumers).
    """

    key: str
    name: str
    value: Any
    unit: str
    method: str
    status: str = "measured"
    text: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The parameter as JSON-ready data; ``text`` falls back to the value with its unit."""
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "method": self.method,
            "key": self.key,
            "status": self.status,
            "text": self.text or _default_text(self.value, self.unit),
            "details": self.details,
        }


def _default_text(value: Any, unit: str) -> str:
    if isinstance(value, float):
        return f"{value:.3g} {unit}".strip()
    return f"{value} {unit}".strip() if isinstance(value, (int, float)) else str(value)


def make_parameter(
    key: str, value: Any, unit: str, method: str, status: str = "measured", text: str = "", **details: Any
) -> SpatialParameter:
    """A :class:`SpatialParameter` named after its ``key``; extra keyword arguments become ``details``."""
    return SpatialParameter(key, PARAMETER_NAMES[key], value, unit, method, status, text, details)
