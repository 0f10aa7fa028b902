"""The segmented tumour on the web: the study's parameters carry their source, the tumour image is served.

The real analysis service (untrained classifier, forced verdict, stub segmenter returning an expert mask)
behind the real app; only the options are narrowed to one explanation method to keep it quick.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from brainxai.pipeline import AnalysisOptions, AnalysisService
from brainxai.web.settings import Settings

WEB_TESTS = Path(__file__).parent / "web"
SLICE = "meningioma_1"


class QuickService:
    """The real service with one explanation method and no agreement check (the web app asks for both)."""

    def __init__(self, service: AnalysisService) -> None:
        self.service = service

    def analyze_many(self, scans: Any, options: AnalysisOptions | None = None, **kwargs: Any) -> Any:
        options = dataclasses.replace(options or AnalysisOptions(), method="gradcam", agreement=False)
        return self.service.analyze_many(scans, options, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.service, name)


class MaskSegmenter:
    name, sha256, threshold = "stub-seg", "1" * 64, 0.5

    def __init__(self, mask: np.ndarray) -> None:
        self.planted = mask

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "threshold": self.threshold}

    def probability(self, images: Any, batch_size: int = 16) -> list[np.ndarray]:
        return [self.planted.astype(np.float32) for _ in images]

    def mask(self, prob: np.ndarray) -> np.ndarray:
        return prob >= self.threshold

    def segment(self, image: np.ndarray) -> np.ndarray:
        return self.planted.copy()


def test_study_shows_the_segmented_tumour(
    shared_data: Path, random_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = shared_data / "figshare-masks-dev"
    image = root / "images" / f"{SLICE}.jpg"
    if not image.is_file():
        pytest.skip(f"{image} not present")
    mask = cv2.imread(str(root / "masks" / f"{SLICE}.png"), cv2.IMREAD_GRAYSCALE) > 0
    monkeypatch.syspath_prepend(str(WEB_TESTS))
    from webhelpers import login, running_app

    service = AnalysisService(random_checkpoint, device="cpu", segmenter=MaskSegmenter(mask))
    classes = list(service.classifier.classes)
    probs = np.full((1, len(classes)), 0.02, np.float32)
    probs[0, classes.index("notumor")] = 1 - 0.02 * (len(classes) - 1)
    monkeypatch.setattr(service.classifier, "assess_outputs", lambda logits, features: (probs, None))
    settings = Settings(data_dir=tmp_path / "data", max_upload_mb=2.0)
    with running_app(settings, QuickService(service)) as client:
        headers = login(client, "alice")
        r = client.post("/api/analyze", headers=headers, files={"file": ("scan.jpg", image.read_bytes())})
        assert r.status_code in (200, 201), r.text
        study = client.get(r.json()["links"]["self"], headers=headers).json()
        assert "tumour" in study["links"]["images"]
        png = client.get(study["links"]["images"]["tumour"], headers=headers)
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    # "No tumour" with a sizeable segmented lesion: the disagreement is a warning on the page.
    result = study["result"]
    assert any("two models disagree" in w for w in result["warnings"])
    assert result["segmentation"]["area_px"] == int(mask.sum())
    assert {p["key"]: p["source"] for p in result["spatial_parameters"]}["area_volume"] is None  # not applicable
    page = Path(__file__).parents[1] / "src" / "brainxai" / "web" / "static"
    assert 'id="img-tumour"' in (page / "index.html").read_text()
    assert '"tumour"' in (page / "app.js").read_text()
