"""Semantic path + Textural Compensate Path (Liu, Ding and Jiang, "Towards Enhancing Fine-grained
Details for Image Matting", WACV 2021).

- input: the image with the one-hot trimap (3 channels), fed to both paths (§3);
- semantic path (§3.1): a U-Net whose encoder is ResNet-34-style (here trained from scratch:
  no pre-trained weights are reachable) and whose decoder mirrors it; each shortcut holds two
  3x3 convolutions (+BN+ReLU) "to adapt low-level features to high-level ones"; one output
  channel;
- Textural Compensate Path (§3.2, Fig. 3), downsampling-free: spatial feature extraction (one
  convolution and two residual blocks at full resolution), the feature fusion unit (the semantic
  path's second-layer features, i.e. the encoder's 1/2-resolution level, resized to H x W by
  nearest interpolation, times a learnable scalar w_c, added to the spatial features), then
  feature refinement (two convolutions, the last one the 1-channel output). The TCP's width is
  that of the semantic features it fuses. Every TCP convolution but the output is followed by
  BN and ReLU (§4.1);
- output: ``tanh(semantic + TCP)`` (§3); medmat clips it to [0, 1] and, as both papers' losses
  only see the trimap's unknown region, takes 0 and 1 from the trimap's known regions.

Training trimaps (§3.3): the semantic path reads "trimap" and the TCP reads "trimap_noisy" when
the batch has it (:class:`medmat.labels.training_trimaps.RandomTrimapd` makes both); at
inference the given "trimap" feeds both paths. ``use_tcp=False`` is the paper's baseline, the
semantic path alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medmat.data.trimap import NUM_TRIMAP_CLASSES, fill_known_regions, one_hot_trimap, trimap_classes
from medmat.models.adamatting import NUM_LEVELS, ResidualEncoder, SubPixelUpsample, batch_trimap
from medmat.models.blocks import ResidualBlock, cat_channels, conv3x3, conv_norm_relu, positive_ints, residual_stage
from medmat.models.contract import MattingModel, ModelSpec
from medmat.models.registry import register_model

#: The semantic encoder level the feature fusion unit borrows: "the second layer in the U-Net".
FUSED_LEVEL = 1

#: Constructor presets. ``paper``: ResNet-34 widths and depths; ``lite``: for 2 CPU cores.
PRESETS: dict[str, dict] = {
    "paper": {"encoder_channels": (64, 64, 128, 256, 512), "encoder_blocks": (3, 4, 6, 3)},
    "lite": {"encoder_channels": (16, 16, 32, 64, 96), "encoder_blocks": (1, 1, 1, 1)},
}


def two_conv_shortcut(channels: int) -> nn.Sequential:
    """The semantic path's shortcut: two 3x3 conv + BN + ReLU, (B, c, H, W) -> (B, c, H, W)."""
    return nn.Sequential(conv_norm_relu(channels, channels), conv_norm_relu(channels, channels))


class SemanticPath(nn.Module):
    """U-Net with a residual encoder, a mirrored decoder and two convolutions in each shortcut.

    ``forward(x (B, in, H, W))`` -> ``(output (B, 1, H, W), encoder features)``; the features
    are the encoder's list (level ``l``: (B, channels[l], H / 2^l, W / 2^l)).

    Args:
        in_channels: image + one-hot trimap channels.
        channels: widths of the 5 levels.
        blocks: residual blocks of encoder levels 1-4; decoder level ``l`` has as many as
            encoder level ``l`` (level 0: one).
    """

    def __init__(self, in_channels: int, channels: Sequence[int], blocks: Sequence[int]):
        super().__init__()
        self.encoder = ResidualEncoder(in_channels, channels, blocks)
        levels = range(len(channels) - 2, -1, -1)
        self.levels = list(levels)
        decoder_blocks = (1, *blocks)
        self.shortcuts = nn.ModuleDict({str(l): two_conv_shortcut(channels[l]) for l in levels})
        self.upsample = nn.ModuleDict({str(l): SubPixelUpsample(channels[l + 1], channels[l]) for l in levels})
        self.decode = nn.ModuleDict(
            {str(l): residual_stage(2 * channels[l], channels[l], decoder_blocks[l]) for l in levels}
        )
        self.head = conv3x3(channels[0], 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.encoder(x)
        y = features[-1]
        for level in self.levels:
            key = str(level)
            y = self.decode[key](cat_channels([self.upsample[key](y), self.shortcuts[key](features[level])]))
        return self.head(y), features


class TexturalCompensatePath(nn.Module):
    """Downsampling-free path: spatial feature extraction, feature fusion unit, feature refinement.

    ``forward(x (B, in, H, W), semantic_features (B, channels, h, w))`` -> (B, 1, H, W): the
    semantic features are resized to H x W by nearest interpolation, multiplied by the learnable
    scalar ``fusion_weight`` (w_c) and added to the spatial features.
    """

    def __init__(self, in_channels: int, channels: int, fusion_weight_init: float = 1.0):
        super().__init__()
        self.spatial = nn.Sequential(
            conv_norm_relu(in_channels, channels), ResidualBlock(channels, channels), ResidualBlock(channels, channels)
        )
        self.fusion_weight = nn.Parameter(torch.tensor(float(fusion_weight_init)))
        self.refine = nn.Sequential(conv_norm_relu(channels, channels), conv3x3(channels, 1))

    def forward(self, x: torch.Tensor, semantic_features: torch.Tensor) -> torch.Tensor:
        resized = F.interpolate(semantic_features, size=x.shape[-2:], mode="nearest")
        return self.refine(self.spatial(x) + self.fusion_weight * resized)


@register_model("tcp_matting")
class TexturalCompensateMatting(MattingModel):
    """Semantic path, optionally with the Textural Compensate Path.

    Args:
        in_channels: image channels (1 greyscale, 3 colour); the network adds the 3 one-hot
            trimap channels.
        encoder_channels: widths of the semantic path's 5 levels; the TCP is as wide as level 1.
        encoder_blocks: residual blocks of encoder levels 1-4 (ResNet-34: 3, 4, 6, 3).
        use_tcp: False = the semantic path alone (the paper's baseline).
        fusion_weight_init: initial w_c of the feature fusion unit.

    ``forward(batch, num_samples=None)`` takes "image" (B, C, H, W) in [0, 1] and "trimap"
    (B, 1, H, W) in [0, 1], and in training optionally "trimap_noisy" (B, 1, H, W), the TCP's
    input trimap (``num_samples`` is ignored). Returns:
        "alpha" (B, 1, H, W) in [0, 1]: the output clipped to [0, 1], 0 and 1 on the trimap's
            background and foreground;
        "alpha_raw" (B, 1, H, W) in (-1, 1): ``tanh(semantic + TCP)``, what the loss trains.
    """

    def __init__(
        self,
        in_channels: int = 1,
        encoder_channels: Sequence[int] = PRESETS["paper"]["encoder_channels"],
        encoder_blocks: Sequence[int] = PRESETS["paper"]["encoder_blocks"],
        use_tcp: bool = True,
        fusion_weight_init: float = 1.0,
    ):
        super().__init__()
        (in_channels,) = positive_ints("in_channels", in_channels, 1)
        channels = positive_ints("encoder_channels", encoder_channels, NUM_LEVELS)
        blocks = positive_ints("encoder_blocks", encoder_blocks, NUM_LEVELS - 1)
        network_input = in_channels + NUM_TRIMAP_CLASSES
        self.semantic = SemanticPath(network_input, channels, blocks)
        self.tcp: TexturalCompensatePath | None = None
        if use_tcp:
            self.tcp = TexturalCompensatePath(network_input, channels[FUSED_LEVEL], fusion_weight_init)
        self.spec = ModelSpec(
            in_channels=in_channels,
            takes=("image", "trimap"),
            requires=("image", "trimap"),
            gives=("alpha", "alpha_raw"),
            size_multiple=2 ** (NUM_LEVELS - 1),
        )

    def alpha_features_layer(self) -> nn.Module | None:
        # The TCP's output convolution, or the semantic path's head without the TCP.
        return self.semantic.head if self.tcp is None else self.tcp.refine[1]

    def forward(self, batch: dict[str, torch.Tensor], num_samples: int | None = None) -> dict[str, torch.Tensor]:
        image = batch["image"]
        trimap = batch_trimap(batch, "tcp_matting")
        logits, features = self.semantic(torch.cat([image, one_hot_trimap(trimap)], dim=1))
        if self.tcp is not None:
            tcp_trimap = batch.get("trimap_noisy", trimap) if self.training else trimap
            tcp_input = torch.cat([image, one_hot_trimap(tcp_trimap)], dim=1)
            logits = logits + self.tcp(tcp_input, features[FUSED_LEVEL])
        alpha_raw = torch.tanh(logits.float())  # float32 even under autocast
        alpha = fill_known_regions(alpha_raw.clamp(0.0, 1.0), trimap_classes(trimap))
        return {"alpha": alpha, "alpha_raw": alpha_raw}
