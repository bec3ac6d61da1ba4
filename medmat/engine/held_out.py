"""A finished run's models and the cases each held out, and scoring a fold as it was trained.

A *run* is a ``medmat train`` folder (one model, its test cases in ``metrics.json``) or a
``medmat crossval`` folder (``fold-*/`` models, the split in ``split.json``). ``medmat evaluate``,
``medmat interact`` and the benchmarks that rescore a run all walk it through
:func:`runs_and_cases` (several runs of one split as deep ensembles through
:func:`ensemble_runs_and_cases`), and score a fold through :func:`evaluate_fold`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from medmat.data.sample import Sample
from medmat.data.splits import load_split
from medmat.engine.config import input_size, model_input_size
from medmat.engine.evaluation import METRICS_NAME, evaluate_samples, mean_case_metrics
from medmat.engine.inference import FOLD_PREFIX, crossval_folds, first_model_folder, folder_number, load_run
from medmat.errors import MedmatError
from medmat.models import MattingModel


def unseen_cases(held_out_ids: Sequence[str], train_ids: Sequence[str], samples: Sequence[Sample]) -> list[Sample]:
    """The samples a model did not train on.

    On a dataset that holds every one of ``train_ids`` (the run's own, or a superset of it): the
    held-out cases in their recorded order, then any other case outside ``train_ids`` in dataset
    order. On a dataset that lacks some of them (another one, such as other patients' scans given
    with ``--data``): every case, since an id it shares with the training set names another image.
    """
    by_id = {sample.id: sample for sample in samples}
    seen = set(train_ids)
    if not seen <= by_id.keys():
        return list(samples)
    first = [by_id[i] for i in held_out_ids if i in by_id and i not in seen]
    listed = {sample.id for sample in first}
    return first + [sample for sample in samples if sample.id not in seen and sample.id not in listed]


def runs_and_cases(run: str | Path, samples: Sequence[Sample]) -> list[tuple[str, list[Sample]]]:
    """(model folder, the samples it did not train on) for a train run or each fold of a crossval run.

    On the run's own dataset these are each model's held-out (test) cases, in the split's order;
    on another dataset (``medmat evaluate --data``), every case (:func:`unseen_cases`).

    Raises:
        MedmatError: a crossval folder without ``split.json``, a folder that is neither, or a
            model that trained on every case of ``samples`` (nothing left to score).
    """
    root = Path(run)
    fold_dirs = crossval_folds(root)
    if fold_dirs:
        if not (root / "split.json").is_file():
            raise MedmatError("cross-validation folder without split.json", root)
        split = load_split(root / "split.json")["folds"]
        pairs = []
        for folder in fold_dirs:
            fold = folder_number(folder, FOLD_PREFIX)
            if fold >= len(split):
                raise MedmatError(f"{folder.name} has no fold in split.json ({len(split)} folds)", root)
            pairs.append((str(folder), unseen_cases(split[fold]["test"], split[fold]["train"], samples)))
    else:
        metrics = root / METRICS_NAME
        if not metrics.is_file():
            raise MedmatError(f"not a finished medmat run (no {METRICS_NAME} or fold-*/)", root)
        record = json.loads(metrics.read_text())
        pairs = [(str(root), unseen_cases(record["test_ids"], record["train_ids"], samples))]
    for folder, cases in pairs:
        if not cases:
            raise MedmatError("the model trained on every case of the dataset (or the dataset holds none of its "
                              "held-out cases): nothing left to score", folder)
    return pairs


def ensemble_runs_and_cases(runs: Sequence[str | Path], samples: Sequence[Sample]) -> list[tuple[list[str], list[Sample]]]:
    """(the model folder of every run, their held-out samples) per fold, for runs that split alike.

    One run gives :func:`runs_and_cases` with one-folder lists. Several (the members of a deep
    ensemble, :func:`~medmat.engine.inference.load_runs`) must hold out the same cases in every
    fold, so that each case is still scored by models that never trained on it.

    Raises:
        MedmatError: a run with another number of folds or other held-out cases than the first.
    """
    per_run = [runs_and_cases(run, samples) for run in runs]
    first = per_run[0]
    for run, folds in zip(runs[1:], per_run[1:]):
        if len(folds) != len(first):
            raise MedmatError(f"{len(folds)} folds here, {len(first)} in {runs[0]}: an ensemble's runs must split alike", run)
        for fold, ((_, cases), (_, first_cases)) in enumerate(zip(folds, first)):
            if [case.id for case in cases] != [case.id for case in first_cases]:
                raise MedmatError(f"fold {fold} holds out other cases than in {runs[0]}: an ensemble's runs must split alike", run)
    return [([folds[fold][0] for folds in per_run], cases) for fold, (_, cases) in enumerate(first)]


def run_config(run: str | Path, data: str | None, trimaps: str | None) -> dict:
    """The config of a train run (or of the first fold of a crossval folder), with ``data`` / ``trimaps``
    (a dataset and its trimaps to score instead of the run's) applied when given."""
    config = load_run(first_model_folder(run))[1]
    if data is not None:
        config["data"].update(dataset=data, trimaps=trimaps)
    elif trimaps is not None:
        config["data"]["trimaps"] = trimaps
    return config


def evaluate_fold(model: MattingModel, fold_config: dict, cases: Sequence[Sample], num_samples: int, seed: int,
                  fold: int = 0, flip: bool | str | None = None) -> dict:
    """One fold's held-out cases scored as the fold was trained.

    At the fold's ``data.input_size`` (and ``data.model_input_size`` for a LIIF-style run), with its
    ``eval.region`` and ``eval.flip`` (``flip`` overrides it), torch's generator seeded with
    ``seed`` first so that every fold draws its masks from the same state.

    Returns:
        ``{"fold", "test_ids", "cases", "mean"}``: the per-case results of
        :func:`~medmat.engine.evaluation.evaluate_samples` and their
        :func:`~medmat.engine.evaluation.mean_case_metrics`, the record
        :func:`~medmat.engine.summary.write_summary` takes.
    """
    fold_flip = fold_config["eval"]["flip"] if flip is None else flip
    torch.manual_seed(seed)
    evaluated = evaluate_samples(
        model, cases, num_samples, fold_config["eval"]["region"], input_size(fold_config),
        model_input_size=model_input_size(fold_config), flip=fold_flip,
    )
    return {"fold": fold, "test_ids": [case.id for case in cases], "cases": evaluated, "mean": mean_case_metrics(evaluated)}
