"""Reports: the clinician-facing PDF, the per-finding guidance and display labels."""

from brainxai.reporting.guidance import Guidance, guidance_for
from brainxai.reporting.labels import date_text, method_title

__all__ = ["Guidance", "build_report", "date_text", "guidance_for", "method_title", "write_report"]


def __getattr__(name: str) -> object:
    # ReportLab is imported only when a PDF is actually built.
    if name in ("build_report", "write_report"):
        from brainxai.reporting import pdf

        return getattr(pdf, name)
    raise AttributeError(f"module 'brainxai.reporting' has no attribute {name!r}")
