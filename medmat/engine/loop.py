"""The training loop: one optimiser step per batch, one epoch after another, handlers on its hooks.

:func:`build_training` seeds and builds what a fold trains with (model, criterion, optimiser,
schedule, data loader); :func:`run_epoch` trains one epoch and hands the epoch's record to every
handler; :func:`train_one_epoch` is its inner loop. Everything else a run does around the loop
(validation, logging, checkpoints, a progress bar, a user's callback) is a *handler*: a callable
``handler(event, info)`` called on every process with

- ``"step_end"``, info ``{"epoch", "step", "loss"}`` after each optimiser step;
- ``"epoch_end"``, info ``{"epoch", "row", "model", "criterion", "training", "started"}`` after each
  epoch; ``row`` is the epoch's ``log.csv`` record, which handlers may extend (validation metrics)
  and later handlers see (see :mod:`medmat.engine.handlers`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from medmat.data.sample import Sample
from medmat.engine import distributed
from medmat.engine.checkpoint import restore_rng_states, rng_states
from medmat.engine.config import model_input_size
from medmat.engine.dataset import MattingDataset, default_augmentations
from medmat.engine.inference import build_model_from_config, load_initial_weights, require_output_size
from medmat.engine.optim import build_optimizer, moving_average_update
from medmat.engine.precision import Arithmetic, ModelRunner, arithmetic_for, float32_outputs, prepare_model
from medmat.engine.schedule import make_scheduler
from medmat.engine.seeding import derived_seed, seed_everything
from medmat.errors import MedmatError
from medmat.losses import build_criterion
from medmat.models import MattingModel

#: ``handler(event, info)``: see the module docstring.
Handler = Callable[[str, dict], None]


class TrainingStep(nn.Module):
    """The model and its criterion as one module: DDP then averages the gradients of both
    (a criterion may own parameters, e.g. the UWS sigmas).

    ``forward(batch, epoch, num_epochs) -> (total loss, parts)``. The model's forward runs in the
    run's :class:`~medmat.engine.precision.Arithmetic` (autocast dtype, memory format, compiled or
    not); the criterion always sees float32 outputs.
    """

    def __init__(self, model: MattingModel, criterion: nn.Module, arithmetic: Arithmetic | None = None,
                 compile_model: bool = False):
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.arithmetic = arithmetic or Arithmetic()
        self.runner = ModelRunner(model, compile_model)

    def forward(self, batch: dict[str, torch.Tensor], epoch: int, num_epochs: int):
        batch = self.arithmetic.inputs(batch)
        with self.arithmetic.autocast():
            outputs = self.runner(batch)
        if self.arithmetic.dtype is not None:
            outputs = float32_outputs(outputs)
        return self.criterion(outputs, batch, epoch, num_epochs)


@dataclass
class Training:
    """Everything one fold's training loop works with."""

    model: MattingModel
    criterion: nn.Module
    step_module: nn.Module  # TrainingStep, inside DDP under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    dataset: MattingDataset
    sampler: distributed.GroupedSampler
    loader: DataLoader
    # float16 training scales its losses; disabled (a pass-through) in every other precision.
    scaler: torch.amp.GradScaler
    # The exponential moving average of the weights (optim.ema_decay), or None.
    ema: AveragedModel | None = None

    @property
    def evaluation_model(self) -> MattingModel:
        """The weights a run validates, saves as final and scores: the moving average when there is one."""
        return self.model if self.ema is None else self.ema.module

    def state(self) -> dict:
        """The resumable state: model, criterion, optimiser, scheduler, gradient scaler and RNG states."""
        state = {
            "model": self.model.state_dict(),
            "criterion": self.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_states(),
        }
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state(self, state: dict) -> None:
        """Inverse of :meth:`state` (``state`` may hold more keys)."""
        self.model.load_state_dict(state["model"])
        self.criterion.load_state_dict(state["criterion"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        if "ema" in state and self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        restore_rng_states(state["rng"])


def build_criterion_from_config(config: dict) -> nn.Module:
    """The criterion named by ``config["loss"]["name"]``, built with the section's other keys."""
    return build_criterion(dict(config["loss"]))


def build_training(
    config: dict, train_samples: Sequence[Sample], size: tuple[int, int], context: distributed.DistributedContext,
    case_maps: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> Training:
    """Seed, then build the model, criterion, optimiser, the warm-up + cosine schedule and the data loader.

    The dataset applies the model's own training transform last
    (:meth:`~medmat.models.contract.MattingModel.training_transform`, e.g. dugMatting's user maps).
    ``case_maps``: per training case, its base's held-out prediction
    (:func:`medmat.engine.cross_fit.held_out_base_maps`), for a model that wraps a base.
    """
    process_batch_size = distributed.per_process_batch_size(config["optim"]["batch_size"], context)
    copies = config["data"]["copies_per_image"]
    if process_batch_size % copies:
        raise MedmatError(
            f"optim.batch_size {config['optim']['batch_size']} over {context.world_size} processes gives each "
            f"{process_batch_size} items, not a multiple of data.copies_per_image {copies}"
        )
    seed_everything(config["seed"])
    model = build_model_from_config(config)
    load_initial_weights(model, config)
    if case_maps is not None and model.base_model() is None:
        raise MedmatError(f"train.cross_fit_from needs a model that wraps a base; {config['model']['name']!r} does not")
    if model_input_size(config) is not None:
        require_output_size(model, config["model"]["name"])
    criterion = build_criterion_from_config(config)
    arithmetic = arithmetic_for(config["train"], context.device)
    prepare_model(model.to(context.device), arithmetic)
    step_module = distributed.wrap_model(
        TrainingStep(model, criterion, arithmetic, config["train"]["compile"]), context,
        config["train"]["find_unused_parameters"],
    )
    optim = config["optim"]
    optimizer = build_optimizer(step_module.parameters(), optim)
    dataset = MattingDataset(
        train_samples,
        training=True,
        seed=config["seed"],
        augment=config["data"]["augment"],
        augmentations=default_augmentations(config["data"]["intensity_scale"], config["data"]["intensity_gamma"]),
        pseudo_mask_range=tuple(config["data"]["pseudo_mask_range"]),
        size=size,
        train_trimaps=config["data"]["train_trimaps"],
        noisy_trimaps=config["data"]["noisy_trimaps"],
        model_transform=model.training_transform(),
        model_input_size=model_input_size(config),
        case_maps=case_maps,
        copies_per_image=config["data"]["copies_per_image"],
    )
    sampler = distributed.make_sampler(dataset, context, seed=config["seed"], group=dataset.copies_per_image)
    loader = DataLoader(
        dataset,
        batch_size=process_batch_size,
        sampler=sampler,
        num_workers=config["train"]["num_workers"],
    )
    scheduler = make_scheduler(optimizer, optim, len(loader))
    scaler = torch.amp.GradScaler(context.device.type, enabled=arithmetic.scales_gradients)
    ema = None
    if optim["ema_decay"] is not None:
        ema = AveragedModel(model, multi_avg_fn=moving_average_update(optim["ema_decay"]), use_buffers=True)
    return Training(model, criterion, step_module, optimizer, scheduler, dataset, sampler, loader, scaler, ema)


def train_one_epoch(
    step_module: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler,
    epoch: int,
    num_epochs: int,
    context: distributed.DistributedContext,
    grad_clip: float | None = None,
    handlers: Sequence[Handler] = (),
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One pass over ``loader``, one optimiser and scheduler step per batch, "step_end" after each.

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
        if scaler is None or not scaler.is_enabled():
            total.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(step_module.parameters(), grad_clip)
            optimizer.step()
        else:
            scaler.scale(total).backward()
            if grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(step_module.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        scheduler.step()
        # The criterion's own "total" is the "loss" column.
        values = {"loss": total.item(), **{key: float(v) for key, v in parts.items() if key != "total"}}
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
        steps += 1
        for handler in handlers:
            handler("step_end", {"epoch": epoch, "step": step, "loss": values["loss"]})
    means = {key: value / max(steps, 1) for key, value in sums.items()}
    return distributed.average_across_processes(means, context)


def run_epoch(
    training: Training,
    epoch: int,
    config: dict,
    context: distributed.DistributedContext,
    handlers: Sequence[Handler] = (),
) -> dict:
    """Train one epoch (0-based ``epoch``), let the criterion see its mean losses, then "epoch_end".

    Returns:
        The ``log.csv`` row: ``epoch`` (1-based), ``lr`` (after the epoch), ``loss`` and the loss
        parts, and whatever the handlers added (``val_*`` metrics, ``seconds``).
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
        handlers=handlers,
        scaler=training.scaler,
    )
    if hasattr(training.criterion, "end_epoch"):
        training.criterion.end_epoch(means)
    row = {"epoch": epoch + 1, "lr": training.optimizer.param_groups[0]["lr"], **means}
    info = {"epoch": epoch, "row": row, "model": training.evaluation_model, "criterion": training.criterion,
            "training": training, "started": started}
    for handler in handlers:
        handler("epoch_end", info)
    return row
