"""brainxai: explainable brain-tumour MRI classification (research use only, not a diagnostic device)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brainxai.version import __version__

__all__ = ["__version__", "analyze"]

if TYPE_CHECKING:  # pragma: no cover
    from brainxai.pipeline.service import analyze


def __getattr__(name: str) -> Any:
    # Imported lazily so `import brainxai` stays cheap (no torch import for --help).
    if name == "analyze":
        from brainxai.pipeline.service import analyze

        return analyze
    raise AttributeError(f"module 'brainxai' has no attribute {name!r}")
