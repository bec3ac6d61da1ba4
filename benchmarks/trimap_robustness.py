"""Trimap robustness (AdaMatting, Cai et al. 2019, Table 4) of a trimap-guided run and of classical matting.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trimap_robustness.py --run runs/i5/ada \\
        --output results/i5-robustness [--dilations 0 5 10 20] [--methods cf] [--folds 0,1] \\
        [--figure-cases 4] [--threads 1] [--data DATASET --trimaps TRIMAPS]

``--run`` is a ``medmat train`` or ``medmat crossval`` folder of a trimap-guided model (AdaMatting:
it also returns an adapted trimap). Every held-out case is predicted by the model of the fold that
held it out, as ``medmat evaluate`` does (same run loading, case fitting and prediction). For every
dilation d the case's shared evaluation trimap (the run's ``data.trimaps``) is made 0 / 128 / 255
and its unknown band grown by d pixels into the foreground and the background
(:func:`medmat.labels.training_trimaps.dilate_unknown`); the model and each classical method
(``--methods``, default closed-form) get that same trimap.

Columns of ``robustness.md`` (one row per method and dilation, means over the held-out cases of
every fold run):

- ``n``: cases in the row. Where the dilated trimap has lost its foreground (on Brain-growth,
  whose foreground is thin, from a few pixels of dilation on), a classical method's answer is
  alpha = 0 over the unknown band, the exact limit of its propagation (``one_sided="constant"``);
  it skips only a trimap with no known pixel at all;
- ``given Acc``, ``given mIoU``: the given (dilated) trimap against T_opt, the optimal trimap of
  the ground-truth alpha (AdaMatting Eq. 2: unknown where 0 < alpha < 1), over the whole image;
  the no-adaptation reference, the trimap a method that does not adapt it works with;
- ``adapted Acc``, ``adapted mIoU``: the model's adapted trimap against T_opt, whole image
  (empty for methods without one). Acc is the fraction of pixels in the right class; mIoU the
  mean IoU over the classes present in either map (:mod:`medmat.metrics.segmentation`);
- ``SAD``, ``MSE``, ``Grad``, ``Conn``: the alpha against the ground truth on the Table IV region,
  the ORIGINAL evaluation trimap's unknown pixels (== 128), the same pixels at every dilation so
  rows compare; SAD, Grad and Conn divided by 1000 (:func:`medmat.metrics.matting_metrics`).

Writes ``robustness.md``, ``robustness.json`` (rows, per-case values, command, machine, seconds)
and ``examples.png`` (image, given trimap, adapted trimap, alpha, ground truth for
``--figure-cases`` cases at dilation 10, or the largest one given).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from machine import describe_machine  # benchmarks/ is the script's folder, first on sys.path
from medmat.classical import CLASSICAL_METHODS, METHOD_NAMES, estimate_alpha
from medmat.engine.held_out import run_config, runs_and_cases
from medmat.data.sample import Sample
from medmat.data.trimap import optimal_trimap_classes, trimap_classes, trimap_levels, trimap_regions
from medmat.engine import load_run, predict
from medmat.engine.checkpoint import FINAL_NAME
from medmat.engine.config import input_size
from medmat.engine.dataset import fit_to_size, unfit_from_size
from medmat.engine.trainer import load_samples
from medmat.errors import MedmatError
from medmat.io.atomic import atomic_write_json, atomic_write_text
from medmat.labels.build import matting_image
from medmat.labels.training_trimaps import dilate_unknown
from medmat.metrics import matting_metrics, region_mask, trimap_accuracy, trimap_miou
from medmat.metrics.tables import MATTING_METRICS, summarise, table_markdown
from medmat.reporting import example_grid

TRIMAP_METRICS = ("given Acc", "given mIoU", "adapted Acc", "adapted mIoU")
COLUMNS = TRIMAP_METRICS + MATTING_METRICS
#: The figure's dilation when it is among those run (AdaMatting's "D-10"); else the largest.
FIGURE_DILATION = 10


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="train or crossval folder of a trimap-guided model")
    parser.add_argument("--output", required=True, help="folder for robustness.md / .json and examples.png")
    parser.add_argument("--dilations", type=int, nargs="+", default=[0, 5, 10, 20], help="pixels (default 0 5 10 20)")
    parser.add_argument("--methods", nargs="*", default=["cf"], choices=list(CLASSICAL_METHODS),
                        help="classical methods on the same trimaps (default cf; none: --methods)")
    parser.add_argument("--folds", default=None, help="comma-separated folds of a crossval run (default: all)")
    parser.add_argument("--figure-cases", type=int, default=4, help="cases in examples.png (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--data", default=None, help="dataset (default: the run's data.dataset)")
    parser.add_argument("--trimaps", default=None, help="evaluation trimaps (default: the run's data.trimaps)")
    args = parser.parse_args(argv)
    if any(d < 0 for d in args.dilations):
        parser.error("--dilations must be >= 0")
    if args.folds is not None:
        try:
            args.folds = [int(fold) for fold in args.folds.split(",") if fold.strip()]
        except ValueError:
            parser.error(f"--folds takes comma-separated fold numbers, got {args.folds!r}")
    return args


# --- trimaps as class maps -------------------------------------------------------------------------


def class_map(trimap: np.ndarray) -> np.ndarray:
    """Trimap classes of a numpy trimap, read as every medmat method reads trimaps.

    Args:
        trimap: (H, W) uint8 0..255 or float levels in [0, 1].

    Returns:
        int64 (H, W): 0 background, 1 unknown, 2 foreground.
    """
    levels = torch.from_numpy(trimap_levels(trimap))[None, None]
    return trimap_classes(levels)[0].numpy()


def optimal_class_map(alpha: np.ndarray) -> np.ndarray:
    """T_opt of a ground-truth alpha (AdaMatting Eq. 2): float (H, W) in [0, 1] -> int64 (H, W) classes."""
    return optimal_trimap_classes(torch.from_numpy(np.asarray(alpha, dtype=np.float32))[None, None])[0].numpy()


def trimap_scores(trimap: np.ndarray, target_classes: np.ndarray, prefix: str) -> dict[str, float]:
    """``{"<prefix> Acc", "<prefix> mIoU"}`` of a trimap against target classes (T_opt)."""
    classes = class_map(trimap)
    return {
        f"{prefix} Acc": trimap_accuracy(classes, target_classes),
        f"{prefix} mIoU": trimap_miou(classes, target_classes),
    }


# --- prediction --------------------------------------------------------------------------------------


def predict_with_trimap(
    model: nn.Module, sample: Sample, trimap: np.ndarray, size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's alpha and adapted trimap for one case and a given trimap, at the case's size.

    As ``medmat evaluate``: the case is fitted to the training ``size`` (centre crop or zero
    pad), predicted, and the prediction put back at the case's own size.

    Args:
        model: a trimap-guided model in eval mode (:func:`medmat.engine.load_run`).
        sample: the case (its image is used).
        trimap: uint8 (H, W) 0 / 128 / 255, the case's size.
        size: the run's ``data.input_size`` (None: the case's size).

    Returns:
        ``(alpha, adapted)``: float32 (H, W) in [0, 1], and the adapted trimap float32 (H, W)
        with levels 0 / 0.5 / 1, or None when the model makes none.
    """
    size = tuple(size or sample.shape)
    prediction = predict(model, fit_to_size(sample.image, size), trimap=fit_to_size(trimap, size))
    alpha = np.clip(unfit_from_size(prediction["alpha"], sample.shape), 0.0, 1.0)
    adapted = prediction.get("adapted_trimap")
    return alpha, None if adapted is None else unfit_from_size(adapted, sample.shape)


def alpha_scores(alpha: np.ndarray, sample: Sample) -> dict[str, float]:
    """SAD / MSE / Grad / Conn on the case's Table IV region (its evaluation trimap == 128); {} when empty."""
    region = region_mask(sample.trimap, "unknown", sample.shape)
    return matting_metrics(alpha, sample.alpha, region) if region.any() else {}


def can_propagate(trimap: np.ndarray) -> bool:
    """Whether a trimap keeps a known label for a classical method to start from.

    With one label only, the method's answer is that label everywhere (``one_sided="constant"``
    of :func:`medmat.classical.estimate_alpha`); with none, it has nothing.
    """
    foreground, background, _ = trimap_regions(trimap)
    return bool(foreground.any() or background.any())


# --- the experiment ----------------------------------------------------------------------------------


def fold_models(run: str, samples: Sequence[Sample], folds: Sequence[int] | None) -> list[tuple[str, list[Sample]]]:
    """(model folder, its held-out cases) of the chosen folds; every one must be finished (``final.pt``).

    Raises:
        MedmatError: a chosen fold the run does not have, or one still training.
    """
    pairs = runs_and_cases(run, samples)
    if folds is not None:
        by_fold = {Path(folder).name: (folder, cases) for folder, cases in pairs}
        missing = [f"fold-{fold}" for fold in folds if f"fold-{fold}" not in by_fold]
        if missing:
            raise MedmatError(f"the run has no {', '.join(missing)} (it has {', '.join(by_fold)})", run)
        pairs = [by_fold[f"fold-{fold}"] for fold in folds]
    unfinished = [Path(folder).name for folder, _ in pairs if not (Path(folder) / FINAL_NAME).is_file()]
    if unfinished:
        raise MedmatError(
            f"{', '.join(unfinished)} not finished (no {FINAL_NAME}); choose finished folds with --folds", run
        )
    return pairs


def evaluate_case(
    model: nn.Module, model_name: str, sample: Sample, dilation: int, size, methods: Sequence[str]
) -> tuple[list[dict], dict]:
    """Every method's record of one case at one dilation, and the model's pictures of it.

    Returns:
        ``(records, pictures)``: one record per method that could run, ``{"id", "dilation",
        "method", <column>: value}``; pictures ``{"given trimap", "adapted trimap" (when the
        model adapts), "alpha"}`` for the figure.
    """
    trimap = dilate_unknown(sample.trimap, dilation)
    target = optimal_class_map(sample.alpha)
    given = trimap_scores(trimap, target, "given")
    alpha, adapted = predict_with_trimap(model, sample, trimap, size)
    model_record = {"id": sample.id, "dilation": dilation, "method": model_name, **given, **alpha_scores(alpha, sample)}
    pictures = {"given trimap": trimap / 255.0}
    if adapted is not None:
        model_record.update(trimap_scores(adapted, target, "adapted"))
        pictures["adapted trimap"] = adapted
    pictures["alpha"] = alpha
    records = [model_record]
    if can_propagate(trimap):
        for method in methods:
            classical = estimate_alpha(method, matting_image(sample.image), trimap, one_sided="constant")
            records.append({"id": sample.id, "dilation": dilation, "method": METHOD_NAMES[method],
                            **given, **alpha_scores(classical, sample)})
    return records, pictures


def row_name(method: str, dilation: int) -> str:
    return f"{method}, unknown +{dilation} px"


def summary_rows(records: Sequence[dict], method_names: Sequence[str], dilations: Sequence[int]) -> dict[str, dict]:
    """One :func:`medmat.reporting.summarise` row per method and dilation, in that order.

    A row's means cover the columns its cases have (a classical row has no adapted trimap).
    """
    rows = {}
    for method in method_names:
        for dilation in dilations:
            per_case = {r["id"]: r for r in records if r["method"] == method and r["dilation"] == dilation}
            present = [column for column in COLUMNS if any(column in case for case in per_case.values())]
            rows[row_name(method, dilation)] = summarise(per_case, present)
    return rows


def figure_dilation(dilations: Sequence[int]) -> int:
    return FIGURE_DILATION if FIGURE_DILATION in dilations else max(dilations)


def main(argv: Sequence[str] | None = None, samples: Sequence[Sample] | None = None) -> dict:
    """Run the experiment and write its report.

    Args:
        argv: command-line arguments (default ``sys.argv[1:]``).
        samples: the dataset, instead of loading the run's ``data.dataset`` (with trimaps attached).

    Returns:
        The ``robustness.json`` record.
    """
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dilations = list(dict.fromkeys(args.dilations))
    config = run_config(args.run, args.data, args.trimaps)
    samples = list(samples) if samples is not None else load_samples(config)
    pairs = fold_models(args.run, samples, args.folds)
    without = sorted({s.id for _, cases in pairs for s in cases if s.trimap is None or s.alpha is None})
    if without:
        raise MedmatError(
            f"{len(without)} held-out cases lack an evaluation trimap or alpha (first: {without[0]}); give --trimaps",
            args.run,
        )

    model_name = config["model"]["name"]
    shown_dilation = figure_dilation(dilations)
    records, figure, labels = [], [], []
    start = time.perf_counter()
    for folder, cases in pairs:
        model, fold_config = load_run(folder)
        size = input_size(fold_config)  # predict as training and evaluation did
        for sample in cases:
            for dilation in dilations:
                case_records, pictures = evaluate_case(model, model_name, sample, dilation, size, args.methods)
                records += [{"fold": Path(folder).name, **record} for record in case_records]
                if dilation == shown_dilation and len(figure) < args.figure_cases:
                    figure.append({"image": sample.image, **pictures, "ground truth": sample.alpha})
                    labels.append(f"{sample.id} ({Path(folder).name})")
            print(f"  {Path(folder).name} {sample.id}: {len(dilations)} dilations", flush=True)
    seconds = time.perf_counter() - start

    method_names = [model_name] + [METHOD_NAMES[m] for m in args.methods]
    rows = summary_rows(records, method_names, dilations)
    num_cases = sum(len(cases) for _, cases in pairs)
    title = f"{args.run}: {num_cases} held-out cases of {len(pairs)} fold model(s), mean per row"
    markdown = (
        f"# Trimap robustness ({model_name}, AdaMatting Table 4)\n\n"
        + table_markdown(rows, list(COLUMNS), title)
        + "\nAcc and mIoU against T_opt of the ground-truth alpha, whole image. SAD / MSE / Grad / Conn on the "
        "original evaluation trimap's unknown pixels (== 128) at every dilation; SAD, Grad and Conn are divided "
        "by 1000. n: cases scored (where the dilated trimap lost its foreground, a classical method's alpha is 0 on the band, the exact limit of its propagation).\n"
    )
    report = {
        "command": shlex.join(["python", sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        "machine": describe_machine(),
        "run": args.run,
        "model": model_name,
        "folds": [Path(folder).name for folder, _ in pairs],
        "dilations": dilations,
        "methods": args.methods,
        "seconds": round(seconds, 1),
        "rows": rows,
        "cases": records,
    }
    os.makedirs(args.output, exist_ok=True)
    atomic_write_text(os.path.join(args.output, "robustness.md"), markdown)
    atomic_write_json(os.path.join(args.output, "robustness.json"), report)
    if figure:
        example_grid(os.path.join(args.output, "examples.png"), figure, labels,
                     title=f"{model_name}, unknown band +{shown_dilation} px: {args.run}")
    print(markdown)
    print(f"{seconds:.1f} s; written to {args.output}")
    return report


if __name__ == "__main__":
    try:
        main()
    except MedmatError as error:
        sys.exit(f"error: {error}")
