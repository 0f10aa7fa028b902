"""The analysis pipeline, shared by the library call, the CLI and the web app.

One scan in; a prediction, its explanation, the ten spatial parameters, images and a report out::

    service = AnalysisService(checkpoint)          # loads the model once
    result = service.analyze("scan.dcm", out_dir="out")
    result.report_pdf, result.prediction, result.spatial_parameters

The file is decoded once into a :class:`~brainxai.io.ScanImage`, prepared once, and that prepared
image feeds both the classifier and the explainers. Every output file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from brainxai.version import __version__
from brainxai.constants import CLASS_TITLES, DISCLAIMER, IMAGE_SUFFIXES, NO_TUMOUR
from brainxai.io import ImageReadError, ScanImage, check_brain_scan, read_scan
from brainxai.reporting.labels import method_title
from brainxai.util.files import atomic_write_bytes

logger = logging.getLogger(__name__)

#: File suffixes picked up when a directory is analysed (DICOM files often have no suffix at all).
SCAN_SUFFIXES: frozenset[str] = IMAGE_SUFFIXES | {".dcm", ".dicom", ".ima", ".nii", ".gz"}

#: Images written for each analysis, in report order.
IMAGE_KINDS: tuple[str, ...] = ("original", "heatmap", "overlay", "outline", "mask")


@dataclass
class PatientInfo:
    """Optional patient details typed by the user (never read from the scan's own tags)."""

    name: str | None = None
    patient_id: str | None = None
    age: int | None = None
    sex: str | None = None
    referring_physician: str | None = None

    @classmethod
    def coerce(cls, value: PatientInfo | dict[str, Any] | None) -> PatientInfo | None:
        """Accepts a PatientInfo, a dict with its field names, or None."""
        if value is None or isinstance(value, PatientInfo):
            return value
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown patient fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


@dataclass
class AnalysisResult:
    """Everything one analysis produced. ``to_dict()`` is what the JSON sidecar holds."""

    id: str
    created: str
    source_name: str
    prediction: str
    probabilities: dict[str, float]
    confidence: float
    method: str
    spatial_parameters: list[dict[str, Any]]
    scan: dict[str, Any]
    model: dict[str, Any]
    images: dict[str, Path]
    report_pdf: Path | None
    report_json: Path
    patient: dict[str, Any] | None = None
    agreement: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    #: Conditions that make this result unreliable (shown prominently; ``notes`` are context).
    warnings: list[str] = field(default_factory=list)

    @property
    def is_tumour(self) -> bool:
        return self.prediction != NO_TUMOUR

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (paths as strings), with the guidance and disclaimer added."""
        from brainxai.reporting.guidance import guidance_for

        d = asdict(self)
        d["images"] = {k: str(v) for k, v in self.images.items()}
        d["report_pdf"] = str(self.report_pdf) if self.report_pdf else None
        d["report_json"] = str(self.report_json)
        d["prediction_title"] = CLASS_TITLES.get(self.prediction, self.prediction)
        d["tumour"] = self.is_tumour
        d["agreement_method"] = (self.agreement or {}).get("description")
        d["guidance"] = guidance_for(self.prediction, self.confidence).to_dict() if self.prediction in CLASS_TITLES else None
        d["disclaimer"] = DISCLAIMER
        d["brainxai_version"] = __version__
        return d


def _safe_stem(name: str) -> str:
    stem = name
    for suffix in (".gz", ".nii", ".dcm", *IMAGE_SUFFIXES):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "scan"
    return stem[:80]


def _png_bytes(image: np.ndarray) -> bytes:
    arr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _iou(a: np.ndarray, b: np.ndarray) -> float | None:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b)) / float(union) if union else None


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    a, b = a.ravel(), b.ravel()
    if a.std() == 0 or b.std() == 0:
        return None
    return float(spearmanr(a, b).statistic)


class AnalysisService:
    """The analysis pipeline around one loaded model.

    Args:
        checkpoint: Checkpoint path (stem or file); None for the default model shipped with the package.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...

    Thread-safe: the model and its explainers are used under a lock (explanations modify the model
    temporarily), decoding and file writing run outside it.
    """

    def __init__(self, checkpoint: str | Path | None = None, device: str = "auto") -> None:
        from brainxai.inference import Classifier

        self.classifier: Classifier = Classifier.load(checkpoint, device=device)
        self._lock = threading.RLock()
        self._explainers: dict[str, Any] = {}

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

    def score_slices(self, slices: Sequence[np.ndarray]) -> list[float]:
        """Suspicion score per slice: ``1 - P(notumor)`` (or the top class probability without that class)."""
        prepared = np.stack([self.classifier.prepare(s) for s in slices])
        with self._lock:
            probs = self.classifier.predict_proba_prepared(prepared)
        classes = list(self.classifier.classes)
        if NO_TUMOUR in classes:
            return [float(v) for v in 1.0 - probs[:, classes.index(NO_TUMOUR)]]
        return [float(v) for v in probs.max(axis=1)]

    def _explainer(self, method: str) -> Any:
        from brainxai.explain import create_explainer

        if method not in self._explainers:
            self._explainers[method] = create_explainer(method, self.classifier.model)
        return self._explainers[method]

    def second_method(self, method: str) -> str:
        """The method used to check agreement: Grad-CAM for LRP, otherwise LRP when the model supports it."""
        if method != "lrp" and getattr(self.classifier.model.brainxai_config, "supports_lrp", True):
            return "lrp"
        return "gradcam" if method != "gradcam" else "gradcam++"

    def close(self) -> None:
        """Releases the explainers."""
        with self._lock:
            for explainer in self._explainers.values():
                explainer.close()
            self._explainers.clear()

    # -- the pipeline -----------------------------------------------------------------------------

    def read(self, source: str | Path | bytes, *, filename: str | None = None, slice_index: int | None = None) -> ScanImage:
        """Decodes a scan (volumes: the most suspicious axial slice) and checks it looks like a brain scan."""
        scan = read_scan(source, filename=filename, slice_index=slice_index, scorer=self.score_slices)
        check_brain_scan(scan.pixels, scan.source_name)
        return scan

    def analyze(
        self,
        source: str | Path | bytes,
        *,
        filename: str | None = None,
        method: str = "lrp",
        patient: PatientInfo | dict[str, Any] | None = None,
        out_dir: str | Path,
        report: bool = True,
        slice_index: int | None = None,
        name: str | None = None,
        report_path: str | Path | None = None,
        agreement: bool = True,
        assumed_pixel_spacing_mm: float | tuple[float, float] | None = None,
        sequence: str | None = None,
        perfusion_map: np.ndarray | None = None,
    ) -> AnalysisResult:
        """Analyses one scan and writes its images, JSON sidecar and (optionally) PDF report.

        Args:
            source: Path or file bytes (JPEG/PNG/BMP/TIFF, DICOM, NIfTI; the content decides).
            filename: Name shown in the report (needed for bytes; defaults to the path's name).
            method: Explanation method (``lrp``, ``gradcam``, ``gradcam++``, ``hirescam``...).
            patient: Optional patient details for the report.
            out_dir: Folder for the outputs (created if missing).
            report: Write the PDF report.
            slice_index: For volumes, the slice to analyse (default: the most suspicious).
            name: Base name of the output files (default: the file's stem plus part of the id).
            report_path: Exact PDF path (default ``out_dir/<name>.pdf``).
            agreement: Also run a second explanation method and report the agreement.
            assumed_pixel_spacing_mm: Spacing to assume when the file has none; reported as assumed.
            sequence: MR sequence (``T1``, ``T2``, ``FLAIR``...) when the file does not say.
            perfusion_map: CBV map on the scan's pixel grid, enabling the rCBV ratio.

        Returns:
            The :class:`AnalysisResult`.

        Raises:
            ImageReadError: The input is unreadable, truncated or not a brain scan
                (:class:`~brainxai.io.NotABrainScanError`).
        """
        from brainxai.analysis.region import brain_mask, relevance_region
        from brainxai.analysis.spatial import compute_spatial_parameters
        from brainxai.data.preprocess import crop_fraction, crop_warning, prepare_with_box
        from brainxai.explain.views import outline_image, relevance_to_original, render_views

        patient_info = PatientInfo.coerce(patient)
        scan = self.read(source, filename=filename, slice_index=slice_index)
        analysis_id = uuid.uuid4().hex[:12]
        created = datetime.now(UTC).isoformat(timespec="seconds")
        notes: list[str] = []

        prepared, box = prepare_with_box(scan.pixels, self.classifier.preprocess)
        warnings: list[str] = []
        crop_note = crop_warning(box, scan.shape)
        if crop_note is not None:
            logger.warning("%s: %s", scan.source_name, crop_note)
            warnings.append(crop_note)
        with self._lock:
            probs = self.classifier.predict_proba_prepared(prepared[None])[0]
            index = int(np.argmax(probs))
            x = self.classifier.tensor(prepared[None])
            explanation = self._explainer(method).explain(x, target=index)[0]
            # Agreement compares tumour regions; a "no tumour" prediction has none to compare.
            tumour = self.classifier.classes[index] != NO_TUMOUR
            second = self.second_method(method) if agreement and tumour else None
            second_map = None
            if second is not None:
                try:
                    second_map = self._explainer(second).explain(x, target=index)[0].relevance
                except ValueError as exc:  # e.g. UnsupportedModelError
                    notes.append(f"Agreement not computed: {exc}")
        classes = list(self.classifier.classes)
        prediction = classes[index]
        probabilities = {c: float(p) for c, p in zip(classes, probs)}

        relevance = relevance_to_original(explanation.relevance, box, scan.shape)
        brain = brain_mask(scan.pixels)
        region = relevance_region(relevance, brain=brain)

        agreement_info: dict[str, Any] | None = None
        if second_map is not None:
            region2 = relevance_region(relevance_to_original(second_map, box, scan.shape), brain=brain)
            iou = _iou(region, region2)
            agreement_info = {
                "second_method": second,
                "iou": iou,
                "spearman": _spearman(explanation.relevance, second_map),
                "description": (
                    f"IoU of the relevance regions of {method_title(method)} and {method_title(second)} "
                    "(Spearman rank correlation of the two maps in the JSON)"
                ),
            }

        spacing = scan.pixel_spacing_mm
        spacing_assumed = False
        if spacing is None and assumed_pixel_spacing_mm is not None:
            a = assumed_pixel_spacing_mm
            spacing = (float(a), float(a)) if isinstance(a, (int, float)) else (float(a[0]), float(a[1]))
            spacing_assumed = True
            notes.append(f"Pixel spacing {spacing[0]:g} x {spacing[1]:g} mm was assumed by the user, not read from the file.")
        elif spacing is None:
            notes.append("The file records no pixel spacing, so sizes are in pixels, not millimetres.")
        seq = sequence or scan.meta.get("sequence")

        params = compute_spatial_parameters(
            scan.pixels,
            region,
            brain,
            spacing,
            probabilities[prediction],
            agreement_info["iou"] if agreement_info else None,
            prediction=prediction,
            agreement_method=agreement_info["description"] if agreement_info else "not computed (no tumour region or switched off)",
            spacing_assumed=spacing_assumed,
            plane=scan.meta.get("plane"),
            display_convention=scan.meta.get("display_convention"),
            sequence=seq,
            perfusion=perfusion_map,
        )

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        base = _safe_stem(name) if name else f"{_safe_stem(scan.source_name)}-{analysis_id[:8]}"
        views = render_views(scan.pixels, relevance, prediction, brain=brain, region=region)
        arrays = {"original": scan.pixels, **{k: views[k] for k in ("heatmap", "overlay", "outline", "mask")}}
        images: dict[str, Path] = {}
        for kind, arr in arrays.items():
            path = out / f"{base}-{kind}.png"
            atomic_write_bytes(path, _png_bytes(arr))
            images[kind] = path

        scan_info = scan.info()
        scan_info["model_input_crop"] = {
            "box_xyxy": [int(v) for v in box],
            "area_fraction": round(crop_fraction(box, scan.shape), 4),
        }
        if spacing_assumed:
            scan_info["assumed_pixel_spacing_mm"] = list(spacing)
        if seq and not scan_info.get("sequence"):
            scan_info["sequence"] = f"{seq} (stated by the user)"
        result = AnalysisResult(
            id=analysis_id,
            created=created,
            source_name=scan.source_name,
            prediction=prediction,
            probabilities=probabilities,
            confidence=probabilities[prediction],
            method=method,
            spatial_parameters=[p.to_dict() for p in params],
            scan=scan_info,
            model=self.model_info,
            images=images,
            report_pdf=Path(report_path) if report_path else (out / f"{base}.pdf") if report else None,
            report_json=out / f"{base}.json",
            patient=patient_info.to_dict() if patient_info else None,
            agreement=agreement_info,
            notes=notes,
            warnings=warnings,
        )
        payload = result.to_dict()
        if result.report_pdf is not None:
            from brainxai.reporting.pdf import write_report

            # The report's third picture is the overlay with the region's outline drawn on it.
            shown = {**arrays, "outline": outline_image(views["overlay"], region) if views.region_drawn else views["overlay"]}
            write_report(payload, shown, result.report_pdf)
        atomic_write_bytes(result.report_json, json.dumps(payload, indent=2, default=_json_default).encode())
        return result


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


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
    *,
    method: str = "lrp",
    out_dir: str | Path | None = None,
    report: bool = True,
    patient: PatientInfo | dict[str, Any] | None = None,
    checkpoint: str | Path | None = None,
    **kwargs: Any,
) -> AnalysisResult:
    """Analyses one scan with a cached :class:`AnalysisService` (see :meth:`AnalysisService.analyze`).

    ``out_dir`` defaults to a new temporary folder (its path is in the result). Further keyword
    arguments (``slice_index``, ``filename``, ``name``, ``assumed_pixel_spacing_mm``...) are passed on.
    """
    if out_dir is None:
        out_dir = tempfile.mkdtemp(prefix="brainxai-")
        logger.info("writing outputs to %s", out_dir)
    return get_service(checkpoint).analyze(path, method=method, out_dir=out_dir, report=report, patient=patient, **kwargs)


# -- batches -----------------------------------------------------------------------------------------


@dataclass
class BatchItem:
    """Outcome of one file of a batch."""

    file: str
    status: str  # "ok" or "failed"
    result: AnalysisResult | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def collect_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Expands folders (recursively) into the scan files they hold; files are kept as given.

    In folders, files with a scan suffix (see :data:`SCAN_SUFFIXES`) or with no suffix (common for
    DICOM) are taken; hidden files are skipped. Missing paths are kept so that they are reported.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts) and (
                    f.suffix.lower() in SCAN_SUFFIXES or f.suffix == ""
                ):
                    out.append(f)
        else:
            out.append(p)
    return out


def _unique_names(files: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for f in files:
        stem = _safe_stem(f.name)
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


def analyze_batch(
    service: AnalysisService,
    files: Sequence[Path],
    *,
    out_dir: str | Path,
    method: str = "lrp",
    patient: PatientInfo | dict[str, Any] | None = None,
    report: bool = True,
    names: Sequence[str] | None = None,
    report_path: str | Path | None = None,
    progress: Callable[[BatchItem], None] | None = None,
    **kwargs: Any,
) -> list[BatchItem]:
    """Analyses many files; a bad file is recorded as failed and the batch goes on.

    Args:
        service: The service to use.
        files: Input files.
        out_dir: Output folder shared by all files (output names are made unique).
        names: Output base names, one per file (default: unique file stems).
        report_path: Exact PDF path; only allowed for a single file.
        progress: Called after each file with its :class:`BatchItem`.
        **kwargs: Passed to :meth:`AnalysisService.analyze`.
    """
    if report_path is not None and len(files) != 1:
        raise ValueError("an explicit report path needs exactly one input file")
    names = list(names) if names is not None else _unique_names(files)
    items: list[BatchItem] = []
    for f, name in zip(files, names):
        try:
            result = service.analyze(
                f, method=method, patient=patient, out_dir=out_dir, report=report, name=name,
                report_path=report_path, **kwargs,
            )
            item = BatchItem(str(f), "ok", result=result)
        except ImageReadError as exc:
            item = BatchItem(str(f), "failed", error=str(exc))
        except Exception as exc:  # one broken file must not stop a batch; the error is kept and logged
            logger.exception("analysis of %s failed", f)
            item = BatchItem(str(f), "failed", error=f"internal error ({type(exc).__name__}): {exc}")
        items.append(item)
        if progress is not None:
            progress(item)
    return items


SUMMARY_COLUMNS: tuple[str, ...] = ("file", "status", "prediction", "confidence", "report", "error")


def summary_csv(items: Sequence[BatchItem]) -> bytes:
    """The batch summary as CSV bytes, columns :data:`SUMMARY_COLUMNS`."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(SUMMARY_COLUMNS)
    for it in items:
        r = it.result
        report = (r.report_pdf or r.report_json) if r else None
        writer.writerow([
            it.file, it.status, r.prediction if r else "", f"{r.confidence:.4f}" if r else "",
            str(report) if report else "", it.error or "",
        ])
    return buf.getvalue().encode()


def write_summary_csv(items: Sequence[BatchItem], path: str | Path) -> Path:
    """Writes :func:`summary_csv` atomically."""
    path = Path(path)
    atomic_write_bytes(path, summary_csv(items))
    return path


# -- demo ----------------------------------------------------------------------------------------------


def sample_scans() -> dict[str, Path]:
    """The sample scans shipped with the package, one per class: ``{class: path}``."""
    root = resources.files("brainxai") / "samples"
    found = {}
    for entry in root.iterdir():
        stem = entry.name.rsplit(".", 1)[0]
        if stem in CLASS_TITLES and entry.is_file():
            found[stem] = Path(str(entry))
    return dict(sorted(found.items()))


def run_demo(
    out_dir: str | Path = "brainxai-demo",
    *,
    checkpoint: str | Path | None = None,
    method: str = "lrp",
    progress: Callable[[BatchItem], None] | None = None,
) -> list[BatchItem]:
    """Analyses the shipped sample scans with the default model (or ``checkpoint``) into ``out_dir``.

    Reports are named after the sample's class: ``out_dir/glioma.pdf`` and so on.
    """
    samples = sample_scans()
    if not samples:
        raise FileNotFoundError("no sample scans found in the installed package")
    service = get_service(checkpoint)
    return analyze_batch(
        service, list(samples.values()), out_dir=out_dir, method=method, names=list(samples), progress=progress
    )
