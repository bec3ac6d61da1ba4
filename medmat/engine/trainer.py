"""Training one fold of any medmat model, driven by a config.

    from medmat.engine import load_config, train, crossval
    train(load_config("lite", ["optim.epochs=2"]), "runs/lite-fold0", fold=0)
    crossval("lite", "runs/lite-cv")          # every fold, then summary.{md,csv,json}

or from a shell, also data-parallel under ``torchrun --nproc_per_node N -m medmat train ...``.

The recipe is the paper's (§IV.A, Table III): Adam over the model's and the criterion's
parameters, a one-epoch linear warm-up from 0 to the base learning rate, then cosine annealing
(:mod:`medmat.engine.schedule`). Every epoch draws its randomness from ``(seed, epoch)`` only
(data order, augmentations, pseudo masks, the model's own sampling; :mod:`medmat.engine.seeding`),
and ``checkpoint.pt`` holds everything else, so a run resumed after an interruption ends with the
same weights as one that never stopped. The loop is :mod:`medmat.engine.loop`; validation,
logging and checkpoints are its handlers (:mod:`medmat.engine.handlers`); the held-out
evaluation is :mod:`medmat.engine.evaluation`.

A run folder holds ``config.yaml`` (resolved), ``split.json``, ``log.csv``, ``curves.png``,
``checkpoint.pt`` (every epoch), ``final.pt`` and ``metrics.json`` (test cases of the fold, and
``training_fit``: how the model fits its training cases). A run whose alpha never reaches the lesion
core of its training cases (``train.core_alpha_floor``) failed to fit; with ``train.refit_capped`` it
is set aside into ``capped-<attempt>/`` and trained again from scratch with another seed.
An ensemble config (``ensemble.members`` = M > 1) trains M such runs into ``member-<i>/``
(:func:`member_config`) and writes ``config.yaml`` and the deep ensemble's ``metrics.json`` beside them.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from medmat.data.load import load_dataset
from medmat.data.sample import Sample
from medmat.data.splits import check_split, choose_scheme, make_split, save_split
from medmat.engine import distributed
from medmat.engine.allocator import keep_freed_memory
from medmat.engine.checkpoint import CHECKPOINT_NAME, FINAL_NAME, load_checkpoint, save_checkpoint
from medmat.engine.config import (
    CONFIG_NAME,
    DEFAULTS,
    input_size,
    load_config,
    merge,
    read_config_file,
    resize_size,
    save_config,
    without_runtime,
)
from medmat.engine.cross_fit import held_out_base_maps
from medmat.engine.dataset import common_size, resize_samples
from medmat.engine.evaluation import METRICS_NAME, final_metrics, read_metrics, training_fit
from medmat.engine.handlers import (
    CheckpointHandler,
    LoggingHandler,
    MovingAverageHandler,
    ProgressHandler,
    ValidationHandler,
)
from medmat.engine.inference import (
    KEPT_MEMBERS_NAME,
    load_run,
    load_runs,
    member_folder,
    numbered_folders,
    warn_unfit,
    write_kept_members,
)
from medmat.engine.loop import Handler, build_training, run_epoch
from medmat.engine.volumes import check_image_channels, context_slices
from medmat.errors import MedmatError
from medmat.io.atomic import atomic_write_json

SPLIT_NAME = "split.json"
#: A run that failed to fit is set aside into ``<run>/capped-<attempt>/`` (attempt 1, 2, ...).
CAPPED_PREFIX = "capped-"
#: Attempt a of a refitted run trains with seed + a x REFIT_SEED_STEP.
REFIT_SEED_STEP = 1000

LOG = logging.getLogger("medmat.engine")


def load_samples(config: dict) -> list[Sample]:
    """The dataset of ``config["data"]`` (with ``data.trimaps`` attached when given, and the
    ``data.context_slices`` stacks of a 2.5-D run), every case resampled to ``data.resize`` when set
    (:func:`medmat.engine.dataset.resize_sample`)."""
    # context_slices 0 passes nothing: a 2-D run reads its data exactly as before.
    context = context_slices(config) or None
    samples = load_dataset(config["data"]["dataset"], trimaps=config["data"]["trimaps"], context_slices=context)
    return resize_samples(samples, resize_size(config))


def compute_split(samples: Sequence[Sample], config: dict) -> tuple[list[dict], dict]:
    """The folds of ``config["split"]`` and the record :func:`medmat.data.splits.save_split` stores with them."""
    section = config["split"]
    split = make_split(samples, k=section["k"], seed=section["seed"], scheme=section["scheme"])
    meta = {
        "scheme": choose_scheme(samples, section["k"], section["scheme"]),
        "seed": section["seed"],
        "k": section["k"],
        "dataset": config["data"]["dataset"],
    }
    return split, meta


def fold_cases(samples: Sequence[Sample], split: list[dict], fold: int) -> tuple[list[Sample], list[Sample]]:
    """The training and test samples of ``fold``, in the split's order."""
    check_split(split, [sample.id for sample in samples])
    entry = next((item for item in split if int(item["fold"]) == fold), None)
    if entry is None:
        raise MedmatError(f"the split has no fold {fold} (folds: {', '.join(str(i['fold']) for i in split)})")
    by_id = {sample.id: sample for sample in samples}
    return [by_id[case] for case in entry["train"]], [by_id[case] for case in entry["test"]]


def flatten(config: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _check_resumable(saved: dict, config: dict, path: Path) -> None:
    """A resumed run must use the config it started with (the ``train`` section aside).

    The saved config is completed with today's defaults first, so that a key added to
    :data:`~medmat.engine.config.DEFAULTS` after the run started (at its default) is no change.
    """
    before, now = flatten(without_runtime(merge(DEFAULTS, saved, path))), flatten(without_runtime(config))
    changed = sorted(key for key in before.keys() | now.keys() if before.get(key) != now.get(key))
    if changed:
        raise MedmatError(f"cannot resume with a different config (changed: {', '.join(changed)})", path)


def train(
    config: dict | str,
    run_dir: str | Path,
    fold: int | None = None,
    resume: bool = False,
    samples: Sequence[Sample] | None = None,
    split: list[dict] | None = None,
    callbacks: Sequence[Handler] = (),
) -> dict:
    """Train one fold and evaluate it on the fold's test cases.

    Args:
        config: a config dict (e.g. from :func:`load_config`), a YAML path or a packaged name.
        run_dir: the run folder; created if needed.
        fold: which fold of the split is held out; None = ``config["split"]["fold"]``.
        resume: continue from ``run_dir/checkpoint.pt`` when it exists (start afresh otherwise).
            Without it, a folder that already holds a checkpoint is refused.
        samples: the dataset; None = load ``config["data"]["dataset"]``.
        split: precomputed folds (``[{"fold", "train", "test"}]``); None = compute them from the
            config and write ``run_dir/split.json``.
        callbacks: ``callback(event, info)`` handlers called on every process after the run's own
            (see :mod:`medmat.engine.loop`).

    Returns:
        The ``metrics.json`` record (``fold``, ``epochs``, ``mean``, ``cases``, ...) plus
        ``run_dir``; on processes other than rank 0 ``mean`` and ``cases`` are left out.

    Raises:
        MedmatError: bad config, data or split, a run folder that already holds a run, or a
            checkpoint from a different config.
    """
    config = load_config(config)
    if fold is not None:
        config["split"]["fold"] = int(fold)
        config = load_config(config)  # checks the fold against split.k
    fold = config["split"]["fold"]
    run_dir = Path(run_dir)
    if config["train"]["num_threads"]:
        # Before any tensor work: a fold worker forked by crossval(jobs > 1) deadlocks in OpenMP if it
        # runs a multi-threaded op (an ensemble fold scoring its members) at the parent's thread count.
        torch.set_num_threads(config["train"]["num_threads"])
    if config["train"]["keep_freed_memory"]:
        keep_freed_memory()
    if config["ensemble"]["members"] > 1:
        return _train_ensemble(config, run_dir, fold, resume, samples, split, callbacks)
    _finish_setting_aside(run_dir)
    if capped_attempts(run_dir) and not resume:
        raise MedmatError("run folder already holds a run that was set aside; resume it or choose another folder",
                          run_dir)
    # Only a single process may set a run aside: the other ranks of a DDP run never see the verdict.
    may_refit = distributed.environment_ranks()[0] == 1
    while True:
        attempt = len(capped_attempts(run_dir))
        result = _train_attempt(refit_config(config, attempt), run_dir, fold, resume, samples, split, callbacks)
        if not (result.get("training_fit") or {}).get("capped") or attempt >= config["train"]["refit_capped"] \
                or not may_refit:
            return result
        LOG.warning("medmat: %s: training again with seed %d (attempt %d of %d)", run_dir,
                    refit_config(config, attempt + 1)["seed"], attempt + 1, config["train"]["refit_capped"])
        _set_aside(run_dir, attempt + 1)


def refit_config(config: dict, attempt: int) -> dict:
    """The config of attempt ``attempt`` (0 = the first) of a run: its seed moved by
    ``attempt x`` :data:`REFIT_SEED_STEP`, everything else as given."""
    return config if attempt == 0 else {**copy.deepcopy(config), "seed": config["seed"] + REFIT_SEED_STEP * attempt}


def capped_attempts(run_dir: Path) -> list[Path]:
    """The ``capped-<attempt>/`` folders of a run set aside so far, by attempt."""
    return numbered_folders(run_dir, CAPPED_PREFIX)


def _set_aside(run_dir: Path, attempt: int) -> None:
    """Move the run's files (not earlier attempts) into ``capped-<attempt>/``.

    Each entry is renamed into ``capped-<attempt>.partial/`` and the folder renamed last, so an
    interruption leaves either the run or a partial folder that :func:`_finish_setting_aside` completes.
    """
    partial = run_dir / f"{CAPPED_PREFIX}{attempt}.partial"
    partial.mkdir(exist_ok=True)
    for entry in list(run_dir.iterdir()):
        if not entry.name.startswith(CAPPED_PREFIX):
            entry.rename(partial / entry.name)
    partial.rename(run_dir / f"{CAPPED_PREFIX}{attempt}")


def _finish_setting_aside(run_dir: Path) -> None:
    """Complete a :func:`_set_aside` an interruption stopped."""
    for partial in Path(run_dir).glob(f"{CAPPED_PREFIX}*.partial"):
        _set_aside(run_dir, int(partial.name[len(CAPPED_PREFIX):-len(".partial")]))


def _refit_records(run_dir: Path) -> list[dict]:
    """What each attempt set aside says of itself: its folder, seed and core alpha."""
    records = []
    for folder in capped_attempts(run_dir):
        fit = read_metrics(folder).get("training_fit") or {}
        seed = read_config_file(folder / CONFIG_NAME).get("seed")
        records.append({"folder": str(folder), "seed": seed, "core_alpha_max": fit.get("core_alpha_max")})
    return records


def _train_attempt(config, run_dir, fold, resume, samples, split, callbacks) -> dict:
    """One attempt of a single-model run: resumed from its checkpoint, or returned when finished."""
    checkpoint_path = run_dir / CHECKPOINT_NAME
    state = None
    if checkpoint_path.is_file():
        if not resume:
            raise MedmatError("run folder already holds a checkpoint; resume it or choose another folder", run_dir)
        state = load_checkpoint(checkpoint_path)
        _check_resumable(state["config"], config, checkpoint_path)
        if state["epoch"] >= config["optim"]["epochs"] and (run_dir / METRICS_NAME).is_file():
            record = read_metrics(run_dir)
            if "training_fit" not in record and config["train"]["core_alpha_floor"] is not None:
                record = _check_finished_fit(config, run_dir, fold, state["split"], samples, record)
            return {**record, "run_dir": str(run_dir)}

    context = distributed.setup(config["train"]["device"])
    try:
        return _train(config, run_dir, fold, state, samples, split, callbacks, context)
    finally:
        distributed.cleanup(context)


def member_config(config: dict, member: int) -> dict:
    """The config member ``member`` of an ensemble config (``ensemble.members`` = M > 1) trains with.

    One model, seeded ``seed x M + member``: the members of ensemble seed s are the single-model
    runs of seeds sM, ..., sM + M - 1, so distinct ensemble seeds never share a member, and a
    member trains exactly as that single-seed run of the same config would.
    """
    members = config["ensemble"]["members"]
    if not 0 <= member < members:
        raise MedmatError(f"member {member} of an ensemble of {members}")
    return {**copy.deepcopy(config), "seed": config["seed"] * members + member, "ensemble": {"members": 1}}


def _train_ensemble(config, run_dir, fold, resume, samples, split, callbacks) -> dict:
    """Train every member of an ensemble config into ``run_dir/member-<i>/``, then score them as one.

    The members train one after another, each resumable on its own; the fold's ``metrics.json``
    scores the deep ensemble (:func:`~medmat.engine.inference.load_runs`) on the fold's test cases
    with the ensemble's seed, and lists the member folders.
    """
    config_path = run_dir / CONFIG_NAME
    if config_path.is_file():
        if not resume:
            raise MedmatError("run folder already holds a run; resume it or choose another folder", run_dir)
        _check_resumable(read_config_file(config_path), config, config_path)
    samples = resize_samples(samples, resize_size(config)) if samples is not None else load_samples(config)
    split_meta = None
    if split is None:
        split, split_meta = compute_split(samples, config)
    members = [member_folder(run_dir, i) for i in range(config["ensemble"]["members"])]
    is_main = distributed.environment_ranks()[1] == 0
    if is_main:
        _start_run_folder(run_dir, config, split, split_meta)
    for index, folder in enumerate(members):
        train(member_config(config, index), folder, fold, resume, samples, split, callbacks)
    result = {"fold": fold, "epochs": config["optim"]["epochs"]}
    if is_main:
        if resume and (run_dir / METRICS_NAME).is_file():
            return {**read_metrics(run_dir), "run_dir": str(run_dir)}
        train_samples, test_samples = fold_cases(samples, split, fold)
        size = input_size(config) or common_size(samples)
        extra = {"members": [str(folder) for folder in members]}
        kept = members
        if config["ensemble"]["unfit_ratio"] is not None:
            # A member that failed to fit its training cases (its SAD on them far above the others')
            # would drag the ensemble's mean alpha; the training cases alone decide, never the test fold.
            training_sad = [_member_training_sad(folder, train_samples, size) for folder in members]
            kept = [members[index] for index in write_kept_members(run_dir, training_sad, config["ensemble"]["unfit_ratio"])]
            extra |= {"kept_members": [str(folder) for folder in kept], "members_training_SAD": training_sad}
        else:
            # Rescored without the ratio (a resume may drop it): every member counts again for every reader.
            (run_dir / KEPT_MEMBERS_NAME).unlink(missing_ok=True)
        model, _ = load_runs(kept)
        result = final_metrics(model, train_samples, test_samples, config, size, run_dir, extra=extra)
    return {**result, "run_dir": str(run_dir)}


def _check_finished_fit(config, run_dir: Path, fold: int, split, samples, record: dict) -> dict:
    """Add ``training_fit`` to the ``metrics.json`` of a run that finished before training checked it."""
    samples = resize_samples(samples, resize_size(config)) if samples is not None else load_samples(config)
    train_samples, _ = fold_cases(samples, split, fold)
    model, saved = load_run(run_dir)
    size = input_size(config) or common_size(samples)
    fit = training_fit(model, train_samples, saved, size, config["train"]["core_alpha_floor"])
    if fit["capped"]:
        warn_unfit(run_dir, fit)
    # Before the per-case results, where a freshly trained run has it.
    keys = list(record)
    at = keys.index("mean") if "mean" in keys else len(keys)
    record = {**{k: record[k] for k in keys[:at]}, "training_fit": fit, **{k: record[k] for k in keys[at:]}}
    atomic_write_json(run_dir / METRICS_NAME, record)
    return record


def _member_training_sad(folder: Path, train_samples: Sequence[Sample], size) -> float:
    """A member's whole-image SAD on the fold's training cases: from its ``metrics.json`` when its
    training measured it (``training_fit``), else measured now as it would have been."""
    fit = read_metrics(folder).get("training_fit")
    if fit is not None:
        return fit["scores"]["SAD"]
    model, member = load_run(folder)
    return training_fit(model, train_samples, member, size, None)["scores"]["SAD"]


def _start_run_folder(run_dir: Path, config: dict, split: list[dict], split_meta: dict | None) -> None:
    """Write ``config.yaml`` and, when this run computed the split, ``split.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / CONFIG_NAME)
    if split_meta is not None:
        save_split(run_dir / SPLIT_NAME, split, split_meta)


def _train(config, run_dir, fold, state, samples, split, callbacks, context) -> dict:
    # Samples handed in are resized too (cases already at data.resize are kept as they are).
    samples = resize_samples(samples, resize_size(config)) if samples is not None else load_samples(config)
    split_meta = None
    if state is not None:
        split = state["split"]
    elif split is None:
        split, split_meta = compute_split(samples, config)
    train_samples, test_samples = fold_cases(samples, split, fold)
    size = input_size(config) or common_size(samples)
    case_maps = None
    if config["train"]["cross_fit_from"]:
        case_maps = held_out_base_maps(config["train"]["cross_fit_from"], train_samples, split, size,
                                       config["eval"]["num_samples"], seed=config["seed"])
    training = build_training(config, train_samples, size, context, case_maps)
    check_image_channels(training.model, train_samples[0].image.shape[0], context_slices(config), config["data"]["dataset"])

    start_epoch = 0
    if state is not None:
        training.load_state(state)
        start_epoch = int(state["epoch"])
    elif context.is_main:
        _start_run_folder(run_dir, config, split, split_meta)
    distributed.barrier(context)

    progress = ProgressHandler(config, context, len(training.loader), start_epoch, fold)
    logging_handler = LoggingHandler(run_dir, config, context, fold, start_epoch)
    handlers = [
        progress,
        MovingAverageHandler(training),
        ValidationHandler(config, context, test_samples, size),
        logging_handler,
        CheckpointHandler(run_dir, config, context, split, fold),
        *callbacks,
    ]
    for epoch in range(start_epoch, config["optim"]["epochs"]):
        run_epoch(training, epoch, config, context, handlers)
        distributed.barrier(context)
    progress.close()
    logging_handler.close()

    result = {"fold": fold, "epochs": config["optim"]["epochs"]}
    if context.is_main:
        # The final weights are the moving average when the run keeps one.
        final = {"model": training.evaluation_model.state_dict(), "criterion": training.criterion.state_dict()}
        save_checkpoint(run_dir / FINAL_NAME, **final, config=config, fold=fold)
        extra = {"refits": refits} if (refits := _refit_records(run_dir)) else {}
        floor = config["train"]["core_alpha_floor"]
        if floor is not None:
            fit = training_fit(training.evaluation_model, train_samples, config, size, floor)
            extra["training_fit"] = fit
            if fit["capped"]:
                warn_unfit(run_dir, fit)
        result = final_metrics(training.evaluation_model, train_samples, test_samples, config, size, run_dir, extra)
    distributed.barrier(context)
    return {**result, "run_dir": str(run_dir)}
