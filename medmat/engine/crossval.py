"""Cross-validation: every fold of a split trained and evaluated, one after another or N at a time
in worker processes, then summarised (:mod:`medmat.engine.summary`)."""

from __future__ import annotations

import concurrent.futures
import copy
import logging
import multiprocessing
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from medmat.data.sample import Sample
from medmat.data.splits import load_split, save_split
from medmat.engine import distributed
from medmat.engine.config import load_config
from medmat.engine.evaluation import read_metrics
from medmat.engine.inference import fold_folder, member_folder
from medmat.engine.loop import Handler
from medmat.engine.summary import write_summary
from medmat.engine.trainer import SPLIT_NAME, compute_split, load_samples, member_config, train
from medmat.errors import MedmatError

LOG = logging.getLogger("medmat.engine")


def crossval(
    config: dict | str,
    run_dir: str | Path,
    folds: Sequence[int] | None = None,
    resume: bool = False,
    samples: Sequence[Sample] | None = None,
    callbacks: Sequence[Handler] = (),
    jobs: int = 1,
) -> dict:
    """Train and evaluate every fold into ``run_dir/fold-<i>/``, then summarise them.

    The split is computed once and saved as ``run_dir/split.json``; the summary
    (``summary.md``, ``.csv``, ``.json``) has Table IV's numbers (matting errors on the
    requested region, mean over all test predictions) and Table V's (whole image, GED and
    Dice; mean ± std over the folds' means).

    Args:
        config: config dict, YAML path or packaged name.
        run_dir: the cross-validation folder.
        folds: which folds to run (default: all ``split.k``); the summary covers those.
        resume: resume interrupted folds and skip finished ones.
        samples: the dataset (default: load ``data.dataset``).
        callbacks: passed to :func:`train`.
        jobs: folds trained at the same time, each in its own process (default 1: one after
            another). With ``train.num_threads`` unset each process gets ``cpu_count // jobs``
            torch threads; with the same thread count a fold's results do not depend on ``jobs``.

    Returns:
        The summary record (also written to ``summary.json``) with ``run_dir``.
    """
    config = load_config(config)
    run_dir = Path(run_dir)
    given_samples = samples is not None
    samples = list(samples) if samples is not None else load_samples(config)
    split_path = run_dir / SPLIT_NAME
    _, rank, _ = distributed.environment_ranks()
    if split_path.is_file():
        if not resume:
            raise MedmatError("folder already holds a cross-validation; resume it or choose another folder", run_dir)
        split = load_split(split_path, [sample.id for sample in samples])["folds"]
    else:
        split, meta = compute_split(samples, config)
        if rank == 0:
            save_split(split_path, split, meta)
    folds = list(range(config["split"]["k"])) if folds is None else [int(f) for f in folds]

    if jobs > 1:
        # Samples read from data.dataset are read again by each worker rather than sent to it.
        handed_in = samples if given_samples else None
        records = _train_folds_in_parallel(config, run_dir, folds, resume, handed_in, split, callbacks, jobs)
    else:
        # One process group for every fold (train() joins it rather than starting its own).
        context = distributed.setup(config["train"]["device"])
        try:
            records = [
                train(config, fold_folder(run_dir, fold), fold, resume, samples, split, callbacks) for fold in folds
            ]
        finally:
            distributed.cleanup(context)
    summary = {"run_dir": str(run_dir), "folds": folds}
    if rank == 0:
        summary = write_summary(records, config, run_dir, _member_records(config, run_dir, folds))
    return summary


def _member_records(config: dict, run_dir: Path, folds: Sequence[int]) -> dict[str, list[dict]] | None:
    """For an ensemble config, each member's fold records (``fold-<k>/member-<i>/metrics.json``)
    by ``"member <i> (seed <its seed>)"``; None for a single-model config."""
    if config["ensemble"]["members"] == 1:
        return None
    return {
        f"member {index} (seed {member_config(config, index)['seed']})": [
            read_metrics(member_folder(fold_folder(run_dir, fold), index)) for fold in folds
        ]
        for index in range(config["ensemble"]["members"])
    }


def _train_folds_in_parallel(config, run_dir, folds, resume, samples, split, callbacks, jobs) -> list[dict]:
    """Train ``folds`` in ``jobs`` worker processes; returns their records in ``folds`` order."""
    if distributed.environment_ranks()[2] > 1:
        raise MedmatError("parallel folds (jobs > 1) cannot run under torchrun; use one or the other")
    if callbacks:
        raise MedmatError("callbacks need the folds in this process: use jobs=1")
    config = copy.deepcopy(config)
    if not config["train"]["num_threads"]:
        config["train"]["num_threads"] = max(1, (os.cpu_count() or 1) // jobs)
    if config["train"]["progress"] == "auto":
        config["train"]["progress"] = False  # several bars in one terminal would overwrite each other
    # fork keeps what this process registered at run time (plugin models, losses) and the
    # loaded samples; torch's CPU thread pools are re-created in the child after a fork.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    records = {}
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method)) as pool:
        futures = {
            pool.submit(train, config, fold_folder(run_dir, fold), fold, resume, samples, split): fold for fold in folds
        }
        for future in concurrent.futures.as_completed(futures):
            records[futures[future]] = future.result()
            LOG.info("fold %s done", futures[future])
    return [records[fold] for fold in folds]
