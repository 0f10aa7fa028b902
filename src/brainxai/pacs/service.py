"""One PACS study in, its results back in it: retrieve -> analyse each brain MR series -> ONE STOW.

For each MR image series of the study that brainxai has not analysed yet (no brainxai SR in the
study refers to it), the instances are retrieved (WADO-RS) into a temporary folder and analysed
with :func:`brainxai.pipeline.series.analyze_study` with DICOM outputs on; the objects it wrote are
read back and stored into the same study with one STOW-RS request. A series whose analysis fails
contributes nothing (its error is reported); a PACS error stops the study before anything is stored.

"Already analysed" is read from the PACS itself, not from a local record, so a crash between the
STOW and any bookkeeping never leads to a second copy, and our objects' UIDs are deterministic
(:mod:`brainxai.reporting.dicom.source`), so even a repeated STOW replaces instead of duplicating.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom
from pydicom.dataset import Dataset

from brainxai.io.series import SeriesSkipped
from brainxai.pacs.client import PacsClient, PacsError, SeriesInfo

if TYPE_CHECKING:  # pragma: no cover
    from brainxai.pipeline.options import AnalysisOptions
    from brainxai.pipeline.service import AnalysisService

logger = logging.getLogger(__name__)

#: The image SOP classes analysed: MR Image, Enhanced MR Image, Legacy Converted Enhanced MR Image.
MR_IMAGE_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.4"}
)
BRAINXAI = "brainxai"

#: ``analyze_study``'s signature (see :func:`brainxai.pipeline.series.analyze_study`).
StudyAnalyzer = Callable[..., Sequence[Any]]


@dataclass
class SeriesOutcome:
    """What happened to one series: analysed (``prediction``, ``stored``), skipped or failed (``reason``)."""

    series_uid: str
    status: str  # "analysed", "skipped" or "failed"
    reason: str = ""
    prediction: str | None = None
    objects: int = 0


@dataclass
class StudyOutcome:
    """The outcome of one study: one entry per MR series, and the SOP Instance UIDs stored."""

    study_uid: str
    series: list[SeriesOutcome] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)
    #: Wall-clock seconds per phase: ``check`` (QIDO and the search for earlier results), ``retrieve``,
    #: ``files`` (writing the retrieved instances, reading the results back), ``analyse`` and ``store``.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[SeriesOutcome]:
        return [s for s in self.series if s.status == "failed"]


def is_brainxai_series(info: SeriesInfo) -> bool:
    """Whether a series holds brainxai's own results (never analysed, even the MR-modality parametric map)."""
    return info.manufacturer.strip().lower() == BRAINXAI or info.description.lower().startswith(BRAINXAI)


def analysed_series(client: PacsClient, study_uid: str, model_sha: str | None = None) -> dict[str, str]:
    """``{source series UID: SR SOP Instance UID}`` of the brainxai SRs already in the study.

    An SR counts when its Manufacturer or series description names brainxai and, given ``model_sha``,
    its Contributing Equipment names that checkpoint (a new model analyses the series again).
    """
    found: dict[str, str] = {}
    for info in client.search_series(study_uid, modality="SR"):
        if not is_brainxai_series(info):
            continue
        for sr in client.retrieve_series(study_uid, info.series_uid):
            if model_sha and not _made_by(sr, model_sha):
                continue
            for series_uid in referenced_series(sr):
                found.setdefault(series_uid, str(sr.SOPInstanceUID))
    return found


def referenced_series(sr: Dataset) -> set[str]:
    """The series an SR's evidence names (Current Requested Procedure Evidence, Pertinent Other Evidence)."""
    out: set[str] = set()
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in sr.get(keyword, None) or []:
            out.update(str(s.SeriesInstanceUID) for s in study.get("ReferencedSeriesSequence", None) or [])
    return out


def _made_by(sr: Dataset, model_sha: str) -> bool:
    return any(
        model_sha in [str(v) for v in _as_list(item.get("SoftwareVersions"))]
        for item in sr.get("ContributingEquipmentSequence", None) or []
    )


def _as_list(value: Any) -> list[Any]:
    """A DICOM value as a list (a multi-valued element, one value, or none)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def analyze_pacs_study(
    client: PacsClient,
    study_uid: str,
    options: AnalysisOptions,
    *,
    service: AnalysisService | None = None,
    series_uids: Iterable[str] | None = None,
    force: bool = False,
    work_dir: str | Path | None = None,
    analyze: StudyAnalyzer | None = None,
) -> StudyOutcome:
    """Analyses the brain MR series of one PACS study and stores all results in it with ONE STOW request.

    Args:
        client: The PACS.
        study_uid: The study.
        options: How to analyse (``dicom_out`` is set here, to a temporary folder).
        service: The loaded model (default: the shipped one, loaded once per process).
        series_uids: Only these series (default: every MR image series of the study).
        force: Analyse series that already have a brainxai result too.
        work_dir: Where the temporary folder goes (default: the system's).
        analyze: The study analyser (default :func:`brainxai.pipeline.series.analyze_study`).

    Returns:
        One outcome per MR series and the SOP Instance UIDs stored.

    Raises:
        PacsError: The PACS failed; nothing of this study was stored when it happened before the STOW.
    """
    outcome = StudyOutcome(study_uid)
    with _timed(outcome, "check"):
        todo = _series_to_analyse(client, study_uid, series_uids, force, service, outcome)
    if not todo:
        return outcome
    analyze = analyze or _default_analyzer()
    with tempfile.TemporaryDirectory(prefix="brainxai-pacs-", dir=work_dir) as tmp:
        results: list[Dataset] = []
        for info in todo:
            datasets = _analyse_series(client, info, options, service, analyze, Path(tmp), outcome)
            results += datasets
        if results:
            with _timed(outcome, "store"):
                outcome.stored = client.store(results, study_uid)
            logger.info("study %s: %d result object(s) stored in one STOW request", study_uid, len(results))
    return outcome


def _series_to_analyse(
    client: PacsClient,
    study_uid: str,
    only: Iterable[str] | None,
    force: bool,
    service: AnalysisService | None,
    outcome: StudyOutcome,
) -> list[SeriesInfo]:
    """The study's MR series still to analyse; the others are recorded as skipped, with the reason."""
    series = client.search_series(study_uid)
    if not series:
        raise PacsError(f"study {study_uid} was not found in the PACS at {client.url} (or it holds no series)", 404)
    wanted = set(only) if only is not None else None
    sha = (getattr(service, "model_info", None) or {}).get("sha256")
    done = {} if force else analysed_series(client, study_uid, sha)
    todo = []
    for info in series:
        if wanted is not None and info.series_uid not in wanted:
            continue
        if info.modality != "MR" or is_brainxai_series(info):
            if wanted is not None:
                outcome.series.append(
                    SeriesOutcome(info.series_uid, "skipped", f"not an MR image series ({info.modality})")
                )
            continue
        if info.series_uid in done:
            reason = f"already analysed by brainxai (SR {done[info.series_uid]})"
            outcome.series.append(SeriesOutcome(info.series_uid, "skipped", reason))
            continue
        todo.append(info)
    return todo


def _analyse_series(
    client: PacsClient,
    info: SeriesInfo,
    options: AnalysisOptions,
    service: AnalysisService | None,
    analyze: StudyAnalyzer,
    tmp: Path,
    outcome: StudyOutcome,
) -> list[Dataset]:
    """Retrieves and analyses one series; its result objects, or none when its analysis failed."""
    folder = tmp / "in" / info.series_uid
    folder.mkdir(parents=True)
    with _timed(outcome, "retrieve"):
        images = [ds for ds in client.retrieve_series(info.study_uid, info.series_uid) if _is_mr_image(ds)]
    if not images:
        outcome.series.append(SeriesOutcome(info.series_uid, "skipped", "no MR image with pixel data"))
        return []
    out = tmp / "out" / info.series_uid
    try:
        with _timed(outcome, "files"):
            for i, ds in enumerate(images):
                ds.save_as(folder / f"{i:05d}.dcm", enforce_file_format=True)
        with _timed(outcome, "analyse"):
            results = list(analyze(folder, replace(options, dicom_out=out / "dicom"), out_dir=out, service=service))
        with _timed(outcome, "files"):
            datasets = _result_objects(results, info.study_uid)
    except SeriesSkipped as exc:  # a localiser, or no image: not analysed on purpose, not a failure
        outcome.series.append(SeriesOutcome(info.series_uid, "skipped", str(exc)))
        return []
    except Exception as exc:  # one bad series must not stop the others: it is reported as failed
        logger.warning("series %s: analysis failed: %s", info.series_uid, exc)
        outcome.series.append(SeriesOutcome(info.series_uid, "failed", f"{type(exc).__name__}: {exc}"))
        return []
    prediction = str(results[0].prediction) if results else None
    outcome.series.append(SeriesOutcome(info.series_uid, "analysed", prediction=prediction, objects=len(datasets)))
    return datasets


@contextlib.contextmanager
def _timed(outcome: StudyOutcome, phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        outcome.timings[phase] = outcome.timings.get(phase, 0.0) + time.perf_counter() - start


def _is_mr_image(ds: Dataset) -> bool:
    return str(ds.get("SOPClassUID", "")) in MR_IMAGE_CLASSES and "PixelData" in ds


def _result_objects(results: Sequence[Any], study_uid: str) -> list[Dataset]:
    """The DICOM objects the analysis wrote, all checked to belong to ``study_uid``."""
    datasets: list[Dataset] = [pydicom.dcmread(path) for r in results for path in r.dicom_files]
    if not datasets:
        raise ValueError("the analysis wrote no DICOM result object")
    strays = {str(ds.StudyInstanceUID) for ds in datasets} - {study_uid}
    if strays:
        # Storing them would scatter the results over studies nobody asked for.
        raise ValueError(f"the analysis wrote objects for other studies {sorted(strays)}, not for {study_uid}")
    return datasets


def _default_analyzer() -> StudyAnalyzer:
    from brainxai.pipeline.series import analyze_study

    return analyze_study


def analyze_pacs_studies(
    client: PacsClient, study_uids: Sequence[str], options: AnalysisOptions, **kwargs: Any
) -> list[StudyOutcome]:
    """:func:`analyze_pacs_study` for each study in turn (a PACS error stops the run)."""
    return [analyze_pacs_study(client, uid, options, **kwargs) for uid in study_uids]
