"""The analysis service, shared by the library call, the CLI and the web app.

One scan in; a prediction, its explanation, the ten spatial parameters, images and a report out::

    service = AnalysisService(checkpoint)          # loads the model once
    result = service.analyze("scan.dcm", AnalysisOptions(method="gradcam"), out_dir="out")
    result.report_pdf, result.prediction, result.spatial_parameters

The file is decoded once into a :class:`~brainxai.io.ScanImage`, prepared once, and that prepared
image feeds both the classifier and the explainers. Every output file is written atomically.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from brainxai.constants import NO_TUMOUR
from brainxai.io import ScanImage
from brainxai.models.domain import not_assessable_message, sequence_verdict
from brainxai.models.registry import find_model_config
from brainxai.pipeline import measure, outputs, segment, steps
from brainxai.pipeline.options import AnalysisOptions, PatientInfo
from brainxai.pipeline.result import AnalysisResult
from brainxai.util.names import safe_stem

if TYPE_CHECKING:
    from brainxai.inference import Classifier
    from brainxai.pipeline.segment import TumourSegmentation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    """The classification of one prepared image and its explanation(s), on the model's input grid.

    Attributes:
        probabilities: Calibrated probability per class.
        prediction: The most probable class.
        relevance: The explanation of ``prediction`` by the requested method.
        second_method: The method that checks agreement, when it ran.
        second_relevance: Its explanation of ``prediction``.
    """

    probabilities: dict[str, float]
    prediction: str
    relevance: np.ndarray
    second_method: str | None = None
    second_relevance: np.ndarray | None = None
    #: Out-of-domain score and verdict (None without domain statistics); see ``Prediction.in_domain``.
    domain_score: float | None = None
    in_domain: bool | None = None

    @property
    def confidence(self) -> float:
        """The probability of the predicted class."""
        return self.probabilities[self.prediction]


@dataclass(frozen=True)
class ScanInput:
    """One scan for :meth:`AnalysisService.analyze_many` (the arguments of :meth:`AnalysisService.analyze`).

    Attributes:
        source: Path or file bytes.
        filename: Name shown in the report (needed for bytes; defaults to the path's name).
        name: Base name of the output files (default: the file's stem plus part of the id).
        report_path: Exact PDF path (default ``out_dir/<name>.pdf``).
        out_dir: This scan's output folder (default: the call's ``out_dir``), e.g. one staging folder per scan.
        dicom_out: This scan's DICOM results folder (default: ``options.dicom_out``).
    """

    source: str | Path | bytes
    filename: str | None = None
    name: str | None = None
    report_path: str | Path | None = None
    out_dir: str | Path | None = None
    dicom_out: str | Path | None = None


@dataclass
class _Run:
    """Identity of one analysis and what it has to say besides its numbers."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Started:
    """A scan read and prepared, waiting for the batch's classification and explanation."""

    item: ScanInput
    scan: ScanImage
    prepared: steps.PreparedImage
    run: _Run


class AnalysisService:
    """The analysis pipeline around one loaded model.

    Args:
        checkpoint: Checkpoint path (stem or file); None for the default model shipped with the package.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        segmenter: Tumour segmentation model: a :class:`~brainxai.pipeline.segment.TumourSegmenter`, a
            checkpoint path, or None for the shipped one when installed; loaded at first use
            (see ``AnalysisOptions.segment``).

    Thread-safe: the model and its explainers are used under a lock (explanations modify the model
    temporarily), the segmenter under its own, decoding and file writing run outside them.
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        device: str = "auto",
        segmenter: segment.TumourSegmenter | str | Path | None = None,
    ) -> None:
        from brainxai.inference import Classifier

        self.classifier: Classifier = Classifier.load(checkpoint, device=device)
        self._lock = threading.RLock()
        self._explainers: dict[str, Any] = {}
        self._segmenter = segment.SegmenterSlot(segmenter, device=device)

    # -- model ------------------------------------------------------------------------------------

    @property
    def model_info(self) -> dict[str, Any]:
        """Name, version and checksum of the loaded model, for reports."""
        ckpt = self.classifier.checkpoint
        return {
            "name": self.classifier.name,
            "checkpoint": ckpt.weights_path.name,
            "version": ckpt.meta.brainxai_version,
            "created": ckpt.meta.created,
            "sha256": ckpt.sha256,
            "classes": list(self.classifier.classes),
            "temperature": self.classifier.temperature,
            "temperature_carried_over": ckpt.meta.temperature_carried_over,
        }

    @property
    def segmenter_slot(self) -> segment.SegmenterSlot:
        """The segmentation model's slot (loaded at its first ``get``), for the series analysis."""
        return self._segmenter

    def score_slices(self, slices: Sequence[np.ndarray]) -> list[float]:
        """Suspicion score per slice: ``1 - P(notumor)`` (or the top class probability without that class)."""
        with self._lock:
            return steps.suspicion_scores(self.classifier, slices)

    def _explainer(self, method: str) -> Any:
        from brainxai.explain import create_explainer

        if method not in self._explainers:
            self._explainers[method] = create_explainer(method, self.classifier.model)
        return self._explainers[method]

    def second_method(self, method: str) -> str:
        """The method used to check agreement: Grad-CAM for LRP, otherwise LRP when the model supports it."""
        config = find_model_config(self.classifier.model)
        if method != "lrp" and (config is None or config.supports_lrp):
            return "lrp"
        return "gradcam" if method != "gradcam" else "gradcam++"

    def assess_prepared(self, prepared: Sequence[steps.PreparedImage]) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities ``(N, C)`` and out-of-domain scores (or None) of many prepared images (a series' slices)."""
        with self._lock:
            return steps.assess(self.classifier, prepared)

    def explain_prepared(
        self,
        prepared: Sequence[steps.PreparedImage],
        targets: Sequence[int],
        method: str,
        batch_size: int = steps.EXPLAIN_BATCH,
    ) -> list[np.ndarray]:
        """Relevance maps (model input grid) of many prepared images for the given classes, in batches."""
        out: list[np.ndarray] = []
        with self._lock:
            explainer = self._explainer(method)
            for start in range(0, len(prepared), batch_size):
                chunk, chosen = prepared[start : start + batch_size], targets[start : start + batch_size]
                out.extend(e.relevance for e in steps.explain(explainer, self.classifier, chunk, list(chosen)))
        return out

    def close(self) -> None:
        """Releases the explainers."""
        with self._lock:
            for explainer in self._explainers.values():
                explainer.close()
            self._explainers.clear()

    # -- the pipeline -----------------------------------------------------------------------------

    def read(
        self, source: str | Path | bytes, *, filename: str | None = None, slice_index: int | None = None
    ) -> ScanImage:
        """Decodes a scan (volumes: the most suspicious axial slice) and checks it looks like a brain scan."""
        return steps.read(source, filename=filename, slice_index=slice_index, scorer=self.score_slices)

    def analyze(
        self,
        source: str | Path | bytes,
        options: AnalysisOptions | None = None,
        *,
        out_dir: str | Path,
        filename: str | None = None,
        patient: PatientInfo | dict[str, Any] | None = None,
        name: str | None = None,
        report_path: str | Path | None = None,
    ) -> AnalysisResult:
        """Analyses one scan and writes its images, JSON sidecar and (optionally) PDF report.

        read -> prepare -> classify -> explain -> map back -> measure -> render -> report.

        Args:
            source: Path or file bytes (JPEG/PNG/BMP/TIFF, DICOM, NIfTI; the content decides).
            options: How to analyse it (default: :class:`AnalysisOptions` defaults: LRP, agreement, PDF).
            out_dir: Folder for the outputs (created if missing).
            filename: Name shown in the report (needed for bytes; defaults to the path's name).
            patient: Optional patient details for the report.
            name: Base name of the output files (default: the file's stem plus part of the id).
            report_path: Exact PDF path (default ``out_dir/<name>.pdf``).

        Returns:
            The :class:`AnalysisResult`.

        Raises:
            ImageReadError: The input is unreadable, truncated or not a brain scan
                (:class:`~brainxai.io.NotABrainScanError`).
        """
        scan = ScanInput(source, filename=filename, name=name, report_path=report_path)
        (outcome,) = self.analyze_many([scan], options, out_dir=out_dir, patient=patient)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def analyze_many(
        self,
        scans: Sequence[ScanInput],
        options: AnalysisOptions | None = None,
        *,
        out_dir: str | Path,
        patient: PatientInfo | dict[str, Any] | None = None,
    ) -> list[AnalysisResult | Exception]:
        """Analyses several scans as :meth:`analyze` does, classifying and explaining them in one batch.

        One batched pass through the classifier and the explainer costs less per scan than one pass each
        (the whole analysis on a 2-core CPU: 1.4x faster per scan in batches of 4, ``benchmarks/batch_analysis.md``);
        everything else runs per scan. Results equal :meth:`analyze`'s up to float rounding of the batched
        network (tested).

        Args:
            scans: The scans and the names of their outputs.
            options: How to analyse them (the same for all).
            out_dir: Folder for the outputs (created if missing) of the scans without their own
                (:attr:`ScanInput.out_dir`); give the scans that share it distinct names.
            patient: Patient details for every report.

        Returns:
            Per scan, in order, its result or the exception its analysis raised (a bad file does not stop
            the others).

        Raises:
            SegmenterUnavailableError: ``options.segment`` is True and no segmentation model is installed.
            Exception: Whatever the batch's shared classification and explanation pass raised (it fails for
                every scan of the batch at once; :func:`~brainxai.pipeline.batch.analyze_batch` records that).
        """
        options = options or AnalysisOptions()
        patient_info = PatientInfo.coerce(patient)
        segmenter = self._segmenter.get(options.segment)  # before any work: segment=True fails here
        started = [self._start(scan, options) for scan in scans]
        ready = [s for s in started if isinstance(s, _Started)]
        found = iter(self._classify_and_explain([s.prepared for s in ready], options, [s.run for s in ready]))
        checked: list[tuple[_Started, Finding, Future[np.ndarray] | None] | Exception] = []
        for s in started:
            if isinstance(s, Exception):
                checked.append(s)
                continue
            finding = next(found)  # the findings come in the order of the ready scans
            try:
                finding = _check_sequence(finding, measure.sequence(s.scan, options), s.run)
                # Every scan's segmentation is queued now: the worker thread segments the next scans while
                # this thread measures, renders and writes the first ones (an ONNX segmenter; torch runs it here).
                pending = None
                if segmenter is not None and _segmentable(finding):
                    pending = self._segmenter.start(segmenter, s.prepared.original)
                checked.append((s, finding, pending))
            except Exception as exc:  # this scan's failure; the others go on
                checked.append(exc)
        outcomes: list[AnalysisResult | Exception] = []
        for item in checked:
            if isinstance(item, Exception):
                outcomes.append(item)
                continue
            s, finding, pending = item
            try:
                out = Path(s.item.out_dir if s.item.out_dir is not None else out_dir)
                outcomes.append(self._finish(s, finding, options, segmenter, out, patient_info, pending))
            except Exception as exc:  # this scan's failure; the others go on
                outcomes.append(exc)
        return outcomes

    def _start(self, item: ScanInput, options: AnalysisOptions) -> _Started | Exception:
        """Reads and prepares one scan; the exception instead when that fails."""
        try:
            scan = self.read(item.source, filename=item.filename, slice_index=options.slice_index)
            run = _Run()
            return _Started(item, scan, self._prepare(scan, run), run)
        except Exception as exc:
            return exc

    def _finish(
        self,
        started: _Started,
        finding: Finding,
        options: AnalysisOptions,
        segmenter: segment.TumourSegmenter | None,
        out: Path,
        patient_info: PatientInfo | None,
        pending: Future[np.ndarray] | None,
    ) -> AnalysisResult:
        """Everything after the classification and explanation of one scan: measure, render, write.

        ``pending``: the scan's tumour mask on its way (started by :meth:`analyze_many`); None: not segmented.
        """
        scan, prepared, run, item = started.scan, started.prepared, started.run, started.item
        regions = measure.locate(finding.relevance, prepared)
        spacing = measure.pixel_spacing(scan, options, run.notes)
        if segmenter is not None and not _segmentable(finding):
            run.notes.append("The tumour was not segmented: the image is outside what the models were trained on.")
        # The mask is made in a worker thread (when the segmenter allows) while the agreement is measured.
        agreement = _agreement(finding, options, prepared, regions)
        tumour = self._segment(segmenter, pending, prepared, regions, finding, spacing, run)
        base = safe_stem(item.name) if item.name else f"{safe_stem(scan.source_name)}-{run.id[:8]}"
        rendered, images = None, outputs.PendingImages({}, [])
        if options.write_files:
            out.mkdir(parents=True, exist_ok=True)
            rendered = outputs.render(scan.pixels, regions, finding.prediction, tumour.mask if tumour else None)
            # Written in the background while the figures below and the PDF are computed.
            images = outputs.start_writing_images(rendered.arrays, out, base)
        try:
            on_tumour = tumour.region() if tumour else None
            params = measure.spatial_parameters(
                scan, regions, finding.prediction, finding.confidence, agreement, spacing, options, on_tumour
            )
            if finding.in_domain is False:
                params = measure.withhold_out_of_domain(params)
            result = AnalysisResult(
                id=run.id,
                created=run.created,
                source_name=scan.source_name,
                prediction=finding.prediction,
                probabilities=finding.probabilities,
                confidence=finding.confidence,
                method=options.method,
                spatial_parameters=params,
                scan=_scan_info(scan, prepared, spacing, options),
                model=self.model_info,
                images=images.paths,
                report_pdf=_report_pdf(out, base, options, item.report_path),
                report_json=out / f"{base}.json" if options.write_files else None,
                patient=patient_info.to_dict() if patient_info else None,
                agreement=agreement,
                notes=run.notes,
                warnings=run.warnings,
                in_domain=finding.in_domain,
                domain_score=finding.domain_score,
                domain_threshold=self.classifier.domain_threshold,
                segmentation=tumour.to_dict() if tumour else None,
                relevance_in_tumour=tumour.relevance_in_tumour if tumour else None,
            )
            if rendered is not None:
                outputs.write_report_and_json(result, rendered)
        finally:
            images.wait()
        dicom_out = item.dicom_out if item.dicom_out is not None else options.dicom_out
        if dicom_out is not None:
            if rendered is None:
                raise ValueError("DICOM results asked for an analysis that writes no files (write_files=False)")
            save = outputs.save_dicom_inputs if options.dicom_deferred else outputs.write_dicom
            save(result, rendered, regions.relevance, item.source, dicom_out)
        return result

    def _prepare(self, scan: ScanImage, run: _Run) -> steps.PreparedImage:
        """Crops and resizes the scan for the model; a crop that kept too little becomes a warning."""
        prepared = steps.prepare(scan.pixels, self.classifier)
        if prepared.crop_warning is not None:
            logger.warning("%s: %s", scan.source_name, prepared.crop_warning)
            run.warnings.append(prepared.crop_warning)
        return prepared

    def _segment(
        self,
        segmenter: segment.TumourSegmenter | None,
        pending: Future[np.ndarray] | None,
        prepared: steps.PreparedImage,
        regions: measure.Regions,
        finding: Finding,
        spacing: measure.Spacing,
        run: _Run,
    ) -> TumourSegmentation | None:
        """The segmented tumour measured, once its mask is ready; None when none was started (nothing measured)."""
        if segmenter is None or pending is None:
            return None
        tumour = segment.segment(
            self._segmenter,
            segmenter,
            prepared,
            regions.relevance,
            finding.prediction != NO_TUMOUR,
            spacing.mm,
            spacing.assumed,
            mask=pending.result(),
        )
        if tumour.warning:
            run.warnings.append(tumour.warning)
        return tumour

    def _domain(self, score: float | None, run: _Run) -> dict[str, Any]:
        """``domain_score`` and ``in_domain`` of one image; out of domain adds the not-assessable warning first."""
        threshold = self.classifier.domain_threshold
        if score is None or threshold is None:
            return {}
        if score > threshold:
            run.warnings.insert(0, not_assessable_message(score, threshold))
        return {"domain_score": score, "in_domain": score <= threshold}

    def _classify_and_explain(
        self, prepared: Sequence[steps.PreparedImage], options: AnalysisOptions, runs: Sequence[_Run]
    ) -> list[Finding]:
        """Classifies the images and explains each prediction in one batch; tumours again by a second method."""
        if not prepared:
            return []
        with self._lock:
            assessment = steps.assess_and_explain(self.classifier, self._explainer(options.method), prepared)
            classes = list(self.classifier.classes)
            findings = []
            for i, (explanation, run) in enumerate(zip(assessment.explanations, runs, strict=True)):
                probabilities = {c: float(p) for c, p in zip(classes, assessment.probabilities[i], strict=True)}
                domain = self._domain(None if assessment.domain is None else float(assessment.domain[i]), run)
                findings.append(Finding(probabilities, classes[explanation.target], explanation.relevance, **domain))
            # Agreement compares tumour regions; a "no tumour" prediction has none to compare.
            todo = [i for i, f in enumerate(findings) if options.agreement and f.prediction != NO_TUMOUR]
            if not todo:
                return findings
            second = self.second_method(options.method)
            try:
                explainer = self._explainer(second)
                targets = [assessment.explanations[i].target for i in todo]
                others = steps.explain_again(
                    explainer, self.classifier, [prepared[i] for i in todo], targets, assessment.subset(todo)
                )
            except ValueError as exc:  # e.g. UnsupportedModelError
                for i in todo:
                    runs[i].notes.append(f"Agreement not computed: {exc}")
                return findings
        for i, other in zip(todo, others, strict=True):
            findings[i] = dataclasses.replace(findings[i], second_method=second, second_relevance=other)
        return findings


def _segmentable(finding: Finding) -> bool:
    """Whether the scan's tumour is segmented (when a segmenter is in use): not when it is out of domain."""
    return finding.in_domain is not False


def _check_sequence(finding: Finding, sequence: str | None, run: _Run) -> Finding:
    """A slice of a sequence the model never saw is out of domain whatever its score (``sequence_verdict``)."""
    assessable, message = sequence_verdict(sequence)
    if message is None:
        return finding
    if assessable:
        run.warnings.append(message)
        return finding
    run.warnings.insert(0, message)
    return dataclasses.replace(finding, in_domain=False)


def _agreement(
    finding: Finding, options: AnalysisOptions, prepared: steps.PreparedImage, regions: measure.Regions
) -> dict[str, Any] | None:
    if finding.second_method is None or finding.second_relevance is None:
        return None
    return measure.agreement(
        options.method, finding.second_method, finding.relevance, finding.second_relevance, prepared, regions
    )


def _scan_info(
    scan: ScanImage, prepared: steps.PreparedImage, spacing: measure.Spacing, options: AnalysisOptions
) -> dict[str, Any]:
    """The result's ``scan`` record: the file's details, the model's crop and what the user stated."""
    from brainxai.data.preprocess import crop_fraction

    info = scan.info()
    info["model_input_crop"] = {
        "box_xyxy": [int(v) for v in prepared.box],
        "area_fraction": round(crop_fraction(prepared.box, scan.shape), 4),
    }
    if spacing.assumed and spacing.mm is not None:
        info["assumed_pixel_spacing_mm"] = list(spacing.mm)
    seq = measure.sequence(scan, options)
    if seq and not info.get("sequence"):
        info["sequence"] = f"{seq} (stated by the user)"
    return info


def _report_pdf(out: Path, base: str, options: AnalysisOptions, report_path: str | Path | None) -> Path | None:
    if report_path:
        return Path(report_path)
    return out / f"{base}.pdf" if options.report else None


# -- module-level convenience ----------------------------------------------------------------------

_SERVICES: dict[str, AnalysisService] = {}
_SERVICES_LOCK = threading.Lock()


def get_service(checkpoint: str | Path | None = None, device: str = "auto") -> AnalysisService:
    """The cached service for a checkpoint (one model load per checkpoint and device per process)."""
    key = f"{Path(checkpoint).resolve() if checkpoint is not None else '<default>'}|{device}"
    with _SERVICES_LOCK:
        if key not in _SERVICES:
            _SERVICES[key] = AnalysisService(checkpoint, device=device)
        return _SERVICES[key]


def analyze(
    path: str | Path | bytes,
    options: AnalysisOptions | None = None,
    *,
    out_dir: str | Path | None = None,
    patient: PatientInfo | dict[str, Any] | None = None,
    checkpoint: str | Path | None = None,
    filename: str | None = None,
    name: str | None = None,
    report_path: str | Path | None = None,
    **option_values: Any,
) -> AnalysisResult:
    """Analyses one scan with a cached :class:`AnalysisService` (see :meth:`AnalysisService.analyze`).

    ``out_dir`` defaults to a new temporary folder (its path is in the result). Options can be given
    as an :class:`AnalysisOptions`, as its fields (``method="gradcam"``, ``report=False``,
    ``slice_index``, ``assumed_pixel_spacing_mm``...), or both (the fields override).
    """
    options = dataclasses.replace(options or AnalysisOptions(), **option_values)
    if out_dir is None:
        out_dir = tempfile.mkdtemp(prefix="brainxai-")
        logger.info("writing outputs to %s", out_dir)
    return get_service(checkpoint).analyze(
        path, options, out_dir=out_dir, filename=filename, patient=patient, name=name, report_path=report_path
    )
