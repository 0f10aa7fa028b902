"""What a scaled-out run analyses, and what an earlier run of it already wrote.

A source is a folder (its scan files, recursively), a glob, a CSV/Parquet manifest with a ``path``
column, a file, or a URL that ``pyarrow.fs`` can open (``s3://``, ``gs://``, ``hdfs://``...).
"""

from __future__ import annotations

import csv
import glob
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from brainxai.pipeline.batch import collect_inputs

logger = logging.getLogger(__name__)

#: Manifest suffixes; the manifest names one scan per row in its ``path`` column.
MANIFEST_SUFFIXES = (".csv", ".parquet")
_URL = re.compile(r"^[A-Za-z][\w+.-]*://")
# ``pathlib`` collapses ``s3://bucket`` into ``s3:/bucket``; command-line paths come through it.
_COLLAPSED_URL = re.compile(r"^([A-Za-z][\w+.-]+):/(?!/)")


def is_url(path: str) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path."""
    return bool(_URL.match(path))


def _restore_url(text: str) -> str:
    return _COLLAPSED_URL.sub(r"\1://", text) if not Path(text).exists() else text


def resolve_sources(sources: Iterable[str | Path]) -> list[str]:
    """The scans named by ``sources``, in order, without duplicates; local paths made absolute.

    Missing local files are kept (the run reports them as rows with an error).
    """
    out: list[str] = []
    for raw in sources:
        text = _restore_url(str(raw))
        if is_url(text):
            out.extend(_manifest(text) if text.lower().endswith(MANIFEST_SUFFIXES) else [text])
        elif text.lower().endswith(MANIFEST_SUFFIXES) and Path(text).is_file():
            out.extend(_manifest(text))
        elif glob.has_magic(text):
            out.extend(str(p.resolve()) for p in collect_inputs(sorted(glob.glob(text, recursive=True))))
        else:
            out.extend(str(p.resolve()) for p in collect_inputs([text]))
    return list(dict.fromkeys(out))


def _manifest(path: str) -> list[str]:
    """The ``path`` column of a CSV or Parquet manifest; relative local paths are taken from its folder."""
    if path.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["path"])
        entries = [str(v) for v in table.column("path").to_pylist() if v]
    else:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise ValueError(f"{path}: a manifest needs a 'path' column (found {reader.fieldnames})")
            entries = [row["path"] for row in reader if row.get("path")]
    base = None if is_url(path) else Path(path).resolve().parent
    return [e if is_url(e) or base is None else str((base / e).resolve()) for e in entries]


def done_paths(results_dir: str | Path) -> set[str]:
    """The ``path`` of every row already in the result table (a folder of Parquet files).

    A file that cannot be read (a run killed while writing it) is skipped with a warning, so its
    scans are analysed again.
    """
    import pyarrow.parquet as pq

    folder = Path(results_dir)
    done: set[str] = set()
    for f in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        try:
            done.update(str(v) for v in pq.read_table(f, columns=["path"]).column("path").to_pylist())
        except Exception as exc:  # a torn file must not stop the resume; its rows are redone
            logger.warning("ignoring unreadable result file %s (%s); its scans will be analysed again", f, exc)
    return done


def drop_failed_rows(results_dir: str | Path) -> set[str]:
    """Removes from the result table the rows of scans that only ever failed, so that a resume retries them.

    A scan with an analysed row keeps all its rows. Each changed file is rewritten beside itself and then
    renamed over it (a file left with no row is deleted), so a run killed here loses no analysed row.
    Unreadable files are left alone (:func:`done_paths` already redoes their scans).

    Returns:
        The paths whose error rows were removed.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder = Path(results_dir)
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    tables = {}
    for f in files:
        try:
            tables[f] = pq.read_table(f)
        except Exception:  # done_paths warns about it and redoes its scans
            continue
    analysed: set[str] = set()
    for table in tables.values():
        ok = pc.equal(pc.fill_null(table.column("error"), ""), "")
        analysed.update(str(v) for v in table.filter(ok).column("path").to_pylist())
    keep_paths = pa.array(sorted(analysed), type=pa.string())
    dropped: set[str] = set()
    for f, table in tables.items():
        errors = pc.not_equal(pc.fill_null(table.column("error"), ""), "")
        failed = pc.and_(errors, pc.invert(pc.is_in(table.column("path"), value_set=keep_paths)))
        if not pc.any(failed).as_py():
            continue
        dropped.update(str(v) for v in table.filter(failed).column("path").to_pylist())
        kept = table.filter(pc.invert(failed))
        if kept.num_rows:
            tmp = f.with_name(f.name + ".tmp")
            pq.write_table(kept, tmp)
            os.replace(tmp, f)
        else:
            f.unlink()
    if dropped:
        logger.info("retrying %d scan(s) whose earlier rows were errors", len(dropped))
    return dropped
