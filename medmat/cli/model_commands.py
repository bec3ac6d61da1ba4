"""Deep-model sub-commands: ``train``, ``crossval``, ``predict`` and ``evaluate``.

Training goes through the one engine (:mod:`medmat.engine`); the config (a packaged name such
as ``lite`` / ``paper`` or a YAML file) chooses the model, the loss weighting and the data, and
``--set key=value`` changes any entry without editing a file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from medmat.cli.options import command_line, flip_option, machine_description, own_size_option
from medmat.engine import crossval, load_config, load_runs, predict, predict_as_trained, train
from medmat.engine.config import check_buildable, input_size, model_input_size, resize_size, resolve_config_path
from medmat.engine.dataset import fit_sample, resized_affine
from medmat.engine.held_out import ensemble_runs_and_cases, evaluate_fold, run_config
from medmat.engine.inference import fit_channels, flip_setting, require_output_size, runs_label
from medmat.engine.summary import write_summary
from medmat.engine.trainer import load_samples
from medmat.engine.volumes import (
    detect_lesions,
    evaluate_volumes,
    lesions_from_rois,
    predict_volume,
    training_window,
    write_volume_tables,
)
from medmat.errors import MedmatError
from medmat.interaction.evaluation import uncertainty_maps, write_uncertainty_report
from medmat.io.images import FORMATS, count_slices, geometry_affine, read_image, read_trimap, slice_name, write_like
from medmat.io.volumes import is_dicom_series_folder, parse_window, read_volume
from medmat.metrics.uncertainty import uncertainty_report
from medmat.models.contract import ENTROPY_FILES
from medmat.reporting import example_grid

#: Image files ``medmat predict`` reads from a folder: every ending medmat reads.
IMAGE_ENDINGS = tuple(FORMATS)


def _config_options(function):
    """--config, --data, --trimaps, --set: how every training command picks what to train."""
    function = click.option(
        "--set", "overrides", multiple=True, metavar="KEY=VALUE",
        help="Override a config entry, e.g. --set optim.epochs=2 --set loss.weighting=uws (repeatable).",
    )(function)
    function = click.option("--trimaps", default=None, help="Trimaps for the Table IV region (overrides data.trimaps).")(function)
    function = click.option("--data", "-d", default=None, help="Dataset (overrides data.dataset in the config).")(function)
    function = click.option(
        "--config", "-c", default="lite", show_default=True,
        help="Packaged config (lite, paper, medical_matting_lite, ...) or a YAML file.",
    )(function)
    return function


def _load_config(config: str, data: str | None, trimaps: str | None, overrides) -> dict:
    extra = list(overrides)
    if data is not None:
        extra.append(f"data.dataset={data}")
        if trimaps is None:
            extra.append("data.trimaps=null")  # the config's trimaps belong to its own dataset
    if trimaps is not None:
        extra.append(f"data.trimaps={trimaps}")
    loaded = load_config(config, extra)
    check_buildable(loaded, resolve_config_path(config))  # a value the model refuses, named with its file
    return loaded


@click.command("train")
@_config_options
@click.option("--run-dir", "-r", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--fold", type=click.IntRange(min=0), default=None, help="Held-out fold (default: split.fold).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
def train_command(config, data, trimaps, overrides, run_dir, fold, resume):
    """Train one fold and evaluate it on the held-out cases (works under torchrun too)."""
    record = train(_load_config(config, data, trimaps, overrides), run_dir, fold=fold, resume=resume)
    if "mean" in record:
        click.echo(f"fold {record['fold']} done; metrics in {Path(run_dir) / 'metrics.json'}")


@click.command("crossval")
@_config_options
@click.option("--run-dir", "-r", required=True, type=click.Path(file_okay=False), help="Cross-validation folder.")
@click.option("--folds", default=None, help="Comma-separated folds to run (default: all).")
@click.option("--resume", is_flag=True, help="Resume interrupted folds and skip finished ones.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Folds trained at the same time, each in its own process (torch threads split between them).")
def crossval_command(config, data, trimaps, overrides, run_dir, folds, resume, jobs):
    """k-fold cross-validation: the split JSON, one folder per fold, and a summary table."""
    chosen = None if folds is None else [int(f) for f in folds.split(",") if f.strip()]
    summary = crossval(_load_config(config, data, trimaps, overrides), run_dir, folds=chosen, resume=resume, jobs=jobs)
    table = Path(run_dir) / "summary.md"
    if table.is_file():
        click.echo(table.read_text(encoding="utf-8"))
    click.echo(f"cross-validation of folds {summary.get('folds')} written to {run_dir}")


def _image_files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise MedmatError("no such image file or folder", path)
    files = sorted(
        os.path.join(path, name) for name in os.listdir(path) if name.lower().endswith(IMAGE_ENDINGS)
    )
    if not files:
        raise MedmatError(f"no images ({', '.join(IMAGE_ENDINGS)}) in the folder", path)
    return files


def _stem(path: str) -> str:
    """Output name of an input image: its file name without ending or nnU-Net channel suffix."""
    name = os.path.basename(path)
    stem = next((name[: -len(e)] for e in IMAGE_ENDINGS if name.lower().endswith(e)), os.path.splitext(name)[0])
    return stem[: -len("_0000")] if stem.endswith("_0000") else stem


def write_prediction(base: str, prediction: dict, geometry: dict | None, fmt: str | None) -> list[str]:
    """Write one prediction's maps beside each other; returns the written paths.

    ``<base>_alpha``: alpha in [0, 1]; ``<base>_uncertainty`` and ``<base>_lesion_uncertainty``:
    entropies in bits (nats / ln 2), so 0 = certain and 1 = a 50/50 pixel; ``<base>_mask-<k>``:
    the k-th sampled mask (score map > 0.5).
    """
    written = [write_like(f"{base}_alpha", np.clip(prediction["alpha"], 0, 1), geometry, fmt)]
    for key, name in ENTROPY_FILES.items():
        if key in prediction:
            bits = np.clip(prediction[key] / math.log(2), 0, 1).astype(np.float32)
            written.append(write_like(f"{base}_{name}", bits, geometry, fmt))
    for k, score_map in enumerate(prediction.get("sample_masks", ())):
        written.append(write_like(f"{base}_mask-{k}", score_map > 0.5, geometry, fmt))
    return written


def _prediction_size(shape: tuple[int, int], output_size, scale: float | None, path: str) -> tuple[int, int] | None:
    """(H', W') to predict an (H, W) image at: ``output_size``, else the scaled shape, else None (its own)."""
    if output_size:
        return int(output_size[0]), int(output_size[1])
    if scale is None:
        return None
    size = (round(shape[0] * scale), round(shape[1] * scale))
    if min(size) < 1:
        raise MedmatError(f"--scale {scale:g} makes the {shape[0]}x{shape[1]} image {size[0]}x{size[1]} pixels", path)
    return size


def _resized_geometry(geometry: dict, shape: tuple[int, int], size: tuple[int, int]) -> dict:
    """The geometry of an (H, W) = ``shape`` image's predictions made at ``size`` (h, w).

    The affine (or the one :func:`medmat.io.images.geometry_affine` makes from the spacing) has
    its in-plane columns scaled by H / h and W / w, so a NIfTI output covers the input's extent.
    """
    if tuple(size) == tuple(shape):
        return geometry
    spacing = geometry.get("spacing")
    if spacing is not None:
        spacing = (spacing[0] * shape[0] / size[0], spacing[1] * shape[1] / size[1])
    return {**geometry, "affine": resized_affine(geometry_affine(geometry), shape, size), "spacing": spacing}


def _volume_inputs(path: str) -> tuple[list[str], list[str]]:
    """(volumes, 2-D image files) of a --input: a DICOM series folder or a 3-D NIfTI is a volume;
    a folder of images holds 2-D images (and 3-D NIfTI volumes, each predicted as a volume)."""
    if is_dicom_series_folder(path):
        return [path], []
    volumes, images = [], []
    for file in _image_files(path):
        if file.lower().endswith((".nii", ".nii.gz")):
            with read_volume(file) as volume:  # the header only; a 4-D file is refused here
                is_volume = volume.shape[0] > 1
            (volumes if is_volume else images).append(file)
        else:
            images.append(file)
    if volumes and images:
        raise MedmatError("the folder mixes volumes and 2-D images; predict them from separate folders", path)
    return volumes, images


def _predict_volume(path, model, config, output, run, num_samples, seed, window, rois, roi_slices) -> dict:
    """``medmat predict`` of one volume: its lesions (--roi, else the coarse pass), then the volumes and
    <name>_lesions.json in ``output`` (medmat.engine.volumes.predict_volume)."""
    intensity = parse_window(window)
    name = os.path.basename(os.path.normpath(path)) if os.path.isdir(path) else _stem(path)
    with read_volume(path) as volume:
        if rois:
            lesions = lesions_from_rois(rois, volume, training_window(config), roi_slices)
        else:
            lesions = detect_lesions(model, config, volume, intensity, num_samples, seed)
        extra = {"model": str(run), "roi": list(rois) or "coarse pass (a heuristic)", "command": command_line(),
                 "machine": machine_description()}
        return predict_volume(model, config, volume, os.path.join(output, name), lesions, intensity, num_samples,
                              seed, extra=extra)


@click.command("predict")
@click.option("--input", "-i", "input_path", required=True, help="An image (PNG, JPEG, TIFF, BMP, NIfTI, DICOM) or a folder of them.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--model", "-m", "runs", required=True, multiple=True,
              help="A run folder (or its checkpoint) from train / crossval fold-<i>; given several times, the runs "
                   "predict as one deep ensemble (mean alpha, pooled sampled masks).")
@click.option("--samples", "num_samples", default=8, show_default=True, type=click.IntRange(min=1), help="Sampled masks N.")
@click.option("--format", "file_format", default=None, type=click.Choice(["png", "nifti"]),
              help="Output format (default: NIfTI for NIfTI/DICOM input, keeping its geometry; PNG otherwise).")
@click.option("--trimaps", default=None, help="Folder of <name>.png trimaps, for trimap-based models.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the sampled latents, set anew for each image (for each slice of a volume).")
@click.option("--output-size", nargs=2, type=click.IntRange(min=1), default=None, metavar="H W",
              help="Predict every image at H x W (resolution-free models, e.g. region_aware_matting).")
@click.option("--scale", type=click.FloatRange(min=0, min_open=True), default=None, metavar="FACTOR",
              help="Predict every image at its size times FACTOR, rounded (resolution-free models).")
@click.option("--window", default=None, metavar="PRESET|LEVEL/WIDTH",
              help="Volumes: intensity window mapping scanner values to [0, 1]: lung (-600/1500), soft-tissue "
                   "(40/400), mediastinum, brain, liver, bone, or LEVEL/WIDTH. Default: every slice min-max "
                   "normalised on its own, as a single NIfTI/DICOM image is read.")
@click.option("--roi", "rois", multiple=True, metavar="ROI",
              help="Volumes: a lesion to predict (repeatable): a label volume on the same grid (every 3-D "
                   "connected lesion), box:z0,z1,y0,y1,x0,x1 (voxels, half-open) or seed:z,y,x (a box of the "
                   "run's training size). Without --roi a coarse pass looks for lesions: a heuristic that "
                   "slides the run's window over every slice and keeps windows predicting alpha > 0.5.")
@click.option("--roi-slices", default=1, show_default=True, type=click.IntRange(min=1),
              help="Slices a seed:z,y,x box spans, centred on the seed's slice.")
@flip_option("the run's eval.flip")
@own_size_option("Predict each 2-D image")
def predict_command(input_path, output, runs, num_samples, file_format, trimaps, seed, output_size, scale,
                    window, rois, roi_slices, flip, own_size):
    """Predict alpha mattes, uncertainty maps, lesion uncertainty and sampled masks for new images.

    Several --model: the runs predict as one deep ensemble (the mean of their alphas, the pool of their
    sampled masks), e.g. one config trained with several seeds.

    A 3-D NIfTI or a DICOM series folder is a volume: its lesions are predicted at the run's training
    size and written as float32 NIfTI volumes on the input's grid, with <name>_lesions.json
    (docs/volumes.md). A multi-frame DICOM file or a multi-page TIFF is a stack of 2-D images:
    each is predicted on its own, as <name>_slice-<k>.

    A 2-D image is predicted as the run saw its cases: resampled to the run's data.resize when it
    set one (every map then resampled back to the image's size; --own-size keeps the image's size),
    and to data.model_input_size for a LIIF-style run; otherwise at its own size, where memory grows
    with the pixels (docs/data-format.md, "Large images").
    """
    if output_size and scale is not None:
        raise click.UsageError("--output-size and --scale are mutually exclusive")
    model, config = load_runs(runs)
    flip = flip_setting(flip, config)
    run = runs_label(runs)  # how the volumes' JSON names the model
    if output_size or scale is not None:
        require_output_size(model, config["model"]["name"])
    volumes, files = _volume_inputs(input_path)
    volume_options = {"window": window, "rois": rois, "roi_slices": roi_slices}
    if volumes:
        if output_size or scale is not None or trimaps or file_format == "png":
            raise MedmatError("volumes are predicted at the run's training size into NIfTI, without trimaps: "
                              "--output-size, --scale, --trimaps and --format png do not apply", input_path)
        config = {**config, "eval": {**config["eval"], "flip": flip}}  # the lesions' views (eval.flip)
        if rois and len(volumes) > 1:
            raise MedmatError(f"--roi names voxels of one volume, but {len(volumes)} volumes were given", input_path)
        for volume_path in volumes:
            _predict_volume(volume_path, model, config, output, run, num_samples, seed, **volume_options)
        click.echo(f"{len(volumes)} volume prediction{'s' if len(volumes) != 1 else ''} written to {output}")
        return
    if window or rois:
        raise MedmatError("--window and --roi apply to volumes (a 3-D NIfTI, a DICOM series folder)", input_path)
    written = 0
    for path in tqdm(files, desc="predict", unit="image"):
        slices = count_slices(path)  # a multi-frame DICOM or multi-page TIFF: each slice on its own
        for index in [None] if slices == 1 else range(slices):
            # Seeded anew for each image, as the app does: an image's sampled masks and matte do
            # not depend on which other images share its folder.
            torch.manual_seed(seed)
            image, geometry = read_image(path, index)
            image = fit_channels(image, model.spec.in_channels, path)
            name = _stem(path) if index is None else slice_name(_stem(path), index)
            trimap = read_trimap(os.path.join(trimaps, name + ".png")) if trimaps else None
            size = _prediction_size(image.shape[-2:], output_size, scale, path)
            if size is None:  # as the run saw its cases: data.resize, data.model_input_size
                prediction = predict_as_trained(model, image, num_samples, trimap, model_input_size(config),
                                                flip, resize=None if own_size else resize_size(config))
            else:
                prediction = predict(model, image, trimap, output_size=size, num_samples=num_samples,
                                     flip=flip)
                geometry = _resized_geometry(geometry, image.shape[-2:], size)
            write_prediction(os.path.join(output, name), prediction, geometry, file_format)
            written += 1
    click.echo(f"{written} predictions written to {output}")


@click.command("evaluate")
@click.option("--run", "-r", "runs", required=True, multiple=True,
              help="A train run folder or a crossval folder; given several times, the runs (one split, e.g. one "
                   "config trained with several seeds) predict as one deep ensemble.")
@click.option("--data", "-d", default=None,
              help="Dataset (default: the run's data.dataset); another one (an external test set) is scored whole.")
@click.option("--trimaps", default=None, help="Trimaps for the Table IV region (default: the run's data.trimaps).")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Folder for tables and the figure.")
@click.option("--samples", "num_samples", default=None, type=click.IntRange(min=1),
              help="Sampled masks a case [default: the run's eval.num_samples, as its summary.md was scored].")
@click.option("--figure", "figure_cases", default=4, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=None, type=int,
              help="Seed of the sampled masks' latents [default: the run's own seed, so that one run's scores "
                   "repeat its summary.md; 0 with several --run].")
@click.option("--uncertainty", is_flag=True,
              help="Also score the uncertainty maps: AUROC for |error| > 0.1 and for annotator disagreement, "
                   "and for 'nig' models the calibration (uncertainty.json, uncertainty.md, reliability.png).")
@flip_option("each fold's eval.flip, as it was trained")
def evaluate_command(runs, data, trimaps, output, num_samples, figure_cases, seed, uncertainty, flip):
    """Score a run's models on their held-out cases: Table IV / V-style tables and a figure of examples.

    Table IV: SAD/MSE/Grad/Conn on trimap == 128 (whole image without trimaps), mean over all test
    predictions. Table V: whole image, GED and Dice against 8 masks thresholding the GT alpha,
    mean ± std over folds. On a dataset of volumes (a folder dataset of 3-D NIfTI cases) also
    volumes.md: per lesion, 3-D SAD/MSE and GED/Dice of the thresholded mattes. With --uncertainty, the pixels of every fold's held-out cases are
    pooled into one uncertainty report (each pixel scored by the model that did not train on it).
    Several --run: each fold is scored by the mean alpha of the runs' fold models and the pool
    of their sampled masks (a deep ensemble); the runs must hold out the same cases.
    --data naming another dataset (other patients' labelled scans: one that lacks some of the
    run's training cases): every fold model scores every case of it.
    """
    config = run_config(runs[0], data, trimaps)
    if seed is None:  # training scored each fold with the run's seed: draw the same masks
        seed = config["seed"] if len(runs) == 1 else 0
    if num_samples is None:
        num_samples = config["eval"]["num_samples"]
    if len(runs) > 1:  # the summary's config says which models scored
        config = {**config, "ensemble_runs": [str(run) for run in runs]}
    if flip is not None:  # the summary's config says how the tables were made
        flip = flip_setting(flip, config)
        config = {**config, "eval": {**config["eval"], "flip": flip}}
    samples = load_samples(config)
    records, figure_rows, labels, uncertainty_cases, uncertainty_predictions = [], [], [], [], []
    volume_records = []  # per-lesion 3-D scores of a dataset of volumes
    for fold, (model_dirs, cases) in enumerate(ensemble_runs_and_cases(runs, samples)):
        model, fold_config = load_runs(model_dirs)
        size = input_size(fold_config)  # score as training did: at data.input_size when it is set
        small_input = model_input_size(fold_config)
        fold_flip = fold_config["eval"]["flip"] if flip is None else flip
        records.append(evaluate_fold(model, fold_config, cases, num_samples, seed, fold, fold_flip))
        torch.manual_seed(seed)
        lesion_scores = evaluate_volumes(model, cases, num_samples, size, small_input, fold_flip)
        volume_records += [{"fold": fold, **r} for r in lesion_scores]
        cases = [fit_sample(sample, size) for sample in cases]  # the figure and uncertainty maps see that view
        if uncertainty:
            torch.manual_seed(seed)
            uncertainty_predictions += [uncertainty_maps(model, sample, num_samples, small_input, fold_flip)
                                        for sample in cases]
            uncertainty_cases += cases
        for sample in cases[: max(0, figure_cases - len(figure_rows))]:
            prediction = predict_as_trained(model, sample.image, num_samples, sample.trimap, small_input, fold_flip)
            context = sample.meta.get("context_slices", 0)  # a 2.5-D stack shows its middle slice
            figure_rows.append({
                "image": sample.image[context : context + 1] if context else sample.image,
                "ground truth": sample.alpha, "alpha": prediction["alpha"],
                "uncertainty map": prediction.get("uncertainty_map", np.zeros_like(prediction["alpha"])),
                "lesion uncertainty": prediction.get("lesion_uncertainty", np.zeros_like(prediction["alpha"])),
                "|error|": np.abs(prediction["alpha"] - sample.alpha),
            })
            labels.append(sample.id)
    os.makedirs(output, exist_ok=True)
    summary = write_summary(records, {**config, "evaluated_by": command_line(), "evaluation_seed": seed,
                                      "machine": machine_description()}, output)
    if figure_rows:
        example_grid(os.path.join(output, "examples.png"), figure_rows, labels, title=f"medmat evaluate {runs_label(runs)}")
    click.echo(Path(output, "summary.md").read_text(encoding="utf-8"))
    if volume_records:
        write_volume_tables(volume_records, output, {"evaluated_by": command_line(), "machine": machine_description()})
        click.echo(Path(output, "volumes.md").read_text(encoding="utf-8"))
    if uncertainty and uncertainty_cases:
        report = uncertainty_report(
            uncertainty_predictions, [s.alpha for s in uncertainty_cases], [s.masks for s in uncertainty_cases]
        )
        extra = {"test_ids": [s.id for s in uncertainty_cases], "evaluated_by": command_line(), "seed": seed}
        written = write_uncertainty_report(report, output, extra)
        click.echo(Path(output, "uncertainty.md").read_text(encoding="utf-8"))
        click.echo(f"uncertainty report written to {', '.join(os.path.basename(path) for path in written)}")
    click.echo(f"tables and examples.png written to {output} ({summary['table_iv']['n']} cases)")


COMMANDS = [train_command, crossval_command, predict_command, evaluate_command]
