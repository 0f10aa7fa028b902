"""brainxai.pacs without the model: credentials, the DICOMweb client's error messages, the watch state.

The client tests talk to a real Orthanc (``orthanc`` fixture module) and to servers that are down or
answer 500; they skip when Orthanc is not installed.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pydicom
import pytest
from orthanc import Orthanc, free_port, make_series, orthanc_server  # noqa: F401  (a fixture)
from pydicom.dataset import Dataset

from brainxai.pacs import Credentials, PacsClient, PacsError, load_credentials
from brainxai.pacs.client import SeriesInfo
from brainxai.pacs.credentials import CredentialsError
from brainxai.pacs.service import SeriesOutcome, StudyOutcome, referenced_series
from brainxai.pacs.watch import WatchState, poll_once

# -- credentials ------------------------------------------------------------------------------------


def test_credentials_from_env_file_and_none(tmp_path: Path) -> None:
    env = {"BRAINXAI_PACS_USER": "ann", "BRAINXAI_PACS_PASSWORD": "p:w"}
    assert load_credentials(env=env) == Credentials("ann", "p:w")
    assert load_credentials(env={}) is None
    (tmp_path / "c.json").write_text(json.dumps({"user": "bob", "password": "s3cret"}))
    (tmp_path / "c.txt").write_text("carl:pa:ss\n")
    assert load_credentials(tmp_path / "c.json", env=env) == Credentials("bob", "s3cret")  # the file wins
    assert load_credentials(tmp_path / "c.txt") == Credentials("carl", "pa:ss")  # split at the first colon
    assert "s3cret" not in repr(load_credentials(tmp_path / "c.json"))


@pytest.mark.parametrize(
    ("content", "message"),
    [("just-a-name", "user:password"), ('{"user": "x"}', '"password"'), ("{not json", "not valid JSON")],
)
def test_bad_credentials_file_says_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "c").write_text(content)
    with pytest.raises(CredentialsError, match=message):
        load_credentials(tmp_path / "c")


def test_half_set_environment_is_an_error() -> None:
    with pytest.raises(CredentialsError, match="BRAINXAI_PACS_PASSWORD"):
        load_credentials(env={"BRAINXAI_PACS_USER": "ann"})
    with pytest.raises(CredentialsError, match="cannot read"):
        load_credentials("/nonexistent/creds")


# -- errors -----------------------------------------------------------------------------------------


def test_pacs_down_is_a_clear_error() -> None:
    client = PacsClient(f"http://127.0.0.1:{free_port()}/dicom-web")  # nothing listens there
    with pytest.raises(PacsError, match="no connection") as exc:
        client.search_series("1.2.3")
    assert exc.value.status is None


class _Always500(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"boom")

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def broken_pacs() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Always500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_http_500_is_a_clear_error(broken_pacs: str) -> None:
    client = PacsClient(broken_pacs)
    with pytest.raises(PacsError, match="HTTP 500, the PACS failed internally") as exc:
        client.search_studies()
    assert exc.value.status == 500
    with pytest.raises(PacsError, match=r"store 1 result object\(s\) in study 1\.2\.3.*HTTP 500"):
        client.store([_tiny_dataset()], "1.2.3")


def _tiny_dataset() -> Dataset:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = "1.2.3"
    return ds


def test_wrong_password_and_unknown_study(orthanc_server: Orthanc) -> None:  # noqa: F811
    bad = PacsClient(orthanc_server.dicomweb_url, Credentials(orthanc_server.user, "wrong"))
    with pytest.raises(PacsError, match="HTTP 401, login refused .user 'brainxai-test'.") as exc:
        bad.search_studies()
    assert exc.value.status == 401
    anonymous = PacsClient(orthanc_server.dicomweb_url)
    with pytest.raises(PacsError, match="no credentials.*BRAINXAI_PACS_USER"):
        anonymous.search_studies()
    good = PacsClient(orthanc_server.dicomweb_url, Credentials(orthanc_server.user, orthanc_server.password))
    assert good.search_series("1.2.3.4.5.6.7.8") == []
    with pytest.raises(PacsError, match="HTTP 404") as exc:
        good.retrieve_series("1.2.3.4.5.6.7.8", "1.2.3.4.5.6.7.9")
    assert exc.value.status == 404


def test_qido_wado_and_one_stow(orthanc_server: Orthanc) -> None:  # noqa: F811
    client = PacsClient(orthanc_server.dicomweb_url, Credentials(orthanc_server.user, orthanc_server.password))
    series = make_series("meningioma", slices=2, patient_id="BXA-CLIENT")
    stored = client.store([pydicom.dcmread(io.BytesIO(f)) for f in series.files], series.study_uid)
    assert sorted(stored) == sorted(series.sop_uids)
    studies = {s.study_uid: s for s in client.search_studies(date_from="20260314", date_to="20260314")}
    assert studies[series.study_uid].patient_id == "BXA-CLIENT"
    assert studies[series.study_uid].modalities == ("MR",)
    assert series.study_uid not in {s.study_uid for s in client.search_studies(date_from="20260315")}
    (info,) = client.search_series(series.study_uid)
    assert (info.series_uid, info.modality, info.instances) == (series.series_uid, "MR", 2)
    back = client.retrieve_series(series.study_uid, series.series_uid)
    assert sorted(str(ds.SOPInstanceUID) for ds in back) == sorted(series.sop_uids)
    assert len(client.retrieve_study(series.study_uid)) == 2
    assert client.changes(0, 1)["Changes"], "Orthanc's change log should list the new instances"


# -- the SR check and the watch state ---------------------------------------------------------------


def test_referenced_series_reads_the_sr_evidence() -> None:
    sr = Dataset()
    study, ref = Dataset(), Dataset()
    ref.SeriesInstanceUID = "1.2.3.4"
    study.ReferencedSeriesSequence = [ref]
    sr.CurrentRequestedProcedureEvidenceSequence = [study]
    assert referenced_series(sr) == {"1.2.3.4"}
    assert referenced_series(Dataset()) == set()


def test_watch_state_round_trip_and_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert WatchState.load(path) == WatchState(0, {})
    WatchState(42, {"1.2": "bad"}).save(path)
    assert WatchState.load(path) == WatchState(42, {"1.2": "bad"})
    assert not list(tmp_path.glob("*.tmp*")), "the atomic write should leave no temporary file"
    path.write_text("{half")
    with pytest.raises(ValueError, match="unreadable"):
        WatchState.load(path)


class _FakeOrthanc:
    """``changes`` and ``orthanc_series`` as Orthanc answers them, from a list of changes."""

    def __init__(self, changes: list[dict], series: dict[str, SeriesInfo], down_at: int | None = None) -> None:
        self._changes, self._series, self.down_at = changes, series, down_at

    def changes(self, since: int, limit: int = 100) -> dict:
        page = [c for c in self._changes if c["Seq"] > since][:limit]
        if self.down_at is not None and any(c["Seq"] >= self.down_at for c in page):
            page = [c for c in page if c["Seq"] < self.down_at]
            if not page:
                raise PacsError("could not read /changes: no connection")
        last = page[-1]["Seq"] if page else max([since] + [c["Seq"] for c in self._changes])
        return {"Changes": page, "Done": last >= self._changes[-1]["Seq"], "Last": last}

    def orthanc_series(self, orthanc_id: str) -> SeriesInfo:
        if orthanc_id not in self._series:
            raise PacsError("gone", 404)
        return self._series[orthanc_id]


def test_poll_once_handles_each_stable_mr_series_once_and_keeps_its_place(tmp_path: Path) -> None:
    mr = SeriesInfo("st1", "se-mr", "MR", "AX T2", "Scanner")
    ours = SeriesInfo("st1", "se-pm", "MR", "brainxai parametric map", "brainxai")
    sr = SeriesInfo("st1", "se-sr", "SR", "brainxai measurement report", "brainxai")
    bad = SeriesInfo("st2", "se-bad", "MR", "AX T1", "Scanner")
    changes = [
        {"Seq": 1, "ChangeType": "NewInstance", "ID": "i1"},
        {"Seq": 2, "ChangeType": "StableSeries", "ID": "a"},
        {"Seq": 3, "ChangeType": "StableSeries", "ID": "b"},
        {"Seq": 4, "ChangeType": "StableSeries", "ID": "c"},
        {"Seq": 5, "ChangeType": "StableSeries", "ID": "deleted"},
        {"Seq": 6, "ChangeType": "StableSeries", "ID": "d"},
    ]
    fake = _FakeOrthanc(changes, {"a": mr, "b": ours, "c": sr, "d": bad}, down_at=6)
    handled: list[tuple[str, list[str]]] = []

    def handle(study: str, series: list[str]) -> StudyOutcome:
        handled.append((study, series))
        status = "failed" if series == ["se-bad"] else "analysed"
        return StudyOutcome(study, [SeriesOutcome(series[0], status, "broken" if status == "failed" else "")])

    state = tmp_path / "state.json"
    with pytest.raises(PacsError, match="no connection"):
        poll_once(fake, state, handle, limit=2)  # type: ignore[arg-type]
    assert handled == [("st1", ["se-mr"])]  # only the scanner's MR series, not our map or SR
    assert WatchState.load(state).last_change == 5  # everything before the outage is done
    fake.down_at = None
    report = poll_once(fake, state, handle, limit=2)  # type: ignore[arg-type]
    assert handled == [("st1", ["se-mr"]), ("st2", ["se-bad"])] and report.changes == 1
    assert WatchState.load(state) == WatchState(6, {"se-bad": "broken"})  # a failure is passed, and recorded
    assert poll_once(fake, state, handle).changes == 0 and len(handled) == 2  # type: ignore[arg-type]
