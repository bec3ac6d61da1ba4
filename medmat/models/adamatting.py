"""AdaMatting (Cai et al., "Disentangled Image Matting", ICCV 2019): trimap adaptation + alpha estimation.

One encoder, two decoders, one propagation unit (§3.2, Fig. 2):

- input: the image concatenated with the one-hot trimap (3 channels; the paper feeds one
  trimap channel, the TCP paper and medmat the one-hot code of
  :func:`medmat.data.trimap.one_hot_trimap`);
- shared encoder: ResNet-style (the paper: ResNet-50, not pre-trained, §4.1). medmat uses basic
  residual blocks at five levels, full resolution then four stride-2 stages (1/2 .. 1/16), as
  no pre-trained weights are reachable and medical images are small;
- trimap decoder: 3-class logits (background, unknown, foreground); shortcuts from the deep
  (1/8) and middle (1/4) encoder levels; alpha decoder: 1 channel, shortcuts from the middle
  (1/4) and shallow (1/2) levels. Every shortcut passes through a global convolution (Peng et
  al. 2017); decoders upsample by sub-pixel convolution (§5.1 lists both among AdaMatting's
  components);
- propagation unit: two residual blocks and a ConvLSTM cell; each iteration reads the image,
  the adapted trimap (softmax of the trimap logits) and the previous alpha, and corrects the
  alpha logits. The paper recurs 3 times at inference (§4.1) and gives no training count;
  medmat draws the count uniformly from 1 .. ``propagation_steps`` at every training forward,
  so that every intermediate matte is trained to be a matte (Fig. 3 shows them improving);
  ``train_steps`` fixes it instead.

The final alpha takes 0 and 1 from the adapted trimap's background and foreground and the
propagated alpha on its unknown pixels (§3.1: "deciding if the alpha should be exactly zero,
one or neither").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medmat.data.trimap import NUM_TRIMAP_CLASSES, fill_known_regions, one_hot_trimap
from medmat.errors import MedmatError
from medmat.models.blocks import ResidualBlock, cat_channels, conv3x3, conv_norm_relu, positive_ints, residual_stage
from medmat.models.contract import MattingModel, ModelSpec
from medmat.models.registry import register_model

#: Encoder levels: 0 full resolution, then 1/2, 1/4, 1/8, 1/16 (inference pads to multiples of 16).
NUM_LEVELS = 5
SHALLOW, MIDDLE, DEEP = 1, 2, 3

#: Constructor presets. ``paper``: ResNet-34 widths and depths (the paper's ResNet-50 has
#: bottleneck blocks; the basic blocks keep the same stage layout); ``lite``: for 2 CPU cores.
PRESETS: dict[str, dict] = {
    "paper": {"encoder_channels": (64, 64, 128, 256, 512), "encoder_blocks": (3, 4, 6, 3), "propagation_channels": 32},
    "lite": {"encoder_channels": (16, 16, 32, 64, 96), "encoder_blocks": (1, 1, 1, 1), "propagation_channels": 16},
}


def batch_trimap(batch: dict[str, torch.Tensor], model_name: str) -> torch.Tensor:
    """``batch["trimap"]`` (B, 1, H, W) in [0, 1], or a MedmatError saying where trimaps come from."""
    if batch.get("trimap") is None:
        raise MedmatError(
            f"model {model_name!r} needs a trimap for every case: give data.trimaps (training, evaluation) "
            "or --trimaps (prediction)"
        )
    return batch["trimap"]


def downsampling_stage(in_channels: int, out_channels: int, num_blocks: int) -> nn.Sequential:
    """Halve H and W (3x3 stride-2 conv + BN + ReLU), then ``num_blocks`` residual blocks.

    (B, in, H, W) -> (B, out, ceil(H / 2), ceil(W / 2)).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        *residual_stage(out_channels, out_channels, num_blocks),
    )


class ResidualEncoder(nn.Module):
    """ResNet-style encoder returning the features of every level.

    ``forward(x (B, in, H, W))`` -> list of ``NUM_LEVELS`` tensors; level ``l`` is
    (B, channels[l], H / 2^l, W / 2^l), values >= 0. H and W must be multiples of 16 (ValueError
    otherwise; the engine's inference pads to them).

    Args:
        in_channels: input channels.
        channels: widths of the five levels (level 0: one 3x3 conv at full resolution).
        blocks: residual blocks of levels 1-4.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], blocks: Sequence[int]):
        super().__init__()
        self.stem = conv_norm_relu(in_channels, channels[0])
        self.stages = nn.ModuleList(
            downsampling_stage(channels[level - 1], channels[level], blocks[level - 1])
            for level in range(1, len(channels))
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        multiple = 2 ** len(self.stages)
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            # The decoders add shortcuts level by level; odd sizes would not line up.
            raise ValueError(f"input size {tuple(x.shape[-2:])} must be a multiple of {multiple} (pad it)")
        features = [self.stem(x)]
        for stage in self.stages:
            features.append(stage(features[-1]))
        return features


class SubPixelUpsample(nn.Module):
    """Sub-pixel convolution (Shi et al. 2016): 3x3 conv to 4x the channels, pixel shuffle, BN, ReLU.

    (B, in, H, W) -> (B, out, 2H, 2W), values >= 0.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            conv3x3(in_channels, 4 * out_channels, bias=False),
            nn.PixelShuffle(2),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GlobalConvolution(nn.Module):
    """Global convolution (Peng et al. 2017): a k x k receptive field from (k x 1, 1 x k) + (1 x k, k x 1).

    (B, in, H, W) -> (B, out, H, W); k odd. Two separable branches cost 4k weights per channel
    pair instead of k^2, which is how the paper enlarges the shortcuts' receptive field cheaply.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 7):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise MedmatError(f"model option gcn_kernel must be an odd positive integer, got {kernel_size}")
        pad = kernel_size // 2
        column, row = (kernel_size, 1), (1, kernel_size)
        self.column_first = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, column, padding=(pad, 0)),
            nn.Conv2d(out_channels, out_channels, row, padding=(0, pad)),
        )
        self.row_first = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, row, padding=(0, pad)),
            nn.Conv2d(out_channels, out_channels, column, padding=(pad, 0)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.column_first(x) + self.row_first(x)


class ShortcutDecoder(nn.Module):
    """Decoder from the deepest encoder level to full resolution with shortcuts at chosen levels.

    At each level ``l`` from 3 down to 0: sub-pixel upsampling to ``channels[l]``, plus the
    global convolution of the encoder's level-``l`` features when ``l`` is in ``shortcut_levels``,
    then a 3x3 conv + BN + ReLU. A final 3x3 convolution gives ``out_channels`` logits.

    ``forward(features)`` (the encoder's list) -> (B, out_channels, H, W) logits.
    """

    def __init__(self, channels: Sequence[int], shortcut_levels: Sequence[int], out_channels: int, gcn_kernel: int):
        super().__init__()
        levels = range(len(channels) - 2, -1, -1)
        self.levels = list(levels)
        self.upsample = nn.ModuleDict({str(l): SubPixelUpsample(channels[l + 1], channels[l]) for l in levels})
        self.shortcuts = nn.ModuleDict(
            {str(l): GlobalConvolution(channels[l], channels[l], gcn_kernel) for l in shortcut_levels}
        )
        self.refine = nn.ModuleDict({str(l): conv_norm_relu(channels[l], channels[l]) for l in levels})
        self.head = conv3x3(channels[0], out_channels)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for level in self.levels:
            x = self.upsample[str(level)](x)
            if str(level) in self.shortcuts:
                x = x + self.shortcuts[str(level)](features[level])
            x = self.refine[str(level)](x)
        return self.head(x)


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM cell (Shi et al. 2015).

    ``forward(x (B, in, H, W), state)`` -> ``(h, c)``, each (B, hidden, H, W); ``state`` is the
    previous ``(h, c)`` or None for zeros. Gates: ``i, f, o = sigmoid``, ``g = tanh`` of one
    convolution of ``[x, h]``; ``c' = f c + i g``, ``h' = o tanh(c')``.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.hidden_channels = hidden_channels
        padding = kernel_size // 2
        self.gates = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding=padding)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[2:])
            state = (zeros, zeros)
        hidden, cell = state
        input_gate, forget_gate, output_gate, candidate = self.gates(cat_channels([x, hidden])).chunk(4, dim=1)
        cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(input_gate) * torch.tanh(candidate)
        hidden = torch.sigmoid(output_gate) * torch.tanh(cell)
        return hidden, cell


class PropagationUnit(nn.Module):
    """AdaMatting's propagation unit: two residual blocks and a ConvLSTM cell, run recurrently.

    ``forward(image (B, C, H, W), trimap_probabilities (B, 3, H, W), alpha_logits (B, 1, H, W),
    steps)`` -> refined alpha logits (B, 1, H, W). Each step reads the image, the adapted trimap
    and the current alpha (sigmoid of the logits) and adds a 3x3-convolution readout of the
    ConvLSTM's hidden state to the logits; the cell's memory carries over between steps.
    """

    def __init__(self, image_channels: int, channels: int):
        super().__init__()
        self.features = nn.Sequential(
            ResidualBlock(image_channels + NUM_TRIMAP_CLASSES + 1, channels), ResidualBlock(channels, channels)
        )
        self.cell = ConvLSTMCell(channels, channels)
        self.readout = conv3x3(channels, 1)

    def forward(
        self, image: torch.Tensor, trimap_probabilities: torch.Tensor, alpha_logits: torch.Tensor, steps: int
    ) -> torch.Tensor:
        state = None
        for _ in range(steps):
            x = self.features(cat_channels([image, trimap_probabilities, torch.sigmoid(alpha_logits)]))
            state = self.cell(x, state)
            alpha_logits = alpha_logits + self.readout(state[0])
        return alpha_logits


@register_model("adamatting")
class AdaMatting(MattingModel):
    """AdaMatting: shared encoder, trimap and alpha decoders, propagation unit.

    Args:
        in_channels: image channels (1 greyscale, 3 colour); the network adds the 3 one-hot
            trimap channels.
        encoder_channels: widths of the 5 encoder levels (decoders mirror them).
        encoder_blocks: residual blocks of encoder levels 1-4.
        gcn_kernel: k of the global convolutions on the shortcuts (odd).
        propagation_channels: width of the propagation unit.
        use_propagation: False = "AdaMatting w/o PU" (Table 2): alpha is the alpha decoder's.
        propagation_steps: recurrences at inference (paper 3); the largest count in training.
        train_steps: recurrences in training; None draws 1 .. ``propagation_steps`` each forward
            (from torch's global generator, which the engine seeds).

    ``forward(batch, num_samples=None)`` takes "image" (B, C, H, W) in [0, 1] and "trimap"
    (B, 1, H, W) in [0, 1] (0 / 0.5 / 1), in training and evaluation alike (``num_samples`` is
    ignored: the model does not sample), and returns float32 tensors:
        "alpha" (B, 1, H, W) in [0, 1]: the propagated alpha with the adapted trimap's known
            regions set to 0 and 1;
        "alpha_raw" (B, 1, H, W) in (0, 1): the propagated alpha before that (what Eq. 4 trains);
        "trimap_logits" (B, 3, H, W): background / unknown / foreground logits (what the
            cross-entropy of Eq. 3 trains);
        "adapted_trimap" (B, 1, H, W) in {0, 0.5, 1}: the arg-max of the logits, detached.
    """

    def __init__(
        self,
        in_channels: int = 1,
        encoder_channels: Sequence[int] = PRESETS["paper"]["encoder_channels"],
        encoder_blocks: Sequence[int] = PRESETS["paper"]["encoder_blocks"],
        gcn_kernel: int = 7,
        propagation_channels: int = PRESETS["paper"]["propagation_channels"],
        use_propagation: bool = True,
        propagation_steps: int = 3,
        train_steps: int | None = None,
    ):
        super().__init__()
        (in_channels,) = positive_ints("in_channels", in_channels, 1)
        channels = positive_ints("encoder_channels", encoder_channels, NUM_LEVELS)
        blocks = positive_ints("encoder_blocks", encoder_blocks, NUM_LEVELS - 1)
        (propagation_channels,) = positive_ints("propagation_channels", propagation_channels, 1)
        (self.propagation_steps,) = positive_ints("propagation_steps", propagation_steps, 1)
        if train_steps is not None:
            (train_steps,) = positive_ints("train_steps", train_steps, 1)
        self.train_steps = train_steps

        self.encoder = ResidualEncoder(in_channels + NUM_TRIMAP_CLASSES, channels, blocks)
        self.trimap_decoder = ShortcutDecoder(channels, (DEEP, MIDDLE), NUM_TRIMAP_CLASSES, gcn_kernel)
        self.alpha_decoder = ShortcutDecoder(channels, (MIDDLE, SHALLOW), 1, gcn_kernel)
        self.propagation: PropagationUnit | None = None
        if use_propagation:
            self.propagation = PropagationUnit(in_channels, propagation_channels)
        self.spec = ModelSpec(
            in_channels=in_channels,
            takes=("image", "trimap"),
            requires=("image", "trimap"),
            gives=("alpha", "alpha_raw", "trimap_logits", "adapted_trimap"),
            size_multiple=2 ** (NUM_LEVELS - 1),
        )

    def alpha_features_layer(self) -> nn.Module | None:
        # The last propagation step's readout, or the alpha decoder's head without propagation.
        return self.alpha_decoder.head if self.propagation is None else self.propagation.readout

    def steps(self) -> int:
        """Propagation recurrences for the next forward (see the class docstring)."""
        if not self.training:
            return self.propagation_steps
        if self.train_steps is not None:
            return self.train_steps
        return int(torch.randint(1, self.propagation_steps + 1, ()).item())

    def forward(self, batch: dict[str, torch.Tensor], num_samples: int | None = None) -> dict[str, torch.Tensor]:
        image = batch["image"]
        trimap = batch_trimap(batch, "adamatting")
        features = self.encoder(torch.cat([image, one_hot_trimap(trimap)], dim=1))
        trimap_logits = self.trimap_decoder(features)
        alpha_logits = self.alpha_decoder(features)
        if self.propagation is not None:
            alpha_logits = self.propagation(image, F.softmax(trimap_logits, dim=1), alpha_logits, self.steps())
        alpha_raw = torch.sigmoid(alpha_logits.float())  # float32 even under autocast
        adapted = trimap_logits.detach().argmax(dim=1)
        return {
            "alpha": fill_known_regions(alpha_raw, adapted),
            "alpha_raw": alpha_raw,
            "trimap_logits": trimap_logits,
            # Class indices 0, 1, 2 are the trimap levels 0, 0.5, 1 times two.
            "adapted_trimap": adapted[:, None].to(image.dtype) / 2.0,
        }
