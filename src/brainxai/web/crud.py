"""Business rules over the database: accounts, sessions, who may see which patient, the audit log."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Row, delete, func, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from brainxai.web import security
from brainxai.web.models import (
    AuditEvent,
    AuthSession,
    BatchItem,
    BatchJob,
    Patient,
    Study,
    User,
    utcnow,
)
from brainxai.web.schemas import PatientIn

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")


class NotFound(LookupError):
    """The object does not exist, or the user may not see it (the two are not told apart)."""


# --- audit -----------------------------------------------------------------------------------------


def audit(
    db: Session,
    user: User | None,
    action: str,
    object_type: str | None = None,
    object_id: str | int | None = None,
    detail: str | None = None,
    client: str | None = None,
) -> None:
    """Adds an audit event to the session's transaction (committed with the action it records)."""
    db.add(
        AuditEvent(
            user_id=user.id if user else None,
            username=user.username if user else None,
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            detail=detail[:2000] if detail else None,
            client=client[:64] if client else None,
        )
    )


# --- users and sessions ----------------------------------------------------------------------------


def create_user(db: Session, username: str, password: str, *, is_admin: bool = False) -> User:
    """Creates an account.

    Raises:
        ValueError: Bad user name, short password, or the name is taken.
    """
    if not USERNAME_PATTERN.match(username):
        raise ValueError("user names have 2-64 characters: letters, digits and . _ @ -, starting alphanumeric")
    if db.scalar(select(User.id).where(User.username == username)) is not None:
        raise ValueError(f"user {username!r} already exists")
    user = User(username=username, password_hash=security.hash_password(password), is_admin=is_admin)
    db.add(user)
    db.flush()
    audit(db, None, "user.create", "user", user.id, f"username={username} admin={is_admin}", "cli")
    return user


def set_password(db: Session, user: User, password: str) -> None:
    user.password_hash = security.hash_password(password)
    audit(db, None, "user.password", "user", user.id, None, "cli")


def reset_password(db: Session, username: str, password: str) -> None:
    """Replaces a user's password and ends all their sessions.

    Raises:
        ValueError: No user has this name.
    """
    user = db.scalar(select(User).where(User.username == username))
    if user is None:
        raise ValueError(f"no user {username!r}")
    set_password(db, user, password)
    db.execute(delete(AuthSession).where(AuthSession.user_id == user.id))


def has_users(db: Session) -> bool:
    """Whether any account exists (enabled or not): without one, nobody can log in."""
    return db.scalar(select(User.id).limit(1)) is not None


def authenticate(db: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, or None (same cost whether or not the user exists)."""
    user = db.scalar(select(User).where(User.username == username))
    ok = security.verify_password(user.password_hash if user else None, password)
    if not ok or user is None or not user.is_active:
        return None
    if security.needs_rehash(user.password_hash):
        user.password_hash = security.hash_password(password)
    return user


def create_session(db: Session, user: User, kind: str, hours: float) -> tuple[str, datetime]:
    """Starts a session; returns the secret token (shown once) and its expiry."""
    token = security.new_token()
    expires = utcnow() + timedelta(hours=hours)
    db.add(AuthSession(token_hash=security.token_digest(token), user_id=user.id, kind=kind, expires_at=expires))
    return token, expires


def user_for_token(db: Session, token: str) -> User | None:
    """The active user owning an unexpired session token, or None."""
    row = db.scalar(select(AuthSession).where(AuthSession.token_hash == security.token_digest(token)))
    if row is None or row.expires_at <= utcnow() or not row.user.is_active:
        return None
    return row.user


def end_session(db: Session, token: str) -> None:
    db.execute(delete(AuthSession).where(AuthSession.token_hash == security.token_digest(token)))


def purge_expired_sessions(db: Session) -> int:
    # A DELETE's result is a CursorResult; Session.execute is typed with the plain Result.
    result = cast("CursorResult[Any]", db.execute(delete(AuthSession).where(AuthSession.expires_at <= utcnow())))
    return result.rowcount or 0


# --- patients and studies --------------------------------------------------------------------------


def _visible(user: User, owner_column: InstrumentedAttribute[int]) -> ColumnElement[bool]:
    return true() if user.is_admin else owner_column == user.id


def list_patients(
    db: Session, user: User, *, limit: int = 100, offset: int = 0, query: str | None = None
) -> Sequence[Row[Patient, int, datetime | None]]:
    """Patients the user may see with their study count and latest study time, newest activity first."""
    counts = (
        select(Study.patient_id, func.count(Study.id).label("n"), func.max(Study.created_at).label("last"))
        .group_by(Study.patient_id)
        .subquery()
    )
    stmt = (
        select(Patient, func.coalesce(counts.c.n, 0), counts.c.last)
        .outerjoin(counts, counts.c.patient_id == Patient.id)
        .where(_visible(user, Patient.owner_id))
    )
    if query:
        like = f"%{query.lower()}%"
        stmt = stmt.where(func.lower(Patient.code).like(like) | func.lower(func.coalesce(Patient.name, "")).like(like))
    stmt = stmt.order_by(func.coalesce(counts.c.last, Patient.created_at).desc(), Patient.id.desc())
    return db.execute(stmt.limit(limit).offset(offset)).all()


def get_patient(db: Session, user: User, patient_id: int) -> Patient:
    patient = db.get(Patient, patient_id)
    if patient is None or not (user.is_admin or patient.owner_id == user.id):
        raise NotFound(f"patient {patient_id} not found")
    return patient


def find_patient(db: Session, owner: User, code: str) -> Patient | None:
    """The owner's patient with this code, or None."""
    return db.scalar(select(Patient).where(Patient.owner_id == owner.id, Patient.code == code))


def ensure_patient(db: Session, owner: User, fields: PatientIn) -> Patient:
    """:func:`find_or_create_patient` with the fields of a patient form."""
    birth_date = fields.birth_date.isoformat() if fields.birth_date else None
    return find_or_create_patient(db, owner, fields.code, name=fields.name, birth_date=birth_date, sex=fields.sex)


def find_or_create_patient(
    db: Session,
    owner: User,
    code: str,
    *,
    name: str | None = None,
    birth_date: str | None = None,
    sex: str | None = None,
) -> Patient:
    """The owner's patient with this code; created if new, blank fields filled in if known now."""
    patient = find_patient(db, owner, code)
    if patient is None:
        try:
            # Savepoint: a concurrent request may create the same patient; then we use theirs.
            with db.begin_nested():
                patient = Patient(owner_id=owner.id, code=code, name=name, birth_date=birth_date, sex=sex)
                db.add(patient)
            audit(db, owner, "patient.create", "patient", patient.id)
            return patient
        except IntegrityError:
            patient = find_patient(db, owner, code)
            if patient is None:
                raise
    for field, value in (("name", name), ("birth_date", birth_date), ("sex", sex)):
        if value and not getattr(patient, field):
            setattr(patient, field, value)
    return patient


def list_studies(
    db: Session, user: User, *, patient_id: int | None = None, limit: int = 100, offset: int = 0
) -> list[Study]:
    stmt = select(Study).where(_visible(user, Study.owner_id))
    if patient_id is not None:
        stmt = stmt.where(Study.patient_id == patient_id)
    stmt = stmt.order_by(Study.created_at.desc(), Study.id).limit(limit).offset(offset)
    return list(db.scalars(stmt).unique())


def patient_activity(db: Session, patient_id: int) -> tuple[int, datetime | None]:
    """How many studies a patient has and when the latest was made."""
    row = db.execute(
        select(func.count(Study.id), func.max(Study.created_at)).where(Study.patient_id == patient_id)
    ).one()
    last = row[1]
    if isinstance(last, datetime) and last.tzinfo is None:  # aggregates bypass the column type on SQLite
        last = last.replace(tzinfo=UTC)
    elif isinstance(last, str):
        last = datetime.fromisoformat(last).replace(tzinfo=UTC)
    return int(row[0]), last


def get_study(db: Session, user: User, study_id: str) -> Study:
    study = db.get(Study, study_id) if len(study_id) == 32 else None
    if study is None or not (user.is_admin or study.owner_id == user.id):
        raise NotFound(f"study {study_id} not found")
    return study


def get_job(db: Session, user: User, job_id: str) -> BatchJob:
    job = db.get(BatchJob, job_id) if len(job_id) == 32 else None
    if job is None or not (user.is_admin or job.owner_id == user.id):
        raise NotFound(f"batch job {job_id} not found")
    return job


def add_batch_job(
    db: Session,
    owner: User,
    job_id: str,
    items: list[BatchItem],
    *,
    method: str,
    patient: PatientIn | None,
    client: str | None,
) -> BatchJob:
    """Records a batch job with its items (and its patient, found or created); done at once when none is queued."""
    patient_id = ensure_patient(db, owner, patient).id if patient is not None else None
    job = BatchJob(id=job_id, owner_id=owner.id, patient_id=patient_id, method=method, items=items)
    if not any(i.status == "queued" for i in items):
        job.status = "done"
        job.finished_at = utcnow()
    db.add(job)
    db.flush()
    audit(db, owner, "batch.create", "batch", job_id, f"{len(items)} files method={method}", client)
    return job


def list_jobs(db: Session, user: User, *, limit: int = 20) -> list[BatchJob]:
    stmt = select(BatchJob).where(_visible(user, BatchJob.owner_id)).order_by(BatchJob.created_at.desc())
    return list(db.scalars(stmt.limit(limit)))


def list_audit(db: Session, *, limit: int = 200, offset: int = 0, user_id: int | None = None) -> list[AuditEvent]:
    stmt = select(AuditEvent)
    if user_id is not None:
        stmt = stmt.where(AuditEvent.user_id == user_id)
    return list(db.scalars(stmt.order_by(AuditEvent.id.desc()).limit(limit).offset(offset)))
