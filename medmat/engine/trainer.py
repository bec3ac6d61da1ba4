"""Training and cross-validation of every medmat model, driven by a config.

    from medmat.engine import load_config, train, crossval
    train(load_config("lite", ["optim.epochs=2"]), "runs/lite-fold0", fold=0)
    crossval("lite", "runs/lite-cv")          # every fold, then summary.{md,csv,json}

or, for data-parallel training on several processes::

    torchrun --nproc_per_node 2 -m medmat.engine.trainer --config lite --run-dir runs/x --fold 0

The recipe is the paper's (§IV.A, Table III): Adam over the model's and the criterion's
parameters, a one-epoch linear warm-up from 0 to the base learning rate, then cosine annealing.
Every epoch draws its randomness from ``(seed, epoch)`` only (data order, augmentations, pseudo
masks, the model's own sampling), and ``checkpoint.pt`` holds everything else, so a run resumed
after an interruption ends with the same weights as one that never stopped.

A run folder holds ``config.yaml`` (resolved), ``split.json``, ``log.csv``, ``curves.png``,
``checkpoint.pt`` (every epoch), ``final.pt`` and ``metrics.json`` (test cases of the fold).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from medmat.data.sample import Sample
from medmat.engine import distributed
from medmat.engine.checkpoint import (
    CHECKPOINT_NAME,
    FINAL_NAME,
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from medmat.engine.config import (
    DEFAULTS,
    input_size,
    load_config,
    merge,
    model_input_size,
    resize_size,
    save_config,
    without_runtime,
)
from medmat.engine.dataset import MattingDataset, common_size, resize_samples
from medmat.engine.inference import build_model_from_config, evaluate_samples, mean_case_metrics, require_output_size
from medmat.engine.logging import RunLogger
from medmat.errors import MedmatError
from medmat.io.atomic import atomic_write_json, atomic_write_text

LOG = logging.getLogger("medmat.engine")

CONFIG_NAME = "config.yaml"
SPLIT_NAME = "split.json"
METRICS_NAME = "metrics.json"
SUMMARY_PREFIX = "summary"
#: Matting metrics of the evaluation, then the mask-distribution metrics of Table V.
SUMMARY_METRICS = ("SAD", "MSE", "Grad", "Conn", "GED", "Dice")

#: ``callback(event, info)`` hooks, called on every process: "step_end" {epoch, step, loss} after
#: each optimiser step, "epoch_end" {epoch, row, model, criterion} after each epoch's checkpoint.
Callback = Callable[[str, dict], None]


class TrainingStep(nn.Module):
    """The model and its criterion as one module: DDP then averages the gradients of both
    (a criterion may own parameters, e.g. the UWS sigmas).

    ``forward(batch, epoch, num_epochs) -> (total loss, parts)``.
    """

    def __init__(self, model: nn.Module, criterion: nn.Module):
        super().__init__()
        self.model = model
        self.criterion = criterion

    def forward(self, batch: dict[str, torch.Tensor], epoch: int, num_epochs: int):
        outputs = self.model(batch)
        return self.criterion(outputs, batch, epoch, num_epochs)


def build_criterion_from_config(config: dict) -> nn.Module:
    """The criterion named by ``config["loss"]["name"]``, built with the section's other keys."""
    from medmat.losses import build_criterion

    return build_criterion(dict(config["loss"]))


def learning_rate_factor(
    step: int,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: int = 1,
    scheduler: str = "cosine",
    unit: str = "step",
    min_factor: float = 0.0,
) -> float:
    """Multiplier of the base learning rate for optimiser step ``step`` (0-based).

    Linear warm-up over the first ``warmup_epochs`` epochs, step by step, reaching the base rate at
    the warm-up's last step (the first step uses ``1 / warmup_steps``, never 0); then cosine
    annealing from 1 down to ``min_factor`` at the end of training, advanced every step
    (``unit="step"``) or once per epoch (``unit="epoch"``); ``scheduler="constant"`` stays at 1.
    """
    warmup_steps = warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if scheduler == "constant":
        return 1.0
    if unit == "epoch":
        progress = (step // steps_per_epoch - warmup_epochs) / max(1, epochs - warmup_epochs)
    else:
        progress = (step - warmup_steps) / max(1, (epochs - warmup_epochs) * steps_per_epoch)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def make_scheduler(optimizer: torch.optim.Optimizer, optim: dict, steps_per_epoch: int):
    """A per-step ``LambdaLR`` following :func:`learning_rate_factor` for the ``optim`` config section."""
    min_factor = optim["min_lr"] / optim["lr"] if optim["lr"] > 0 else 0.0

    def factor(step: int) -> float:
        return learning_rate_factor(
            step,
            steps_per_epoch,
            optim["epochs"],
            optim["warmup_epochs"],
            optim["scheduler"],
            optim["schedule_unit"],
            min_factor,
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def derived_seed(*numbers: int) -> int:
    """A 63-bit seed that depends on every number given (``(seed, epoch, rank)``), well mixed."""
    return int(np.random.SeedSequence([int(n) for n in numbers]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def load_samples(config: dict) -> list[Sample]:
    """The dataset of ``config["data"]`` (with ``data.trimaps`` attached when given), every case
    resampled to ``data.resize`` when set (:func:`medmat.engine.dataset.resize_sample`)."""
    from medmat.data.load import load_dataset

    samples = load_dataset(config["data"]["dataset"], trimaps=config["data"]["trimaps"])
    return resize_samples(samples, resize_size(config))


def compute_split(samples: Sequence[Sample], config: dict) -> tuple[list[dict], dict]:
    """The folds of ``config["split"]`` and the record :func:`medmat.data.splits.save_split` stores with them."""
    from medmat.data.splits import choose_scheme, make_split

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
    from medmat.data.splits import check_split

    check_split(split, [sample.id for sample in samples])
    entry = next((item for item in split if int(item["fold"]) == fold), None)
    if entry is None:
        raise MedmatError(f"the split has no fold {fold} (folds: {', '.join(str(i['fold']) for i in split)})")
    by_id = {sample.id: sample for sample in samples}
    return [by_id[case] for case in entry["train"]], [by_id[case] for case in entry["test"]]


def _show_progress(setting, context: distributed.DistributedContext) -> bool:
    if not context.is_main or setting is False:
        return False
    return setting is True or sys.stderr.isatty()


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
    callbacks: Sequence[Callback] = (),
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
        callbacks: ``callback(event, info)`` hooks called on every process (see :data:`Callback`).

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
    checkpoint_path = run_dir / CHECKPOINT_NAME
    state = None
    if checkpoint_path.is_file():
        if not resume:
            raise MedmatError("run folder already holds a checkpoint; resume it or choose another folder", run_dir)
        state = load_checkpoint(checkpoint_path)
        _check_resumable(state["config"], config, checkpoint_path)
        if state["epoch"] >= config["optim"]["epochs"] and (run_dir / METRICS_NAME).is_file():
            return {**read_metrics(run_dir), "run_dir": str(run_dir)}

    context = distributed.setup(config["train"]["device"])
    try:
        return _train(config, run_dir, fold, state, samples, split, callbacks, context)
    finally:
        distributed.cleanup(context)


@dataclass
class Training:
    """Everything one fold's training loop works with."""

    model: nn.Module
    criterion: nn.Module
    step_module: nn.Module  # TrainingStep, inside DDP under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    dataset: MattingDataset
    sampler: torch.utils.data.DistributedSampler
    loader: DataLoader

    def state(self) -> dict:
        """The resumable state: model, criterion, optimiser, scheduler and RNG states."""
        return {
            "model": self.model.state_dict(),
            "criterion": self.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_states(),
        }

    def load_state(self, state: dict) -> None:
        """Inverse of :meth:`state` (``state`` may hold more keys)."""
        self.model.load_state_dict(state["model"])
        self.criterion.load_state_dict(state["criterion"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng_states(state["rng"])


def training_user_maps(model: nn.Module) -> Callable | None:
    """The dataset transform drawing dugMatting's training user maps (App. B.1) for ``model``, or None.

    A "nig" model (:class:`~medmat.models.nig.NIGMatting`, before any DDP wrapping) with
    ``random_user_maps`` gets :class:`~medmat.interaction.user_maps.RandomUserMapd` with its patch
    size and geometric parameter; every other model gets None. The dataset draws the maps from
    each item's ``(seed, epoch, index)`` generator, so they do not depend on workers or ranks and
    a resumed run draws the same ones; the model then reads the batch's "user_map" instead of
    drawing its own.
    """
    from medmat.interaction.user_maps import RandomUserMapd
    from medmat.models.nig import NIGMatting

    if not (isinstance(model, NIGMatting) and model.random_user_maps):
        return None
    return RandomUserMapd(patch_size=model.user_map_patch_size, p=model.user_map_p)


def build_training(
    config: dict, train_samples: Sequence[Sample], size: tuple[int, int], context: distributed.DistributedContext
) -> Training:
    """Seed, then build the model, criterion, Adam, the warm-up + cosine schedule and the data loader."""
    seed_everything(config["seed"])
    model = build_model_from_config(config)
    if model_input_size(config) is not None:
        require_output_size(model, config["model"]["name"])
    criterion = build_criterion_from_config(config)
    step_module = distributed.wrap_model(
        TrainingStep(model, criterion), context, config["train"]["find_unused_parameters"]
    )
    optim = config["optim"]
    optimizer = torch.optim.Adam(
        step_module.parameters(), lr=optim["lr"], betas=tuple(optim["betas"]), weight_decay=optim["weight_decay"]
    )
    dataset = MattingDataset(
        train_samples,
        training=True,
        seed=config["seed"],
        augment=config["data"]["augment"],
        pseudo_mask_range=tuple(config["data"]["pseudo_mask_range"]),
        size=size,
        train_trimaps=config["data"]["train_trimaps"],
        noisy_trimaps=config["data"]["noisy_trimaps"],
        user_maps=training_user_maps(model),
        model_input_size=model_input_size(config),
    )
    sampler = distributed.make_sampler(dataset, context, seed=config["seed"])
    loader = DataLoader(
        dataset,
        batch_size=distributed.per_process_batch_size(optim["batch_size"], context),
        sampler=sampler,
        num_workers=config["train"]["num_workers"],
    )
    scheduler = make_scheduler(optimizer, optim, len(loader))
    return Training(model, criterion, step_module, optimizer, scheduler, dataset, sampler, loader)


def _start_run_folder(run_dir: Path, config: dict, split: list[dict], split_meta: dict | None) -> None:
    """Write ``config.yaml`` and, when this run computed the split, ``split.json``."""
    from medmat.data.splits import save_split

    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / CONFIG_NAME)
    if split_meta is not None:
        save_split(run_dir / SPLIT_NAME, split, split_meta)


def _train(config, run_dir, fold, state, samples, split, callbacks, context) -> dict:
    if config["train"]["num_threads"]:
        torch.set_num_threads(config["train"]["num_threads"])
    # Samples handed in are resized too (cases already at data.resize are kept as they are).
    samples = resize_samples(samples, resize_size(config)) if samples is not None else load_samples(config)
    split_meta = None
    if state is not None:
        split = state["split"]
    elif split is None:
        split, split_meta = compute_split(samples, config)
    train_samples, test_samples = fold_cases(samples, split, fold)
    size = input_size(config) or common_size(samples)
    training = build_training(config, train_samples, size, context)

    logger = RunLogger(run_dir, enabled=context.is_main, tensorboard=config["train"]["tensorboard"])
    start_epoch = 0
    if state is not None:
        training.load_state(state)
        start_epoch = int(state["epoch"])
        logger.resume(start_epoch)
    elif context.is_main:
        _start_run_folder(run_dir, config, split, split_meta)
    distributed.barrier(context)

    progress = _progress_bar(config, context, len(training.loader), start_epoch, fold)
    for epoch in range(start_epoch, config["optim"]["epochs"]):
        row = run_epoch(training, epoch, config, context, test_samples, size, progress, callbacks)
        if context.is_main:
            logger.log_epoch(row)
            LOG.info("fold %s %s", fold, describe_row(row, config["optim"]["epochs"]))
            save_checkpoint(
                run_dir / CHECKPOINT_NAME, **training.state(), epoch=epoch + 1, config=config, split=split, fold=fold
            )
        for callback in callbacks:
            callback("epoch_end", {"epoch": epoch, "row": row, "model": training.model, "criterion": training.criterion})
        distributed.barrier(context)
    progress.close()
    logger.close()

    result = {"fold": fold, "epochs": config["optim"]["epochs"]}
    if context.is_main:
        final = {"model": training.model.state_dict(), "criterion": training.criterion.state_dict()}
        save_checkpoint(run_dir / FINAL_NAME, **final, config=config, fold=fold)
        result = final_metrics(training.model, train_samples, test_samples, config, size, run_dir)
    distributed.barrier(context)
    return {**result, "run_dir": str(run_dir)}


def run_epoch(
    training: Training,
    epoch: int,
    config: dict,
    context: distributed.DistributedContext,
    test_samples: Sequence[Sample],
    size: tuple[int, int],
    progress=None,
    callbacks: Sequence[Callback] = (),
) -> dict:
    """Train one epoch (0-based ``epoch``), let the criterion see its mean losses, validate when due.

    Returns:
        The ``log.csv`` row: ``epoch`` (1-based), ``lr`` (after the epoch), ``loss`` and the loss
        parts, ``val_*`` metrics (rank 0, when due), ``seconds``.
    """
    started = time.perf_counter()
    training.dataset.set_epoch(epoch)
    training.sampler.set_epoch(epoch)
    # Model-side randomness (latent samples, dropout) is a function of the epoch too, so that a
    # resumed run draws what an uninterrupted one would have drawn.
    torch.manual_seed(derived_seed(config["seed"], epoch, context.rank))
    means = train_one_epoch(
        training.step_module,
        training.loader,
        training.optimizer,
        training.scheduler,
        epoch,
        config["optim"]["epochs"],
        context,
        grad_clip=config["optim"]["grad_clip"],
        progress=progress,
        callbacks=callbacks,
        log_every=config["train"]["log_every"],
    )
    if hasattr(training.criterion, "end_epoch"):
        training.criterion.end_epoch(means)
    row = {"epoch": epoch + 1, "lr": training.optimizer.param_groups[0]["lr"], **means}
    if context.is_main and _validate_now(config, epoch):
        row.update(validation_metrics(training.model, test_samples, config, size))
    row["seconds"] = time.perf_counter() - started
    return row


def describe_row(row: dict, epochs: int) -> str:
    """One log line for an epoch: ``epoch 3/40 lr 4.9e-04 loss 0.4123 val_SAD 1.2345 (12.3 s)``."""
    values = " ".join(
        f"{key} {value:.4g}" for key, value in row.items() if key not in ("epoch", "lr", "seconds")
    )
    return f"epoch {row['epoch']}/{epochs} lr {row['lr']:.2e} {values} ({row['seconds']:.1f} s)"


def _progress_bar(config, context, steps_per_epoch, start_epoch, fold):
    from tqdm.auto import tqdm

    return tqdm(
        total=config["optim"]["epochs"] * steps_per_epoch,
        initial=start_epoch * steps_per_epoch,
        desc=f"fold {fold}",
        unit="step",
        disable=not _show_progress(config["train"]["progress"], context),
        dynamic_ncols=True,
    )


def _validate_now(config: dict, epoch: int) -> bool:
    every = config["eval"]["every"]
    last = epoch + 1 == config["optim"]["epochs"]
    return every > 0 and ((epoch + 1) % every == 0 or last)


def train_one_epoch(
    step_module: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler,
    epoch: int,
    num_epochs: int,
    context: distributed.DistributedContext,
    grad_clip: float | None = None,
    progress=None,
    callbacks: Sequence[Callback] = (),
    log_every: int = 10,
) -> dict[str, float]:
    """One pass over ``loader``, one optimiser and scheduler step per batch.

    Returns:
        The epoch's mean ``loss`` and mean loss parts (the criterion's floats), averaged over
        the torchrun processes, so every process gets the same numbers.
    """
    step_module.train()
    sums: dict[str, float] = {}
    steps = 0
    for step, batch in enumerate(loader):
        batch = {key: value.to(context.device, non_blocking=True) for key, value in batch.items()}
        optimizer.zero_grad(set_to_none=True)
        total, parts = step_module(batch, epoch, num_epochs)
        if not torch.isfinite(total):
            raise MedmatError(f"training diverged: the loss is {total.item()} at epoch {epoch + 1}, step {step + 1}; try a lower optim.lr")
        total.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(step_module.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        # The criterion's own "total" is the "loss" column.
        values = {"loss": total.item(), **{key: float(v) for key, v in parts.items() if key != "total"}}
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
        steps += 1
        if progress is not None:
            progress.update(1)
            if step % log_every == 0:
                progress.set_postfix(epoch=epoch + 1, loss=f"{values['loss']:.4f}")
        for callback in callbacks:
            callback("step_end", {"epoch": epoch, "step": step, "loss": values["loss"]})
    means = {key: value / max(steps, 1) for key, value in sums.items()}
    return distributed.average_across_processes(means, context)


@contextlib.contextmanager
def seeded_rng(seed: int, model: nn.Module):
    """Seed torch for the block (CPU, and the model's GPU) and restore the generators afterwards."""
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def validation_metrics(model: nn.Module, samples: Sequence[Sample], config: dict, size) -> dict[str, float]:
    """Whole-image SAD/MSE/Grad/Conn, GED and Dice on the held-out cases, as ``val_*`` floats.

    Sampling uses its own seeded generator so that validating leaves training untouched.
    """
    with seeded_rng(config["seed"], model):
        cases = evaluate_samples(
            model, samples, config["eval"]["num_samples"], "whole", size, with_region=False,
            model_input_size=model_input_size(config),
        )
    mean = mean_case_metrics(cases)
    row = {f"val_{name}": value for name, value in (mean["whole"] or {}).items()}
    row.update({f"val_{name}": mean[name] for name in ("GED", "Dice") if mean[name] is not None})
    return row


def final_metrics(
    model: nn.Module, train_samples, test_samples, config: dict, size, run_dir: Path
) -> dict:
    """Evaluate the trained model on the fold's test cases and write ``metrics.json``."""
    with seeded_rng(config["seed"], model):
        cases = evaluate_samples(
            model, test_samples, config["eval"]["num_samples"], config["eval"]["region"], size,
            model_input_size=model_input_size(config),
        )
    record = {
        "fold": config["split"]["fold"],
        "epochs": config["optim"]["epochs"],
        "model": config["model"]["name"],
        "num_samples": config["eval"]["num_samples"],
        "region": config["eval"]["region"],
        "train_ids": [sample.id for sample in train_samples],
        "test_ids": [sample.id for sample in test_samples],
        "mean": mean_case_metrics(cases),
        "cases": cases,
    }
    atomic_write_json(run_dir / METRICS_NAME, record)
    return record


def read_metrics(run_dir: str | Path) -> dict:
    """The ``metrics.json`` record of a finished run."""
    path = Path(run_dir) / METRICS_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MedmatError("run has no metrics.json (not finished?)", path) from None
    except (OSError, ValueError) as error:
        raise MedmatError(f"cannot read metrics: {error}", path) from None


def crossval(
    config: dict | str,
    run_dir: str | Path,
    folds: Sequence[int] | None = None,
    resume: bool = False,
    samples: Sequence[Sample] | None = None,
    callbacks: Sequence[Callback] = (),
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
    from medmat.data.splits import load_split, save_split

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
                train(config, run_dir / f"fold-{fold}", fold, resume, samples, split, callbacks) for fold in folds
            ]
        finally:
            distributed.cleanup(context)
    summary = {"run_dir": str(run_dir), "folds": folds}
    if rank == 0:
        summary = write_summary(records, config, run_dir)
    return summary


def _train_folds_in_parallel(config, run_dir, folds, resume, samples, split, callbacks, jobs) -> list[dict]:
    """Train ``folds`` in ``jobs`` worker processes; returns their records in ``folds`` order."""
    import concurrent.futures
    import copy
    import multiprocessing
    import os

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
            pool.submit(train, config, run_dir / f"fold-{fold}", fold, resume, samples, split): fold for fold in folds
        }
        for future in concurrent.futures.as_completed(futures):
            records[futures[future]] = future.result()
            LOG.info("fold %s done", futures[future])
    return [records[fold] for fold in folds]


def _present(per_case: dict, metrics: Sequence[str]) -> list[str]:
    return [m for m in metrics if any(m in case for case in per_case.values())]


def write_summary(records: Sequence[dict], config: dict, run_dir: str | Path) -> dict:
    """Summarise fold records (``metrics.json`` contents) into ``summary.{md,csv,json}``.

    - Table IV style: SAD/MSE/Grad/Conn on the evaluation region (the trimap's unknown pixels,
      or the whole image for cases without a trimap), mean over all test predictions;
    - Table V style: whole-image SAD/MSE/Grad/Conn, GED and Dice, mean over predictions and
      mean ± std (ddof 0) over the folds' means.

    Returns:
        The summary record.
    """
    from medmat.reporting.tables import MATTING_METRICS, summarise, table_markdown

    run_dir = Path(run_dir)
    folds = [record["test_ids"] for record in records]
    region_cases = {c["id"]: c["region"] for r in records for c in r["cases"] if c.get("region")}
    whole_cases = {
        c["id"]: {**c["whole"], **{k: c[k] for k in ("GED", "Dice") if c.get(k) is not None}}
        for r in records
        for c in r["cases"]
    }
    regions = sorted({c["region_name"] for r in records for c in r["cases"]})
    model = config["model"]["name"]
    table_iv = summarise(region_cases, _present(region_cases, MATTING_METRICS))
    table_v = summarise(whole_cases, _present(whole_cases, SUMMARY_METRICS), folds)
    iv_title = f"Table IV style: region {'/'.join(regions)}, mean over {table_iv['n']} test predictions"
    v_title = f"Table V style: whole image, mean over predictions and mean ± std over {len(records)} folds"
    markdown = (
        f"# Cross-validation of {model} ({len(records)} folds)\n\n"
        + table_markdown({model: table_iv}, list(table_iv["mean"]), iv_title)
        + "\n"
        + table_markdown({model: table_v}, list(table_v["mean"]), v_title)
        + "\nSAD, Grad and Conn are divided by 1000, as in the paper's tables.\n"
    )
    summary = {
        "run_dir": str(run_dir),
        "model": model,
        "folds": [record["fold"] for record in records],
        "regions": regions,
        "table_iv": table_iv,
        "table_v": table_v,
        "per_fold": [{"fold": r["fold"], "test_ids": r["test_ids"], "mean": r["mean"]} for r in records],
        "config": config,
    }
    atomic_write_text(run_dir / f"{SUMMARY_PREFIX}.md", markdown)
    atomic_write_text(run_dir / f"{SUMMARY_PREFIX}.csv", summary_csv(table_iv, table_v))
    atomic_write_json(run_dir / f"{SUMMARY_PREFIX}.json", summary)
    return summary


def summary_csv(table_iv: dict, table_v: dict) -> str:
    """Long-format CSV: ``table, metric, mean, fold_mean, fold_std, n`` (fold cells empty for Table IV)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["table", "metric", "mean", "fold_mean", "fold_std", "n"])
    for name, row in (("IV", table_iv), ("V", table_v)):
        for metric, mean in row["mean"].items():
            fold_mean = row.get("fold_mean", {}).get(metric)
            fold_std = row.get("fold_std", {}).get(metric)
            writer.writerow([name, metric, mean, fold_mean, fold_std, row["n"]])
    return buffer.getvalue()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m medmat.engine.trainer",
        description="Train a medmat model (one fold, or every fold with --crossval); works under torchrun.",
    )
    parser.add_argument("--config", required=True, help="YAML file or packaged config (lite, paper)")
    parser.add_argument("--run-dir", required=True, help="run folder")
    parser.add_argument("--fold", type=int, default=None, help="held-out fold (default: split.fold)")
    parser.add_argument("--crossval", action="store_true", help="run every fold and write the summary")
    parser.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    parser.add_argument("--jobs", type=int, default=1, help="with --crossval: folds trained at the same time")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. optim.epochs=2 (repeatable)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m medmat.engine.trainer``; returns the exit status."""
    args = parse_args(argv)
    _, rank, _ = distributed.environment_ranks()
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format="%(message)s")
    try:
        config = load_config(args.config, args.overrides)
        if args.crossval:
            crossval(config, args.run_dir, resume=args.resume, jobs=args.jobs)
            if rank == 0:
                LOG.info("summary written to %s", Path(args.run_dir) / f"{SUMMARY_PREFIX}.md")
        else:
            record = train(config, args.run_dir, fold=args.fold, resume=args.resume)
            if rank == 0:
                LOG.info("fold %s done: %s", record["fold"], json.dumps(record["mean"]))
    except MedmatError as error:
        print(f"medmat: error: {error}", file=sys.stderr)
        return 1  # as the medmat CLI: a user error is one line and status 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
