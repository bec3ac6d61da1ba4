"""Data-parallel training under ``torchrun``, and the same code path without it.

``torchrun --nproc_per_node N -m medmat.engine.trainer ...`` starts N processes with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set. :func:`setup` reads them, joins the process
group (``nccl`` on CUDA, ``gloo`` on CPU) and picks the process's device; without them it
returns a single-process context and nothing else changes. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler, Sampler

from medmat.errors import MedmatError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: ``world_size`` processes, this one is ``rank`` on ``device``."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_process_group: bool = False

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes logs, checkpoints and metrics."""
        return self.rank == 0


def environment_ranks() -> tuple[int, int, int]:
    """``(world_size, rank, local_rank)`` from torchrun's environment; ``(1, 0, 0)`` without it."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise MedmatError("WORLD_SIZE, RANK and LOCAL_RANK must be integers") from None
    return world_size, rank, local_rank


def select_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """The device for this process: ``auto`` takes CUDA (GPU ``local_rank``) when available, else the CPU."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MedmatError(f"train.device is {preference!r} but CUDA is not available")
        if preference == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
    try:
        return torch.device(preference)
    except RuntimeError:
        raise MedmatError(f"train.device {preference!r} is not a torch device") from None


def setup(device: str = "auto") -> DistributedContext:
    """Join torchrun's process group when there is one and choose this process's device.

    Args:
        device: ``train.device`` of the config (``auto``, ``cpu``, ``cuda``, ``cuda:1``).

    Returns:
        The context; single-process (``world_size == 1``) outside torchrun.
    """
    world_size, rank, local_rank = environment_ranks()
    chosen = select_device(device, local_rank)
    if world_size <= 1:
        return DistributedContext(device=chosen)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
        owns = True
    return DistributedContext(world_size, rank, local_rank, chosen, owns)


def barrier(context: DistributedContext) -> None:
    """Wait for every process (no-op in a single process)."""
    if context.is_distributed:
        dist.barrier()


def cleanup(context: DistributedContext) -> None:
    """Leave the process group if :func:`setup` joined it, after every process got there."""
    if context.is_distributed and context.owns_process_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap_model(module: nn.Module, context: DistributedContext, find_unused_parameters: bool = False) -> nn.Module:
    """``module`` on the context's device, inside ``DistributedDataParallel`` under torchrun.

    Args:
        find_unused_parameters: for models whose training loss leaves some parameters out
            (``train.find_unused_parameters``); DDP stops with an error naming them otherwise.
    """
    module = module.to(context.device)
    if not context.is_distributed:
        return module
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


class GroupedSampler(Sampler[int]):
    """A :class:`DistributedSampler` over groups of ``group`` consecutive indices, each group kept together.

    Group ``g`` (indices ``g * group`` … ``g * group + group - 1``: one case's copies, see
    :class:`~medmat.engine.dataset.MattingDataset`) is shuffled as a unit, so that with a batch size
    that is a multiple of ``group`` a case's copies land in one batch. With ``group`` 1 the order is
    the plain sampler's over the dataset, index for index.
    """

    def __init__(self, num_items: int, group: int, context: DistributedContext, seed: int, shuffle: bool = True):
        if group < 1 or num_items % group:
            raise MedmatError(f"{num_items} items do not split into groups of {group}")
        self.group = group
        self.groups = DistributedSampler(
            range(num_items // group), num_replicas=context.world_size, rank=context.rank, shuffle=shuffle,
            seed=seed, drop_last=False,
        )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle the next iteration uses."""
        self.groups.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        for group_index in self.groups:
            yield from range(group_index * self.group, (group_index + 1) * self.group)

    def __len__(self) -> int:
        return len(self.groups) * self.group


def make_sampler(dataset: Dataset, context: DistributedContext, seed: int, shuffle: bool = True,
                 group: int = 1) -> GroupedSampler:
    """Shuffling sampler giving each process its share of every epoch, ``group`` consecutive indices together.

    Used in a single process too (one replica), so the order of an epoch is the same function of
    ``(seed, epoch)`` with and without torchrun; call ``set_epoch`` before each epoch.
    """
    return GroupedSampler(len(dataset), group, context, seed, shuffle)


def per_process_batch_size(batch_size: int, context: DistributedContext) -> int:
    """Split the global batch between the processes; it must divide evenly."""
    if batch_size % context.world_size:
        raise MedmatError(
            f"optim.batch_size {batch_size} is not divisible by the {context.world_size} torchrun processes"
        )
    return batch_size // context.world_size


def average_across_processes(values: dict[str, float], context: DistributedContext) -> dict[str, float]:
    """Mean of each named float over the processes (the same keys, in the same order, on every process)."""
    if not context.is_distributed or not values:
        return dict(values)
    keys = list(values)
    stacked = torch.tensor([float(values[key]) for key in keys], dtype=torch.float64, device=context.device)
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    stacked /= context.world_size
    return {key: float(value) for key, value in zip(keys, stacked.tolist())}
