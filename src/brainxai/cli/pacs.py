"""``brainxai pacs analyze`` and ``brainxai pacs watch``: the PACS round trip over DICOMweb (:mod:`brainxai.pacs`).

Credentials come from ``BRAINXAI_PACS_USER``/``BRAINXAI_PACS_PASSWORD`` or ``--credentials FILE``,
never from an option value, so no password lands in the shell history or in ``ps``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from brainxai.cli.app import app, check_methods, fail

if TYPE_CHECKING:  # pragma: no cover
    from brainxai.pacs.client import PacsClient
    from brainxai.pacs.service import StudyOutcome
    from brainxai.pipeline.options import AnalysisOptions
    from brainxai.pipeline.service import AnalysisService

pacs_app = typer.Typer(
    help="Analyse studies in a PACS over DICOMweb and store the results back in them (research use only).",
    no_args_is_help=True,
)
app.add_typer(pacs_app, name="pacs")

UrlOption = Annotated[
    str,
    typer.Option(
        "--url", envvar="BRAINXAI_PACS_URL", help="DICOMweb root of the PACS, e.g. http://pacs:8042/dicom-web."
    ),
]
CredentialsOption = Annotated[
    Path | None,
    typer.Option(
        help='File with \'user:password\' or {"user": ..., "password": ...} '
        "(default: BRAINXAI_PACS_USER / BRAINXAI_PACS_PASSWORD, else no login)."
    ),
]
MethodOption = Annotated[str, typer.Option("--method", "-m", help="Explanation method: lrp, gradcam, ...")]
CheckpointOption = Annotated[Path | None, typer.Option(help="Model checkpoint (default: the shipped model).")]
DeviceOption = Annotated[str, typer.Option(help="auto | cpu | cuda")]
DEFAULT_STATE = Path("brainxai-pacs-watch.json")


def _quiet_dicomweb() -> None:
    """dicomweb-client logs every request at INFO; our own lines say what happened (``-v`` shows all)."""
    import logging

    lib = logging.getLogger("dicomweb_client")
    if lib.getEffectiveLevel() > logging.DEBUG:
        lib.setLevel(logging.WARNING)


def _client(url: str, credentials: Path | None) -> PacsClient:
    from brainxai.pacs import PacsClient, PacsError, load_credentials
    from brainxai.pacs.credentials import CredentialsError

    try:
        return PacsClient(url, load_credentials(credentials))
    except (CredentialsError, PacsError) as exc:
        fail(str(exc))


def _service(checkpoint: Path | None, device: str) -> AnalysisService:
    from brainxai.models.checkpoint import CheckpointError
    from brainxai.pipeline.service import AnalysisService

    try:
        return AnalysisService(checkpoint, device=device)
    except CheckpointError as exc:
        fail(str(exc))


def _options(method: str) -> AnalysisOptions:
    from brainxai.pipeline.options import AnalysisOptions

    check_methods([method])
    # dicom_out is set per series by the PACS service; the PDF is stored as Encapsulated PDF.
    return AnalysisOptions(method=method, agreement=False, report=True)


def _echo(outcome: StudyOutcome) -> None:
    typer.echo(f"study {outcome.study_uid}: {len(outcome.stored)} result object(s) stored")
    for s in outcome.series:
        if s.status == "analysed":
            typer.echo(f"  series {s.series_uid}: {s.prediction} ({s.objects} objects)")
        elif s.status == "skipped":
            typer.echo(f"  series {s.series_uid}: skipped, {s.reason}")
        else:
            typer.secho(f"  series {s.series_uid}: FAILED, {s.reason}", fg=typer.colors.RED, err=True)


def _yyyymmdd(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text).strftime("%Y%m%d")
    except ValueError:
        fail(f"not a date: {text!r} (use YYYY-MM-DD)")


@pacs_app.command("analyze")
def analyze_cmd(
    url: UrlOption,
    study: Annotated[list[str] | None, typer.Option("--study", help="Study Instance UID (repeatable).")] = None,
    since: Annotated[str | None, typer.Option(help="Every study with StudyDate on or after this (YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="With --since: StudyDate on or before this (YYYY-MM-DD).")] = None,
    credentials: CredentialsOption = None,
    force: Annotated[bool, typer.Option("--force", help="Analyse series that already have a brainxai result.")] = False,
    method: MethodOption = "lrp",
    checkpoint: CheckpointOption = None,
    device: DeviceOption = "auto",
) -> None:
    """Retrieve studies (WADO-RS), analyse each brain MR series and store the results (SR, relevance map, overlay, PDF) back into the same study with one STOW-RS request per study. Exits 1 when the PACS fails or a series could not be analysed."""  # noqa: E501
    from brainxai.pacs import PacsError
    from brainxai.pacs.service import analyze_pacs_study

    if bool(study) == bool(since):
        fail("give either --study UID (repeatable) or --since DATE")
    _quiet_dicomweb()
    client = _client(url, credentials)
    try:
        client.check()  # a wrong URL or login fails here, before the model is loaded
        if since:
            found = client.search_studies(date_from=_yyyymmdd(since), date_to=_yyyymmdd(until))
            uids = [s.study_uid for s in found]
            typer.echo(f"{len(uids)} stud{'y' if len(uids) == 1 else 'ies'} with StudyDate from {since}")
        else:
            uids = list(study or [])
        options = _options(method)  # checks the method before the model loads
        service = _service(checkpoint, device)
        failed = 0
        for uid in uids:
            outcome = analyze_pacs_study(client, uid, options, service=service, force=force)
            _echo(outcome)
            failed += len(outcome.failed)
    except PacsError as exc:
        fail(str(exc))
    if failed:
        fail(f"{failed} series could not be analysed (see above); the others' results were stored")
    typer.echo("results are research use only and UNVERIFIED")


@pacs_app.command("watch")
def watch_cmd(
    url: UrlOption,
    state: Annotated[Path, typer.Option(help="State file: the last change handled.")] = DEFAULT_STATE,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 10.0,
    once: Annotated[bool, typer.Option("--once", help="Poll once, handle every pending change, and exit.")] = False,
    credentials: CredentialsOption = None,
    rest_url: Annotated[
        str | None, typer.Option(help="Orthanc REST root for /changes (default: --url without /dicom-web).")
    ] = None,
    method: MethodOption = "lrp",
    checkpoint: CheckpointOption = None,
    device: DeviceOption = "auto",
) -> None:
    """Poll Orthanc's /changes and analyse each new stable MR series once, storing the results in its study. Safe to stop and restart: the state file and a check in the PACS keep a series from being analysed twice."""  # noqa: E501
    from brainxai.pacs import PacsClient, PacsError, load_credentials
    from brainxai.pacs.credentials import CredentialsError
    from brainxai.pacs.service import analyze_pacs_study
    from brainxai.pacs.watch import PollReport, watch

    _quiet_dicomweb()
    try:
        client = PacsClient(url, load_credentials(credentials), rest_url=rest_url)
        client.changes(0, 1)  # fail early on a wrong URL or login, before loading the model
    except (CredentialsError, PacsError, ValueError) as exc:
        fail(str(exc))
    options = _options(method)  # checks the method before the model loads
    service = _service(checkpoint, device)
    failed = 0

    def handle(study_uid: str, series_uids: list[str]) -> StudyOutcome:
        return analyze_pacs_study(client, study_uid, options, service=service, series_uids=series_uids)

    def on_poll(report: PollReport) -> None:
        nonlocal failed
        for outcome in report.outcomes:
            _echo(outcome)
            failed += len(outcome.failed)

    try:
        watch(client, state, handle, interval=interval, once=once, on_poll=on_poll)
    except (PacsError, ValueError) as exc:
        fail(str(exc))
    if once and failed:
        fail(f"{failed} series could not be analysed (see above)")
