"""Figures of examples: one row per case, one column per named picture (image, GT, predictions).

Matplotlib's Agg backend is used so figures render without a screen; files are written
atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from medmat.io.atomic import atomic_path
from medmat.metrics.uncertainty import expected_calibration_error

#: Colour of the outlined boxes: visible on grey pictures and on magma uncertainty maps.
BOX_COLOUR = "cyan"
def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, so figures render without a screen."""
    # Imported on first use: matplotlib costs a second of start-up that most commands never need.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str | os.PathLike) -> str:
    """Lay out ``figure``, write it as a PNG atomically, close it; returns ``path`` as a string."""
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    pyplot().close(figure)
    return os.fspath(path)


#: Colour maps by the kind of picture; anything else is shown in grey.
_CMAPS = {"uncertainty": "magma", "entropy": "magma", "epistemic": "magma", "aleatoric": "magma", "error": "inferno"}


def _cmap(column: str) -> str:
    lowered = column.lower()
    return next((cmap for key, cmap in _CMAPS.items() if key in lowered), "gray")


def _displayable(picture: np.ndarray) -> np.ndarray:
    picture = np.asarray(picture, dtype=np.float32)
    if picture.ndim == 3 and picture.shape[0] in (1, 3):
        picture = picture[0] if picture.shape[0] == 1 else np.moveaxis(picture, 0, -1)
    return picture


def example_grid(
    path: str | os.PathLike,
    rows: Sequence[Mapping[str, np.ndarray]],
    row_labels: Sequence[str] | None = None,
    title: str = "",
    tile_inches: float = 1.8,
    boxes: Sequence[Mapping[str, Sequence[Sequence[int]]]] | None = None,
) -> str:
    """Save a grid of pictures.

    Args:
        path: output PNG.
        rows: one mapping per case, column name -> picture; a picture is (H,W) in [0,1] (alpha,
            masks, uncertainty maps are scaled per picture to their own max when it exceeds 1),
            (C,H,W) or (H,W,3). Columns are the keys of the first row, in order.
        row_labels: case ids shown at the left.
        title: the figure's title.
        tile_inches: side of one picture in inches.
        boxes: optional, one mapping per row: column name -> rectangles ``(top, left, height,
            width)`` in pixels to outline on that picture (e.g. the patches proposed to a user).

    Returns:
        ``path`` as a string.
    """
    from matplotlib.patches import Rectangle

    plt = pyplot()

    if boxes is not None and len(boxes) != len(rows):
        raise ValueError(f"boxes must have one entry per row: {len(boxes)} for {len(rows)} rows")
    columns = list(rows[0])
    figure, axes = plt.subplots(
        len(rows), len(columns), figsize=(tile_inches * len(columns), tile_inches * len(rows)), squeeze=False
    )
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            axis = axes[r][c]
            picture = _displayable(row[column])
            vmax = max(1.0, float(picture.max())) if picture.size else 1.0
            axis.imshow(picture, cmap=_cmap(column), vmin=0.0, vmax=vmax, interpolation="nearest")
            for top, left, height, width in (boxes[r].get(column, ()) if boxes else ()):
                # Pixel (i, j) covers [j - 0.5, j + 0.5] x [i - 0.5, i + 0.5] in imshow's coordinates.
                outline = Rectangle((left - 0.5, top - 0.5), width, height, fill=False, edgecolor=BOX_COLOUR, linewidth=1)
                axis.add_patch(outline)
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(column, fontsize=8)
            if c == 0 and row_labels:
                axis.set_ylabel(row_labels[r], fontsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)


def reliability_plot(
    path: str | os.PathLike,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str = "",
) -> str:
    """Save calibration curves against the diagonal as a PNG (atomically; matplotlib Agg).

    Args:
        path: the PNG to write.
        curves: label -> ``(expected, observed)`` from :func:`calibration_curve`; each label is
            shown with its expected calibration error.
        title: the figure title.

    Returns:
        ``path`` as a string.
    """
    plt = pyplot()

    figure, axis = plt.subplots(figsize=(3.6, 3.6))
    axis.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="calibrated")
    for label, (expected, observed) in curves.items():
        error = expected_calibration_error(expected, observed)
        axis.plot(expected, observed, marker="o", markersize=3, label=f"{label} (ECE {error:.3f})")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("expected confidence level")
    axis.set_ylabel("observed fraction")
    axis.legend(fontsize=7, loc="upper left")
    if title:
        axis.set_title(title, fontsize=9)
    return save_figure(figure, path)
