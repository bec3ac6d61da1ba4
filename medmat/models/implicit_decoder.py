"""Implicit functions that read feature maps at any continuous position (Xu et al., 2024, §2.2).

A feature map is a grid of latent codes spread evenly over the image; an implicit function
decodes the value at a query position from a few codes and their positions relative to the query,
so the map can be read at any resolution:

- :class:`ImplicitFunction` with ``learn_offsets=False``: the **local-ensemble** implicit
  function (Eq. 1): the ``k x k`` codes nearest the query (2 x 2 in the paper), each decoded by a
  two-layer MLP ``f_theta(z, q - p)`` with its relative position, and summed;
- :class:`ImplicitFunction` with ``learn_offsets=True``: the **region-aware** implicit function
  (Eq. 2): the same ``k x k`` code slots, each moved by an offset that an offset convolution
  predicts from the features around the query, so the codes may lie far from it; codes between
  grid points are read by bilinear sampling (``F.grid_sample``, the sampling a deformable
  convolution does). The offsets start at zero, where it *is* the local ensemble;
- :class:`BilinearReader`: the baseline, the feature map bilinearly upsampled to the query;
- :class:`MultiScaleImplicitDecoder`: Eq. 3, the codes of 1-3 scales read at the same query and
  concatenated, ``M^{1,2,3}(q) = [M^1(q); M^2(q); M^3(q)]``, then an output block of two
  per-query layers giving alpha logits.

Coordinates are normalised ``(x, y)`` in [-1, 1] over the image extent, the convention of
``F.grid_sample(..., align_corners=False)``: pixel (row i, column j) of an H x W grid has its
centre at ``x = (2 j + 1) / W - 1``, ``y = (2 i + 1) / H - 1``. Every feature map, whatever its
resolution, spans the same extent, so one query reads every scale. Offsets and relative
positions are measured in cells of the feature map being read.

The paper implements Eq. 2 with ``deform_conv2d`` run repeatedly and stacked to the output
size (its Fig. 3); here each query samples its codes directly, which is the same function
without torchvision and works for any output size, not only integer multiples.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medmat.models.blocks import conv1x1, conv3x3

#: Decoders :class:`MultiScaleImplicitDecoder` can use.
DECODERS = ("region_aware", "local_ensemble", "bilinear")

#: Hidden activations of ``f_theta`` and of the output block. "relu" is the paper's MLP; a ReLU
#: unit pushed below zero on every query gets no gradient again: the `region_aware_matting_cpu`
#: Brain-growth folds ended with 4-5 of the output block's 16 units never active and 4-9 active
#: on under 1 % of the queries (benchmarks/dead_units.py, docs/region-aware.md). The leaky
#: ReLU's slope of 0.1 keeps a gradient on such units.
ACTIVATIONS = ("relu", "leaky_relu")


def activation_layer(name: str) -> nn.Module:
    """The hidden activation called ``name`` (one of :data:`ACTIVATIONS`), as a parameter-free module."""
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope=0.1)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")


def query_grid(
    height: int, width: int, batch: int = 1, device: torch.device | str | None = None, dtype=torch.float32
) -> torch.Tensor:
    """The pixel centres of a ``height x width`` output as normalised query positions.

    Returns:
        (batch, height, width, 2) tensor of ``(x, y)`` in (-1, 1).
    """
    ys = (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height - 1
    xs = (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    return grid.expand(batch, height, width, 2)


def pixels_to_normalized(points: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Pixel positions ``(row, col)`` of an H x W image (centres at integers) -> normalised ``(x, y)``.

    Args:
        points: (..., 2) float tensor of (row, col).
        size: (H, W).
    """
    height, width = size
    rows, cols = points[..., 0], points[..., 1]
    return torch.stack([(2 * cols + 1) / width - 1, (2 * rows + 1) / height - 1], dim=-1)


def normalized_to_pixels(positions: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`pixels_to_normalized`: (..., 2) ``(x, y)`` -> (..., 2) ``(row, col)``."""
    height, width = size
    xs, ys = positions[..., 0], positions[..., 1]
    return torch.stack([((ys + 1) * height - 1) / 2, ((xs + 1) * width - 1) / 2], dim=-1)


def _cells_to_normalized(size: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """(x, y) length of one cell of an (h, w) map in normalised units: ``(2 / w, 2 / h)``."""
    height, width = size
    return like.new_tensor([2.0 / width, 2.0 / height])


def nearest_code_positions(queries: torch.Tensor, size: Sequence[int], kernel_size: int = 2) -> torch.Tensor:
    """Centres of the ``k x k`` codes of an (h, w) map nearest each query (Eq. 1's ``z*_i``).

    For k = 2 these are the codes of the four sub-spaces around the query (top-left, top-right,
    bottom-left, bottom-right); for odd k, the k x k block centred on the nearest code. Codes past
    the border are clamped to it, as in the local implicit image function.

    Args:
        queries: (B, Hq, Wq, 2) normalised ``(x, y)``.
        size: (h, w) of the feature map.
        kernel_size: k >= 1.

    Returns:
        (B, Hq, Wq, k * k, 2) normalised ``(x, y)`` of the code centres, row-major over the k x k
        block (the x index varies fastest).
    """
    height, width = size
    scale = queries.new_tensor([width, height])
    index = ((queries + 1) * scale - 1) / 2  # continuous (column, row) index, centres at integers
    first = torch.floor(index - (kernel_size - 1) / 2 + 0.5)
    steps = torch.arange(kernel_size, device=queries.device, dtype=queries.dtype)
    step_y, step_x = torch.meshgrid(steps, steps, indexing="ij")
    block = torch.stack([step_x.reshape(-1), step_y.reshape(-1)], dim=-1)  # (k * k, 2)
    codes = first[..., None, :] + block
    codes = torch.minimum(codes.clamp_min(0), scale - 1)
    return (2 * codes + 1) / scale - 1


def sample_codes(feature_map: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample a feature map at arbitrary positions (border values beyond the edge).

    Args:
        feature_map: (B, C, h, w).
        positions: (B, Hq, Wq, P, 2) normalised ``(x, y)``.

    Returns:
        (B, Hq, Wq, P, C), channels last. At code centres this is the code itself.
    """
    batch, rows, cols, slots, _ = positions.shape
    grid = positions.reshape(batch, rows, cols * slots, 2)
    sampled = F.grid_sample(feature_map, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled.reshape(batch, -1, rows, cols, slots).permute(0, 2, 3, 4, 1)


class ImplicitFunction(nn.Module):
    """Region-aware (Eq. 2) or local-ensemble (Eq. 1) implicit function over one feature map.

    ``M(q) = sum_i f_theta(z_i, (q - p_i) / cell)``, i over k x k code slots at positions ``p_i``;
    ``f_theta`` is a two-layer MLP (hidden ReLU layer of ``hidden_channels``). The local ensemble
    puts ``p_i`` at the nearest codes; the region-aware function moves each by a learned offset.

    ``f_theta``'s first layer is split as ``W [z; r] = W_z z + W_r r``; ``W_z`` is applied to the
    feature map before sampling (a 1x1 convolution), which is exact because bilinear sampling is
    linear, and cheaper whenever the map has fewer codes than there are queries.

    Args:
        in_channels: C, channels of the feature map.
        hidden_channels: width of ``f_theta``'s hidden layer.
        out_channels: channels of the decoded value ``M(q)``.
        kernel_size: k, the code slots form a k x k block (2 in the paper; its ablation 1, 2, 3).
        learn_offsets: region-aware (True) or local ensemble (False).
        activation: the hidden layer's activation, one of :data:`ACTIVATIONS`.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        learn_offsets: bool = True,
        activation: str = "relu",
    ):
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
        self.kernel_size = kernel_size
        self.activation = activation_layer(activation)
        self.project_codes = conv1x1(in_channels, hidden_channels)
        self.project_relative = nn.Linear(2, hidden_channels, bias=False)
        self.output_layer = nn.Linear(hidden_channels, out_channels)
        self.offset_conv: nn.Conv2d | None = None
        if learn_offsets:
            # g_delta: (dx, dy) in cells for every slot. Zero-initialised, as deformable
            # convolutions are, so training starts from the local ensemble.
            self.offset_conv = conv3x3(in_channels, 2 * kernel_size * kernel_size)
            nn.init.zeros_(self.offset_conv.weight)
            nn.init.zeros_(self.offset_conv.bias)

    @property
    def num_slots(self) -> int:
        """P = k * k codes decoded per query."""
        return self.kernel_size * self.kernel_size

    def offsets(self, features: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Learned offsets of the code slots at each query, in cells of ``features``.

        Args:
            features: (B, C, h, w).
            queries: (B, Hq, Wq, 2) normalised ``(x, y)``.

        Returns:
            (B, Hq, Wq, P, 2) ``(dx, dy)``; zeros for the local ensemble.
        """
        batch, rows, cols, _ = queries.shape
        if self.offset_conv is None:
            return queries.new_zeros(batch, rows, cols, self.num_slots, 2)
        # The offset map is read at the query like any feature: bilinearly, between codes.
        offset_map = self.offset_conv(features)
        sampled = F.grid_sample(offset_map, queries, mode="bilinear", padding_mode="border", align_corners=False)
        return sampled.permute(0, 2, 3, 1).reshape(batch, rows, cols, self.num_slots, 2)

    def code_positions(self, features: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Where each query reads its codes: nearest-code centres moved by the learned offsets.

        Args:
            features: (B, C, h, w).
            queries: (B, Hq, Wq, 2) normalised ``(x, y)``.

        Returns:
            (B, Hq, Wq, P, 2) normalised ``(x, y)``; may lie outside [-1, 1] (read as the border).
        """
        size = features.shape[-2:]
        base = nearest_code_positions(queries, size, self.kernel_size)
        return base + self.offsets(features, queries) * _cells_to_normalized(size, queries)

    def forward(self, features: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Decode ``features`` (B, C, h, w) at ``queries`` (B, Hq, Wq, 2) -> (B, Hq, Wq, out), channels last."""
        positions = self.code_positions(features, queries)
        codes = sample_codes(self.project_codes(features), positions)  # W_z z + b, (B, Hq, Wq, P, hidden)
        cell = _cells_to_normalized(features.shape[-2:], queries)
        relative = (queries[..., None, :] - positions) / cell
        hidden = self.activation(codes + self.project_relative(relative))
        # sum_i (W h_i + b) = W sum_i h_i + P b: one matrix product per query, not P.
        summed = F.linear(hidden.sum(dim=3), self.output_layer.weight)
        return summed + self.num_slots * self.output_layer.bias


class BilinearReader(nn.Module):
    """The baseline of the ablation: bilinear upsampling instead of an implicit function.

    The feature map is bilinearly sampled at the query (for queries on a finer grid, exactly
    ``F.interpolate(..., mode="bilinear", align_corners=False)``) and mapped by the same two-layer
    MLP as ``f_theta``, without relative positions: only the interpolation differs.

    Args: as :class:`ImplicitFunction` (no kernel, no offsets).
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, activation: str = "relu"):
        super().__init__()
        self.activation = activation_layer(activation)
        self.project_codes = conv1x1(in_channels, hidden_channels)
        self.output_layer = nn.Linear(hidden_channels, out_channels)

    def forward(self, features: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Read ``features`` (B, C, h, w) at ``queries`` (B, Hq, Wq, 2) -> (B, Hq, Wq, out), channels last."""
        sampled = F.grid_sample(
            self.project_codes(features), queries, mode="bilinear", padding_mode="border", align_corners=False
        )
        return self.output_layer(self.activation(sampled.permute(0, 2, 3, 1)))


class MultiScaleImplicitDecoder(nn.Module):
    """Multi-scale feature fusion (Eq. 3) and the output block: feature maps -> alpha logits at any size.

    Each scale s is read at the query by its own reader (``M^s(q)``, ``hidden_channels`` values);
    the readings are concatenated, finest first (``[M^1; M^2; M^3]``), and an output block of two
    per-query layers (the paper's two output convolutions, as 1x1 so that the result does not
    depend on the output grid) gives one alpha logit per query.

    Args:
        feature_channels: channels of each scale's map, finest first (1 to 3 scales in the paper).
        hidden_channels: width of every ``f_theta`` and of the output block.
        decoder: "region_aware" (Eq. 2), "local_ensemble" (Eq. 1) or "bilinear" (baseline).
        kernel_size: k of the k x k code slots (implicit decoders only).
        activation: hidden activation of the readers and the output block (:data:`ACTIVATIONS`).

    Attributes:
        kind: the ``decoder`` option.
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        hidden_channels: int = 16,
        decoder: str = "region_aware",
        kernel_size: int = 2,
        activation: str = "relu",
    ):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        self.kind = decoder
        self.readers = nn.ModuleList(
            BilinearReader(channels, hidden_channels, hidden_channels, activation)
            if decoder == "bilinear"
            else ImplicitFunction(
                channels,
                hidden_channels,
                hidden_channels,
                kernel_size,
                learn_offsets=decoder == "region_aware",
                activation=activation,
            )
            for channels in feature_channels
        )
        self.output_block = nn.Sequential(
            nn.Linear(hidden_channels * len(feature_channels), hidden_channels),
            activation_layer(activation),
            nn.Linear(hidden_channels, 1),
        )

    def forward(self, features: Sequence[torch.Tensor], queries: torch.Tensor) -> torch.Tensor:
        """Alpha logits at the queries.

        Args:
            features: one (B, C_s, h_s, w_s) map per scale, finest first, all over the image extent.
            queries: (B, Hq, Wq, 2) normalised ``(x, y)`` (see :func:`query_grid`).

        Returns:
            (B, 1, Hq, Wq) logits.
        """
        if len(features) != len(self.readers):
            raise ValueError(f"decoder built for {len(self.readers)} scales got {len(features)} feature maps")
        fused = torch.cat([reader(level, queries) for reader, level in zip(self.readers, features)], dim=-1)
        return self.output_block(fused).permute(0, 3, 1, 2)

    def code_positions(self, features: Sequence[torch.Tensor], queries: torch.Tensor) -> list[torch.Tensor]:
        """Where each scale reads its codes for each query (implicit decoders only).

        Returns:
            One (B, Hq, Wq, P, 2) tensor of normalised ``(x, y)`` per scale, finest first.
        """
        if self.kind == "bilinear":
            raise ValueError("the bilinear decoder reads no codes at learned positions")
        return [reader.code_positions(level, queries) for reader, level in zip(self.readers, features)]
