"""Small pieces the object builders share: the model's identity as equipment attributes, the algorithm record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from brainxai.reporting.labels import method_title


def equipment_kwargs(result: Mapping[str, Any]) -> dict[str, Any]:
    """Enhanced General Equipment attributes: model name, brainxai version, checkpoint SHA-256 as serial number."""
    model = result.get("model") or {}
    return {
        "manufacturer": "brainxai",
        "manufacturer_model_name": str(model.get("name") or "unknown model")[:64],
        "software_versions": str(result.get("brainxai_version") or model.get("version") or "unknown")[:64],
        # The checkpoint's checksum identifies the exact weights: the closest thing a model has to a serial number.
        "device_serial_number": str(model.get("sha256") or "unknown")[:64],
    }


def algorithm_parameters(result: Mapping[str, Any]) -> dict[str, str]:
    """The parameters that describe how the map was computed (for Algorithm Identification items)."""
    model = result.get("model") or {}
    return {
        "explanation method": method_title(str(result.get("method", "?"))),
        "checkpoint": str(model.get("checkpoint", "?")),
        "checkpoint sha256": str(model.get("sha256", "?")),
    }
