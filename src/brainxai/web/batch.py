"""Batch jobs: created from the uploaded files, then processed in the background a few items at a time
(one batched analysis, ``pipeline.steps.EXPLAIN_BATCH``), each recorded as it finishes.

Jobs survive restarts: queued and interrupted items are picked up again at start-up. An item's
study and its "done" mark are committed in one transaction, so no item is analysed twice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from brainxai.pipeline.steps import EXPLAIN_BATCH
from brainxai.web import crud
from brainxai.web.analysis import Analyzer, InferenceRunner, analyze_and_store_many, patient_for_report
from brainxai.web.db import session_scope
from brainxai.web.models import BatchItem, BatchJob, Patient, Study, User, utcnow
from brainxai.web.schemas import BatchJobOut, PatientIn
from brainxai.web.storage import Storage
from brainxai.web.uploads import CheckedUpload, UploadError, check_upload, safe_display_name
from brainxai.web.views import job_out

logger = logging.getLogger(__name__)


def patient_fields(patient: Patient | None) -> dict[str, Any] | None:
    """What the analysis service is told about a patient (printed on the report)."""
    if patient is None:
        return None
    return patient_for_report(patient.code, patient.name, patient.birth_date, patient.sex)


@dataclass(frozen=True)
class JobRequest:
    """A batch request as the router read it.

    Attributes:
        owner_id: The user asking.
        method: Explanation method for every file.
        patient: The patient all files belong to, if given.
        files: Each file's name and content, or the UploadError that refused it while reading.
        client: The client's address, for the audit log.
    """

    owner_id: int
    method: str
    patient: PatientIn | None
    files: list[tuple[str, bytes | UploadError]]
    client: str | None


def _mark_done(item_id: int, db: Session, study: Study) -> None:
    """Marks a batch item done, in the transaction that commits its study."""
    item = db.get(BatchItem, item_id)
    if item is not None:
        item.status, item.study_id, item.upload_path = "done", study.id, None


def _item_error(item_id: int, exc: Exception, *, log: bool = True) -> str:
    """What a failed item records: the file's own problem said plainly, else the kind of failure (logged)."""
    if isinstance(exc, UploadError):
        return exc.message
    if isinstance(exc, ValueError):  # ImageReadError and friends: the file's fault.
        return str(exc)
    if isinstance(exc, OSError):
        if log:
            logger.error("batch item %s: storage error", item_id, exc_info=exc)
        return f"storage error ({exc.strerror or type(exc).__name__})"
    if log:
        logger.error("batch item %s failed", item_id, exc_info=exc)
    return f"internal error while analysing this file ({type(exc).__name__})"


class BatchWorker:
    """Creates batch jobs, and consumes their ids from a queue to analyse their items.

    Args:
        service: The analysis service (None when the model failed to load: items then fail).
        runner: The shared inference pool.
        storage: Data dir layout.
        session_factory: Database sessions.
        max_upload_bytes: Per-file limit, re-checked when an item is read back.
        max_volume_bytes: Decompressed-volume limit.
    """

    def __init__(
        self,
        service: Analyzer | None,
        runner: InferenceRunner,
        storage: Storage,
        session_factory: sessionmaker[Session],
        *,
        max_upload_bytes: int,
        max_volume_bytes: int,
    ) -> None:
        self.service = service
        self.runner = runner
        self.storage = storage
        self.session_factory = session_factory
        self.max_upload_bytes = max_upload_bytes
        self.max_volume_bytes = max_volume_bytes
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Requeues unfinished jobs and starts consuming."""
        with session_scope(self.session_factory) as db:
            db.query(BatchItem).filter(BatchItem.status == "running").update({"status": "queued"})
            unfinished = db.scalars(
                select(BatchJob.id).where(BatchJob.status != "done").order_by(BatchJob.created_at)
            ).all()
        for job_id in unfinished:
            self.queue.put_nowait(job_id)
        self._task = asyncio.create_task(self._loop(), name="brainxai-batch-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def submit(self, job_id: str) -> None:
        self.queue.put_nowait(job_id)

    async def enqueue(self, request: JobRequest) -> BatchJobOut:
        """Creates a job (see :meth:`create_job`) and queues it, unless none of its files could be used."""
        out = await asyncio.to_thread(self.create_job, request)
        if out.status != "done":
            self.submit(out.id)
        return out

    def create_job(self, request: JobRequest) -> BatchJobOut:
        """Checks each file, stores the good ones under generated names and records the job (blocking).

        A bad file (or one refused while reading, given as an UploadError) becomes an item with an
        error; the others go on. On any failure the files stored so far are removed again.
        """
        job_id = uuid.uuid4().hex
        saved: list[str] = []
        try:
            items = [self._new_item(job_id, i, name, data, saved) for i, (name, data) in enumerate(request.files)]
            with session_scope(self.session_factory) as db:
                owner = db.get(User, request.owner_id)
                assert owner is not None
                job = crud.add_batch_job(
                    db, owner, job_id, items, method=request.method, patient=request.patient, client=request.client
                )
                return job_out(job)
        except BaseException:
            for path in saved:
                self.storage.remove_upload(path)
            raise

    def _new_item(
        self, job_id: str, position: int, filename: str, data: bytes | UploadError, saved: list[str]
    ) -> BatchItem:
        """A queued item with its upload stored (its path added to ``saved``), or an item with the file's error."""
        display = safe_display_name(filename)
        try:
            if isinstance(data, UploadError):
                raise data
            upload = check_upload(
                data, filename, max_bytes=self.max_upload_bytes, max_volume_bytes=self.max_volume_bytes
            )
        except UploadError as exc:
            return BatchItem(position=position, filename=display, status="error", error=exc.message)
        path = self.storage.save_upload(job_id, upload.data)
        saved.append(path)
        return BatchItem(position=position, filename=display, upload_path=path, status="queued")

    async def _loop(self) -> None:
        while True:
            job_id = await self.queue.get()
            try:
                await self.process(job_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # A bug here must not stop later jobs.
                logger.exception("batch job %s failed", job_id)

    async def process(self, job_id: str) -> None:
        """Analyses every queued item of a job, a few at a time (one batched analysis), then marks the job done."""
        plan = await asyncio.to_thread(self._start_job, job_id)
        if plan is None:
            return
        owner_id, method, patient_id, patient_info, items = plan
        for start in range(0, len(items), EXPLAIN_BATCH):
            chunk = items[start : start + EXPLAIN_BATCH]
            await self._process_items(chunk, owner_id, method, patient_id, patient_info)
        await asyncio.to_thread(self._finish_job, job_id)

    def _start_job(self, job_id: str) -> tuple[Any, ...] | None:
        with session_scope(self.session_factory) as db:
            job = db.get(BatchJob, job_id)
            if job is None or job.status == "done":
                return None
            job.status = "running"
            patient = db.get(Patient, job.patient_id) if job.patient_id else None
            items = [(i.id, i.filename, i.upload_path) for i in job.items if i.status == "queued"]
            return job.owner_id, job.method, (patient.id if patient else None), patient_fields(patient), items

    def _finish_job(self, job_id: str) -> None:
        with session_scope(self.session_factory) as db:
            job = db.get(BatchJob, job_id)
            if job is not None:
                job.status = "done"
                job.finished_at = utcnow()

    async def _process_items(
        self,
        items: list[tuple[int, str, str | None]],
        owner_id: int,
        method: str,
        patient_id: int | None,
        patient_info: dict[str, Any] | None,
    ) -> None:
        """Reads back and analyses some items of a job in one batch; records each as done or failed."""
        ready: list[tuple[int, str | None, CheckedUpload]] = []
        for item_id, filename, upload_path in items:
            await asyncio.to_thread(self._set_item, item_id, status="running")
            try:
                ready.append((item_id, upload_path, await self._read_item(filename, upload_path)))
            except Exception as exc:
                await self._end_item(item_id, upload_path, exc)
        if not ready:
            return
        shared_failure = False
        try:
            outcomes: list[str | Exception] = await self.runner.run(
                analyze_and_store_many,
                self.service,
                self.storage,
                self.session_factory,
                uploads=[upload for _, _, upload in ready],
                method=method,
                owner_id=owner_id,
                patient_id=patient_id,
                patient_info=patient_info,
                client="batch",
                on_commit=[functools.partial(_mark_done, item_id) for item_id, _, _ in ready],
                wait=True,
            )
        except Exception as exc:  # the batch's shared pass failed: every item of it did (logged once, here)
            logger.error("batch items %s: their shared analysis failed", [i for i, _, _ in ready], exc_info=exc)
            outcomes = [exc] * len(ready)
            shared_failure = True
        for (item_id, upload_path, _), outcome in zip(ready, outcomes, strict=True):
            error = outcome if isinstance(outcome, Exception) else None
            await self._end_item(item_id, upload_path, error, log=not shared_failure)

    async def _read_item(self, filename: str, upload_path: str | None) -> CheckedUpload:
        """An item's stored upload, checked again as when it arrived."""
        if self.service is None:
            raise RuntimeError("the model is not loaded")
        if upload_path is None:
            raise UploadError("the upload was lost")
        data = await asyncio.to_thread(self.storage.resolve(upload_path).read_bytes)
        return await asyncio.to_thread(
            check_upload, data, filename, max_bytes=self.max_upload_bytes, max_volume_bytes=self.max_volume_bytes
        )

    async def _end_item(
        self, item_id: int, upload_path: str | None, error: Exception | None, *, log: bool = True
    ) -> None:
        """Records a failed item's error (a done item was marked in its study's transaction); drops the upload.

        Args:
            log: Log an unexpected error's traceback (False when it was logged once for the whole batch).
        """
        if error is not None:
            message = _item_error(item_id, error, log=log)
            await asyncio.to_thread(self._set_item, item_id, status="error", error=message, upload_path=None)
        await asyncio.to_thread(self.storage.remove_upload, upload_path)

    def _set_item(self, item_id: int, **values: Any) -> None:
        with session_scope(self.session_factory) as db:
            item = db.get(BatchItem, item_id)
            if item is not None:
                for key, value in values.items():
                    setattr(item, key, value)
