"""Report images drawn from arrays: the same page and pixels as reportlab's Image flowable, deflated ahead."""

from __future__ import annotations

import io
import zlib

import cv2
import numpy as np
import pytest
from pypdf import PdfReader
from reportlab.lib.pagesizes import A4
from reportlab.platypus import Image, SimpleDocTemplate, Table

from brainxai.reporting.pdf_images import IMAGE_DEFLATE_LEVEL, ArrayImage


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (40, 56), dtype=np.uint8)
    rgb = np.dstack([gray, gray[::-1], np.full_like(gray, 7)])
    return [gray, rgb]


def _reportlab_image(image: np.ndarray, width: float, height: float) -> Image:
    arr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, bmp = cv2.imencode(".bmp", arr)
    assert ok
    return Image(io.BytesIO(bmp.tobytes()), width=width, height=height)


def _pdf(cells: list) -> PdfReader:
    buf = io.BytesIO()
    SimpleDocTemplate(buf, pagesize=A4).build([Table([cells])])
    return PdfReader(io.BytesIO(buf.getvalue()))


def test_same_page_and_pixels_as_reportlab_image() -> None:
    images = _images()
    ours = _pdf([ArrayImage(im, 80.0, 57.1) for im in images])
    theirs = _pdf([_reportlab_image(im, 80.0, 57.1) for im in images])
    # Same drawing operators and XObject names (the pixels' digest), so the same page.
    assert ours.pages[0].get_contents().get_data() == theirs.pages[0].get_contents().get_data()
    xo_ours, xo_theirs = (r.pages[0]["/Resources"]["/XObject"] for r in (ours, theirs))
    assert sorted(xo_ours) == sorted(xo_theirs) and len(xo_ours) == 2
    for name in xo_ours:
        a, b = xo_ours[name].get_object(), xo_theirs[name].get_object()
        for key in ("/Width", "/Height", "/ColorSpace", "/BitsPerComponent", "/Filter"):
            assert a[key] == b[key]
        assert a.get_data() == b.get_data()  # decoded pixels identical
    decoded = {
        (int(o["/Width"]), str(o["/ColorSpace"])): o.get_data() for o in (v.get_object() for v in xo_ours.values())
    }
    assert decoded[(56, "/DeviceGray")] == images[0].tobytes()
    assert decoded[(56, "/DeviceRGB")] == images[1].tobytes()


def test_stream_is_deflated_at_the_fast_level() -> None:
    image = _images()[1]
    flowable = ArrayImage(image, 10, 10)
    assert flowable.wrap(100, 100) == (10, 10)
    assert flowable._stream.result() == zlib.compress(image.tobytes(), IMAGE_DEFLATE_LEVEL)
    assert zlib.decompress(flowable._stream.result()) == image.tobytes()


def test_non_contiguous_view_is_drawn_as_its_pixels() -> None:
    base = _images()[1]
    view = base[::-1, ::2]
    reader = _pdf([ArrayImage(view, 30, 30)])
    (xobject,) = reader.pages[0]["/Resources"]["/XObject"].values()
    assert xobject.get_object().get_data() == np.ascontiguousarray(view).tobytes()


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 4), np.uint8)])
def test_rejects_what_is_not_gray_or_rgb_uint8(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 grayscale or RGB"):
        ArrayImage(bad, 10, 10)
