"""``brainxai explain`` and ``brainxai xai-benchmark``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from brainxai.cli.app import app, check_methods, fail, invocation

if TYPE_CHECKING:
    import numpy as np

    from brainxai.explain.base import Explanation
    from brainxai.explain.views import RenderedViews
    from brainxai.inference import Classifier, Prediction
    from brainxai.pipeline.steps import PreparedImage


def _load_classifier(checkpoint: Path | None, device: str):
    from brainxai.inference import Classifier
    from brainxai.models.checkpoint import CheckpointError

    try:
        return Classifier.load(checkpoint, device=device)
    except CheckpointError as exc:
        fail(str(exc))


def _parse_target(target: str | None, classes: tuple[str, ...]) -> int | None:
    if target is None:
        return None
    if target in classes:
        return classes.index(target)
    if target.isdigit() and int(target) < len(classes):
        return int(target)
    fail(f"unknown target class {target!r}; use one of {', '.join(classes)} or an index 0..{len(classes) - 1}")
    return None


def _check_method(method: str, composite: str | None) -> None:
    check_methods([method])
    if composite is not None and method != "lrp":
        fail("--composite applies to --method lrp only")


def _read(image: Path, classifier: Classifier) -> np.ndarray:
    """The scan's pixels, read like ``analyze`` reads them (any format, checked to look like a brain;
    a volume's most suspicious slice)."""
    from brainxai.io import ImageReadError
    from brainxai.pipeline import steps

    try:
        pixels = steps.read(image, scorer=lambda slices: steps.suspicion_scores(classifier, slices)).pixels
    except ImageReadError as exc:
        fail(str(exc))
    return pixels


def _explain(
    method: str, composite: str | None, classifier: Classifier, prepared: PreparedImage, target: int | None
) -> Explanation:
    from brainxai.explain import UnsupportedModelError, create_explainer
    from brainxai.pipeline import steps

    options = {"composite": composite} if composite else {}
    try:
        with create_explainer(method, classifier.model, **options) as explainer:
            (explanation,) = steps.explain(explainer, classifier, [prepared], target)
    except UnsupportedModelError as exc:
        fail(str(exc))
    return explanation


def _predict(classifier: Classifier, prepared: PreparedImage) -> Prediction:
    from brainxai.inference import Prediction
    from brainxai.pipeline import steps

    probs = steps.classify(classifier, [prepared])[0]
    index = int(probs.argmax())
    probabilities = {c: float(p) for c, p in zip(classifier.classes, probs, strict=True)}
    return Prediction(label=classifier.classes[index], index=index, probabilities=probabilities)


def _write(out: Path, views: RenderedViews, meta: dict[str, Any], relevance: np.ndarray) -> None:
    import json

    import numpy as np
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for name, rgb in views.items():
        Image.fromarray(rgb).save(out / f"{name}.png")
    np.save(out / "relevance.npy", relevance)
    (out / "explanation.json").write_text(json.dumps(meta, indent=2) + "\n")


def _meta(
    image: Path, explanation: Explanation, prediction: Prediction, prepared: PreparedImage, views: RenderedViews
) -> dict[str, Any]:
    from brainxai.constants import DISCLAIMER

    return {
        "image": str(image),
        "method": explanation.method,
        "target": explanation.target,
        "target_label": explanation.target_label,
        # The map explains the model's raw logits; the probability shown is the classifier's (with the
        # checkpoint's temperature), the same number as in "probabilities".
        "score": prediction.probabilities.get(explanation.target_label, explanation.score),
        "predicted": prediction.label,
        "probabilities": prediction.probabilities,
        "crop_box": list(prepared.box),
        "crop_warning": prepared.crop_warning,
        "original_shape": list(prepared.shape),
        "relevance_npy": "relevance.npy: (H, W) float32 map at model-input resolution of the crop box",
        "caption": views.caption,
        "region_drawn": views.region_drawn,
        "disclaimer": DISCLAIMER,
    }


def _echo_summary(meta: dict[str, Any], prediction: Prediction, method: str, out: Path) -> None:
    from brainxai.constants import DISCLAIMER

    typer.echo(
        f"predicted {prediction.label} ({prediction.confidence:.3f}); {method} map for "
        f"{meta['target_label']} (p={meta['score']:.3f}) written to {out}"
    )
    typer.echo(meta["caption"])
    if meta["crop_warning"]:
        typer.echo(f"Warning: {meta['crop_warning']}", err=True)
    typer.echo(DISCLAIMER)


@app.command("explain")
def explain_command(
    image: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="Scan to explain: JPEG/PNG/BMP/TIFF, DICOM or NIfTI (.nii/.nii.gz; the slice with the most tissue).",
    ),
    method: str = typer.Option("lrp", "--method", "-m", help="Explanation method (see --help for the list)."),
    target: str | None = typer.Option(None, "--target", help="Class to explain (name or index); default: predicted."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Checkpoint; default: the shipped model."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    show_evidence: bool = typer.Option(
        False, "--show-evidence", help="Also draw the map when the prediction is 'no tumour' (labelled as such)."
    ),
    alpha: float = typer.Option(0.5, "--alpha", min=0.0, max=1.0, help="Overlay opacity."),
    composite: str | None = typer.Option(
        None,
        "--composite",
        help="LRP rule set: epsilon-plus-uniform-flat (default), epsilon-plus-flat, epsilon-gamma-box or epsilon.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Explain one scan: heatmap, overlay, mask and outline PNGs plus the raw map (.npy).

    Methods: lrp, gradcam, gradcam++, hirescam, guided-backprop, guided-gradcam.
    Research use only, not a diagnosis.
    """
    from brainxai.explain.views import render_views
    from brainxai.pipeline import steps

    _check_method(method, composite)
    classifier = _load_classifier(checkpoint, device)
    pixels = _read(image, classifier)
    target_index = _parse_target(target, classifier.classes)
    prepared = steps.prepare(pixels, classifier)
    explanation = _explain(method, composite, classifier, prepared, target_index)
    prediction = _predict(classifier, prepared)
    mapped = steps.map_back(explanation.relevance, prepared)
    views = render_views(pixels, mapped, explanation.target_label, show_evidence=show_evidence, alpha=alpha)
    meta = _meta(image, explanation, prediction, prepared, views)
    _write(out, views, meta, explanation.relevance)
    _echo_summary(meta, prediction, method, out)


@app.command("xai-benchmark")
def xai_benchmark_command(
    ctx: typer.Context,
    boxes: Path = typer.Option(
        ...,
        "--boxes",
        exists=True,
        dir_okay=False,
        help="CSV file,label,width,height,x0,y0,x1,y1; with a 'mask' column (file,mask,label,...) also mask "
        "metrics and the in-painting drop.",
    ),
    images_root: Path | None = typer.Option(None, "--images-root", help="Folder the CSV paths are relative to."),
    methods: str = typer.Option("all", "--methods", help="'all' or a comma-separated list."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Checkpoint; default: the shipped model."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    target: str = typer.Option("label", "--target", help="Explain the annotated 'label' or the 'predicted' class."),
    steps: int = typer.Option(20, "--steps", min=2, help="Deletion/insertion steps."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    sanity: bool = typer.Option(True, "--sanity/--no-sanity", help="Model-randomisation check."),
    grid_images: int = typer.Option(4, "--grid-images", min=1, help="Rows of the comparison figure."),
    train_data: Path | None = typer.Option(
        None,
        "--train-data",
        exists=True,
        file_okay=False,
        help="The model's training images (one folder per class): report the images it was trained on apart.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Measure explanation quality against tumour boxes (and lesion masks): writes xai.json, xai.md and a figure."""
    from brainxai.explain import list_explainers
    from brainxai.xai_benchmark import run_xai_benchmark

    if target not in ("label", "predicted"):
        fail("--target must be 'label' or 'predicted'")
    names = list_explainers() if methods.strip() == "all" else [m.strip() for m in methods.split(",") if m.strip()]
    check_methods(names)
    classifier = _load_classifier(checkpoint, device)
    try:
        results = run_xai_benchmark(
            boxes,
            out,
            classifier,
            methods=names,
            images_root=images_root,
            target=target,  # type: ignore[arg-type]
            steps=steps,
            batch_size=batch_size,
            sanity=sanity,
            grid_images=grid_images,
            train_data=train_data,
            command=invocation(ctx),
        )
    except (ValueError, OSError) as exc:  # DatasetLayoutError (a bad --train-data) is a ValueError
        fail(str(exc))
    for method, r in results.items():
        pg = "n/a" if r["pointing_game"] is None else f"{r['pointing_game']:.3f}"
        on_mask = r.get("pointing_game_mask")
        mask_pg = (
            "" if "pointing_game_mask" not in r else f", on the mask {'n/a' if on_mask is None else f'{on_mask:.3f}'}"
        )
        typer.echo(f"{method:16s} pointing game {pg}{mask_pg}  (n={r['n']})")
    typer.echo(f"reports written to {out}")
