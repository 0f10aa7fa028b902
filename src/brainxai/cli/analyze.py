"""``brainxai analyze`` and ``brainxai demo``: thin wrappers around the analysis core (:mod:`brainxai.pipeline`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from brainxai.cli.app import app, check_methods, fail

if TYPE_CHECKING:  # pragma: no cover
    from brainxai.io.series import DicomSeries
    from brainxai.pipeline.batch import BatchItem
    from brainxai.pipeline.options import AnalysisOptions
    from brainxai.pipeline.service import AnalysisService

    Progress = Callable[[BatchItem], None]


def _run(items_fn: Callable[[Progress], list[BatchItem]], total: int, out: Path, write_csv: bool) -> None:
    """Runs a batch with a progress bar, prints one line per file, writes the CSV, exits 1 on failures."""
    from tqdm import tqdm

    from brainxai.models.domain import NOT_ASSESSABLE
    from brainxai.pipeline.batch import write_summary_csv

    with tqdm(total=total, unit="scan", desc="analysing", file=None, disable=total < 2) as bar:

        def progress(item: BatchItem) -> None:
            bar.update(1)
            bar.set_postfix_str(Path(item.file).name[:30])

        items = items_fn(progress)
    for it in items:
        if it.ok and it.result is not None:
            r = it.result
            target = r.report_pdf or r.report_json
            verdict = f"{r.prediction} ({r.confidence:.1%})"
            if r.in_domain is False:
                verdict = f"{NOT_ASSESSABLE} (model output, for reference only: {verdict})"
            typer.echo(f"{it.file}: {verdict} -> {target}")
    if write_csv:
        csv_path = write_summary_csv(items, out / "summary.csv")
        typer.echo(f"summary: {csv_path}")
    failed = [it for it in items if not it.ok]
    if failed:
        typer.secho(f"{len(failed)} of {len(items)} file(s) failed:", fg=typer.colors.RED, err=True)
        for it in failed:
            typer.secho(f"  {it.file}: {_reason(it)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def _reason(item: BatchItem) -> str:
    """The item's error without the file name that read errors start with (the listing names the file first)."""
    error = item.error or ""
    name = f"{Path(item.file).name}: "
    return error[len(name) :] if error.startswith(name) else error


def _load_service(checkpoint: Path | None, device: str) -> AnalysisService:
    from brainxai.models.checkpoint import CheckpointError
    from brainxai.pipeline.service import AnalysisService

    try:
        return AnalysisService(checkpoint, device=device)
    except CheckpointError as exc:
        fail(str(exc))
        raise  # unreachable: fail() exits


@app.command("analyze")
def analyze_cmd(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Scan files (JPEG, PNG, DICOM, NIfTI), DICOM series/study folders, or folders of images."),
    ],
    method: Annotated[
        str, typer.Option("--method", "-m", help="Explanation method: lrp, gradcam, gradcam++, hirescam, ...")
    ] = "lrp",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder (default: brainxai-output, or the report's folder)."),
    ] = None,
    report: Annotated[Path | None, typer.Option("--report", help="PDF path for a single input file.")] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip the PDF (images and JSON only).")] = False,
    patient_name: Annotated[str | None, typer.Option(help="Patient name for the report.")] = None,
    patient_id: Annotated[str | None, typer.Option(help="Patient ID for the report.")] = None,
    patient_age: Annotated[int | None, typer.Option(help="Patient age in years.")] = None,
    patient_sex: Annotated[str | None, typer.Option(help="Patient sex.")] = None,
    referring_physician: Annotated[str | None, typer.Option(help="Referring physician.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Model checkpoint (default: the shipped model).")] = None,
    slice_index: Annotated[
        int | None, typer.Option("--slice", help="Volume slice to analyse (default: the most suspicious).")
    ] = None,
    assume_spacing: Annotated[
        float | None, typer.Option(help="Pixel spacing (mm) to ASSUME when a file has none.")
    ] = None,
    sequence: Annotated[
        str | None, typer.Option(help="MR sequence when the file does not say (T1, T2, FLAIR).")
    ] = None,
    agreement: Annotated[
        bool,
        typer.Option("--agreement/--no-agreement", help="Run a second explanation method and report the agreement."),
    ] = True,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    segment: Annotated[
        bool | None,
        typer.Option(
            "--segment/--no-segment",
            help="Measure the tumour on the tumour segmentation (default: when a segmentation model is installed).",
        ),
    ] = None,
    dicom_out: Annotated[
        Path | None,
        typer.Option(help="Also write DICOM results here: SR, relevance map, overlay, encapsulated PDF."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(help="local (this process) | ray (a Ray cluster; PATHS may be globs and CSV/Parquet manifests)"),
    ] = "local",
    address: Annotated[str | None, typer.Option(help="--engine ray: cluster address (default: a local one).")] = None,
    workers: Annotated[int | None, typer.Option(help="--engine ray: analysis actors (default: per GPU/CPU).")] = None,
    batch_size: Annotated[int, typer.Option(help="--engine ray: scans per batch.")] = 16,
    per_scan_outputs: Annotated[
        bool, typer.Option(help="--engine ray: also keep each scan's JSON, PNGs and PDF in OUT/scans/.")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option(help="--engine ray: analyse again the scans whose rows in OUT/results/ are errors.")
    ] = False,
) -> None:
    """Analyse scans: prediction, explanation, spatial parameters and a PDF report per file.

    Several files or a folder run as a batch with a progress bar and OUT/summary.csv. A bad file is reported, the batch goes on, and the command exits with status 1 listing the failures. DICOM files are grouped by series (a folder of them is a study): each series, multi-frame DICOM or NIfTI volume gets one series report (every brain slice analysed, one series finding, heatmap volume as NIfTI). --slice analyses one slice of a volume instead.
    """  # noqa: E501  (typer prints a docstring's line breaks as they are: one line lets it wrap to the terminal)
    missing = [str(p) for p in paths if not p.exists()]
    if engine != "ray" and missing and len(missing) == len(paths):  # nothing to analyse: say so before any import
        fail("file not found: " + ", ".join(missing))
    from brainxai.pipeline.batch import analyze_batch, collect_inputs
    from brainxai.pipeline.options import AnalysisOptions, PatientInfo
    from brainxai.pipeline.series import plan_inputs

    check_methods([method])
    options = AnalysisOptions(
        method=method,
        agreement=agreement,
        report=not no_report,
        slice_index=slice_index,
        assumed_pixel_spacing_mm=assume_spacing,
        sequence=sequence,
        dicom_out=dicom_out,
        segment=segment,
    )
    # The Ray engine lists and reads the sources on the cluster (one row per file, series not grouped).
    if engine == "ray":  # OUT/results/*.parquet; see brainxai.scale.ray_engine
        from brainxai.cli.analyze_ray import run_on_ray

        return run_on_ray(
            paths,
            options,
            out=out or Path("brainxai-output"),
            checkpoint=checkpoint,
            device=device,
            address=address,
            workers=workers,
            batch_size=batch_size,
            per_scan_outputs=per_scan_outputs,
            retry_failed=retry_failed,
        )
    plan = plan_inputs(paths, collect_inputs(paths), slice_index)
    files = plan.files
    if not files and not plan.series:
        fail("no scan files found in " + ", ".join(map(str, paths)))
    if report is not None and (len(files) != 1 or plan.series):
        given = len(files) + len(plan.series)
        fail(f"--report takes a single input file; {given} were given (use --out for batches, series and volumes)")
    out_dir = out or (report.parent if report is not None else Path("brainxai-output"))
    patient = PatientInfo(patient_name, patient_id, patient_age, patient_sex, referring_physician)
    service = _load_service(checkpoint, device)
    series_failed = _run_series(service, plan.series, options, out_dir, subfolders=len(plan.series) + len(files) > 1)
    if not files:
        _finish(dicom_out, series_failed)
        return
    batch = len(files) > 1 or any(p.is_dir() for p in paths)

    def run(progress: Progress) -> list[BatchItem]:
        return analyze_batch(
            service,
            files,
            options,
            out_dir=out_dir,
            patient=patient if patient.to_dict() else None,
            report_path=report,
            progress=progress,
        )

    try:
        _run(run, len(files), out_dir, write_csv=batch)
    finally:
        _finish(dicom_out, series_failed)


def _finish(dicom_out: Path | None, series_failed: int) -> None:
    """Names the DICOM folder; exits 1 when a series failed (the batch's own failures exit in ``_run``)."""
    if dicom_out is not None:
        typer.echo(f"DICOM results: {dicom_out} (research use only, UNVERIFIED)")
    if series_failed:
        raise typer.Exit(1)


def _run_series(
    service: AnalysisService, jobs: Sequence[DicomSeries | Path], options: AnalysisOptions, out: Path, subfolders: bool
) -> int:
    """Analyses each series or volume (one result each), prints one line per series; returns the failures."""
    import dataclasses

    from brainxai.io import ImageReadError
    from brainxai.io.series import SeriesSkipped, load_dicom_series, read_volume
    from brainxai.pipeline.series import analyze_volume, series_name

    failed = 0
    for number, job in enumerate(jobs, 1):
        label = str(job) if isinstance(job, Path) else f"series {job.series_number or ''} {job.description!r}".strip()
        name = series_name(job, number)
        one = options
        if subfolders and options.dicom_out is not None:
            one = dataclasses.replace(options, dicom_out=Path(options.dicom_out) / name)
        try:
            volume = read_volume(job) if isinstance(job, Path) else load_dicom_series(job)
            r = analyze_volume(volume, one, out_dir=out / name if subfolders else out, service=service, name=name)
        except SeriesSkipped as exc:
            typer.echo(f"{label}: skipped ({exc})")
            continue
        except ImageReadError as exc:
            failed += 1
            typer.secho(f"{label}: failed: {exc}", fg=typer.colors.RED, err=True)
            continue
        keys = ", ".join(map(str, r.key_slices))
        typer.echo(
            f"{label}: series finding {r.prediction} ({r.confidence:.1%}), key slices {keys}; "
            f"{len(r.per_slice)} slices analysed, {len(r.skipped)} skipped -> {r.report_pdf or r.report_json}"
        )
    return failed


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("brainxai-demo"),
    method: Annotated[str, typer.Option("--method", "-m", help="Explanation method.")] = "lrp",
    checkpoint: Annotated[Path | None, typer.Option(help="Use this checkpoint instead of the shipped model.")] = None,
) -> None:
    """Analyse the sample scans shipped with brainxai (one per class) and write their reports to ./brainxai-demo/."""
    from brainxai.models.checkpoint import CheckpointError
    from brainxai.pipeline.demo import run_demo, sample_scans
    from brainxai.pipeline.service import get_service

    check_methods([method])
    try:
        get_service(checkpoint)
    except CheckpointError as exc:
        fail(str(exc))
    samples = sample_scans()

    def run(progress: Progress) -> list[BatchItem]:
        return run_demo(out, checkpoint=checkpoint, method=method, progress=progress)

    _run(run, len(samples), out, write_csv=True)
    typer.echo(f"demo reports written to {out}/ (research use only, not a diagnosis)")
