"""How the network's arithmetic runs: precision, memory format and compilation.

Three config switches (``train.precision``, ``train.channels_last``, ``train.compile``), each with
a safe default (float32, contiguous, eager) that reproduces earlier runs bit for bit, and each
falling back with a logged warning, never a crash mid-run, when the machine cannot do it:

- **precision** "fp32" | "bf16" | "fp16" | "auto": the model's forward runs under
  ``torch.autocast`` in that dtype; weights, optimiser state, losses, entropy maps and metrics stay
  float32 (the engine casts the outputs back before the criterion). bfloat16 needs AVX-512 BF16 or
  AMX on a CPU (oneDNN's bf16 convolutions) or a GPU that has it; fp16 is for GPUs (with a
  gradient scaler). "auto": bf16 where the hardware has it, else fp16 on a GPU, else fp32.
- **channels_last**: the model's weights and its 4-D inputs in NHWC, the layout oneDNN's and
  cuDNN's fast convolutions want.
- **compile**: ``torch.compile`` of the model (inductor needs a C++ compiler on a CPU; without one,
  or when compilation fails at the first step, the eager model is used).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass

import torch
from torch import nn

LOG = logging.getLogger("medmat.engine")

#: Values of ``train.precision``.
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively (CPU: AVX-512 BF16 or AMX; CUDA: Ampere+)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_precision(requested: str, device: torch.device) -> tuple[torch.dtype | None, str | None]:
    """The autocast dtype for ``requested`` on ``device`` (None = float32), and a warning when it fell back.

    Args:
        requested: one of :data:`PRECISIONS`.
        device: where the model runs.

    Returns:
        ``(dtype or None, message or None)``.
    """
    if requested == "fp32":
        return None, None
    if requested == "auto":
        if bf16_supported(device):
            return torch.bfloat16, None
        return (torch.float16, None) if device.type == "cuda" else (None, None)
    if requested == "bf16":
        if bf16_supported(device):
            return torch.bfloat16, None
        if device.type == "cuda":
            return torch.float16, "train.precision bf16: this GPU has no bfloat16; training in fp16"
        return None, "train.precision bf16: this CPU has no AVX-512 BF16 or AMX; training in fp32"
    if device.type == "cuda":
        return torch.float16, None
    return None, "train.precision fp16 is for GPUs (CPU float16 convolutions are slow); training in fp32"


def compiler_available() -> bool:
    """Whether a C++ compiler is on the PATH (torch.compile's inductor needs one on a CPU)."""
    return any(shutil.which(name) for name in ("c++", "g++", "clang++"))


@dataclass
class Arithmetic:
    """How a model's forward runs: autocast dtype (None: float32), memory format, compiled or not."""

    dtype: torch.dtype | None = None
    channels_last: bool = False
    device_type: str = "cpu"

    @property
    def scales_gradients(self) -> bool:
        """float16 needs a gradient scaler (bfloat16 has float32's exponent range)."""
        return self.dtype is torch.float16

    def autocast(self):
        """The context the model's forward runs in."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``batch`` with its 4-D tensors in the model's memory format."""
        if not self.channels_last:
            return batch
        return {key: value.contiguous(memory_format=torch.channels_last) if value.ndim == 4 else value
                for key, value in batch.items()}


def float32_outputs(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's floating outputs as contiguous float32, so losses and metrics never see bfloat16."""
    return {key: value.float().contiguous() if value.is_floating_point() else value for key, value in outputs.items()}


def arithmetic_for(train_section: dict, device: torch.device) -> Arithmetic:
    """The :class:`Arithmetic` of a config's ``train`` section on ``device``, warning on a fallback."""
    dtype, message = resolve_precision(train_section.get("precision", "fp32"), device)
    if message:
        LOG.warning("medmat: %s", message)
    return Arithmetic(dtype=dtype, channels_last=bool(train_section.get("channels_last", False)),
                      device_type=device.type)


def prepare_model(model: nn.Module, arithmetic: Arithmetic) -> nn.Module:
    """Put the model's weights in the arithmetic's memory format (in place); returns it."""
    if arithmetic.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


class ModelRunner:
    """Calls the model, compiled by ``torch.compile`` when asked, falling back to eager with a warning.

    Not an ``nn.Module``: the model stays the training step's only child, so checkpoints keep their
    keys. Compilation happens at the first call; a failure there (no compiler, an operation the
    compiler does not support) must not end a run, so that call is repeated eagerly.
    """

    def __init__(self, model: nn.Module, compile_model: bool = False):
        self.model = model
        self._compiled = None
        self._eager = not compile_model
        if compile_model and not compiler_available():
            LOG.warning("medmat: train.compile: no C++ compiler (c++, g++ or clang++) on the PATH; running eagerly")
            self._eager = True

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self._eager:
            if self._compiled is None:
                self._compiled = torch.compile(self.model)
            try:
                return self._compiled(batch)
            except Exception as error:  # noqa: BLE001 - any compiler failure falls back to eager
                LOG.warning("medmat: train.compile failed (%s); running eagerly", str(error).splitlines()[0][:200])
                self._eager = True
        return self.model(batch)
