"""Report images drawn straight from ``uint8`` arrays, their PDF streams compressed ahead of layout.

ReportLab's ``Image`` flowable reads an encoded file (the report passed it a BMP), decodes it again
with Pillow and deflates the pixels at zlib's default level 6 while the page is drawn, on the thread
that lays the report out: about half of the report's build time (``benchmarks/perf.md``). An
:class:`ArrayImage` starts deflating its pixels at level 1 in a worker thread when it is created
(zlib releases the GIL), so the compression overlaps the layout and costs about a quarter of the CPU.
The page draws the same image XObject (same name, size, colour space and pixels; only its deflate
stream differs) with the same drawing operators as ``Image`` did.
"""

from __future__ import annotations

import zlib
from concurrent.futures import Future
from hashlib import md5
from typing import Any

import numpy as np
from reportlab import rl_config
from reportlab.lib.rl_accel import asciiBase85Encode
from reportlab.pdfbase.pdfdoc import PDFImageXObject
from reportlab.platypus import Flowable

from brainxai.util.pools import shared_pool

#: zlib level of the image streams: level 6 (reportlab's) makes the report's images 8% smaller for 4x the CPU.
IMAGE_DEFLATE_LEVEL = 1


class ArrayImage(Flowable):
    """An RGB or grayscale ``uint8`` image scaled to ``width`` x ``height`` points.

    Args:
        image: ``(H, W)`` grayscale or ``(H, W, 3)`` RGB ``uint8`` array.
        width: Drawn width in points.
        height: Drawn height in points.

    Raises:
        ValueError: ``image`` is not a ``uint8`` grayscale or RGB array.
    """

    # Fixed size, as reportlab's Image: a table sizes an automatic column by it.
    _fixedWidth = 1
    _fixedHeight = 1

    def __init__(self, image: np.ndarray, width: float, height: float) -> None:
        super().__init__()
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(f"expected a uint8 grayscale or RGB image, got {image.dtype} {image.shape}")
        raw = np.ascontiguousarray(image).tobytes()
        self.pixel_height, self.pixel_width = image.shape[:2]
        self.color_space = "DeviceGray" if image.ndim == 2 else "DeviceRGB"
        self.width, self.height = width, height
        # The XObject's name as reportlab's drawImage derives it (pixels plus its default mask "auto"),
        # so the page's content stream is the same as with reportlab's Image flowable.
        self.xobject_name = md5(raw + b"auto", usedforsecurity=False).hexdigest()
        self._stream: Future[bytes] = shared_pool("pdf-image", 2).submit(zlib.compress, raw, IMAGE_DEFLATE_LEVEL)

    def wrap(self, avail_w: float, avail_h: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        canv = self.canv
        doc = canv._doc
        reg_name = doc.getXObjectName(self.xobject_name)
        if not doc.idToObject.get(reg_name):
            doc.addForm(self.xobject_name, self._xobject(canv))
        # The operators of reportlab's Canvas.drawImage at the origin.
        canv._currentPageHasImages = 1
        canv.saveState()
        canv.translate(0, 0)
        canv.scale(self.width, self.height)
        canv._code.append(f"/{reg_name} Do")
        canv.restoreState()
        canv._formsinuse.append(self.xobject_name)

    def _xobject(self, canv: Any) -> PDFImageXObject:
        """The image XObject, registered in the canvas's document as ``drawImage`` registers it."""
        obj = PDFImageXObject(self.xobject_name)
        obj.width, obj.height = self.pixel_width, self.pixel_height
        obj.bitsPerComponent = 8
        obj.colorSpace = self.color_space
        obj.streamContent = self._stream.result()
        obj._filters = ("FlateDecode",)
        if rl_config.useA85:  # reportlab's default; the report turns it off (pdf_layout.binary_streams)
            obj.streamContent = asciiBase85Encode(obj.streamContent)
            obj._filters = ("ASCII85Decode", "FlateDecode")
        obj.mask = None
        canv._setXObjects(obj)
        canv._doc.Reference(obj, canv._doc.getXObjectName(self.xobject_name))
        return obj
