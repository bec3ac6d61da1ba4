"""Figure sub-commands: ``offsets``, where a region-aware model reads its codes (Xu et al., Table 2)."""

from __future__ import annotations

import click
import torch

from medmat.data.load import load_dataset
from medmat.engine import load_run
from medmat.errors import MedmatError
from medmat.reporting.offsets import learned_offsets_figure


def parse_points(texts) -> list[list[float]] | None:
    """``["12,30", "40.5,8"]`` -> ``[[12.0, 30.0], [40.5, 8.0]]``; None for no points."""
    if not texts:
        return None
    try:
        points = [[float(value) for value in text.split(",")] for text in texts]
    except ValueError:
        points = []
    if not points or any(len(point) != 2 for point in points):
        raise MedmatError(f"query points must be ROW,COL pairs, got {list(texts)}")
    return points


@click.command("offsets")
@click.option("--run", "-r", "run", required=True, help="Run folder (or checkpoint) of a region_aware_matting model.")
@click.option("--case", required=True, help="Case id in the run's dataset (or --data).")
@click.option("--output", "-o", required=True, help="Output PNG.")
@click.option("--data", "-d", default=None, help="Dataset (default: the run's data.dataset).")
@click.option("--point", "points", multiple=True, metavar="ROW,COL", help="Query point (repeatable).")
@click.option("--count", default=4, show_default=True, type=click.IntRange(min=1), help="Rim points when no --point is given.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the Prob. U-Net's latent samples.")
def offsets_command(run, case, output, data, points, count, seed):
    """Draw where a trained region-aware model reads its codes for a few query points of one case."""
    model, config = load_run(run)
    if getattr(model, "decoder_kind", "bilinear") == "bilinear":
        raise MedmatError(f"model {config['model']['name']!r} reads no codes at learned positions", run)
    samples = {sample.id: sample for sample in load_dataset(data or config["data"]["dataset"])}
    if case not in samples:
        raise MedmatError(f"no case {case!r} in the dataset")
    torch.manual_seed(seed)
    learned_offsets_figure(output, model, samples[case].image, parse_points(points), count, f"{case}: {run}")
    click.echo(f"offsets of {case} written to {output}")


COMMANDS = [offsets_command]
