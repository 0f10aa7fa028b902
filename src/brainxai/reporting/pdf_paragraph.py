"""A ReportLab paragraph that breaks its lines once per width.

ReportLab asks a paragraph for its size several times at the same width: a table sizes its rows, then
sizes every cell again while drawing it, and ``KeepTogether`` measures its content before the frame
places it. Each call re-runs the line breaking (pure Python; about a fifth of the report's build time,
``benchmarks/perf.md``). The lines depend only on the text, the style and the width, so a second call
at the width of the last one returns the same size and keeps the same lines.
"""

from __future__ import annotations

from reportlab.platypus import Paragraph as _Paragraph
from reportlab.platypus.paragraph import _FUZZ


class Paragraph(_Paragraph):
    """``reportlab.platypus.Paragraph`` whose :meth:`wrap` skips the line breaking it has just done."""

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        # ``split`` deletes the lines (``blPara``) of a paragraph it breaks across frames: break them again then.
        if availWidth >= _FUZZ and self.__dict__.get("_wrapped_at") == availWidth and "blPara" in self.__dict__:
            return self.width, self.height
        size = super().wrap(availWidth, availHeight)
        self._wrapped_at = availWidth
        return size
