"""What choosing the epoch on the held-out fold would report: an optimistic oracle, not a method.

medmat reports each fold's last weights (no epoch is chosen on the cases it is scored on). A
training script that scores the test fold every epoch (the Medical Matting release's ``train.py``
does) lets a table be read off its best epoch instead. This script bounds how much that can
move the figures: from each fold's ``log.csv`` (the ``val_*`` columns that ``eval.every`` fills:
whole-image SAD / MSE / Grad / Conn, GED, Dice on the held-out fold) it prints, per run,

- *last*: the last validation (what medmat reports, Table V style);
- *best epoch per metric*: each metric at its own best validation of the fold (the most a
  table picked metric by metric could claim);
- *epoch of the best SAD*: every metric at the validation with the lowest SAD (one epoch per fold);

each a mean over the folds weighted by their numbers of held-out cases (``metrics.json``'s
``test_ids``; equal weights for a fold still running). Only the epochs that were validated are
seen: the oracle grows with ``eval.every`` smaller.

    python benchmarks/epoch_selection.py s0=results/gpu-check/crossval-paper-s0 s1=runs/cpu-s10 [--output t.md]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from medmat.engine.inference import crossval_folds
from medmat.io.atomic import atomic_write_text
from options import named_runs_or_exit  # benchmarks/ is the script's folder, first on sys.path

METRICS = ("SAD", "MSE", "Grad", "Conn", "GED", "Dice")
HIGHER_IS_BETTER = {"Dice"}


def fold_validations(fold_dir: Path) -> list[dict[str, float]]:
    """The validated epochs of one fold: ``{"epoch", "SAD", ..., "Dice"}`` per row of its log.csv
    that carries ``val_SAD``."""
    log = fold_dir / "log.csv"
    if not log.is_file():
        raise SystemExit(f"error: {log}: no training log (is this a crossval folder?)")
    rows = []
    with log.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if not row.get("val_SAD"):
                continue
            values = {"epoch": float(row["epoch"])}
            for metric in METRICS:
                cell = row.get(f"val_{metric}", "")
                values[metric] = float(cell) if cell else float("nan")
            rows.append(values)
    if not rows:
        raise SystemExit(f"error: {log}: no validated epoch (val_SAD is empty on every row)")
    return rows


def fold_weight(fold_dir: Path) -> float:
    """The fold's number of held-out cases, 1 when its metrics.json is not written yet."""
    metrics = fold_dir / "metrics.json"
    if metrics.is_file():
        return float(len(json.loads(metrics.read_text(encoding="utf-8"))["test_ids"]))
    return 1.0


def selections(validations: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """The three readings of one fold: "last", "best per metric", "epoch of best SAD"."""
    best_sad = min(validations, key=lambda row: row["SAD"])
    best = {}
    for metric in METRICS:
        values = np.array([row[metric] for row in validations])
        if np.all(np.isnan(values)):
            best[metric] = float("nan")
        else:
            best[metric] = float(np.nanmax(values) if metric in HIGHER_IS_BETTER else np.nanmin(values))
    return {
        "last": {m: validations[-1][m] for m in METRICS},
        "best epoch per metric": best,
        "epoch of the best SAD": {m: best_sad[m] for m in METRICS},
    }


def run_table(name: str, run_dir: str) -> list[str]:
    """Markdown rows of one crossval folder."""
    folds = [folder / "log.csv" for folder in crossval_folds(run_dir) if (folder / "log.csv").is_file()]
    if not folds:
        raise SystemExit(f"error: {run_dir}: no fold-*/log.csv")
    per_fold, weights = [], []
    for log in folds:
        per_fold.append(selections(fold_validations(log.parent)))
        weights.append(fold_weight(log.parent))
    rows = []
    for reading in per_fold[0]:
        cells = [name, reading, str(len(folds))]
        for metric in METRICS:
            values = np.array([fold[reading][metric] for fold in per_fold])
            keep = ~np.isnan(values)
            cells.append("—" if not keep.any() else
                         f"{np.average(values[keep], weights=np.array(weights)[keep]):.4f}")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    parser.add_argument("--output", default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()
    header = ["run", "reading", "folds", *(f"V {m}" for m in METRICS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    named = named_runs_or_exit(args.runs)
    for name, run_dir in named:
        lines += run_table(name, run_dir)
    table = "\n".join(lines) + "\n"
    print(table)
    if args.output:
        atomic_write_text(args.output, table)


if __name__ == "__main__":
    main()
