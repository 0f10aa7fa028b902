"""The neutral helpers: atomic writes, bounded gunzip, scan names, Spearman."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from brainxai.util.compression import DecompressedTooLargeError, DecompressionError, gunzip_bounded
from brainxai.util.files import atomic_write, atomic_write_bytes
from brainxai.util.names import safe_stem, strip_scan_suffix
from brainxai.util.stats import spearman


def test_atomic_write_replaces_the_file_readably_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.bin"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.bin"]


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_gunzip_bounded_round_trips_and_joins_members() -> None:
    payload = np.random.default_rng(0).bytes(300_000)
    assert gunzip_bounded(gzip.compress(payload), limit=len(payload)) == payload
    # bgzip-style files are several members back to back; gzip -d joins them.
    two = gzip.compress(payload[:1000]) + gzip.compress(payload[1000:])
    assert gunzip_bounded(two, limit=len(payload), chunk=4096) == payload


def test_gunzip_bounded_refuses_a_bomb_and_bad_streams() -> None:
    bomb = gzip.compress(b"\0" * 5_000_000)
    with pytest.raises(DecompressedTooLargeError):
        gunzip_bounded(bomb, limit=1_000_000)
    assert gunzip_bounded(bomb, limit=5_000_000) == b"\0" * 5_000_000
    with pytest.raises(DecompressionError, match="truncated"):
        gunzip_bounded(bomb[: len(bomb) // 2], limit=10_000_000)
    with pytest.raises(DecompressionError, match="corrupt"):
        gunzip_bounded(bomb[:10] + b"garbage" * 10, limit=10_000_000)


@pytest.mark.parametrize(
    ("name", "stripped"),
    [
        ("brain.nii.gz", "brain"),
        ("brain.NII", "brain"),
        ("scan.dcm", "scan"),
        ("x.dicom", "x"),
        ("photo.jpeg", "photo"),
        ("notes.txt", "notes.txt"),
        (".png", ".png"),  # a bare suffix is a name, not a suffix
    ],
)
def test_strip_scan_suffix(name: str, stripped: str) -> None:
    assert strip_scan_suffix(name) == stripped


def test_safe_stem_makes_a_file_system_safe_name() -> None:
    assert safe_stem("../Patient 1/scan (2).dcm") == "Patient_1_scan_2"
    assert safe_stem("???") == "scan"
    assert len(safe_stem("a" * 300 + ".png")) == 80


def test_spearman_matches_scipy_and_is_none_when_undefined() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(50), rng.random(50)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, np.ones(50)) is None
    assert spearman([1.0, 2.0], [2.0, 1.0], min_n=3) is None
    with pytest.raises(ValueError, match="differ in size"):
        spearman(a, b[:10])
