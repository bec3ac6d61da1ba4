"""Command-line options that several benchmark scripts share."""

from __future__ import annotations

import argparse


def add_run_options(parser: argparse.ArgumentParser, run_help: str, output_help: str) -> None:
    """--run, --data, --trimaps, --samples, --seed, --output: what scoring a trained run takes."""
    parser.add_argument("--run", default=None, help=run_help)
    parser.add_argument("--data", default=None, help="dataset (default: the run's data.dataset)")
    parser.add_argument("--trimaps", default=None, help="trimaps of --data (default: the run's data.trimaps)")
    parser.add_argument("--samples", type=int, default=8, help="sampled masks N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help=output_help)


def named_runs(items: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """``[(name, run folder)]`` of NAME=RUN_DIR items, in the order given.

    Split at the last "=": a name may hold "=", a run folder rarely does. A bare RUN_DIR is named
    by itself. Raises ValueError naming the item when its run folder is empty ("name=").
    """
    runs = []
    for item in items:
        name, _, run_dir = item.rpartition("=")
        if not run_dir:
            raise ValueError(f"runs are given as NAME=RUN_DIR or RUN_DIR, got {item!r}")
        runs.append((name or run_dir, run_dir))
    return runs
