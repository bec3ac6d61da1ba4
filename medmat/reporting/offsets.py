"""Where the region-aware implicit function reads its codes (Xu et al., 2024, Table 2, middle).

For a few query points, the positions of the k x k codes each scale decodes (the learned offsets
included) are drawn as red points over the image, one panel per scale, with a line from the
query to each of its codes. Matplotlib's Agg backend renders without a screen; files are
written atomically, as :mod:`medmat.reporting.figures` does.

    medmat offsets --run runs/ra-lite/fold-0 --case case01 --output offsets.png
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from medmat.engine.inference import predict
from medmat.reporting.figures import _displayable, pyplot, save_figure

#: One colour per query point (its marker and its lines); codes are always red, as in the paper.
QUERY_COLOURS = ("#00e5ff", "#ffd600", "#76ff03", "#ff80ab", "#ffffff", "#b388ff")


def boundary_query_points(alpha: np.ndarray, count: int = 4, min_distance: float = 8.0) -> np.ndarray:
    """Query points on the ambiguous rim of a matte: the pixels whose alpha is closest to 0.5.

    Pixels are taken in order of ``|alpha - 0.5|`` (ties in raster order), skipping any closer
    than ``min_distance`` to one already taken, so the points spread along the rim.

    Args:
        alpha: (H, W) float in [0, 1].
        count: how many points.
        min_distance: smallest distance between two points, in pixels.

    Returns:
        float (Q, 2) pixel (row, col), Q <= count (fewer when the image is too small).
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    order = np.argsort(np.abs(alpha - 0.5), axis=None, kind="stable")
    chosen: list[np.ndarray] = []
    for flat in order:
        point = np.array(np.unravel_index(flat, alpha.shape), dtype=np.float64)
        if all(np.hypot(*(point - other)) >= min_distance for other in chosen):
            chosen.append(point)
            if len(chosen) == count:
                break
    return np.array(chosen, dtype=np.float64).reshape(-1, 2)


def draw_offsets(
    path: str | os.PathLike,
    image: np.ndarray,
    query_points: np.ndarray,
    positions: Mapping[str, np.ndarray],
    title: str = "",
    tile_inches: float = 3.0,
) -> str:
    """Save the image with each query point and the codes it reads, one panel per entry of ``positions``.

    Args:
        path: output PNG.
        image: (H, W), (1, H, W) or (3, H, W) in [0, 1].
        query_points: (Q, 2) pixel (row, col) of the queries.
        positions: panel title -> (Q, P, 2) pixel (row, col) of the P codes of each query.
        title: figure title.

    Returns:
        ``path`` as a string.
    """
    plt = pyplot()

    query_points = np.asarray(query_points, dtype=np.float64).reshape(-1, 2)
    picture = _displayable(image)
    height, width = picture.shape[:2]
    figure, axes = plt.subplots(1, len(positions), figsize=(tile_inches * len(positions), tile_inches), squeeze=False)
    for axis, (name, codes) in zip(axes[0], positions.items()):
        codes = np.asarray(codes, dtype=np.float64)
        if codes.shape[0] != len(query_points) or codes.shape[-1] != 2:
            raise ValueError(f"positions {name!r} must be (Q={len(query_points)}, P, 2), got {codes.shape}")
        axis.imshow(picture, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        for index, (query, query_codes) in enumerate(zip(query_points, codes)):
            colour = QUERY_COLOURS[index % len(QUERY_COLOURS)]
            for code in query_codes:
                axis.plot([query[1], code[1]], [query[0], code[0]], color=colour, linewidth=0.6, alpha=0.8)
            axis.scatter(query_codes[:, 1], query_codes[:, 0], s=10, c="red", zorder=3)
            axis.scatter([query[1]], [query[0]], s=40, marker="x", c=colour, zorder=4)
        # Codes read beyond the border are clamped to it; keep the frame on the image.
        axis.set_xlim(-0.5, width - 0.5)
        axis.set_ylim(height - 0.5, -0.5)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_title(name, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)


def learned_offsets_figure(
    path: str | os.PathLike,
    model,
    image: np.ndarray,
    query_points: np.ndarray | None = None,
    count: int = 4,
    title: str = "",
) -> str:
    """Draw where a trained region-aware model reads its codes for a few queries of one image.

    Args:
        path: output PNG.
        model: a :class:`~medmat.models.region_aware_matting.RegionAwareMatting` with an
            implicit decoder.
        image: float32 (C, H, W) in [0, 1].
        query_points: (Q, 2) pixel (row, col); None = ``count`` points on the predicted matte's
            rim (:func:`boundary_query_points`).
        count: number of default query points.
        title: figure title.

    Returns:
        ``path`` as a string.
    """
    device = next(model.parameters()).device
    batch = torch.as_tensor(np.asarray(image, dtype=np.float32), device=device)[None]
    if query_points is None:
        alpha = predict(model, image)["alpha"]
        query_points = boundary_query_points(alpha, count, min_distance=max(alpha.shape) / 8)
    query_points = np.asarray(query_points, dtype=np.float64).reshape(-1, 2)
    scales = model.code_positions(batch, torch.as_tensor(query_points, dtype=torch.float32))
    panels = {
        f"scale {level + 1} (1/{2 ** level} resolution)": codes[0].cpu().numpy() for level, codes in enumerate(scales)
    }
    return draw_offsets(path, image, query_points, panels, title)
