"""Options and small helpers shared by several sub-commands."""

from __future__ import annotations

import os
import platform
import shlex
import sys

import click

from medmat.data.load import load_dataset
from medmat.data.readers.lidc import is_lidc_folder
from medmat.engine.inference import TEST_TIME_VIEWS
from medmat.errors import MedmatError

data_option = click.option(
    "--data", "-d", "data", required=True, metavar="DATASET",
    help="Dataset: .pkl/.zip release, LIDC folder, folder with dataset.json, alphamatting folder, or phantom[:N].",
)
limit_option = click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N cases.")
min_annotators_option = click.option(
    "--min-annotators", type=click.IntRange(min=1), default=None,
    help="LIDC: keep slices where at least this many radiologists marked the nodule (default 4 = all).",
)


def flip_option(default: str):
    """--flip [none|lr|flips|dihedral]: the test-time views averaged (eval.flip), read by :func:`~medmat.engine.inference.flip_setting`."""
    return click.option(
        "--flip", type=click.Choice(list(TEST_TIME_VIEWS)), is_flag=False, flag_value="lr", default=None,
        help="Test-time flip averaging of the alpha: --flip alone (lr) with the mirror image, --flip flips with the "
             "up-down mirror and half turn too, --flip dihedral with all 8 views of the square, --flip none without "
             f"(default: {default}).",
    )


def own_size_option(what: str):
    """--own-size: ``what`` (e.g. "Predict each 2-D image") at the image's own size, not the run's data.resize."""
    return click.option(
        "--own-size", is_flag=True,
        help=f"{what} at its own size even when the run trained on cases resized to data.resize (memory grows "
             "with the pixels; see docs/data-format.md, \"Large images\").",
    )


def split_list(text: str, known: dict, what: str) -> list[str]:
    """``"cf,if"`` -> ``["cf", "if"]``, refusing names not in ``known``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise MedmatError(f"unknown {what} {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}")
    return names


def load_samples(data: str, limit: int | None = None, min_annotators: int | None = None, **options):
    """Load and validate a dataset through :func:`medmat.data.load.load_dataset`."""
    if min_annotators is not None:
        options["min_annotators"] = min_annotators
    if limit and is_lidc_folder(data):
        options["limit"] = limit  # stop reading thousands of slices early
    samples = load_dataset(data, **options)
    return samples[:limit] if limit else samples


def machine_description() -> str:
    """One line naming the machine a measurement ran on (stored beside every reported number)."""
    return f"{platform.node() or 'host'}: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def command_line() -> str:
    """The command as the user typed it, to store beside its results."""
    return "medmat " + " ".join(shlex.quote(argument) for argument in sys.argv[1:])
