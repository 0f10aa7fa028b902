"""Reports: the clinician-facing PDF and the per-finding guidance."""

from brainxai.reporting.guidance import Guidance, guidance_for
from brainxai.reporting.pdf import build_report, write_report

__all__ = ["Guidance", "build_report", "guidance_for", "write_report"]
