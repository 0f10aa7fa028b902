"""Background processing of batch jobs: one item at a time, each recorded as it finishes.

Jobs survive restarts: queued and interrupted items are picked up again at start-up. An item's
study and its "done" mark are committed in one transaction, so no item is analysed twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from brainxai.web.analysis import InferenceRunner, analyze_and_store, patient_for_report
from brainxai.web.db import session_scope
from brainxai.web.models import BatchItem, BatchJob, Patient, Study, utcnow
from brainxai.web.storage import Storage
from brainxai.web.uploads import UploadError, check_upload

logger = logging.getLogger(__name__)


def patient_fields(patient: Patient | None) -> dict[str, Any] | None:
    """What the analysis service is told about a patient (printed on the report)."""
    if patient is None:
        return None
    return patient_for_report(patient.code, patient.name, patient.birth_date, patient.sex)


class BatchWorker:
    """Consumes batch job ids from a queue and analyses their items.

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
        service: Any,
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
        """Analyses every queued item of a job, then marks the job done."""
        plan = await asyncio.to_thread(self._start_job, job_id)
        if plan is None:
            return
        owner_id, method, patient_id, patient_info, items = plan
        for item_id, filename, upload_path in items:
            await self._process_item(item_id, filename, upload_path, owner_id, method, patient_id, patient_info)
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

    async def _process_item(
        self,
        item_id: int,
        filename: str,
        upload_path: str | None,
        owner_id: int,
        method: str,
        patient_id: int | None,
        patient_info: dict[str, Any] | None,
    ) -> None:
        await asyncio.to_thread(self._set_item, item_id, status="running")
        error: str | None = None
        try:
            if self.service is None:
                raise RuntimeError("the model is not loaded")
            if upload_path is None:
                raise UploadError("the upload was lost")
            data = await asyncio.to_thread(self.storage.resolve(upload_path).read_bytes)
            upload = await asyncio.to_thread(
                check_upload,
                data,
                filename,
                max_bytes=self.max_upload_bytes,
                max_volume_bytes=self.max_volume_bytes,
            )

            def mark_done(db: Session, study: Study) -> None:
                item = db.get(BatchItem, item_id)
                if item is not None:
                    item.status, item.study_id, item.upload_path = "done", study.id, None

            await self.runner.run(
                analyze_and_store,
                self.service,
                self.storage,
                self.session_factory,
                upload=upload,
                method=method,
                owner_id=owner_id,
                patient_id=patient_id,
                patient_info=patient_info,
                client="batch",
                on_commit=mark_done,
                wait=True,
            )
        except UploadError as exc:
            error = exc.message
        except ValueError as exc:  # ImageReadError and friends: the file's fault, said plainly.
            error = str(exc)
        except OSError as exc:
            logger.exception("batch item %s: storage error", item_id)
            error = f"storage error ({exc.strerror or type(exc).__name__})"
        except Exception as exc:
            logger.exception("batch item %s failed", item_id)
            error = f"internal error while analysing this file ({type(exc).__name__})"
        if error is not None:
            await asyncio.to_thread(self._set_item, item_id, status="error", error=error, upload_path=None)
        await asyncio.to_thread(self.storage.remove_upload, upload_path)

    def _set_item(self, item_id: int, **values: Any) -> None:
        with session_scope(self.session_factory) as db:
            item = db.get(BatchItem, item_id)
            if item is not None:
                for key, value in values.items():
                    setattr(item, key, value)
