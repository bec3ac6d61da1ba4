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
    by itself. Raises ValueError naming the item when its run folder is empty ("name=") or its name
    was given before (a table, or a report keyed by name, would show only one of the two).
    """
    runs: list[tuple[str, str]] = []
    for item in items:
        name, _, run_dir = item.rpartition("=")
        if not run_dir:
            raise ValueError(f"runs are given as NAME=RUN_DIR or RUN_DIR, got {item!r}")
        name = name or run_dir
        if any(name == seen for seen, _ in runs):
            raise ValueError(f"run name {name!r} is given twice: name each run apart (NAME=RUN_DIR)")
        runs.append((name, run_dir))
    return runs


def named_runs_or_exit(items: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """:func:`named_runs` for a script's command line: a bad item exits with a one-line "error: ..."."""
    try:
        return named_runs(items)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
