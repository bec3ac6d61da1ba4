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
