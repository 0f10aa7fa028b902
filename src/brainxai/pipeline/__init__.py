"""The analysis core: named steps (read, prepare, classify, explain, map back, ...) and what composes them.

- :mod:`~brainxai.pipeline.steps`: the steps every consumer shares (the analysis service,
  ``brainxai explain`` and the XAI benchmark), so each reads every format and prepares, explains and
  maps back the same way.
- :mod:`~brainxai.pipeline.options`: :class:`AnalysisOptions` (how to analyse) and :class:`PatientInfo`.
- :mod:`~brainxai.pipeline.service`: :class:`AnalysisService`, which runs read -> prepare -> classify
  -> explain -> map back -> measure (:mod:`~brainxai.pipeline.measure`) -> render -> report
  (:mod:`~brainxai.pipeline.outputs`) and returns an :class:`~brainxai.pipeline.result.AnalysisResult`.
- :mod:`~brainxai.pipeline.batch` (many files, the summary CSV) and :mod:`~brainxai.pipeline.demo`.

The names below are loaded on first use, so importing the steps does not load the service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from brainxai.pipeline.options import AnalysisOptions, PatientInfo
    from brainxai.pipeline.result import AnalysisResult
    from brainxai.pipeline.service import AnalysisService, analyze, get_service

__all__ = ["AnalysisOptions", "AnalysisResult", "AnalysisService", "PatientInfo", "analyze", "get_service"]


def __getattr__(name: str) -> Any:
    if name in ("AnalysisOptions", "PatientInfo"):
        from brainxai.pipeline import options

        return getattr(options, name)
    if name == "AnalysisResult":
        from brainxai.pipeline.result import AnalysisResult

        return AnalysisResult
    if name in ("AnalysisService", "analyze", "get_service"):
        from brainxai.pipeline import service

        return getattr(service, name)
    raise AttributeError(f"module 'brainxai.pipeline' has no attribute {name!r}")
