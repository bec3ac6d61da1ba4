"""Data sub-commands: ``info``, ``split`` and ``label``."""

from __future__ import annotations

import os

import click
import numpy as np

from medmat.classical import CLASSICAL_METHODS
from medmat.cli.options import (
    command_line,
    data_option,
    limit_option,
    load_samples,
    machine_description,
    min_annotators_option,
    split_list,
)
from medmat.data.load import describe_dataset
from medmat.data.phantom import make_phantom_dataset
from medmat.data.readers.folder import write_folder
from medmat.data.splits import choose_scheme, make_split, save_split
from medmat.io.atomic import atomic_write_json
from medmat.labels.build import build_alpha_labels
from medmat.labels.trimap import DEFAULT_DILATION_RADIUS
from medmat.reporting import example_grid


@click.command("info")
@data_option
@limit_option
@min_annotators_option
def info_command(data, limit, min_annotators):
    """Read and validate a dataset, and describe it in one line."""
    samples = load_samples(data, limit, min_annotators)
    click.echo(describe_dataset(samples))


@click.command("split")
@data_option
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="Split JSON to write.")
@click.option("--folds", "-k", default=4, show_default=True, type=click.IntRange(min=2))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--scheme", default="auto", show_default=True,
    type=click.Choice(["auto", "brain-growth", "kfold", "group"]),
    help="auto: the authors' split for Brain-growth, by patient for LIDC, else shuffled k-fold.",
)
@min_annotators_option
def split_command(data, output, folds, seed, scheme, min_annotators):
    """Make a k-fold split of a dataset and save it as JSON."""
    samples = load_samples(data, min_annotators=min_annotators)
    split = make_split(samples, k=folds, seed=seed, scheme=scheme)
    used = choose_scheme(samples, folds, scheme)
    # The authors' Brain-growth split has its own seed (np.random.seed(2)); record what was used.
    save_split(output, split, {"data": data, "k": folds, "seed": 2 if used == "brain-growth" else seed, "scheme": used})
    sizes = ", ".join(str(len(fold["test"])) for fold in split)
    click.echo(f"{len(split)} folds (test sizes {sizes}) written to {output}")


@click.command("label")
@data_option
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Folder dataset to write.")
@click.option("--method", "-m", default="if", show_default=True, help="Classical solver for the unknown region.")
@click.option("--radius", default=None, type=click.IntRange(min=0), help="Dilation radius of the unknown region (default 1).")
@click.option("--format", "file_format", default="png", show_default=True, type=click.Choice(["png", "nifti"]))
@click.option("--figure", "figure_cases", default=6, show_default=True, type=click.IntRange(min=0), help="Cases in examples.png.")
@limit_option
@min_annotators_option
def label_command(data, output, method, radius, file_format, figure_cases, limit, min_annotators):
    """Build alpha-matte labels from the annotators' masks (trimap from consensus + dilation, then matting).

    Writes the medmat folder layout (imagesTr, labelsTr, alphasTr, trimapsTr, dataset.json),
    label_times.json with the seconds per image, and examples.png.
    """
    split_list(method, CLASSICAL_METHODS, "method")
    radius = DEFAULT_DILATION_RADIUS if radius is None else radius
    samples = load_samples(data, limit, min_annotators)
    labelled, seconds = build_alpha_labels(samples, method=method, dilation_radius=radius)
    ending = ".png" if file_format == "png" else ".nii.gz"
    write_folder(labelled, output, file_ending=ending, name=os.path.basename(os.path.normpath(output)))
    atomic_write_json(
        os.path.join(output, "label_times.json"),
        {
            "data": data, "method": method, "dilation_radius": radius, "cases": len(labelled),
            "seconds_per_image_mean": float(np.mean(seconds)), "seconds_per_image_max": float(np.max(seconds)),
            "machine": machine_description(), "command": command_line(),
            "seconds": {sample.id: round(s, 4) for sample, s in zip(labelled, seconds)},
        },
    )
    if figure_cases:
        shown = labelled[:: max(1, len(labelled) // figure_cases)][:figure_cases]
        rows = [
            {"image": s.image, "mean of masks": s.masks.mean(axis=0), "trimap": s.trimap / 255.0, f"alpha ({method})": s.alpha}
            for s in shown
        ]
        example_grid(os.path.join(output, "examples.png"), rows, [s.id for s in shown], title=f"medmat label --method {method}")
    click.echo(
        f"{len(labelled)} alpha labels ({method}, radius {radius}) in {output}; "
        f"{np.mean(seconds):.2f} s per image on average"
    )


@click.command("phantoms")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Folder dataset to write.")
@click.option("--cases", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--annotators", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--size", default=128, show_default=True, type=click.IntRange(min=32))
@click.option("--seed", default=0, show_default=True, type=int, help="Case i uses seed + i (phantom-<seed+i>).")
def phantoms_command(output, cases, annotators, size, seed):
    """Write synthetic phantoms (image, annotators' masks, true alpha) as a medmat folder dataset."""
    samples = make_phantom_dataset(n_cases=cases, size=size, n_annotators=annotators, seed=seed)
    write_folder(samples, output, file_ending=".png", name="phantoms", modality="synthetic")
    click.echo(f"{cases} phantoms (seeds {seed}..{seed + cases - 1}) written to {output}")


COMMANDS = [info_command, split_command, label_command, phantoms_command]
