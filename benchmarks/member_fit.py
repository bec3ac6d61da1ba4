"""How well trained runs fit their own training cases, and whether their alpha is capped.

For each single-model run folder (a fold of ``medmat train`` / ``crossval``, or an ensemble's
``member-<i>/``), on the training cases its ``metrics.json`` lists, predicted as the run is
evaluated (``eval.num_samples``, ``eval.flip``, seeded by the run's seed):

- the whole-image SAD (the number ``ensemble.unfit_ratio`` compares between members);
- in the lesion core (label alpha >= 0.98), each case's median predicted alpha: the median and
  the largest of those medians (a run whose alpha cannot reach 1 shows one value for both; a run
  whose largest is below ``train.core_alpha_floor`` failed to fit, which training now checks);
  both from one prediction of each case (:func:`medmat.engine.evaluation.training_fit`);
- the last training epoch's ``alpha_l1`` from ``log.csv``, where the criterion logs one;
- for a model that declares the layer its alpha is read from (``alpha_features_layer``) with one
  output channel: how many of its input channels have a positive weight sum, and its bias. With
  non-negative inputs (after a ReLU) and no positive weight, alpha <= sigmoid(bias) everywhere.

    python benchmarks/member_fit.py runs/cpu-ensemble-s11/fold-0/member-0 runs/cpu-ensemble-s11/fold-0/member-1
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
import torch

from medmat.engine import load_run
from medmat.engine.config import input_size
from medmat.engine.dataset import common_size
from medmat.engine.evaluation import read_metrics, training_fit
from medmat.engine.trainer import load_samples


def last_logged(run: Path, column: str) -> float | None:
    """The last epoch's ``column`` of the run's ``log.csv``, or None."""
    path = run / "log.csv"
    if not path.is_file():
        return None
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    value = rows[-1].get(column) if rows else None
    return float(value) if value else None


def output_layer_signs(model) -> tuple[int, int, float] | None:
    """(input channels with a positive weight sum, input channels, bias) of a one-output alpha layer."""
    layer = model.alpha_features_layer()
    if layer is None or layer.weight.shape[0] != 1 or layer.bias is None:
        return None
    weight_sums = layer.weight.detach().float().flatten(2).sum(dim=2)[0] if layer.weight.dim() > 2 else layer.weight.detach()[0]
    return int((weight_sums > 0).sum()), int(weight_sums.numel()), float(layer.bias.detach()[0])


def run_fit(run: Path) -> dict:
    """The row of one run (see the module docstring)."""
    model, config = load_run(run)
    train_ids = set(read_metrics(run)["train_ids"])
    samples = [sample for sample in load_samples(config) if sample.id in train_ids]
    size = input_size(config) or common_size(samples)
    fit = training_fit(model, samples, config, size, config["train"]["core_alpha_floor"])
    return {
        "run": str(run),
        "cases": len(samples),
        "training SAD": fit["scores"]["SAD"],
        "core medians": fit["core_alpha"],
        "alpha_l1": last_logged(run, "alpha_l1"),
        "output layer": output_layer_signs(model),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| run | training cases | training SAD (whole image) | core alpha: cases' medians, median / max "
        "| last epoch's alpha L1 | alpha layer: positive channels, bias (sigmoid) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        medians = row["core medians"]
        core = f"{np.median(medians):.2f} / {max(medians):.2f}" if medians else "no core"
        l1 = "" if row["alpha_l1"] is None else f"{row['alpha_l1']:.4f}"
        layer = ""
        if row["output layer"] is not None:
            positive, channels, bias = row["output layer"]
            layer = f"{positive} of {channels}, {bias:.3f} ({1 / (1 + math.exp(-bias)):.3f})"
        lines.append(f"| {row['run']} | {row['cases']} | {row['training SAD']:.4f} | {core} | {l1} | {layer} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="single-model run folders")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(markdown([run_fit(run) for run in args.runs]), end="")


if __name__ == "__main__":
    main()
