"""Classical matting sub-command: ``baseline`` (Table IV of Medical Matting for trimap-based methods)."""

from __future__ import annotations

import os
import time

import click
import numpy as np
from tqdm import tqdm

from medmat.classical import CLASSICAL_METHODS, METHOD_NAMES, estimate_alpha, one_sided_label
from medmat.cli.options import (
    command_line,
    data_option,
    limit_option,
    load_samples,
    machine_description,
    min_annotators_option,
    split_list,
)
from medmat.data.readers.trimaps import read_trimaps
from medmat.data.splits import make_split
from medmat.errors import MedmatError
from medmat.io.images import write_png
from medmat.labels import trimap_from_masks
from medmat.labels.build import matting_image
from medmat.metrics import matting_metrics, region_mask
from medmat.metrics.tables import summarise, write_tables
from medmat.reporting import example_grid

REFERENCE_ROW = "mean of the annotators' masks"


def evaluation_trimaps(samples, trimaps_path: str | None) -> tuple[dict, str]:
    """The trimap of each case for classical methods and the unknown region, and where it came from."""
    if trimaps_path:
        return read_trimaps(trimaps_path, [s.id for s in samples]), trimaps_path
    if all(s.trimap is not None for s in samples):
        return {s.id: s.trimap for s in samples}, "the dataset's trimaps"
    if all(s.num_annotators > 0 for s in samples):
        return {s.id: trimap_from_masks(s.masks) for s in samples}, "built from the annotators' masks (radius 1)"
    raise MedmatError("cases have neither trimaps nor annotator masks; give --trimaps")


def fold_test_ids(samples) -> list[list[str]] | None:
    """Test ids of the default 4-fold split, or None when the dataset is too small to split."""
    if len(samples) < 4:
        return None
    return [fold["test"] for fold in make_split(samples, k=4, seed=0, scheme="auto")]


@click.command("baseline")
@data_option
@click.option("--trimaps", "-t", default=None, help="Folder or zip of <case>.png trimaps (default: the dataset's own, else built from masks).")
@click.option("--methods", "-m", default="cf,knn,lbdm,if,bayes", show_default=True, help="Comma-separated classical methods.")
@click.option("--region", default="unknown", show_default=True,
              help="Comma-separated regions scored: unknown (trimap == 128) and/or whole.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the tables and figure.")
@click.option("--save-alphas/--no-save-alphas", default=False, show_default=True, help="Also write each predicted alpha as PNG.")
@click.option("--figure", "figure_cases", default=4, show_default=True, type=click.IntRange(min=0), help="Cases in examples.png.")
@limit_option
@min_annotators_option
def baseline_command(data, trimaps, methods, region, output, save_alphas, figure_cases, limit, min_annotators):
    """Run classical matting methods on a dataset with ground-truth alphas and tabulate SAD/MSE/Grad/Conn.

    Writes baseline_<region>.md / .csv / .json per region (mean over images, and mean ± std over
    the default 4 folds) and examples.png.
    """
    names = split_list(methods, CLASSICAL_METHODS, "method")
    region_names = split_list(region, {"unknown": None, "whole": None}, "region")
    samples = load_samples(data, limit, min_annotators)
    missing = [s.id for s in samples if s.alpha is None]
    if missing:
        raise MedmatError(f"{len(missing)} cases have no ground-truth alpha (first: {missing[0]}); build them with `medmat label`", data)
    trimap_of, trimap_source = evaluation_trimaps(samples, trimaps)
    regions = {name: {s.id: region_mask(trimap_of[s.id], name, s.shape) for s in samples} for name in region_names}
    folds = fold_test_ids(samples)

    def score(alpha_of: dict) -> dict:
        """region name -> case id -> metrics."""
        return {
            name: {s.id: matting_metrics(alpha_of[s.id], s.alpha, masks[s.id]) for s in samples}
            for name, masks in regions.items()
        }

    alphas, seconds = {}, {}
    if all(s.num_annotators > 0 for s in samples):
        alphas[REFERENCE_ROW] = {s.id: s.masks.mean(axis=0) for s in samples}
    progress = tqdm(total=len(names) * len(samples), desc="baseline", unit="image")
    for name in names:
        row_name = METHOD_NAMES[name]
        alphas[row_name], times = {}, []
        for sample in samples:
            progress.set_postfix_str(f"{name} {sample.id}")
            start = time.perf_counter()
            # A trimap with one known label gets that label (the methods' exact limit), so every
            # case is scored and the rows stay comparable with the deep models'.
            alphas[row_name][sample.id] = estimate_alpha(
                name, matting_image(sample.image), trimap_of[sample.id], one_sided="constant"
            )
            times.append(time.perf_counter() - start)
            progress.update()
        seconds[row_name] = float(np.mean(times))
    progress.close()

    scores = {row_name: score(alpha_of) for row_name, alpha_of in alphas.items()}
    for region_name in region_names:
        rows = {row_name: summarise(by_region[region_name], folds=folds) for row_name, by_region in scores.items()}
        for row_name, value in seconds.items():
            rows[row_name]["seconds_per_image"] = value
        extra = {
            "command": command_line(),
            "data": data, "trimaps": trimap_source, "region": region_name, "machine": machine_description(),
            "seconds per image": {row_name: round(value, 3) for row_name, value in seconds.items()},
            "one-sided trimaps (alpha = their one known label)": sum(
                one_sided_label(trimap_of[s.id]) is not None for s in samples
            ),
            "folds": "default 4-fold split (medmat split --scheme auto)" if folds else "none (fewer than 4 cases)",
        }
        title = f"Classical matting on {data} (region: {region_name})"
        paths = write_tables(os.path.join(output, f"baseline_{region_name}"), rows, title=title, extra=extra)
        click.echo(open(paths[0], encoding="utf-8").read())

    if save_alphas:
        for row_name, by_case in alphas.items():
            folder = os.path.join(output, "alphas", row_name.replace(" ", "_").replace("'", ""))
            for case_id, alpha in by_case.items():
                write_png(os.path.join(folder, case_id.replace("/", "_") + ".png"), np.clip(alpha, 0, 1))
    if figure_cases:
        shown = samples[:figure_cases]
        rows = [
            {"image": s.image, "trimap": trimap_of[s.id] / 255.0, "ground truth": s.alpha}
            | {name: by_case[s.id] for name, by_case in alphas.items()}
            for s in shown
        ]
        example_grid(os.path.join(output, "examples.png"), rows, [s.id for s in shown], title=f"medmat baseline on {data}")
    click.echo(f"tables and examples.png written to {output}")


COMMANDS = [baseline_command]
