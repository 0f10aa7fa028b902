"""The result table of a scaled-out run: one row per scan, with a fixed Parquet schema.

Nested values (probabilities, spatial parameters, agreement, warnings, notes) are JSON text, so the
schema does not depend on the model's classes and every file of a run (and of its resumes) has the
same columns. ``error`` is empty for an analysed scan; a scan that failed has only ``path``,
``error`` and its timings.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from brainxai.pipeline.result import AnalysisResult

if TYPE_CHECKING:
    import pyarrow as pa

#: ``(column, arrow type name)`` of the result table, in order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("path", "string"),
    ("source_name", "string"),
    ("prediction", "string"),
    ("confidence", "float64"),
    ("probabilities", "string"),
    ("in_domain", "bool_"),
    ("domain_score", "float64"),
    ("spatial_parameters", "string"),
    ("agreement", "string"),
    ("segmentation", "string"),
    ("warnings", "string"),
    ("notes", "string"),
    ("method", "string"),
    ("model_sha256", "string"),
    ("report_json", "string"),
    ("report_pdf", "string"),
    ("analysis_id", "string"),
    ("created", "string"),
    ("error", "string"),
    ("read_ms", "float64"),
    ("decode_ms", "float64"),
    ("analyze_ms", "float64"),
    ("worker", "string"),
)


def schema() -> pa.Schema:
    """The arrow schema of :data:`COLUMNS`."""
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMNS])


def _json(value: Any) -> str:
    return json.dumps(value, default=_plain, sort_keys=True)


def _plain(value: Any) -> Any:
    """numpy scalars and paths, which results may hold, as JSON values."""
    return value.item() if hasattr(value, "item") else str(value)


def worker_id() -> str:
    """``host:pid`` of this process (which worker produced a row)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def result_row(path: str, result: AnalysisResult, *, keep_files: bool, timings: dict[str, float]) -> dict[str, Any]:
    """The row of an analysed scan; ``keep_files``: the per-scan JSON/PDF/PNGs were kept (their paths are listed)."""
    return {
        "path": path,
        "source_name": result.source_name,
        "prediction": result.prediction,
        "confidence": float(result.confidence),
        "probabilities": _json(result.probabilities),
        "in_domain": result.in_domain,
        "domain_score": result.domain_score,
        "spatial_parameters": _json(result.spatial_parameters),
        "agreement": _json(result.agreement),
        "segmentation": _json(getattr(result, "segmentation", None)),  # present when a segmenter ran
        "warnings": _json(result.warnings),
        "notes": _json(result.notes),
        "method": result.method,
        "model_sha256": str(result.model.get("sha256", "")),
        "report_json": str(result.report_json) if keep_files else None,
        "report_pdf": str(result.report_pdf) if keep_files and result.report_pdf else None,
        "analysis_id": result.id,
        "created": result.created,
        "error": "",
        "worker": worker_id(),
        **timings,
    }


def error_row(path: str, error: str, *, timings: dict[str, float]) -> dict[str, Any]:
    """The row of a scan that could not be analysed."""
    return {"path": path, "error": error or "unknown error", "worker": worker_id(), **timings}


def to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows as an arrow table with :func:`schema` (missing values are null)."""
    import pyarrow as pa

    names = [name for name, _ in COLUMNS]
    return pa.Table.from_pylist([{k: r.get(k) for k in names} for r in rows], schema=schema())
