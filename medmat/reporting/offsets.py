"""Where the region-aware implicit function reads its codes (Xu et al., 2024, Table 2, middle).

For a few query points, the positions of the k x k codes each scale decodes (the learned offsets
included) are drawn as red points over the image, one panel per scale, with a line from the
query to each of its codes. Matplotlib's Agg backend renders without a screen; files are
written atomically, as :mod:`medmat.reporting.figures` does.

    python -m medmat.reporting.offsets --run runs/ra-lite/fold-0 --case case01 --output offsets.png
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from medmat.errors import MedmatError
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
    import torch

    device = next(model.parameters()).device
    batch = torch.as_tensor(np.asarray(image, dtype=np.float32), device=device)[None]
    if query_points is None:
        alpha = model.predict(batch, num_samples=model.num_samples)["alpha"][0, 0].cpu().numpy()
        query_points = boundary_query_points(alpha, count, min_distance=max(alpha.shape) / 8)
    query_points = np.asarray(query_points, dtype=np.float64).reshape(-1, 2)
    scales = model.code_positions(batch, torch.as_tensor(query_points, dtype=torch.float32))
    panels = {
        f"scale {level + 1} (1/{2 ** level} resolution)": codes[0].cpu().numpy() for level, codes in enumerate(scales)
    }
    return draw_offsets(path, image, query_points, panels, title)


def _parse_points(texts: Sequence[str]) -> np.ndarray | None:
    if not texts:
        return None
    try:
        return np.array([[float(v) for v in text.split(",")] for text in texts], dtype=np.float64).reshape(-1, 2)
    except ValueError:
        raise MedmatError(f"query points must be ROW,COL pairs, got {list(texts)}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m medmat.reporting.offsets``: the offsets figure of one case of a trained run."""
    parser = argparse.ArgumentParser(prog="python -m medmat.reporting.offsets", description=main.__doc__)
    parser.add_argument("--run", required=True, help="run folder (or checkpoint) of a region_aware_matting model")
    parser.add_argument("--case", required=True, help="case id in the run's dataset (or --data)")
    parser.add_argument("--output", required=True, help="output PNG")
    parser.add_argument("--data", default=None, help="dataset (default: the run's data.dataset)")
    parser.add_argument("--point", action="append", default=[], metavar="ROW,COL", help="query point (repeatable)")
    parser.add_argument("--count", type=int, default=4, help="rim points when no --point is given")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Prob. U-Net's latent samples")
    args = parser.parse_args(argv)
    try:
        import torch

        from medmat.data.load import load_dataset
        from medmat.engine import load_run

        model, config = load_run(args.run)
        if getattr(model, "decoder_kind", "bilinear") == "bilinear":
            raise MedmatError(f"model {config['model']['name']!r} reads no codes at learned positions", args.run)
        samples = {s.id: s for s in load_dataset(args.data or config["data"]["dataset"])}
        if args.case not in samples:
            raise MedmatError(f"no case {args.case!r} in the dataset")
        torch.manual_seed(args.seed)
        points = _parse_points(args.point)
        image = samples[args.case].image
        learned_offsets_figure(args.output, model, image, points, args.count, f"{args.case}: {args.run}")
    except MedmatError as error:
        print(f"medmat: error: {error}", file=sys.stderr)
        return 1
    print(f"offsets of {args.case} written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
