"""Building blocks shared by medmat's networks: conv helpers, residual blocks, channel attention.

All blocks keep the spatial size (stride 1, "same" padding) unless stated otherwise, take and
return float tensors of shape (B, C, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medmat.errors import MedmatError


def _layout_of(tensor: torch.Tensor) -> torch.memory_format:
    """channels-last for a (B, C, H, W) tensor laid out (B, H, W, C) in memory, else the default."""
    channels_last = tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last and not tensor.is_contiguous() else torch.contiguous_format


class _JoinChannels(torch.autograd.Function):
    """``torch.cat`` along channels whose backward hands each input its gradient in that input's
    own layout.

    The gradient of a join is a channel slice of the output's gradient: for channels-last
    features a strided view in neither layout, which the kernels that read it next (ReLU,
    batch-norm and bilinear-upsampling backward) take through their slow generic paths. One copy
    per slice is cheaper: the U-Net decoder's upsample-and-join, forward + backward in bfloat16,
    is 3.4 times faster with it (``benchmarks/layout_kernels.py``).
    """

    @staticmethod
    def forward(ctx, layout: torch.memory_format, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.sizes = [tensor.shape[1] for tensor in tensors]
        ctx.layouts = [_layout_of(tensor) for tensor in tensors]
        if layout == torch.channels_last:
            # Joined along the last axis of the (B, H, W, C) views: the result is channels-last.
            return torch.cat([tensor.permute(0, 2, 3, 1) for tensor in tensors], dim=3).permute(0, 3, 1, 2)
        return torch.cat(tensors, dim=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        slices = grad.split(ctx.sizes, dim=1)
        return (None, *(
            part.contiguous(memory_format=layout) if needed else None
            for part, layout, needed in zip(slices, ctx.layouts, ctx.needs_input_grad[1:])
        ))


def cat_channels(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, C_i, H, W) tensors -> (B, sum C_i, H, W), in the dtype and memory format of the one with
    the most channels (the features; the others are maps or the image); each input's gradient
    comes back in that input's own layout (:class:`_JoinChannels`).

    ``torch.cat`` alone promotes a float32 map joined to bfloat16 features (autocast) to float32,
    and joins a one-channel map, whose strides fit both layouts, to channels-last features in the
    default layout: every convolution reading the result then copies it back, forward and backward
    (24 copies of full-resolution joins per `lite` step: ``benchmarks/step_profile.py --shapes``).
    The values are those the convolution's own autocast cast would give.
    """
    # A loop rather than max(key=...), which torch.compile cannot trace (a graph break per join).
    reference = tensors[0]
    for tensor in tensors[1:]:
        if tensor.shape[1] > reference.shape[1]:
            reference = tensor
    tensors = [tensor.to(reference.dtype) for tensor in tensors]
    return _JoinChannels.apply(_layout_of(reference) if reference.dim() == 4 else torch.contiguous_format, *tensors)


def with_map(features: torch.Tensor, uncertainty: torch.Tensor, enabled: bool) -> torch.Tensor:
    """(B, C, H, W) features with the (B, 1, H, W) uncertainty map joined as one more channel
    (:func:`cat_channels`) when ``enabled``, else the features as they are: the matting units'
    input (Medical Matting's Fig. 2; ``use_uncertainty_map`` off is the paper's ablation)."""
    return cat_channels([features, uncertainty]) if enabled else features


def conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """A 3x3 convolution, stride 1, padding 1: (B, in, H, W) -> (B, out, H, W)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)


def conv1x1(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """A 1x1 convolution: (B, in, H, W) -> (B, out, H, W)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=bias)


def conv_norm_relu(in_channels: int, out_channels: int, batch_norm: bool = True) -> nn.Sequential:
    """3x3 convolution, optional batch norm, ReLU: (B, in, H, W) -> (B, out, H, W), values >= 0."""
    layers: list[nn.Module] = [conv3x3(in_channels, out_channels, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Basic residual block of He et al. (2016): two 3x3 conv + BN, identity or projected skip.

    (B, in, H, W) -> (B, out, H, W), values >= 0 (ReLU after the sum). The skip is a 1x1
    convolution + BN when the channel count changes, the identity otherwise.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.residual = nn.Sequential(
            conv3x3(in_channels, out_channels, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            conv3x3(out_channels, out_channels, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(conv1x1(in_channels, out_channels, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.residual(x) + self.shortcut(x))


def residual_stage(in_channels: int, out_channels: int, num_blocks: int = 3) -> nn.Sequential:
    """``num_blocks`` residual blocks in a row, the first one changing ``in`` to ``out`` channels."""
    if num_blocks < 1:
        raise ValueError(f"a residual stage needs at least one block, got {num_blocks}")
    blocks = [ResidualBlock(in_channels, out_channels)]
    blocks += [ResidualBlock(out_channels, out_channels) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class ChannelAttention(nn.Module):
    """CBAM channel attention (Woo et al., 2018), without the spatial gate.

    A shared two-layer MLP scores the average- and the max-pooled channel descriptors; the sum of
    the two scores, through a sigmoid, rescales each channel: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)  # narrow networks would otherwise get 0 units
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        average = self.mlp(x.mean(dim=(2, 3)))
        maximum = self.mlp(x.amax(dim=(2, 3)))
        scale = torch.sigmoid(average + maximum)
        return x * scale[:, :, None, None]


def positive_ints(name: str, values: Sequence[int] | int, length: int | None = None) -> tuple[int, ...]:
    """Model sizes from a config as a tuple of positive ints; MedmatError naming the option otherwise.

    Args:
        name: the option's name, for the message.
        values: one int or a sequence of ints.
        length: the number of values required, or None for any number >= 1.
    """
    if isinstance(values, int):
        items = (values,)
    elif isinstance(values, (list, tuple)):
        items = tuple(values)
    else:
        raise MedmatError(f"model option {name} must be a positive integer or a list of them, got {values!r}")
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
        raise MedmatError(f"model option {name} must be positive integers, got {values!r}")
    if length is not None and len(items) != length:
        raise MedmatError(f"model option {name} needs {length} values, got {len(items)}")
    return items
