"""The benchmark's figure, ``xai_grid.png``: a few scans with their box, and each method's map over them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from brainxai.explain.quality import pointing_game
from brainxai.pipeline.steps import map_back
from brainxai.xai_benchmark.data import BoxImages


def _scan_cell(ax: Any, data: BoxImages, i: int, first_row: bool) -> None:
    x0, y0, x1, y1 = data.crops[i]
    ax.imshow(data.originals[i][y0:y1, x0:x1], cmap="gray", vmin=0, vmax=255)
    ax.set_ylabel(f"{data.records[i].label}\n{data.records[i].path.stem}", fontsize=7)
    if first_row:
        ax.set_title("scan + box", fontsize=8)


def _map_cell(ax: Any, data: BoxImages, i: int, relevance: np.ndarray | None, tolerance: float) -> bool:
    """Draws one method's map over scan ``i`` (its maximum marked); False when the method has no map."""
    from brainxai.explain.views import overlay_image

    original = data.originals[i]
    x0, y0, x1, y1 = data.crops[i]
    if relevance is None:
        ax.imshow(original[y0:y1, x0:x1], cmap="gray", vmin=0, vmax=255, alpha=0.3)
        ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes, fontsize=9)
        return False
    mapped = map_back(relevance, data.images[i])
    ax.imshow(overlay_image(original, mapped, alpha=0.7)[y0:y1, x0:x1])
    if mapped.max() > 0:
        py, px = np.unravel_index(int(np.argmax(mapped)), mapped.shape)
        hit = pointing_game(mapped, data.boxes[i], tolerance)
        ax.plot(px - x0, py - y0, marker="x", color="cyan" if hit else "magenta", markersize=7, mew=2)
    else:
        ax.text(0.5, 0.05, "empty map", ha="center", transform=ax.transAxes, fontsize=7, color="white")
    return True


def _frame_with_box(ax: Any, data: BoxImages, i: int) -> None:
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = data.crops[i]
    bx0, by0, bx1, by1 = data.boxes[i]
    ax.set_xlim(-0.5, x1 - x0 - 0.5)
    ax.set_ylim(y1 - y0 - 0.5, -0.5)
    ax.add_patch(Rectangle((bx0 - x0 - 0.5, by0 - y0 - 0.5), bx1 - bx0, by1 - by0, fill=False, edgecolor="lime", lw=1))


def write_grid(
    path: Path,
    data: BoxImages,
    rows: list[int],
    maps: dict[str, list[np.ndarray | None]],
    methods: Sequence[str],
    tolerance: float,
) -> None:
    """Writes the figure: one row per image of ``rows``, the scan (cropped as the model sees it) then each method.

    Args:
        path: The PNG to write.
        data: The benchmark's images.
        rows: Indices of the images to show.
        maps: ``{method: model-input maps of those images}``; a method without maps is shown as n/a.
        methods: The columns after the scan.
        tolerance: Pointing-game tolerance: the map maximum is cyan for a hit, magenta for a miss.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 1 + len(methods)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.2 * cols, 2.3 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                _scan_cell(ax, data, i, r == 0)
            else:
                if r == 0:
                    ax.set_title(methods[c - 1], fontsize=8)
                if not _map_cell(ax, data, i, maps.get(methods[c - 1], [None] * len(rows))[r], tolerance):
                    continue  # no box on a method that did not run
            _frame_with_box(ax, data, i)
    fig.suptitle("Relevance overlays; green: tumour box; x: map maximum (cyan hit, magenta miss)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
