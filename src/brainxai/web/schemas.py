"""Request and response bodies of the HTTP API (kept apart from the storage models)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from brainxai.constants import DISCLAIMER


class ErrorOut(BaseModel):
    """Every error answer: a short machine code and a message for people."""

    error: str = Field(examples=["not_found"])
    message: str = Field(examples=["study 0123 not found"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    is_admin: bool


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    user: UserOut


class ModelInfo(BaseModel):
    loaded: bool
    name: str | None = None
    version: str | None = None
    sha256: str | None = None
    classes: list[str] = []
    error: str | None = None


class DeviceInfo(BaseModel):
    type: str
    name: str
    cuda_available: bool


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    model: ModelInfo
    device: DeviceInfo | None
    methods: list[str]
    database: str
    queue: dict[str, int]
    limits: dict[str, float]
    needs_setup: bool = False  # no account exists yet: nobody can log in
    setup_command: str | None = None  # with needs_setup: the command that creates the first account
    disclaimer: str = DISCLAIMER


class PatientIn(BaseModel):
    """Patient fields sent with an analysis; ``code`` is the user's identifier for the patient."""

    code: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    name: str | None = Field(default=None, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
    birth_date: date | None = None
    sex: Literal["F", "M", "O", "U"] | None = None

    @field_validator("code", "name", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("birth_date")
    @classmethod
    def _not_future(cls, value: date | None) -> date | None:
        if value is not None and (value > date.today() or value.year < 1880):
            raise ValueError("birth date must be a past date")
        return value


class PatientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str | None
    birth_date: str | None
    sex: str | None
    created_at: datetime
    owner: str
    study_count: int = 0
    last_study_at: datetime | None = None


class SpatialParameter(BaseModel):
    """One derived figure; ``status`` says whether it is measured, estimated or not assessable."""

    name: str
    value: Any
    unit: str | None = None
    method: str | None = None
    key: str | None = None
    status: str | None = None
    text: str | None = Field(default=None, description="The value in words, with its unit")


class StudyLinks(BaseModel):
    self: str
    images: dict[str, str]
    report_pdf: str | None
    #: The DICOM results (SR, relevance map, overlay, encapsulated PDF) as one zip, when they were written.
    dicom_zip: str | None = None


class StudySummary(BaseModel):
    id: str
    created_at: datetime
    source_name: str
    method: str
    prediction: str
    prediction_title: str
    confidence: float
    patient_id: int | None
    patient_code: str | None
    links: StudyLinks


class StudyOut(StudySummary):
    source_kind: str
    source_sha256: str
    source_bytes: int
    owner: str
    probabilities: dict[str, float]
    spatial_parameters: list[SpatialParameter]
    scan: dict[str, Any]
    model: dict[str, Any]
    patient: PatientOut | None
    result: dict[str, Any] = Field(description="The analysis result as the library reports it (paths removed)")
    disclaimer: str = DISCLAIMER


class BatchItemOut(BaseModel):
    position: int
    filename: str
    status: Literal["queued", "running", "done", "error"]
    error: str | None
    study: StudySummary | None


class BatchJobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done"]
    method: str
    created_at: datetime
    finished_at: datetime | None
    patient_id: int | None
    total: int
    done: int
    failed: int
    pending: int
    progress: float = Field(ge=0, le=1, description="Finished items (done or failed) / total")
    items: list[BatchItemOut]
    links: dict[str, str]


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    username: str | None
    action: str
    object_type: str | None
    object_id: str | None
    detail: str | None
    client: str | None
