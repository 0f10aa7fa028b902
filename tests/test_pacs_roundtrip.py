"""The PACS round trip against a real Orthanc: ``brainxai pacs analyze`` and ``brainxai pacs watch``.

Synthetic axial MR series (from the shipped sample scans, known spacing and positions) are uploaded
to the test Orthanc; the commands retrieve them over DICOMweb, analyse them with the shipped model,
and store the results back; the tests read what came back from Orthanc. Skips when Orthanc is absent.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from orthanc import (  # noqa: F401  (orthanc_server: a fixture)
    Orthanc,
    SyntheticSeries,
    fake_analyze_study,
    free_port,
    make_series,
    orthanc_server,
)
from pydicom.dataset import Dataset
from typer.testing import CliRunner

from brainxai.cli import app
from brainxai.constants import CLASSES
from brainxai.pacs.watch import WatchState

runner = CliRunner()
METHOD = "gradcam"  # the fastest explanation: the tests are about the round trip, not the heatmap


# -- the study analyser: H3's analyze_study when it is complete, else a stand-in following its contract ---------


@dataclass
class _StandInResult:
    prediction: str
    study_uid: str
    series_uid: str
    dicom_files: list[Path] = field(default_factory=list)


def _stand_in_analyze_study(source: Path, options: Any, *, out_dir: Path, service: Any = None) -> list[Any]:
    """The series contract's ``analyze_study`` reduced to its middle slice per series (single-image pipeline)."""
    groups: dict[str, list[tuple[float, Path, Dataset]]] = {}
    for path in sorted(Path(source).rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        groups.setdefault(str(ds.SeriesInstanceUID), []).append((float(ds.ImagePositionPatient[2]), path, ds))
    results = []
    for series_uid, items in groups.items():
        items.sort(key=lambda t: t[0])
        _, path, ds = items[len(items) // 2]
        dicom_dir = Path(options.dicom_out) / series_uid
        one = replace(options, dicom_out=dicom_dir)
        r = service.analyze(path, one, out_dir=Path(out_dir) / series_uid)
        files = sorted(dicom_dir.glob("*.dcm"))
        results.append(_StandInResult(r.prediction, str(ds.StudyInstanceUID), series_uid, files))
    return results


def _real_analyzer_usable() -> bool:
    try:
        import brainxai.pipeline.series
        import brainxai.reporting.dicom.series  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def service() -> Any:
    from brainxai.pipeline.service import AnalysisService

    return AnalysisService(None, device="cpu")


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch, service: Any, orthanc_server: Orthanc) -> Any:  # noqa: F811
    """Runs ``brainxai pacs ...`` with the test Orthanc's login in the environment and one loaded model."""
    monkeypatch.setenv("BRAINXAI_PACS_USER", orthanc_server.user)
    monkeypatch.setenv("BRAINXAI_PACS_PASSWORD", orthanc_server.password)
    monkeypatch.setattr("brainxai.cli.pacs._service", lambda checkpoint, device: service)
    if not _real_analyzer_usable():
        monkeypatch.setattr("brainxai.pacs.service._default_analyzer", lambda: _stand_in_analyze_study)

    def run(*args: str) -> Any:
        return runner.invoke(app, ["pacs", *args, "--method", METHOD])

    return run


# -- reading back what Orthanc holds -----------------------------------------------------------------


def _uploaded(orthanc: Orthanc, **kwargs: Any) -> SyntheticSeries:
    series = make_series(**kwargs)
    orthanc.upload(list(series.files))
    return series


def _without_positions(data: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.ImagePositionPatient
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _objects(orthanc: Orthanc, study_uid: str) -> list[Dataset]:
    """Every instance of the study, downloaded whole."""
    out = []
    for inst in orthanc.instances_of(study_uid):
        r = requests.get(
            f"{orthanc.rest_url}/instances/{inst['ID']}/file", auth=(orthanc.user, orthanc.password), timeout=10
        )
        r.raise_for_status()
        out.append(pydicom.dcmread(io.BytesIO(r.content)))
    return out


def _walk(items: Sequence[Dataset]) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", None) or [])


def _concept(item: Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeValue) if "ConceptNameCodeSequence" in item else ""


def _check_sr(sr: Dataset, series: SyntheticSeries) -> str:
    """Asserts the SR's identity, references and measurements; returns its finding (class name)."""
    assert sr.VerificationFlag == "UNVERIFIED"
    assert sr.StudyInstanceUID == series.study_uid and sr.SeriesInstanceUID != series.series_uid
    assert "brainxai" in {str(e.Manufacturer) for e in sr.ContributingEquipmentSequence}
    (evidence,) = sr.CurrentRequestedProcedureEvidenceSequence
    assert evidence.StudyInstanceUID == series.study_uid
    (ref_series,) = evidence.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == series.series_uid
    referenced = {str(i.ReferencedSOPInstanceUID) for i in ref_series.ReferencedSOPSequence}
    assert referenced and referenced <= set(series.sop_uids)
    items = list(_walk(sr.ContentSequence))
    (finding,) = [i for i in items if _concept(i) == "121071"]  # DCM "Finding"
    numbers = {_concept(i): i.MeasuredValueSequence[0] for i in items if i.ValueType == "NUM"}
    probabilities = {c: float(numbers[f"p-{c}"].NumericValue) for c in CLASSES}
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    predicted = str(finding.ConceptCodeSequence[0].CodeValue)
    assert predicted in ("not-assessable", max(probabilities, key=probabilities.__getitem__))
    unit = {c: str(v.MeasurementUnitsCodeSequence[0].CodeValue) for c, v in numbers.items()}
    # The series has a known PixelSpacing (0.9 mm), so the region's size is in millimetres, not pixels.
    if predicted not in ("notumor", "not-assessable"):
        assert unit["42798000"] == "mm2" and float(numbers["42798000"].NumericValue) > 0  # SCT "Area"
        assert unit["103339001"] == "mm"  # SCT "Long axis"
    return predicted


# -- the tests ---------------------------------------------------------------------------------------


def test_analyze_stores_one_result_set_and_never_twice(cli: Any, orthanc_server: Orthanc) -> None:  # noqa: F811
    from datetime import date

    series = _uploaded(orthanc_server, sample="glioma", slices=2, study_date=date(2031, 1, 2))
    # A second series in the study that cannot be stacked: its slices have no ImagePositionPatient.
    broken = make_series("glioma", slices=2, study_uid=series.study_uid, study_date=date(2031, 1, 2))
    orthanc_server.upload([_without_positions(f) for f in broken.files])
    assert len(_objects(orthanc_server, series.study_uid)) == 4
    result = cli("analyze", "--url", orthanc_server.dicomweb_url, "--study", series.study_uid)
    assert result.exit_code == 1, result.output  # one series failed...
    assert f"series {broken.series_uid}: FAILED" in result.output
    assert "1 series could not be analysed (see above); the others' results were stored" in result.output
    after = _objects(orthanc_server, series.study_uid)  # ...and the good one's results were stored
    new = [ds for ds in after if ds.SeriesInstanceUID not in (series.series_uid, broken.series_uid)]
    assert f"study {series.study_uid}: {len(new)} result object(s) stored" in result.output
    kinds = sorted(str(ds.Modality) for ds in new)
    assert "SR" in kinds and "DOC" in kinds and len(new) >= 3, kinds  # SR, Encapsulated PDF, overlay/map
    (sr,) = [ds for ds in new if ds.Modality == "SR"]
    finding = _check_sr(sr, series)
    assert f"series {series.series_uid}: " in result.output
    assert finding in result.output or finding == "not-assessable"
    for ds in new:  # every object joined the source study and names brainxai
        assert ds.StudyInstanceUID == series.study_uid and ds.Manufacturer == "brainxai"
        assert ds.PatientID == "BXA-TEST-1"

    # Again, now by date (QIDO StudyDate range): the study is found, its series already has our SR.
    again = cli("analyze", "--url", orthanc_server.dicomweb_url, "--since", "2031-01-01", "--until", "2031-01-31")
    assert again.exit_code == 1, again.output  # the broken series is tried again, and fails again
    assert "1 study with StudyDate from 2031-01-01" in again.output
    assert "already analysed by brainxai" in again.output and "0 result object(s) stored" in again.output
    assert len(_objects(orthanc_server, series.study_uid)) == len(after)


def _last_change(orthanc: Orthanc) -> int:
    return int(orthanc.get("/changes", since=0, limit=100000)["Last"])  # type: ignore[index]


def test_watch_once_analyses_a_new_series_exactly_once(
    cli: Any,
    orthanc_server: Orthanc,  # noqa: F811
    tmp_path: Path,
) -> None:
    state = tmp_path / "watch.json"
    orthanc_server.wait_all_stable()  # series of earlier tests would otherwise turn stable after ``start``
    start = _last_change(orthanc_server)
    WatchState(start).save(state)  # only what arrives from now on
    series = _uploaded(orthanc_server, sample="meningioma", slices=2)
    orthanc_server.wait_stable(series.series_uid)
    args = ("watch", "--url", orthanc_server.dicomweb_url, "--state", str(state), "--once")

    first = cli(*args)
    assert first.exit_code == 0, first.output
    objects = _objects(orthanc_server, series.study_uid)
    (sr,) = [ds for ds in objects if ds.Modality == "SR"]
    _check_sr(sr, series)
    assert WatchState.load(state).last_change > start

    # Our own results arrive as new series: once stable, the next poll must not analyse them.
    for ds in objects:
        if ds.SeriesInstanceUID != series.series_uid:
            orthanc_server.wait_stable(str(ds.SeriesInstanceUID))
    second = cli(*args)
    assert second.exit_code == 0, second.output
    assert "result object(s) stored" not in second.output
    # A crash after the STOW but before the state write: the restarted watcher sees the change again,
    # finds the SR in the PACS, and stores nothing new.
    WatchState(start).save(state)
    third = cli(*args)
    assert third.exit_code == 0, third.output
    assert "already analysed by brainxai" in third.output and "0 result object(s) stored" in third.output
    assert len(_objects(orthanc_server, series.study_uid)) == len(objects)


def test_wrong_password_fails_clearly_and_stores_nothing(
    cli: Any,
    orthanc_server: Orthanc,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    series = _uploaded(orthanc_server, sample="notumor", slices=2)
    monkeypatch.setenv("BRAINXAI_PACS_PASSWORD", "wrong")
    result = cli("analyze", "--url", orthanc_server.dicomweb_url, "--study", series.study_uid)
    assert result.exit_code == 1
    assert "HTTP 401, login refused (user 'brainxai-test')" in result.output
    assert "wrong" not in result.output  # the password is never echoed
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"user": orthanc_server.user, "password": "also-wrong"}))
    watch = cli("watch", "--url", orthanc_server.dicomweb_url, "--once", "--credentials", str(creds))
    assert watch.exit_code == 1 and "HTTP 401" in watch.output
    assert len(_objects(orthanc_server, series.study_uid)) == 2


def test_pacs_down_fails_clearly(cli: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    result = cli("analyze", "--url", url, "--study", "1.2.3")
    assert result.exit_code == 1
    assert f"could not query the PACS at {url}: no connection" in result.output


class _NoStowProxy(BaseHTTPRequestHandler):
    """Forwards reads to the real Orthanc and fails every STOW with HTTP 500."""

    target = ""

    def do_GET(self) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "accept")}
        r = requests.get(self.target + self.path, headers=headers, timeout=30)
        self.send_response(r.status_code)
        self.send_header("Content-Type", r.headers.get("Content-Type", "application/octet-stream"))
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding") == "chunked":
            while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                self.rfile.read(size + 2)
            self.rfile.readline()
        else:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_failed_stow_exits_nonzero_and_nothing_is_half_stored(
    cli: Any,
    orthanc_server: Orthanc,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The analysis is not what is tested here: a model-free stand-in makes the result set to store.
    monkeypatch.setattr("brainxai.pacs.service._default_analyzer", lambda: fake_analyze_study)
    series = _uploaded(orthanc_server, sample="glioma", slices=2, patient_id="BXA-TEST-500")
    handler = type("Proxy", (_NoStowProxy,), {"target": orthanc_server.rest_url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
        result = cli("analyze", "--url", url, "--study", series.study_uid)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert result.exit_code == 1, result.output
    assert "result object(s) in study" in result.output and "HTTP 500" in result.output
    assert len(_objects(orthanc_server, series.study_uid)) == 2
