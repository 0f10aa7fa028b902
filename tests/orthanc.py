"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) for the PACS tests, and synthetic MR series for it.

Imported by the ``test_pacs*`` modules (pytest puts tests/ on sys.path). :func:`orthanc_server` is a
session fixture: Orthanc on a free loopback port, HTTP only (its DICOM port disabled), a temporary
storage folder, a generated configuration with authentication on; stopped (and waited for) after
the session. Tests that need it skip, naming what is missing, when the binary or plugin is absent.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import requests
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from seriesfiles import series_datasets

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "brainxai" / "samples"
#: Where Debian's orthanc-dicomweb puts the plugin (``dpkg -L orthanc-dicomweb``).
PLUGIN_CANDIDATES = (
    Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    Path("/usr/lib/orthanc/libOrthancDicomWeb.so"),
)
USER, PASSWORD = "brainxai-test", "correct horse battery staple"
#: Orthanc marks a series stable after this many seconds without a new instance (its default is 60).
STABLE_AGE_S = 1


@dataclass(frozen=True)
class Orthanc:
    """A running test Orthanc: its REST root, DICOMweb root and the one registered user."""

    rest_url: str
    dicomweb_url: str
    user: str
    password: str

    def get(self, path: str, **params: object) -> object:
        r = requests.get(self.rest_url + path, params=params, auth=(self.user, self.password), timeout=10)
        r.raise_for_status()
        return r.json()

    def upload(self, files: list[bytes]) -> None:
        """Stores DICOM files through Orthanc's REST API (not DICOMweb, which is what is under test)."""
        for data in files:
            r = requests.post(self.rest_url + "/instances", data=data, auth=(self.user, self.password), timeout=10)
            r.raise_for_status()

    def instances_of(self, study_uid: str) -> list[dict]:
        """Every instance of a study, with its series UID and SOP class (Orthanc's ``/tools/find``)."""
        r = requests.post(
            self.rest_url + "/tools/find",
            json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True},
            auth=(self.user, self.password),
            timeout=10,
        )
        r.raise_for_status()
        return list(r.json())

    def wait_stable(self, series_uid: str, timeout: float = 15.0) -> None:
        """Waits until Orthanc has logged the series as stable (``StableSeries`` in ``/changes``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            changes = self.get("/changes", since=0, limit=10000)
            for change in changes["Changes"]:  # type: ignore[index]
                if change["ChangeType"] == "StableSeries":
                    tags = self.get(f"/series/{change['ID']}")["MainDicomTags"]  # type: ignore[index]
                    if tags.get("SeriesInstanceUID") == series_uid:
                        return
            time.sleep(0.3)
        raise TimeoutError(f"series {series_uid} not stable after {timeout} s")

    def wait_all_stable(self, timeout: float = 15.0) -> None:
        """Waits until every series in Orthanc is stable, so no earlier upload logs a change later."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            series = self.get("/series", expand="")
            if all(s.get("IsStable") for s in series):  # type: ignore[union-attr]
                return
            time.sleep(0.3)
        raise TimeoutError(f"Orthanc series not all stable after {timeout} s")


def orthanc_missing() -> str | None:
    """Why Orthanc cannot run here, or None."""
    if shutil.which("Orthanc") is None:
        return "the Orthanc binary is not installed (Debian: apt-get install orthanc orthanc-dicomweb)"
    if _plugin() is None:
        return "Orthanc's DICOMweb plugin is not installed (Debian: apt-get install orthanc-dicomweb)"
    return None


def _plugin() -> Path | None:
    return next((p for p in PLUGIN_CANDIDATES if p.is_file()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(storage: Path, port: int) -> dict:
    return {
        "Name": "brainxai-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,  # loopback only
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(_plugin())],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        "StableAge": STABLE_AGE_S,
        "HttpThreadsCount": 8,
        "SaveJobs": False,
        "ConcurrentJobs": 1,
    }


@contextlib.contextmanager
def running_orthanc(root: Path) -> Iterator[Orthanc]:
    """Orthanc on a free loopback port with its storage and generated configuration under ``root``; stopped after."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root / "orthanc.json"
    config.write_text(json.dumps(_config(root / "storage", port), indent=2))
    with (root / "orthanc.log").open("wb") as log:
        proc = subprocess.Popen(["Orthanc", str(config)], stdout=log, stderr=subprocess.STDOUT, cwd=root)
        server = Orthanc(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/dicom-web", USER, PASSWORD)
        try:
            _wait_up(server, proc, root / "orthanc.log")
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="session")
def orthanc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """A fresh Orthanc for the session (skips when Orthanc or its DICOMweb plugin is not installed)."""
    missing = orthanc_missing()
    if missing:
        pytest.skip(missing)
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


def _wait_up(server: Orthanc, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            server.get("/system")
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"Orthanc did not answer /system within {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")


# -- synthetic series -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSeries:
    """A synthetic axial MR series: its UIDs, geometry and the encoded files."""

    study_uid: str
    series_uid: str
    sop_uids: tuple[str, ...]
    spacing_mm: tuple[float, float]
    slice_thickness_mm: float
    files: tuple[bytes, ...]


def sample_pixels(name: str = "glioma") -> np.ndarray:
    """A shipped sample scan as a ``uint8`` grey image."""
    return np.asarray(Image.open(SAMPLES / f"{name}.jpg").convert("L"))


def make_series(
    sample: str = "glioma",
    *,
    slices: int = 3,
    study_uid: str | None = None,
    spacing: tuple[float, float] = (0.9, 0.9),
    thickness: float = 5.0,
    study_date: date = date(2026, 3, 14),
    description: str = "AX T1 POST",
    patient_id: str = "BXA-TEST-1",
) -> SyntheticSeries:
    """An axial MR series of ``slices`` slices made from one sample scan (slightly dimmer away from the centre).

    Known geometry (``seriesfiles.series_datasets``): PixelSpacing ``spacing`` (mm), slices ``thickness`` mm
    apart along +z, orientation (1,0,0,0,1,0), one frame of reference.
    """
    pixels = sample_pixels(sample).astype(np.float32)
    centre = (slices - 1) / 2
    scaled = [pixels * (1.0 - 0.1 * abs(i - centre) / max(centre, 1)) for i in range(slices)]
    datasets = series_datasets(
        [np.clip(im, 0, 255).astype(np.uint8) for im in scaled],
        spacing=spacing,
        thickness=thickness,
        description=description,
        study_uid=study_uid,
    )
    files = []
    for ds in datasets:
        ds.StudyDate, ds.PatientID = study_date.strftime("%Y%m%d"), patient_id
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        files.append(buf.getvalue())
    first = datasets[0]
    sops = tuple(str(ds.SOPInstanceUID) for ds in datasets)
    return SyntheticSeries(first.StudyInstanceUID, first.SeriesInstanceUID, sops, spacing, thickness, tuple(files))


# -- a model-free stand-in for analyze_study, for tests about the transport ---------------------------


@dataclass
class FakeResult:
    prediction: str
    dicom_files: list[Path]


def fake_analyze_study(source: Path, options: Any, *, out_dir: Path, service: Any = None) -> list[FakeResult]:
    """One brainxai-made object per series, in the source's study (the real analysis is tested elsewhere)."""
    first = pydicom.dcmread(next(Path(source).glob("*.dcm")), stop_before_pixels=True)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = first.StudyInstanceUID, generate_uid()
    ds.PatientID, ds.Modality, ds.Manufacturer = first.PatientID, "OT", "brainxai"
    Path(options.dicom_out).mkdir(parents=True)
    path = Path(options.dicom_out) / "sc.dcm"
    ds.save_as(path, enforce_file_format=True)
    return [FakeResult("glioma", [path])]
