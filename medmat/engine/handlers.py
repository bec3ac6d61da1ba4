"""What a training run does around its loop, as handlers on the loop's hooks (:mod:`medmat.engine.loop`).

The trainer installs them in this order, so that each sees what the one before added to the
epoch's row: :class:`ProgressHandler`, :class:`MovingAverageHandler` (``optim.ema_decay``),
:class:`ValidationHandler` (``val_*`` metrics, of the moving average when there is one),
:class:`LoggingHandler` (``seconds``, ``log.csv``, ``curves.png``, the log line),
:class:`CheckpointHandler` (``checkpoint.pt``); a user's callbacks come last.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from medmat.data.sample import Sample
from medmat.engine import distributed
from medmat.engine.checkpoint import CHECKPOINT_NAME, save_checkpoint
from medmat.engine.evaluation import validation_metrics
from medmat.engine.logging import RunLogger

LOG = logging.getLogger("medmat.engine")


def describe_row(row: dict, epochs: int) -> str:
    """One log line for an epoch: ``epoch 3/40 lr 4.9e-04 loss 0.4123 val_SAD 1.2345 (12.3 s)``."""
    values = " ".join(
        f"{key} {value:.4g}" for key, value in row.items() if key not in ("epoch", "lr", "seconds")
    )
    return f"epoch {row['epoch']}/{epochs} lr {row['lr']:.2e} {values} ({row['seconds']:.1f} s)"


class ProgressHandler:
    """A progress bar over the run's optimiser steps (rank 0; ``train.progress``: auto = on a terminal)."""

    def __init__(self, config: dict, context: distributed.DistributedContext, steps_per_epoch: int,
                 start_epoch: int, fold: int):
        setting = config["train"]["progress"]
        shown = context.is_main and setting is not False and (setting is True or sys.stderr.isatty())
        self.log_every = config["train"]["log_every"]
        self.bar = tqdm(
            total=config["optim"]["epochs"] * steps_per_epoch,
            initial=start_epoch * steps_per_epoch,
            desc=f"fold {fold}",
            unit="step",
            disable=not shown,
            dynamic_ncols=True,
        )

    def __call__(self, event: str, info: dict) -> None:
        if event == "step_end":
            self.bar.update(1)
            if info["step"] % self.log_every == 0:
                self.bar.set_postfix(epoch=info["epoch"] + 1, loss=f"{info['loss']:.4f}")

    def close(self) -> None:
        self.bar.close()


class MovingAverageHandler:
    """After every optimiser step, the weights' exponential moving average (``optim.ema_decay``) takes a step."""

    def __init__(self, training):
        self.training = training

    def __call__(self, event: str, info: dict) -> None:
        if event == "step_end" and self.training.ema is not None:
            self.training.ema.update_parameters(self.training.model)


class ValidationHandler:
    """Every ``eval.every`` epochs (and the last), the held-out cases' ``val_*`` metrics into the row (rank 0)."""

    def __init__(self, config: dict, context: distributed.DistributedContext, samples: Sequence[Sample], size):
        self.config, self.context, self.samples, self.size = config, context, samples, size

    def due(self, epoch: int) -> bool:
        """Whether 0-based ``epoch`` validates."""
        every = self.config["eval"]["every"]
        last = epoch + 1 == self.config["optim"]["epochs"]
        return every > 0 and ((epoch + 1) % every == 0 or last)

    def __call__(self, event: str, info: dict) -> None:
        if event == "epoch_end" and self.context.is_main and self.due(info["epoch"]):
            info["row"].update(validation_metrics(info["model"], self.samples, self.config, self.size))


class LoggingHandler:
    """The epoch's wall time into the row, then ``log.csv`` / ``curves.png`` / TensorBoard and a log line (rank 0)."""

    def __init__(self, run_dir: Path, config: dict, context: distributed.DistributedContext, fold: int,
                 start_epoch: int = 0):
        self.config, self.context, self.fold = config, context, fold
        self.logger = RunLogger(run_dir, enabled=context.is_main, tensorboard=config["train"]["tensorboard"])
        if start_epoch:
            self.logger.resume(start_epoch)

    def __call__(self, event: str, info: dict) -> None:
        if event != "epoch_end":
            return
        row = info["row"]
        row["seconds"] = time.perf_counter() - info["started"]
        if self.context.is_main:
            self.logger.log_epoch(row)
            LOG.info("fold %s %s", self.fold, describe_row(row, self.config["optim"]["epochs"]))

    def close(self) -> None:
        self.logger.close()


class CheckpointHandler:
    """``checkpoint.pt`` after every epoch, atomically (rank 0): the training state, the config,
    the split and the fold, from which :func:`medmat.engine.trainer.train` resumes."""

    def __init__(self, run_dir: Path, config: dict, context: distributed.DistributedContext, split: list[dict],
                 fold: int):
        self.path = Path(run_dir) / CHECKPOINT_NAME
        self.config, self.context, self.split, self.fold = config, context, split, fold

    def __call__(self, event: str, info: dict) -> None:
        if event == "epoch_end" and self.context.is_main:
            save_checkpoint(
                self.path, **info["training"].state(), epoch=info["epoch"] + 1, config=self.config,
                split=self.split, fold=self.fold,
            )
