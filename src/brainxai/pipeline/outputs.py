"""The render and report steps: the analysis images, the PDF report and the JSON sidecar, written atomically."""

from __future__ import annotations

import io
import logging
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from brainxai.pipeline.measure import Regions
from brainxai.pipeline.result import IMAGE_KINDS, TUMOUR_IMAGE, AnalysisResult, json_bytes
from brainxai.util.files import atomic_write_bytes
from brainxai.util.pools import shared_pool

if TYPE_CHECKING:  # highdicom is imported only when DICOM outputs are asked for
    from brainxai.reporting.dicom import AnalysisImages, DicomOutputs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    """The images of one analysis.

    Attributes:
        arrays: One image per :data:`~brainxai.pipeline.result.IMAGE_KINDS` (RGB or grayscale ``uint8``).
        region: The relevance region drawn in them.
        region_drawn: Whether the region is drawn (not for a "no tumour" prediction).
        tumour: The segmented tumour, when a segmentation model outlined one (``arrays`` then holds its image).
    """

    arrays: dict[str, np.ndarray]
    region: np.ndarray
    region_drawn: bool
    tumour: np.ndarray | None = None

    def report_images(self) -> dict[str, np.ndarray]:
        """What the PDF shows: the outline slot holds the overlay with the region's outline drawn on it."""
        from brainxai.explain.views import outline_image

        overlay = self.arrays["overlay"]
        return {**self.arrays, "outline": outline_image(overlay, self.region) if self.region_drawn else overlay}


def render(pixels: np.ndarray, regions: Regions, prediction: str, tumour: np.ndarray | None = None) -> Rendered:
    """The scan, its heatmap, overlay, outline and relevance mask; the segmented tumour's outline when not empty."""
    from brainxai.explain.views import render_views

    views = render_views(pixels, regions.relevance, prediction, brain=regions.brain, region=regions.region)
    arrays = {"original": pixels, **{k: views[k] for k in IMAGE_KINDS[1:]}}
    if tumour is None or not tumour.any():
        return Rendered(arrays, regions.region, views.region_drawn, tumour)
    return Rendered({**arrays, TUMOUR_IMAGE: tumour_image(pixels, tumour)}, regions.region, views.region_drawn, tumour)


#: Colour of the segmented tumour's outline (green: the relevance region's outline is red).
TUMOUR_COLOUR = (40, 220, 90)


def tumour_image(pixels: np.ndarray, tumour: np.ndarray) -> np.ndarray:
    """The scan (RGB) with the segmented tumour's outline drawn on it."""
    out = np.ascontiguousarray(np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels.copy())
    contours, _ = cv2.findContours(tumour.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, TUMOUR_COLOUR, max(2, round(max(pixels.shape[:2]) / 250) + 1))
    return out


def write_images(arrays: dict[str, np.ndarray], out_dir: Path, base: str) -> dict[str, Path]:
    """Writes ``out_dir/<base>-<kind>.png`` for every image; returns their paths by kind."""
    pending = start_writing_images(arrays, out_dir, base)
    pending.wait()
    return pending.paths


@dataclass(frozen=True)
class PendingImages:
    """Image files being written in the background: their paths now, :meth:`wait` before relying on them."""

    paths: dict[str, Path]
    futures: list[Future[None]]

    def wait(self) -> None:
        """Blocks until every file is written; re-raises the first error."""
        for future in self.futures:
            future.result()


def start_writing_images(arrays: dict[str, np.ndarray], out_dir: Path, base: str) -> PendingImages:
    """Starts writing ``out_dir/<base>-<kind>.png`` for every image, concurrently, and returns at once.

    Each atomic write ends with an ``fsync``: overlapping them costs about one instead of one per file,
    and the analysis builds its PDF meanwhile (PNG encoding and ``fsync`` release the GIL;
    ``benchmarks/perf.md``).
    """
    paths = {kind: out_dir / f"{base}-{kind}.png" for kind in arrays}
    pool = shared_pool("write", len(IMAGE_KINDS))
    futures = [pool.submit(_write_png, paths[kind], arr) for kind, arr in arrays.items()]
    return PendingImages(paths, futures)


def _write_png(path: Path, image: np.ndarray) -> None:
    atomic_write_bytes(path, png_bytes(image))


def png_array(data: bytes) -> np.ndarray:
    """A PNG written by :func:`png_bytes`, decoded to the same array (RGB or grayscale ``uint8``)."""
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError("not a PNG image")
    return arr if arr.ndim == 2 else cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB or grayscale ``uint8`` image encoded as PNG."""
    arr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def write_report_and_json(result: AnalysisResult, rendered: Rendered) -> None:
    """Writes the PDF report (when the result has a path for it), then the JSON sidecar."""
    json_path = _json_path(result)
    payload = result.to_dict()
    if result.report_pdf is not None:
        from brainxai.reporting.pdf import write_report

        write_report(payload, rendered.report_images(), result.report_pdf)
    atomic_write_bytes(json_path, json_bytes(payload))


def _json_path(result: AnalysisResult) -> Path:
    """The result's JSON sidecar path; a result analysed without writing files has none (an error here)."""
    if result.report_json is None:
        raise ValueError("the result has no JSON path: it was analysed without writing files")
    return result.report_json


def write_dicom(
    result: AnalysisResult, rendered: Rendered, relevance: np.ndarray, source: str | Path | bytes, out_dir: str | Path
) -> DicomOutputs:
    """Writes the DICOM outputs (SR, parametric map, overlay SC, encapsulated PDF) after the PDF and JSON."""
    from brainxai.reporting.dicom import write_dicom_outputs

    header = dicom_header(source) if result.scan.get("format") == "dicom" else None
    pdf = result.report_pdf.read_bytes() if result.report_pdf is not None and result.report_pdf.is_file() else None
    images = _dicom_images(rendered, relevance)
    base = _json_path(result).stem
    written = write_dicom_outputs(result.to_dict(), images, out_dir=out_dir, base=base, pdf=pdf, source=header)
    logger.info("%s: DICOM outputs in %s (study %s)", result.source_name, out_dir, written.study_uid)
    return written


def _dicom_images(rendered: Rendered, relevance: np.ndarray) -> AnalysisImages:
    """The arrays the DICOM objects are built from."""
    from brainxai.reporting.dicom import AnalysisImages

    # As in the images: no region where none is drawn (a "no tumour" prediction has no tumour region).
    region = rendered.region if rendered.region_drawn else np.zeros_like(rendered.region, dtype=bool)
    return AnalysisImages(rendered.arrays["original"], relevance, region, rendered.arrays["overlay"], rendered.tumour)


#: End of the file name (after the scan's base name) that holds what deferred DICOM outputs are built from.
DICOM_INPUTS_SUFFIX = "-dicom-inputs.npz"


def save_dicom_inputs(
    result: AnalysisResult, rendered: Rendered, relevance: np.ndarray, source: str | Path | bytes, out_dir: str | Path
) -> Path:
    """Saves what :func:`write_dicom` builds the DICOM outputs from, to build them later (:func:`saved_dicom_files`).

    Building the objects (highdicom's SR above all) costs more than the rest of writing an analysis' files,
    so a caller that rarely needs them (the web app: a download link) defers it. Saved in one uncompressed
    ``<base>-dicom-inputs.npz`` (compressing would cost about what it defers): the relevance map, the region
    and the segmented tumour (bit-packed), the source's DICOM header without its pixels, and the base name.
    The scan and overlay images are not saved again: they are the analysis' PNGs.

    Returns:
        The file written.
    """
    import pydicom

    images = _dicom_images(rendered, relevance)
    arrays: dict[str, Any] = {  # Any: numpy's stubs read ** into savez's keyword options
        "base": np.array(_json_path(result).stem),
        "relevance": np.asarray(images.relevance),
        "shape": np.array(images.region.shape),
        "region": np.packbits(images.region),
    }
    if images.tumour is not None:
        arrays["tumour"] = np.packbits(images.tumour.astype(bool))
    if result.scan.get("format") == "dicom":
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, dicom_header(source), enforce_file_format=False)
        arrays["header"] = np.frombuffer(buf.getvalue(), dtype=np.uint8)
    payload = io.BytesIO()
    np.savez(payload, **arrays)
    path = Path(out_dir) / f"{arrays['base']}{DICOM_INPUTS_SUFFIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, payload.getvalue())
    return path


def saved_dicom_files(
    inputs: str | Path, result: dict[str, Any], original: np.ndarray, overlay: np.ndarray, pdf: bytes | None
) -> dict[str, bytes]:
    """The DICOM files :func:`write_dicom` would have written, built from :func:`save_dicom_inputs`' file.

    Args:
        inputs: The saved inputs (``<base>-dicom-inputs.npz``).
        result: The analysis (:meth:`AnalysisResult.to_dict`, or as stored: without file paths).
        original: The analysis' ``original`` image (its PNG, decoded by :func:`png_array`).
        overlay: Its ``overlay`` image, likewise.
        pdf: Its PDF report's bytes, or None when it has none.

    Returns:
        File name -> file bytes, the names and contents :func:`write_dicom` writes.
    """
    import pydicom

    from brainxai.reporting.dicom import AnalysisImages, dicom_file_name, encode_dicom_outputs

    with np.load(inputs, allow_pickle=False) as saved:
        shape = tuple(int(n) for n in saved["shape"])
        size = shape[0] * shape[1]

        def unpack(key: str) -> np.ndarray:
            return np.unpackbits(saved[key], count=size).reshape(shape).astype(bool)

        tumour = unpack("tumour") if "tumour" in saved.files else None
        images = AnalysisImages(original, saved["relevance"], unpack("region"), overlay, tumour)
        header = pydicom.dcmread(io.BytesIO(saved["header"].tobytes()), force=True) if "header" in saved.files else None
        base = str(saved["base"])
    encoded, _ = encode_dicom_outputs(result, images, base=base, pdf=pdf, source=header)
    return {dicom_file_name(base, kind): data for kind, data in encoded.items()}


def dicom_header(source: str | Path | bytes) -> Any:
    """The DICOM data set of a source file without its pixel data (what the DICOM outputs refer to)."""
    import pydicom

    fp = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    return pydicom.dcmread(fp, stop_before_pixels=True, force=True)
