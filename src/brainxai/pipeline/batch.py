"""Many scans in one run: collecting the inputs, analysing each (a bad file does not stop the batch), the CSV."""

from __future__ import annotations

import csv
import io
import logging
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
    """Outcome of one file of a batch."""

    file: str
    status: str  # "ok" or "failed"
    result: AnalysisResult | None = None
    error: str | None = None

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
) -> list[BatchItem]:
    """Analyses many files; a bad file is recorded as failed and the batch goes on.

    Args:
        service: The service to use.
        files: Input files.
        options: How to analyse each file (the same for all).
        out_dir: Output folder shared by all files (output names are made unique).
        patient: Patient details for every report.
        names: Output base names, one per file (default: unique file stems).
        report_path: Exact PDF path; only allowed for a single file.
        progress: Called after each file with its :class:`BatchItem`.
    """
    if report_path is not None and len(files) != 1:
        raise ValueError("an explicit report path needs exactly one input file")
    names = list(names) if names is not None else _unique_names(files)
    items: list[BatchItem] = []
    for f, name in zip(files, names, strict=False):
        item = _analyze_one(service, f, options, out_dir=out_dir, patient=patient, name=name, report_path=report_path)
        items.append(item)
        if progress is not None:
            progress(item)
    return items


def _analyze_one(service: AnalysisService, file: Path, options: AnalysisOptions | None, **inputs: Any) -> BatchItem:
    try:
        return BatchItem(str(file), "ok", result=service.analyze(file, options, **inputs))
    except ImageReadError as exc:
        return BatchItem(str(file), "failed", error=str(exc))
    except Exception as exc:  # one broken file must not stop a batch; the error is kept and logged
        logger.exception("analysis of %s failed", file)
        return BatchItem(str(file), "failed", error=f"internal error ({type(exc).__name__}): {exc}")


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
