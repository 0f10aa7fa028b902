"""Files under the data dir: staged analysis output, published study folders, pending batch uploads.

A study's folder is written completely in ``tmp/``, flushed to disk, then renamed into ``studies/``
in one atomic step; its database row is committed only after that. Start-up recovery deletes what a
crash can leave behind: staging folders, and study folders or uploads that no committed row names.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from brainxai.util.files import atomic_write

logger = logging.getLogger(__name__)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_hex_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


class Storage:
    """The data dir's file layout.

    Args:
        root: The data dir.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.studies = self.root / "studies"
        self.staging_root = self.root / "tmp"
        self.uploads = self.root / "uploads"

    def ensure(self) -> None:
        """Creates the folders (owner-only permissions: they hold patient data)."""
        for folder in (self.root, self.studies, self.staging_root, self.uploads):
            folder.mkdir(parents=True, exist_ok=True)
            try:
                folder.chmod(0o700)
            except OSError:  # e.g. a mounted volume we do not own; not worth failing over.
                logger.debug("could not chmod %s", folder)

    def new_staging_dir(self) -> Path:
        """A fresh empty folder in ``tmp/`` for one analysis to write into."""
        path = self.staging_root / uuid.uuid4().hex
        path.mkdir(mode=0o700)
        return path

    def publish(self, staging: Path, study_id: str) -> Path:
        """Flushes a staging folder to disk and renames it to the study's folder (atomic)."""
        if not _is_hex_id(study_id):
            raise ValueError(f"bad study id {study_id!r}")
        for path in staging.rglob("*"):
            if path.is_file():
                _fsync_path(path)
        final = self.studies / study_id
        os.rename(staging, final)
        _fsync_path(self.studies)
        return final

    def study_dir(self, study_id: str) -> Path:
        if not _is_hex_id(study_id):
            raise ValueError(f"bad study id {study_id!r}")
        return self.studies / study_id

    def resolve(self, relative: str) -> Path:
        """A path stored in the database (relative to the data dir), checked to stay inside it."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"stored path {relative!r} leaves the data dir")
        return path

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    def save_upload(self, job_id: str, data: bytes) -> str:
        """Writes a batch upload under a generated name; returns its path relative to the data dir."""
        if not _is_hex_id(job_id):
            raise ValueError(f"bad job id {job_id!r}")
        folder = self.uploads / job_id
        folder.mkdir(mode=0o700, exist_ok=True)
        final = folder / f"{uuid.uuid4().hex}.bin"
        # Owner-only, like the folders: an upload is patient data.
        atomic_write(final, lambda tmp: tmp.write_bytes(data), mode=0o600)
        return self.relative(final)

    def remove_upload(self, relative: str | None) -> None:
        if not relative:
            return
        try:
            path = self.resolve(relative)
            path.unlink(missing_ok=True)
            if path.parent != self.uploads and not any(path.parent.iterdir()):
                path.parent.rmdir()
        except (OSError, ValueError):
            logger.warning("could not remove upload %s", relative, exc_info=True)

    @staticmethod
    def discard(path: Path | None) -> None:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    def recover(self, study_ids: set[str], upload_paths: set[str]) -> dict[str, int]:
        """Removes leftovers of interrupted work.

        Must run before the server accepts requests (nothing may be in flight).

        Args:
            study_ids: Ids of the studies committed in the database.
            upload_paths: Upload paths (relative) that queued batch items still need.

        Returns:
            How many staging folders, orphan study folders and orphan uploads were removed.
        """
        counts = {"staging": 0, "orphan_studies": 0, "orphan_uploads": 0}
        for path in self.staging_root.iterdir():
            self.discard(path) if path.is_dir() else path.unlink(missing_ok=True)
            counts["staging"] += 1
        for path in self.studies.iterdir():
            if path.name not in study_ids:
                self.discard(path) if path.is_dir() else path.unlink(missing_ok=True)
                counts["orphan_studies"] += 1
        for path in list(self.uploads.rglob("*")):
            if path.is_file() and self.relative(path) not in upload_paths:
                path.unlink(missing_ok=True)
                counts["orphan_uploads"] += 1
        for folder in self.uploads.iterdir():
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if any(counts.values()):
            logger.warning("recovered from an interrupted run: %s", counts)
        return counts
