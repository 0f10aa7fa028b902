"""``brainxai pacs watch``: poll Orthanc's ``/changes`` and analyse each new stable MR series once.

Orthanc numbers every change (``Seq``) and marks a series ``StableSeries`` once no instance has
arrived for ``StableAge`` seconds, so a series is analysed whole, not while it is still arriving.
Idempotent across a crash and a restart:

- the state file (written atomically) holds the last change handled; a change is handled, then the
  state is written, so a crash in between makes the restarted watcher see that change again;
- before analysing, :func:`~brainxai.pacs.service.analyze_pacs_study` looks in the PACS for a
  brainxai SR that refers to the series, and skips it when there is one; so a change seen again
  after a crash between the STOW and the state write is not analysed twice.

A PACS that is down stops the poll without moving the state on (the change is tried again on the
next poll); a series whose analysis fails is reported and passed (a bad series must not block the
queue forever), and its UID is kept in the state's ``failed`` list.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from brainxai.pacs.client import PacsClient, PacsError, SeriesInfo
from brainxai.pacs.service import StudyOutcome, is_brainxai_series
from brainxai.util.files import atomic_write_text

logger = logging.getLogger(__name__)

#: Analyses the named series of a study (``analyze_pacs_study`` with everything but these bound).
SeriesHandler = Callable[[str, list[str]], StudyOutcome]


@dataclass
class WatchState:
    """What the watcher has handled: the last Orthanc change sequence number, and the series that failed."""

    last_change: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> WatchState:
        """The state in ``path``, or a fresh one when the file does not exist yet."""
        p = Path(path)
        if not p.exists():
            return cls()
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            return cls(int(data.get("last_change", 0)), dict(data.get("failed") or {}))
        except (ValueError, TypeError, AttributeError) as exc:
            # Starting from 0 would re-read the whole change log; the PACS check keeps that from duplicating,
            # but a corrupt state is worth a stop: the user decides.
            raise ValueError(f"watch state {p} is unreadable ({exc}); fix or delete it") from exc

    def save(self, path: str | Path) -> None:
        """Writes the state atomically (a crash leaves the old or the new file, never half of one)."""
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")


@dataclass
class PollReport:
    """What one poll did."""

    changes: int = 0
    outcomes: list[StudyOutcome] = field(default_factory=list)


def wanted(info: SeriesInfo) -> bool:
    """Whether a stable series is one to analyse: MR, and not brainxai's own output."""
    return info.modality == "MR" and not is_brainxai_series(info)


def poll_once(client: PacsClient, state_path: str | Path, handle: SeriesHandler, *, limit: int = 100) -> PollReport:
    """Handles every change after the state's last one, until Orthanc says it is done.

    Raises:
        PacsError: The PACS failed; the state holds the last change fully handled.
    """
    state = WatchState.load(state_path)
    report = PollReport()
    while True:
        page = client.changes(state.last_change, limit)
        for change in page.get("Changes") or []:
            report.changes += 1
            outcome = _handle_change(client, change, handle)
            if outcome is not None:
                report.outcomes.append(outcome)
                state.failed.update({s.series_uid: s.reason for s in outcome.failed})
            state.last_change = int(change["Seq"])
            state.save(state_path)
        if page.get("Done", True) or not page.get("Changes"):
            # Orthanc may answer Last beyond the changes it listed (deleted ones): start after it next time.
            if int(page.get("Last", state.last_change)) > state.last_change:
                state.last_change = int(page["Last"])
                state.save(state_path)
            return report


def _handle_change(client: PacsClient, change: dict[str, Any], handle: SeriesHandler) -> StudyOutcome | None:
    if change.get("ChangeType") != "StableSeries":
        return None
    try:
        info = client.orthanc_series(str(change["ID"]))
    except PacsError as exc:
        if exc.status == 404:  # deleted since: nothing to analyse
            logger.info("change %s: series %s is gone", change.get("Seq"), change.get("ID"))
            return None
        raise
    if not wanted(info):
        logger.debug("change %s: series %s (%s) not analysed", change.get("Seq"), info.series_uid, info.modality)
        return None
    logger.info("change %s: new MR series %s in study %s", change.get("Seq"), info.series_uid, info.study_uid)
    try:
        return handle(info.study_uid, [info.series_uid])
    except PacsError as exc:
        if exc.status == 404:  # deleted while we looked at it: nothing left to analyse or to store into
            logger.info("change %s: study %s is gone (%s)", change.get("Seq"), info.study_uid, exc)
            return None
        raise


def watch(
    client: PacsClient,
    state_path: str | Path,
    handle: SeriesHandler,
    *,
    interval: float = 10.0,
    once: bool = False,
    on_poll: Callable[[PollReport], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Polls every ``interval`` seconds (``once``: a single poll) until ``should_stop()``.

    A PACS error is logged and retried at the next poll, except with ``once``, where it is raised.
    """
    while True:
        try:
            report = poll_once(client, state_path, handle)
        except PacsError as exc:
            if once:
                raise
            logger.warning("poll failed, retrying in %g s: %s", interval, exc)
        else:
            if on_poll is not None:
                on_poll(report)
        if once or should_stop():
            return
        time.sleep(interval)
