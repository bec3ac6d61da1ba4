"""Multi-scale region-aware implicit matting (Xu et al., MICCAI 2024): a resolution-free Medical Matting.

The Prob. U-Net, its uncertainty map and the losses are Medical Matting's
(:mod:`medmat.models.medical_matting`); the matting network becomes a *Matting U-Net* whose
decoder is an implicit function (§2.1-2.2):

- encoder: one propagation unit (residual blocks) per scale, at H x W, H/2 x W/2 and H/4 x W/4
  (2x2 average pooling between them), taking image + Prob. U-Net latent features; CBAM channel
  attention after unit 1; the uncertainty map, average-pooled to each unit's resolution, is
  concatenated to the input of every unit, as the core model does. ``scales=s`` builds the first
  s units; their outputs are the feature maps ``F^1 .. F^s`` of Eq. 3;
- decoder: :class:`~medmat.models.implicit_decoder.MultiScaleImplicitDecoder`: each ``F^s`` read
  at every query by the region-aware implicit function (Eq. 2; or the local ensemble of Eq. 1, or
  bilinear upsampling, for the ablations), concatenated (Eq. 3), and two per-query output layers
  giving the alpha logit.

Because the decoder reads the feature maps at continuous positions, the model is resolution-free:
with an "output_size" (H', W') in its batch it reads the alpha matte at H' x W' straight from the
implicit function (``medmat.engine.predict.predict(..., output_size=...)``); without one it
queries the input's own pixel grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medmat.errors import MedmatError
from medmat.models.blocks import ChannelAttention, cat_channels, positive_ints, residual_stage, with_map
from medmat.models.implicit_decoder import (
    ACTIVATIONS,
    DECODERS,
    MultiScaleImplicitDecoder,
    normalized_to_pixels,
    pixels_to_normalized,
    query_grid,
)
from medmat.models.contract import MattingModel, ModelSpec
from medmat.models.prob_unet import PROB_UNET_OUTPUTS, ProbabilisticUNet, masks_and_uncertainty, matting_outputs
from medmat.models.registry import register_model
from medmat.uncertainty import lesion_uncertainty

#: Constructor presets (kwargs of :class:`RegionAwareMatting`). ``paper``: the Prob. U-Net of the
#: Medical Matting paper with a Matting U-Net of 32/64/128 channels (the paper gives no widths);
#: ``lite``: the Prob. U-Net of the core ``lite`` config and a Matting U-Net of about its cost.
PRESETS: dict[str, dict] = {
    "paper": {"unet_filters": (32, 64, 128, 192), "latent_dim": 2, "widths": (32, 64, 128), "implicit_channels": 32},
    "lite": {"unet_filters": (16, 32, 64, 96), "latent_dim": 2, "widths": (32, 64, 64), "implicit_channels": 16},
}



class MattingUNet(nn.Module):
    """Matting U-Net with an implicit decoder: (image, latent features, uncertainty map) -> alpha logits.

    ``forward(image (B, C, H, W), latent_features (B, F, H, W), uncertainty (B, 1, H, W),
    queries (B, Hq, Wq, 2) | None)`` -> alpha logits (B, 1, Hq, Wq); ``queries=None`` reads the
    input's pixel grid (Hq, Wq = H, W).

    Args:
        image_channels: C.
        latent_channels: F, channels of the Prob. U-Net latent features.
        widths: channels of the propagation units, finest first (at least ``scales`` values).
        scales: how many scales the decoder fuses (1, 2 or 3 in the paper): F^1 at H x W, F^2 at
            H/2 x W/2, F^3 at H/4 x W/4.
        decoder: "region_aware", "local_ensemble" or "bilinear".
        offset_kernel: k of the k x k codes every query decodes (2 in the paper).
        implicit_channels: width of the implicit MLPs and of the output block.
        use_uncertainty_map: concatenate the map to the input of each unit.
        blocks_per_unit: residual blocks per unit (3, as the core model).
        decoder_path: add a U-Net decoder path: from the coarsest map up, each finer map is
            refined by one residual block over [its encoder map; the coarser decoder map
            upsampled bilinearly; the uncertainty map], and the implicit decoder reads these
            decoder maps instead of the encoder's. Without it the finest map F^1 has seen only
            one unit at full resolution, so the fine alpha rests on shallow features.
        decoder_activation: hidden activation of the implicit decoder (relu | leaky_relu).
    """

    def __init__(
        self,
        image_channels: int,
        latent_channels: int,
        widths: Sequence[int] = (32, 64, 128),
        scales: int = 3,
        decoder: str = "region_aware",
        offset_kernel: int = 2,
        implicit_channels: int = 32,
        use_uncertainty_map: bool = True,
        blocks_per_unit: int = 3,
        decoder_path: bool = False,
        decoder_activation: str = "relu",
    ):
        super().__init__()
        if not 1 <= scales <= len(widths):
            raise ValueError(f"scales must be in 1..{len(widths)} (one width per scale), got {scales}")
        self.use_uncertainty_map = use_uncertainty_map
        extra = 1 if use_uncertainty_map else 0
        widths = tuple(widths[:scales])
        inputs = (image_channels + latent_channels,) + widths[:-1]
        self.units = nn.ModuleList(
            residual_stage(channels + extra, width, blocks_per_unit) for channels, width in zip(inputs, widths)
        )
        self.attention = ChannelAttention(widths[0])
        # up_units[s] refines scale s from [F^s; up(D^{s+1}); map]; the coarsest map is its own D.
        self.up_units = nn.ModuleList(
            residual_stage(widths[level] + widths[level + 1] + extra, widths[level], 1)
            for level in range(len(widths) - 1)
        ) if decoder_path else None
        # ceil_mode keeps odd sizes working, as in the Prob. U-Net.
        self.downsample = nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True)
        self.decoder = MultiScaleImplicitDecoder(widths, implicit_channels, decoder, offset_kernel, decoder_activation)

    def encode(
        self, image: torch.Tensor, latent_features: torch.Tensor, uncertainty: torch.Tensor
    ) -> list[torch.Tensor]:
        """The feature maps F^1 .. F^scales, finest first: (B, widths[s], H / 2^s, W / 2^s)."""
        features, uncertainty_maps = [], []
        x = cat_channels([image, latent_features])
        for level, unit in enumerate(self.units):
            if level > 0:
                x, uncertainty = self.downsample(x), self.downsample(uncertainty)
            uncertainty_maps.append(uncertainty)
            x = unit(with_map(x, uncertainty, self.use_uncertainty_map))
            if level == 0:
                x = self.attention(x)
            features.append(x)
        if self.up_units is not None:
            features = self._decode(features, uncertainty_maps)
        return features

    def _decode(self, features: list[torch.Tensor], uncertainty_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """The decoder path's maps D^1 .. D^s, finest first, with the shapes of ``features``."""
        decoded = [features[-1]]
        for level in range(len(features) - 2, -1, -1):
            coarser = F.interpolate(decoded[0], size=features[level].shape[-2:], mode="bilinear", align_corners=False)
            x = cat_channels([features[level], coarser])
            decoded.insert(0, self.up_units[level](with_map(x, uncertainty_maps[level], self.use_uncertainty_map)))
        return decoded

    def forward(
        self,
        image: torch.Tensor,
        latent_features: torch.Tensor,
        uncertainty: torch.Tensor,
        queries: torch.Tensor | None = None,
    ) -> torch.Tensor:
        features = self.encode(image, latent_features, uncertainty)
        if queries is None:
            queries = query_grid(*image.shape[-2:], batch=image.shape[0], device=image.device, dtype=image.dtype)
        return self.decoder(features, queries)


def _output_size(output_size: Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` of positive ints; MedmatError otherwise (it comes from the command line)."""
    return positive_ints("output size (H, W)", output_size, 2)


@register_model("region_aware_matting")
class RegionAwareMatting(MattingModel):
    """Prob. U-Net + uncertainty map + Matting U-Net with a region-aware implicit decoder.

    Args:
        in_channels: image channels (1 greyscale, 3 colour).
        widths: channels of the Matting U-Net's propagation units, finest first.
        implicit_channels: width of the implicit MLPs ``f_theta`` and of the output block.
        decoder: "region_aware" (Eq. 2), "local_ensemble" (Eq. 1) or "bilinear" (baseline).
        scales: feature scales fused by Eq. 3 (1, 2 or 3).
        offset_kernel: k, the k x k codes each query decodes (1, 2 or 3; paper 2).
        use_uncertainty_map: False drops the uncertainty map from the Matting U-Net's inputs.
        decoder_path: a U-Net decoder path before the implicit decoder (see :class:`MattingUNet`).
        decoder_activation: hidden activation of the implicit decoder's MLPs: "relu" (the paper's)
            or "leaky_relu" (slope 0.1; no unit can die, see
            :data:`~medmat.models.implicit_decoder.ACTIVATIONS`).
        unet_filters, latent_dim, num_fcomb_convs, batch_norm, fcomb_init: the Prob. U-Net, as in
            :class:`~medmat.models.medical_matting.MedicalMatting`.
        num_samples: N, score maps sampled per image for the uncertainty map (paper 8).
        matting_latent: "sample", "mean" or "prior_mean", the Prob. U-Net code whose features the
            Matting U-Net reads, as in :class:`~medmat.models.medical_matting.MedicalMatting`.

    ``forward(batch)`` takes "image" (B, C, H, W) in [0, 1], and in training "pseudo_mask"
    (B, 1, H, W) in {0, 1}; it returns the outputs of the core model, at the input size, so the
    "medical_matting" criterion trains it unchanged. An optional "output_size" (B, 2) int64 (the
    same (H', W') in every row: LIIF-style training, ``data.model_input_size``, and prediction at
    any size) reads "alpha", "alpha_logits" and "lesion_uncertainty" at (H', W') instead (the
    implicit decoders read the H' x W' pixel centres; the "bilinear" baseline resizes its alpha):
        "alpha" (B, 1, H, W) in [0, 1] and "alpha_logits" (B, 1, H, W);
        "uncertainty_map" (B, 1, H, W) in [0, ln 2], nats (Eq. 4 of Medical Matting);
        "lesion_uncertainty" (B, 1, H, W) in [0, ln 2], nats, binary entropy of alpha, detached;
        "sample_masks" (B, N, H, W) in [0, 1], the sampled score maps;
        "mask_logits" (B, 1, H, W); "kl" (B,) in training (or in eval with "pseudo_mask").
    """

    def __init__(
        self,
        in_channels: int = 1,
        widths: Sequence[int] = PRESETS["paper"]["widths"],
        implicit_channels: int = PRESETS["paper"]["implicit_channels"],
        decoder: str = "region_aware",
        scales: int = 3,
        offset_kernel: int = 2,
        use_uncertainty_map: bool = True,
        decoder_path: bool = False,
        decoder_activation: str = "relu",
        # The Prob. U-Net, as Medical Matting's.
        unet_filters: Sequence[int] = PRESETS["paper"]["unet_filters"],
        latent_dim: int = PRESETS["paper"]["latent_dim"],
        num_fcomb_convs: int = 4,
        batch_norm: bool = True,
        fcomb_init: str = "orthogonal",
        num_samples: int = 8,
        matting_latent: str = "sample",
    ):
        super().__init__()
        (in_channels,) = positive_ints("in_channels", in_channels, 1)
        unet_filters = positive_ints("unet_filters", unet_filters)
        (latent_dim,) = positive_ints("latent_dim", latent_dim, 1)
        widths = positive_ints("widths", widths)
        (implicit_channels,) = positive_ints("implicit_channels", implicit_channels, 1)
        (self.num_samples,) = positive_ints("num_samples", num_samples, 1)
        (offset_kernel,) = positive_ints("offset_kernel", offset_kernel, 1)
        (scales,) = positive_ints("scales", scales, 1)
        if decoder not in DECODERS:
            raise MedmatError(f"model option decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        if decoder_activation not in ACTIVATIONS:
            raise MedmatError(
                f"model option decoder_activation must be one of {', '.join(ACTIVATIONS)}, got {decoder_activation!r}"
            )
        if scales > len(widths):
            raise MedmatError(f"model option scales must be <= {len(widths)} (one width per scale), got {scales}")
        if num_fcomb_convs < 2:
            raise MedmatError(f"model option num_fcomb_convs must be >= 2, got {num_fcomb_convs}")

        self.prob_unet = ProbabilisticUNet(
            in_channels, unet_filters, latent_dim, num_fcomb_convs, batch_norm, fcomb_init, matting_latent
        )
        self.matting_net = MattingUNet(
            in_channels,
            self.prob_unet.latent_channels,
            widths,
            scales,
            decoder,
            offset_kernel,
            implicit_channels,
            use_uncertainty_map,
            decoder_path=bool(decoder_path),
            decoder_activation=decoder_activation,
        )
        self.spec = ModelSpec(
            in_channels=in_channels,
            gives=("alpha", "alpha_logits", "lesion_uncertainty", *PROB_UNET_OUTPUTS),
            size_multiple=self.prob_unet.size_multiple,
            resolution_free=True,
        )

    def alpha_features_layer(self) -> nn.Module | None:
        # The output block's last convolution: its input are the decoder's per-query features.
        return self.matting_net.decoder.output_block[2]

    @property
    def decoder_kind(self) -> str:
        """The decoder option: "region_aware", "local_ensemble" or "bilinear"."""
        return self.matting_net.decoder.kind

    def _run(
        self,
        image: torch.Tensor,
        pseudo_mask: torch.Tensor | None,
        num_samples: int,
        queries: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        masks = masks_and_uncertainty(self.prob_unet, image, pseudo_mask, num_samples)
        alpha_logits = self.matting_net(image, masks["latent_features"], masks["uncertainty_map"], queries)
        return matting_outputs(masks, alpha_logits)

    def _queries(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor | None:
        """The decoder's queries for an output of ``size``: None (the input's grid) for the input's
        own size and for the bilinear decoder, whose alpha is resized instead."""
        if size == tuple(image.shape[-2:]) or self.decoder_kind == "bilinear":
            return None
        return query_grid(*size, batch=image.shape[0], device=image.device, dtype=image.dtype)

    def _read_alpha_at(self, outputs: dict[str, torch.Tensor], size: tuple[int, int]) -> None:
        """Give the bilinear decoder's outputs the output ``size`` (in place): alpha and its logits
        upsampled bilinearly (the baseline of the resolution-free comparison), the entropy of that alpha."""
        if tuple(outputs["alpha"].shape[-2:]) != size:
            for key in ("alpha", "alpha_logits"):
                outputs[key] = F.interpolate(outputs[key], size=size, mode="bilinear", align_corners=False)
            outputs["lesion_uncertainty"] = lesion_uncertainty(outputs["alpha"].detach())

    def forward(self, batch: dict[str, torch.Tensor], num_samples: int | None = None) -> dict[str, torch.Tensor]:
        if self.training and "pseudo_mask" not in batch:
            raise ValueError("RegionAwareMatting needs batch['pseudo_mask'] in training mode (posterior net)")
        image = batch["image"]
        size = tuple(image.shape[-2:])
        if "output_size" in batch:
            # The alpha is read at the requested size; the masks and the uncertainty map stay at
            # the input's (the engine's prediction resizes them when it returns them).
            size = _output_size(batch["output_size"].reshape(-1, 2)[0].tolist())
        outputs = self._run(image, batch.get("pseudo_mask"), num_samples or self.num_samples, self._queries(image, size))
        self._read_alpha_at(outputs, size)
        return outputs

    @torch.no_grad()
    def code_positions(self, image: torch.Tensor, points: torch.Tensor) -> list[torch.Tensor]:
        """Where the implicit decoder reads its codes for a few query points (Table 2, middle).

        Uses the prior's first latent sample, as an eval-mode forward does for the alpha matte.

        Args:
            image: (B, C, H, W) float32 in [0, 1].
            points: (Q, 2) float query positions as pixel (row, col) of the image.

        Returns:
            One (B, Q, P, 2) tensor per scale, finest first: the P = k * k code positions of
            each query as pixel (row, col) of the image (the learned offsets included; the local
            ensemble gives the nearest codes). The mode of the module is restored.

        Raises:
            ValueError: for the "bilinear" decoder, which reads no codes.
        """
        size = image.shape[-2:]
        queries = pixels_to_normalized(points.to(image), size)[None, None].expand(image.shape[0], 1, -1, 2)
        was_training = self.training
        self.eval()
        try:
            masks = masks_and_uncertainty(self.prob_unet, image, None, self.num_samples)
            features = self.matting_net.encode(image, masks["latent_features"], masks["uncertainty_map"])
            positions = self.matting_net.decoder.code_positions(features, queries)
        finally:
            self.train(was_training)
        return [normalized_to_pixels(level[:, 0], size) for level in positions]
