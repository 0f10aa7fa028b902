"""Many scans in one run: collecting the inputs, analysing each (a bad file does not stop the batch), the CSV."""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainxai.io import ImageReadError
from brainxai.pipeline.options import AnalysisOptions, PatientInfo
from brainxai.pipeline.result import AnalysisResult
from brainxai.util.files import atomic_write_bytes
from brainxai.util.names import SCAN_SUFFIXES, safe_stem

if TYPE_CHECKING:
    from brainxai.pipeline.service import AnalysisService

logger = logging.getLogger(__name__)

#: Columns of the batch summary CSV.
SUMMARY_COLUMNS: tuple[str, ...] = ("file", "status", "prediction", "confidence", "report", "error")


@dataclass
class BatchItem:
    """Outcome of one file of a batch.

    ``seconds`` is the file's share of its batch's analysis time (the batch's wall time divided by its
    number of files: the classification and explanation run once for the whole batch).
    """

    file: str
    status: str  # "ok" or "failed"
    result: AnalysisResult | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the file was analysed."""
        return self.status == "ok"


def collect_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Expands folders (recursively) into the scan files they hold; files are kept as given.

    In folders, files with a scan suffix (see :data:`~brainxai.util.names.SCAN_SUFFIXES`) or with no
    suffix (common for DICOM) are taken; hidden files are skipped. Missing paths are kept so that they
    are reported.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(_scan_files(p) if p.is_dir() else [p])
    return out


def _scan_files(folder: Path) -> list[Path]:
    def wanted(f: Path) -> bool:
        hidden = any(part.startswith(".") for part in f.relative_to(folder).parts)
        return f.is_file() and not hidden and (f.suffix.lower() in SCAN_SUFFIXES or f.suffix == "")

    return [f for f in sorted(folder.rglob("*")) if wanted(f)]


def _unique_names(files: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for f in files:
        stem = safe_stem(f.name)
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


def analyze_batch(
    service: AnalysisService,
    files: Sequence[Path],
    options: AnalysisOptions | None = None,
    *,
    out_dir: str | Path,
    patient: PatientInfo | dict[str, Any] | None = None,
    names: Sequence[str] | None = None,
    report_path: str | Path | None = None,
    progress: Callable[[BatchItem], None] | None = None,
    batch_size: int | None = None,
) -> list[BatchItem]:
    """Analyses many files, ``batch_size`` at a time; a bad file is recorded as failed and the batch goes on.

    Args:
        service: The service to use.
        files: Input files.
        options: How to analyse each file (the same for all).
        out_dir: Output folder shared by all files (output names are made unique).
        patient: Patient details for every report.
        names: Output base names, one per file (default: unique file stems).
        report_path: Exact PDF path; only allowed for a single file.
        progress: Called after each file with its :class:`BatchItem` (a batch's files one after the other).
        batch_size: Files classified and explained together (:meth:`AnalysisService.analyze_many`); default
            :data:`~brainxai.pipeline.steps.EXPLAIN_BATCH`.
    """
    # The service and the steps load torch: not at this module's import.
    from brainxai.pipeline.service import ScanInput
    from brainxai.pipeline.steps import EXPLAIN_BATCH

    batch_size = EXPLAIN_BATCH if batch_size is None else batch_size

    if report_path is not None and len(files) != 1:
        raise ValueError("an explicit report path needs exactly one input file")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    names = list(names) if names is not None else _unique_names(files)
    scans = [ScanInput(f, name=name, report_path=report_path) for f, name in zip(files, names, strict=False)]
    items: list[BatchItem] = []
    for start in range(0, len(scans), batch_size):
        chunk = scans[start : start + batch_size]
        t0 = time.perf_counter()
        try:
            outcomes = service.analyze_many(chunk, options, out_dir=out_dir, patient=patient)
        except Exception as exc:  # the batch's shared step failed: every file of it is failed, the rest go on
            outcomes = [exc] * len(chunk)
        share = (time.perf_counter() - t0) / len(chunk)
        for scan, outcome in zip(chunk, outcomes, strict=True):
            item = _item(str(scan.source), outcome, share)
            items.append(item)
            if progress is not None:
                progress(item)
    return items


def _item(file: str, outcome: AnalysisResult | Exception, seconds: float) -> BatchItem:
    if not isinstance(outcome, Exception):
        return BatchItem(file, "ok", result=outcome, seconds=seconds)
    if isinstance(outcome, ImageReadError):
        return BatchItem(file, "failed", error=str(outcome), seconds=seconds)
    # One broken file must not stop a batch; the error is kept and logged.
    logger.error("analysis of %s failed", file, exc_info=outcome)
    return BatchItem(file, "failed", error=f"internal error ({type(outcome).__name__}): {outcome}", seconds=seconds)


def summary_csv(items: Sequence[BatchItem]) -> bytes:
    """The batch summary as CSV bytes, columns :data:`SUMMARY_COLUMNS`."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(SUMMARY_COLUMNS)
    for it in items:
        r = it.result
        report = (r.report_pdf or r.report_json) if r else None
        writer.writerow(
            [
                it.file,
                it.status,
                r.prediction if r else "",
                f"{r.confidence:.4f}" if r else "",
                str(report) if report else "",
                it.error or "",
            ]
        )
    return buf.getvalue().encode()


def write_summary_csv(items: Sequence[BatchItem], path: str | Path) -> Path:
    """Writes :func:`summary_csv` atomically."""
    return atomic_write_bytes(Path(path), summary_csv(items))
