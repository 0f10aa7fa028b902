"""A thin DICOMweb client (``dicomweb-client``) for one PACS, whose failures all become a :class:`PacsError`.

QIDO-RS to find studies and series, WADO-RS to retrieve them, STOW-RS to store a result set in ONE
request (so a PACS that refuses it holds none of it), and Orthanc's own REST API for ``/changes``
(what :mod:`brainxai.pacs.watch` polls). A refused connection, a 401, a 404 or a 500 each gets a
message that says what to check, and the HTTP status when there was one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from brainxai.pacs.credentials import PASSWORD_ENV, USER_ENV, Credentials

logger = logging.getLogger(__name__)

#: The path Orthanc's DicomWeb plugin serves DICOMweb under; the REST API (``/changes``) is the part before it.
ORTHANC_DICOMWEB_ROOT = "/dicom-web"


class PacsError(RuntimeError):
    """The PACS could not be reached or refused a request; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StudyInfo:
    """One study as QIDO-RS describes it."""

    study_uid: str
    date: str
    description: str
    patient_id: str
    modalities: tuple[str, ...]


@dataclass(frozen=True)
class SeriesInfo:
    """One series as QIDO-RS (or Orthanc's REST API) describes it."""

    study_uid: str
    series_uid: str
    modality: str
    description: str
    manufacturer: str
    number: int | None = None
    instances: int | None = None


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def _values(value: Any) -> tuple[str, ...]:
    """A possibly multi-valued element as strings (pydicom gives one value as itself, several as a list)."""
    if value is None or value == "":
        return ()
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class PacsClient:
    """DICOMweb (and Orthanc REST) access to one PACS.

    Args:
        url: The DICOMweb root, e.g. ``http://pacs:8042/dicom-web``.
        credentials: HTTP Basic credentials, or None for a PACS without login.
        timeout: Seconds to wait for an answer (connecting: at most 5 s).
        rest_url: Orthanc's REST root for ``/changes`` (default: ``url`` without its ``/dicom-web`` end).
    """

    def __init__(
        self, url: str, credentials: Credentials | None = None, *, timeout: float = 60.0, rest_url: str | None = None
    ) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient
        from dicomweb_client.session_utils import create_session_from_user_pass

        self.url = url.rstrip("/")
        self.rest_url = (rest_url or self.url.removesuffix(ORTHANC_DICOMWEB_ROOT)).rstrip("/")
        self.credentials = credentials
        if credentials is not None:
            self._session = create_session_from_user_pass(credentials.user, credentials.password)
        else:
            self._session = requests.Session()
        self._timeout = (5.0, timeout)
        with self._errors("connect to"):
            self._dw = DICOMwebClient(url=self.url, session=self._session, timeout=self._timeout)
        # dicomweb-client retries 503/504 five times with exponential waits (up to ~30 s): once is enough
        # to tell a user the PACS is unavailable, and the watcher polls again anyway.
        self._dw.set_http_retry_params(retry=False)

    # -- QIDO-RS ----------------------------------------------------------------------------------

    def check(self) -> None:
        """One small QIDO-RS query, so a wrong URL or login fails before anything slow starts."""
        with self._errors("query"):
            self._dw.search_for_studies(limit=1)

    def search_studies(
        self, *, date_from: str | None = None, date_to: str | None = None, limit: int | None = None
    ) -> list[StudyInfo]:
        """Studies whose StudyDate lies in ``[date_from, date_to]`` (``YYYYMMDD``; either may be open)."""
        filters = {"StudyDate": f"{date_from or ''}-{date_to or ''}"} if date_from or date_to else None
        with self._errors("search studies in"):
            found = self._dw.search_for_studies(
                search_filters=filters,
                limit=limit,
                fields=["StudyDescription", "ModalitiesInStudy", "PatientID", "StudyDate"],
                get_remaining=limit is None,
            )
        studies = [Dataset.from_json(item) for item in found]
        return [
            StudyInfo(
                study_uid=_text(ds, "StudyInstanceUID"),
                date=_text(ds, "StudyDate"),
                description=_text(ds, "StudyDescription"),
                patient_id=_text(ds, "PatientID"),
                modalities=_values(ds.get("ModalitiesInStudy")),
            )
            for ds in studies
        ]

    def search_series(self, study_uid: str, *, modality: str | None = None) -> list[SeriesInfo]:
        """The series of a study (optionally of one modality)."""
        filters = {"Modality": modality} if modality else None
        with self._errors(f"search the series of study {study_uid} in"):
            found = self._dw.search_for_series(
                study_instance_uid=study_uid,
                search_filters=filters,
                fields=["Manufacturer", "SeriesDescription", "NumberOfSeriesRelatedInstances"],
                get_remaining=True,
            )
        out = []
        for item in found:
            ds = Dataset.from_json(item)
            out.append(
                SeriesInfo(
                    study_uid=study_uid,
                    series_uid=_text(ds, "SeriesInstanceUID"),
                    modality=_text(ds, "Modality"),
                    description=_text(ds, "SeriesDescription"),
                    manufacturer=_text(ds, "Manufacturer"),
                    number=_int(ds.get("SeriesNumber")),
                    instances=_int(ds.get("NumberOfSeriesRelatedInstances")),
                )
            )
        return out

    # -- WADO-RS and STOW-RS ----------------------------------------------------------------------

    def retrieve_study(self, study_uid: str) -> list[Dataset]:
        """Every instance of a study."""
        with self._errors(f"retrieve study {study_uid} from"):
            return list(self._dw.retrieve_study(study_uid))

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[Dataset]:
        """Every instance of one series."""
        with self._errors(f"retrieve series {series_uid} from"):
            return list(self._dw.retrieve_series(study_uid, series_uid))

    def store(self, datasets: Sequence[Dataset], study_uid: str) -> list[str]:
        """Stores ``datasets`` in ``study_uid`` with ONE STOW-RS request; returns the stored SOP Instance UIDs.

        Raises:
            PacsError: The request failed, or the PACS reports instances it did not store.
        """
        if not datasets:
            return []
        with self._errors(f"store {len(datasets)} result object(s) in study {study_uid} on"):
            answer = self._dw.store_instances(list(datasets), study_instance_uid=study_uid)
        failed = [
            f"{item.get('ReferencedSOPInstanceUID', '?')} (reason {item.get('FailureReason', '?')})"
            for item in answer.get("FailedSOPSequence", None) or []
        ]
        if failed:
            raise PacsError(f"the PACS at {self.url} refused {len(failed)} of {len(datasets)} object(s): {failed}")
        return [str(item.ReferencedSOPInstanceUID) for item in answer.get("ReferencedSOPSequence", None) or []]

    # -- Orthanc REST -----------------------------------------------------------------------------

    def changes(self, since: int, limit: int = 100) -> dict[str, Any]:
        """Orthanc's change log after sequence number ``since``: ``{"Changes": [...], "Done": bool, "Last": int}``."""
        return self._rest_get("/changes", {"since": since, "limit": limit})

    def orthanc_series(self, orthanc_id: str) -> SeriesInfo:
        """A series named by its Orthanc identifier (as ``/changes`` gives it), with its study's UID."""
        series = self._rest_get(f"/series/{orthanc_id}")
        study = self._rest_get(f"/studies/{series['ParentStudy']}")
        tags = series.get("MainDicomTags") or {}
        return SeriesInfo(
            study_uid=str((study.get("MainDicomTags") or {}).get("StudyInstanceUID", "")),
            series_uid=str(tags.get("SeriesInstanceUID", "")),
            modality=str(tags.get("Modality", "")),
            description=str(tags.get("SeriesDescription", "")),
            manufacturer=str(tags.get("Manufacturer", "")),
            number=_int(tags.get("SeriesNumber")),
            instances=len(series.get("Instances") or []),
        )

    def _rest_get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        url = self.rest_url + path
        with self._errors(f"read {path} from", url=url):
            response = self._session.get(url, params=params, timeout=self._timeout)
            response.raise_for_status()
            data = response.json()
        if not isinstance(data, dict):
            raise PacsError(f"{url} did not answer with a JSON object; is {self.rest_url} an Orthanc server?")
        return data

    # -- errors -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, action: str, *, url: str | None = None) -> Iterator[None]:
        """Turns what requests and dicomweb-client raise into one :class:`PacsError` with a clear message."""
        import requests

        where = url or self.url
        try:
            yield
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            raise PacsError(f"could not {action} the PACS at {where}: {self._explain(status)}", status) from exc
        except requests.ConnectionError as exc:
            raise PacsError(
                f"could not {action} the PACS at {where}: no connection (refused or unreachable; is the PACS "
                "running and is the URL right?)"
            ) from exc
        except requests.Timeout as exc:
            raise PacsError(f"could not {action} the PACS at {where}: no answer within {self._timeout[1]:g} s") from exc
        except requests.RequestException as exc:  # an invalid URL, too many redirects...
            raise PacsError(f"could not {action} the PACS at {where}: {exc}") from exc
        except ValueError as exc:  # an answer dicomweb-client could not parse
            raise PacsError(f"could not {action} the PACS at {where}: unexpected answer ({exc})") from exc

    def _explain(self, status: int | None) -> str:
        if status == 401:
            who = f"user {self.credentials.user!r}" if self.credentials else "no credentials"
            return f"HTTP 401, login refused ({who}); set {USER_ENV} and {PASSWORD_ENV} or pass --credentials FILE"
        if status == 403:
            return "HTTP 403, this user may not do that"
        if status == 404:
            return "HTTP 404, not found (a wrong UID, or a URL that is not the DICOMweb root)"
        if status is not None and status >= 500:
            return f"HTTP {status}, the PACS failed internally (see its log)"
        return f"HTTP {status}"
