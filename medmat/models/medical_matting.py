"""Medical Matting (Wang et al., 2023, §III): Prob. U-Net masks -> uncertainty map -> alpha matte.

The mask generator (:class:`~medmat.models.prob_unet.ProbabilisticUNet`) samples N score maps;
their mean's entropy is the *uncertainty map* (Eq. 4), a learned soft trimap; the matting
network predicts the alpha matte from the image, the Prob. U-Net's latent features and the
uncertainty map. Sizes and wiring follow the paper and the authors' release:

- matting network: three propagation units of three residual blocks; CBAM channel attention
  between units 1 and 2; the uncertainty map concatenated to the input of every unit (the
  network input is image + latent features + uncertainty map); an output block of two 3x3
  convolutions (+BN+ReLU between them) giving alpha logits, through a sigmoid. Unit 1 has
  ``matting_channels[0]`` channels (paper 32), units 2-3 ``matting_channels[1]`` (paper 128,
  "scale_ratio 4" in the release); the output block narrows back to ``matting_channels[0]``.
- in training the N score maps (default 8, §IV.A) are **posterior** samples (conditioned on the
  pseudo mask), as in the authors' release; at inference they are prior samples. The uncertainty
  map is not detached: the matting losses reach the U-Net and Fcomb through it, as in the
  release.

Ablations (Table V): ``use_matting_net=False`` is "Prob. U-Net alone" (alpha = mean of the N
sampled score maps; no ``alpha_logits`` output, so the criterion trains the masks only);
``use_uncertainty_map=False`` drops the uncertainty map from the matting network's inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medmat.errors import MedmatError
from medmat.models.blocks import ChannelAttention, cat_channels, conv3x3, positive_ints, residual_stage, with_map
from medmat.models.contract import MattingModel, ModelSpec
from medmat.models.prob_unet import PROB_UNET_OUTPUTS, ProbabilisticUNet, masks_and_uncertainty, matting_outputs
from medmat.models.registry import register_model

#: Constructor presets (kwargs of :class:`MedicalMatting`). ``paper``: the published sizes;
#: ``lite``: small enough to train Brain-growth folds on a 2-core CPU in minutes.
PRESETS: dict[str, dict] = {
    "paper": {"unet_filters": (32, 64, 128, 192), "latent_dim": 2, "matting_channels": (32, 128)},
    "lite": {"unet_filters": (16, 32, 64, 96), "latent_dim": 2, "matting_channels": (16, 16)},
}


#: The activations :class:`MattingNetwork` can put before its last convolution.
OUTPUT_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),
}


class MattingNetwork(nn.Module):
    """The matting network of Medical Matting (§III.C, Fig. 4).

    ``forward(image (B, C, H, W), latent_features (B, F, H, W), uncertainty_map (B, 1, H, W))``
    -> alpha logits (B, 1, H, W). With ``use_uncertainty_map=False`` the map is ignored.

    Args:
        image_channels: C.
        latent_channels: F, channels of the Prob. U-Net latent features.
        channels: (width of unit 1, width of units 2 and 3).
        use_uncertainty_map: concatenate the map to the input of each propagation unit.
        blocks_per_unit: residual blocks per propagation unit (3 in the paper).
        output_activation: the activation before the last convolution (:data:`OUTPUT_ACTIVATIONS`).
            "relu" (the paper's) gives the convolution non-negative features: once none of its
            weights is positive, the logit cannot exceed its bias and alpha stays below
            sigmoid(bias) everywhere, and no gradient reaches a zero feature to undo it.
            "leaky_relu" (slope 0.1) keeps a gradient there.
    """

    def __init__(
        self,
        image_channels: int,
        latent_channels: int,
        channels: Sequence[int] = (32, 128),
        use_uncertainty_map: bool = True,
        blocks_per_unit: int = 3,
        output_activation: str = "relu",
    ):
        super().__init__()
        narrow, wide = channels
        self.use_uncertainty_map = use_uncertainty_map
        extra = 1 if use_uncertainty_map else 0
        self.unit1 = residual_stage(image_channels + latent_channels + extra, narrow, blocks_per_unit)
        self.attention = ChannelAttention(narrow)
        self.unit2 = residual_stage(narrow + extra, wide, blocks_per_unit)
        self.unit3 = residual_stage(wide + extra, wide, blocks_per_unit)
        self.output_block = nn.Sequential(
            conv3x3(wide, narrow, bias=False), nn.BatchNorm2d(narrow), OUTPUT_ACTIVATIONS[output_activation](),
            conv3x3(narrow, 1),
        )

    def forward(self, image: torch.Tensor, latent_features: torch.Tensor, uncertainty: torch.Tensor) -> torch.Tensor:
        x = self.unit1(with_map(cat_channels([image, latent_features]), uncertainty, self.use_uncertainty_map))
        x = self.attention(x)
        x = self.unit2(with_map(x, uncertainty, self.use_uncertainty_map))
        x = self.unit3(with_map(x, uncertainty, self.use_uncertainty_map))
        return self.output_block(x)


@register_model("medical_matting")
class MedicalMatting(MattingModel):
    """Prob. U-Net + uncertainty map + matting network, trained end to end.

    Args:
        in_channels: image channels (1 greyscale, 3 colour).
        unet_filters: Prob. U-Net filters per level (paper 32, 64, 128, 192).
        latent_dim: Prob. U-Net latent size (the paper's text gives none; the authors' released
            configs use 2, Kohl et al. 6).
        num_fcomb_convs: 1x1 convolutions in Fcomb.
        batch_norm: batch norm in the U-Net.
        fcomb_init: Fcomb's initialisation (:data:`medmat.models.prob_unet.FCOMB_INITS`).
        matting_channels: (unit 1 width, units 2-3 width) of the matting network (paper 32, 128).
        use_matting_net: False = "Prob. U-Net alone" ablation.
        use_uncertainty_map: False = matting network without the uncertainty map.
        num_samples: N, score maps sampled per image for the uncertainty map (paper 8).
        matting_latent: "sample" (the paper's), "mean" (the prior's mean code at prediction only)
            or "prior_mean" (the prior's mean code in training too): the Prob. U-Net code whose
            features the matting network reads (:class:`~medmat.models.prob_unet.ProbabilisticUNet`).
        matting_output_activation: the matting network's activation before its last convolution
            (:class:`MattingNetwork`'s ``output_activation``): "relu" (the paper's) or "leaky_relu".

    ``forward(batch, num_samples=None)`` takes "image" (B, C, H, W) in [0, 1], and in training
    "pseudo_mask" (B, 1, H, W) in {0, 1}; it draws ``num_samples`` masks (None: the configured N;
    prior samples in eval mode, posterior samples in training) and returns float32 tensors:
        "alpha" (B, 1, H, W) in [0, 1];
        "alpha_logits" (B, 1, H, W), only with the matting network (the criterion trains alpha
            only when it is present);
        "uncertainty_map" (B, 1, H, W) in [0, ln 2], nats (Eq. 4);
        "lesion_uncertainty" (B, 1, H, W) in [0, ln 2], nats, binary entropy of alpha (Eq. 2),
            detached;
        "sample_masks" (B, N, H, W) in [0, 1], the sampled score maps;
        "mask_logits" (B, 1, H, W): the mask trained by cross-entropy (training: reparameterised
            posterior sample; eval: prior sample 0);
        "kl" (B,): KL(posterior || prior) per image, in training, or in eval when
            "pseudo_mask" is in the batch.
        "kl_prior" (B,): in training, the same KL with the posterior held fixed (its gradient
            reaches only the prior net; ``loss.prior_kl_weight``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        unet_filters: Sequence[int] = PRESETS["paper"]["unet_filters"],
        latent_dim: int = PRESETS["paper"]["latent_dim"],
        num_fcomb_convs: int = 4,
        batch_norm: bool = True,
        fcomb_init: str = "orthogonal",
        matting_channels: Sequence[int] = PRESETS["paper"]["matting_channels"],
        use_matting_net: bool = True,
        use_uncertainty_map: bool = True,
        num_samples: int = 8,
        matting_latent: str = "sample",
        matting_output_activation: str = "relu",
    ):
        super().__init__()
        (in_channels,) = positive_ints("in_channels", in_channels, 1)
        unet_filters = positive_ints("unet_filters", unet_filters)
        (latent_dim,) = positive_ints("latent_dim", latent_dim, 1)
        matting_channels = positive_ints("matting_channels", matting_channels, 2)
        (self.num_samples,) = positive_ints("num_samples", num_samples, 1)
        if num_fcomb_convs < 2:
            raise MedmatError(f"model option num_fcomb_convs must be >= 2, got {num_fcomb_convs}")
        if matting_output_activation not in OUTPUT_ACTIVATIONS:
            raise MedmatError(f"model option matting_output_activation must be one of "
                              f"{', '.join(OUTPUT_ACTIVATIONS)}, got {matting_output_activation!r}")

        self.prob_unet = ProbabilisticUNet(
            in_channels, unet_filters, latent_dim, num_fcomb_convs, batch_norm, fcomb_init, matting_latent
        )
        self.matting_net: MattingNetwork | None = None
        if use_matting_net:
            self.matting_net = MattingNetwork(
                in_channels, self.prob_unet.latent_channels, matting_channels, use_uncertainty_map,
                output_activation=matting_output_activation,
            )
        self.spec = ModelSpec(
            in_channels=in_channels,
            gives=("alpha", *(("alpha_logits",) if use_matting_net else ()), "lesion_uncertainty", *PROB_UNET_OUTPUTS),
            size_multiple=self.prob_unet.size_multiple,
        )

    def alpha_features_layer(self) -> nn.Module | None:
        # The output block's last convolution: its input are the matting network's final features.
        return None if self.matting_net is None else self.matting_net.output_block[3]

    def _run(self, image: torch.Tensor, pseudo_mask: torch.Tensor | None, num_samples: int) -> dict[str, torch.Tensor]:
        masks = masks_and_uncertainty(self.prob_unet, image, pseudo_mask, num_samples)
        if self.matting_net is None:
            return matting_outputs(masks, None)
        return matting_outputs(masks, self.matting_net(image, masks["latent_features"], masks["uncertainty_map"]))

    def forward(self, batch: dict[str, torch.Tensor], num_samples: int | None = None) -> dict[str, torch.Tensor]:
        if self.training and "pseudo_mask" not in batch:
            raise ValueError("MedicalMatting needs batch['pseudo_mask'] in training mode (posterior net)")
        return self._run(batch["image"], batch.get("pseudo_mask"), num_samples or self.num_samples)
