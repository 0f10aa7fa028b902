"""Running the analysis service from the web app: bounded concurrency, atomic study creation.

The model is loaded once; analyses run on a small thread pool so the event loop keeps answering
other requests. A study becomes visible only when its files are all on disk and its row is committed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import json
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from brainxai.explain.methods import ANALYSIS_METHODS
from brainxai.pipeline import outputs
from brainxai.pipeline.options import AnalysisOptions
from brainxai.pipeline.result import json_bytes
from brainxai.pipeline.service import ScanInput
from brainxai.version import __version__
from brainxai.web import crud
from brainxai.web.crud import audit, ensure_patient
from brainxai.web.db import session_scope
from brainxai.web.models import Study, User
from brainxai.web.schemas import PatientIn, StudyOut
from brainxai.web.storage import Storage
from brainxai.web.uploads import CheckedUpload
from brainxai.web.views import DICOM_INPUTS, study_out

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Analyzer(Protocol):
    """What the web app needs from :class:`brainxai.pipeline.service.AnalysisService`."""

    def analyze_many(
        self,
        scans: Sequence[ScanInput],
        options: AnalysisOptions | None = None,
        *,
        out_dir: Path,
        patient: Any = None,
    ) -> list[Any]: ...


class Busy(RuntimeError):
    """Too many analyses are waiting; the client should retry later."""


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return None


_MALLOC_TRIM = _load_malloc_trim()


def return_free_heap() -> bool:
    """Hands the C heap's free pages back to the operating system (glibc ``malloc_trim``).

    An analysis allocates and frees many heap blocks; glibc keeps the freed ones in the middle of its
    heap resident, so without this the server stays near its high-water mark between requests (about
    55 MB more after an analysis, ``benchmarks/perf.md``). Costs a few milliseconds. Returns whether
    anything was released; always False where glibc is not the allocator.
    """
    return bool(_MALLOC_TRIM(0)) if _MALLOC_TRIM is not None else False


def _then_trim(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        return_free_heap()


class InferenceRunner:
    """A bounded pool for model work.

    Args:
        workers: Analyses running at once (one model in memory; 1 serialises them).
        max_pending: Interactive analyses allowed to wait or run before new ones are refused.
    """

    def __init__(self, workers: int = 1, max_pending: int = 64) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="brainxai-inference")
        self.workers = workers
        self.max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, fn: Callable[..., T], *args: Any, wait: bool = False, **kwargs: Any) -> T:
        """Runs ``fn`` on the pool and awaits it.

        Args:
            wait: Queue even when the pool is saturated (background batch work); otherwise raise Busy.
        """
        with self._lock:
            if not wait and self._pending >= self.max_pending:
                raise Busy(f"{self._pending} analyses are queued; try again shortly")
            self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, functools.partial(_then_trim, fn, *args, **kwargs))
        finally:
            with self._lock:
                self._pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _result_dict(result: Any) -> dict[str, Any]:
    data = result.to_dict() if hasattr(result, "to_dict") else dict(vars(result))
    # File locations are the server's business (they pointed into the staging folder anyway).
    for key in ("images", "report_pdf", "report_json", "out_dir"):
        data.pop(key, None)
    # Encoded as the JSON sidecar is, so the stored result is the sidecar's (DICOM results are built from it).
    stored: dict[str, Any] = json.loads(json_bytes(data))
    return stored


def _collect_files(result: Any, staging: Path) -> dict[str, str]:
    """Maps file kinds to paths relative to the staging folder; refuses anything outside it."""
    files: dict[str, str] = {}
    candidates: dict[str, Any] = {f"image:{k}": v for k, v in (getattr(result, "images", None) or {}).items()}
    candidates["report_pdf"] = getattr(result, "report_pdf", None)
    candidates["report_json"] = getattr(result, "report_json", None)
    # What its DICOM results are built from (older versions stored the files themselves, as "dicom:<name>").
    candidates[DICOM_INPUTS] = next((staging / "dicom").glob(f"*{outputs.DICOM_INPUTS_SUFFIX}"), None)
    root = staging.resolve()
    for kind, path in candidates.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(root) or not resolved.is_file():
            raise RuntimeError(f"analysis output {kind} is not a file in its output folder: {path}")
        files[kind] = resolved.relative_to(root).as_posix()
    return files


def analyze_and_store(
    service: Analyzer,
    storage: Storage,
    session_factory: sessionmaker[Session],
    *,
    upload: CheckedUpload,
    method: str,
    owner_id: int,
    patient_id: int | None = None,
    new_patient: PatientIn | None = None,
    patient_info: dict[str, Any] | None = None,
    slice_index: int | None = None,
    client: str | None = None,
    on_commit: Callable[[Session, Study], None] | None = None,
) -> str:
    """Analyses one checked upload and records it as a study (blocking; run it on the pool).

    :func:`analyze_and_store_many` of one upload.

    Args:
        patient_id: An existing patient the study belongs to.
        new_patient: Patient fields; the owner's patient with this code is found or created in the
            same transaction as the study (so a failed analysis leaves no stray patient).
        patient_info: Patient fields handed to the service for the report.
        on_commit: Called inside the committing transaction (e.g. to mark a batch item done).

    Returns:
        The new study's id.

    Raises:
        brainxai.io.ImageReadError / ValueError: The scan cannot be analysed (the client's fault).
    """
    (outcome,) = analyze_and_store_many(
        service,
        storage,
        session_factory,
        uploads=[upload],
        method=method,
        owner_id=owner_id,
        patient_id=patient_id,
        new_patient=new_patient,
        patient_info=patient_info,
        slice_index=slice_index,
        client=client,
        on_commit=[on_commit],
    )
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def analyze_and_store_many(
    service: Analyzer,
    storage: Storage,
    session_factory: sessionmaker[Session],
    *,
    uploads: Sequence[CheckedUpload],
    method: str,
    owner_id: int,
    patient_id: int | None = None,
    new_patient: PatientIn | None = None,
    patient_info: dict[str, Any] | None = None,
    slice_index: int | None = None,
    client: str | None = None,
    on_commit: Sequence[Callable[[Session, Study], None] | None] | None = None,
) -> list[str | Exception]:
    """Analyses checked uploads in one batch (:meth:`AnalysisService.analyze_many`) and records each as a study.

    Each upload gets its own staging folder; its files are flushed and renamed into place before its row
    is committed (one transaction per study), so a crash at any point leaves complete studies or nothing
    of an upload (start-up recovery deletes the leftovers). A failed upload does not stop the others.

    Args:
        uploads: The uploads, analysed with the same method and patient.
        on_commit: Per upload, called inside its committing transaction (e.g. to mark a batch item done).
        (the others as for :func:`analyze_and_store`)

    Returns:
        Per upload, in order, the new study's id or the exception that stopped it.
    """
    if not uploads:
        return []
    where = _Destination(storage, session_factory, method, owner_id, patient_id, new_patient, client)
    stagings = [storage.new_staging_dir() for _ in uploads]
    try:
        # What the DICOM results are built from is saved with every analysis; they are built for the result
        # page's zip download (study_dicom_files), which most studies never get.
        scans = [
            ScanInput(u.data, filename=u.service_filename, out_dir=st, dicom_out=st / "dicom")
            for u, st in zip(uploads, stagings, strict=True)
        ]
        options = AnalysisOptions(method=method, slice_index=slice_index, dicom_deferred=True)
        outcomes = service.analyze_many(scans, options, out_dir=stagings[0], patient=patient_info)
        commits = list(on_commit) if on_commit is not None else [None] * len(uploads)
        stored: list[str | Exception] = []
        for upload, staging, outcome, then in zip(uploads, stagings, outcomes, commits, strict=True):
            if isinstance(outcome, Exception):
                stored.append(outcome)
                continue
            try:
                analysed = _Analysed(outcome, _collect_files(outcome, staging), _result_dict(outcome))
                stored.append(_publish(where, staging, upload, analysed, then))
            except Exception as exc:  # this upload's failure; the others are recorded
                stored.append(exc)
        return stored
    finally:
        for staging in stagings:
            storage.discard(staging)  # gone already after a successful publish


@dataclass(frozen=True)
class _Destination:
    """Where analyses are recorded: the study folders, the database, and whose studies they become."""

    storage: Storage
    session_factory: sessionmaker[Session]
    method: str
    owner_id: int
    patient_id: int | None
    new_patient: PatientIn | None
    client: str | None


def _publish(
    where: _Destination,
    staging: Path,
    upload: CheckedUpload,
    analysed: _Analysed,
    on_commit: Callable[[Session, Study], None] | None,
) -> str:
    """Moves an analysis out of its staging folder and commits its study row; the new study's id."""
    storage, method = where.storage, where.method
    final: Path | None = None
    try:
        study_id = uuid.uuid4().hex
        final = storage.publish(staging, study_id)
        with session_scope(where.session_factory) as db:
            owner = db.get(User, where.owner_id)
            patient_id = _study_patient(db, owner, where.patient_id, where.new_patient)
            study = _new_study(study_id, where.owner_id, patient_id, upload, analysed, storage.relative(final), method)
            db.add(study)
            db.flush()
            audit(db, owner, "study.create", "study", study_id, f"{upload.display_name} method={method}", where.client)
            if on_commit is not None:
                on_commit(db, study)
        return study_id
    except BaseException:
        storage.discard(final)
        raise


@dataclass(frozen=True)
class _Analysed:
    """An analysis in its staging folder: the result, its files (relative paths by kind) and its record."""

    result: Any
    files: dict[str, str]
    data: dict[str, Any]


def _study_patient(
    db: Session, owner: User | None, patient_id: int | None, new_patient: PatientIn | None
) -> int | None:
    """The study's patient: ``new_patient``, found or created among the owner's patients; else ``patient_id``."""
    if new_patient is None or owner is None:
        return patient_id
    return ensure_patient(db, owner, new_patient).id


def _new_study(
    study_id: str,
    owner_id: int,
    patient_id: int | None,
    upload: CheckedUpload,
    analysed: _Analysed,
    storage_dir: str,
    method: str,
) -> Study:
    """The study row for a published analysis."""
    result = analysed.result
    return Study(
        id=study_id,
        owner_id=owner_id,
        patient_id=patient_id,
        source_name=upload.display_name,
        source_kind=upload.kind,
        source_sha256=upload.sha256,
        source_bytes=upload.size,
        method=str(getattr(result, "method", method)),
        prediction=str(result.prediction),
        confidence=float(result.confidence),
        result=analysed.data,
        files=analysed.files,
        storage_dir=storage_dir,
    )


def study_dicom_files(files: dict[str, str], result: dict[str, Any], path_of: Callable[[str], str]) -> dict[str, bytes]:
    """A study's DICOM results, file name -> bytes (empty when it has none).

    Built from the saved inputs, its original and overlay images and its PDF: the files the analysis would have
    written (:func:`brainxai.pipeline.outputs.saved_dicom_files`). Studies of older versions hold the files.

    Args:
        files: The study's files (kind -> relative path).
        result: The study's stored result.
        path_of: A file kind's checked path on disk.
    """
    if DICOM_INPUTS not in files:
        return {
            key.removeprefix("dicom:"): Path(path_of(key)).read_bytes()
            for key in sorted(files)
            if key.startswith("dicom:")
        }
    original, overlay = (outputs.png_array(Path(path_of(f"image:{k}")).read_bytes()) for k in ("original", "overlay"))
    pdf = Path(path_of("report_pdf")).read_bytes() if "report_pdf" in files else None
    return outputs.saved_dicom_files(path_of(DICOM_INPUTS), result, original, overlay, pdf)


def age_on(birth_date: str | None, day: date | None = None) -> int | None:
    """Whole years from an ISO birth date to ``day`` (today by default)."""
    if not birth_date:
        return None
    born = date.fromisoformat(birth_date)
    day = day or date.today()
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def patient_for_report(code: str, name: str | None, birth_date: str | None, sex: str | None) -> dict[str, Any]:
    """Patient fields in the analysis service's terms (:class:`brainxai.pipeline.options.PatientInfo`)."""
    info = {"patient_id": code, "name": name, "age": age_on(birth_date), "sex": sex}
    return {k: v for k, v in info.items() if v not in (None, "")}


# --- describing the loaded service ------------------------------------------------------------------


def _classifier(service: Any) -> Any:
    return getattr(service, "classifier", None)


def describe_model(service: Any | None, error: str | None = None) -> dict[str, Any]:
    """Name, version and fingerprint of the loaded model (for /api/health)."""
    if service is None:
        return {"loaded": False, "error": error or "model not loaded"}
    info = getattr(service, "model_info", None)
    info = dict(info() if callable(info) else info or {})
    clf = _classifier(service)
    if clf is not None:
        ckpt = getattr(clf, "checkpoint", None)
        meta = getattr(ckpt, "meta", None)
        info.setdefault("name", getattr(clf, "name", None))
        info.setdefault("sha256", getattr(ckpt, "sha256", None))
        info.setdefault("version", getattr(meta, "created", None) or getattr(meta, "brainxai_version", None))
        info.setdefault("classes", list(getattr(clf, "classes", ())))
    return {
        "loaded": True,
        **{k: info.get(k) for k in ("name", "version", "sha256")},
        "classes": info.get("classes") or [],
    }


def describe_device(service: Any | None) -> dict[str, Any] | None:
    """Where inference runs: CPU or which GPU."""
    clf = _classifier(service)
    device = getattr(clf, "device", None)
    if device is None:
        return None
    import torch

    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({torch.get_num_threads()} threads)"
    return {"type": kind, "name": name, "cuda_available": torch.cuda.is_available()}


def available_methods(service: Any | None) -> list[str]:
    """Explanation methods this model supports (LRP needs a model built for it)."""
    try:
        from brainxai.explain import list_explainers

        methods = list(list_explainers())
    except ImportError:
        methods = list(ANALYSIS_METHODS)  # the registry cannot be asked
    clf = _classifier(service)
    config = getattr(getattr(clf, "model", None), "brainxai_config", None)
    if config is not None and not getattr(config, "supports_lrp", True):
        methods = [m for m in methods if m != "lrp"]
    return methods


def server_version() -> str:
    return __version__


def patient_info_for(
    session_factory: sessionmaker[Session], owner: User, patient: PatientIn | None
) -> dict[str, Any] | None:
    """What the report will show: the stored record, completed by the fields just sent."""
    if patient is None:
        return None
    with session_scope(session_factory) as db:
        stored = crud.find_patient(db, owner, patient.code)
        name = (stored.name if stored else None) or patient.name
        birth = (stored.birth_date if stored else None) or (
            patient.birth_date.isoformat() if patient.birth_date else None
        )
        sex = (stored.sex if stored else None) or patient.sex
    return patient_for_report(patient.code, name, birth, sex)


def load_study_out(session_factory: sessionmaker[Session], study_id: str, user: User) -> StudyOut:
    """The stored study as the API shows it (404 when the user may not see it)."""
    with session_scope(session_factory) as db:
        return study_out(crud.get_study(db, user, study_id))
