"""Probabilistic U-Net (Kohl et al., 2018), the mask generator of Medical Matting (§III.A).

A U-Net computes deterministic features of the image; a *prior* net (image) and a *posterior*
net (image + mask) each encode the image into an axis-aligned Gaussian over a small latent
space; Fcomb, a stack of 1x1 convolutions, turns the U-Net features and one latent sample
(broadcast over the image) into mask logits. Different latent samples give different plausible
masks.

Layout follows the PyTorch implementation the Medical Matting authors built on (Knegt's
Probabilistic-Unet-Pytorch, as modified in their release): U-Net levels of three 3x3
convolutions (+ BN) with 2x2 average pooling down and bilinear upsampling up; prior and
posterior encoders with the same filters (three 3x3 conv + ReLU per level, no BN), averaged
over space and mapped by a 1x1 conv to the mean and log standard deviation; Fcomb with
``num_fcomb_convs`` 1x1 convolutions (ReLU between them).

**Latent features** handed to the matting network: the activation of Fcomb's last hidden layer
(after its ReLU, ``unet_filters[0]`` channels at full resolution), i.e. the U-Net's last
features already combined with the latent sample, one layer before the mask logits. This is what
the authors' release feeds the matting network (``Fcomb.forward`` returns it as ``latent``).
"""

from __future__ import annotations

import math

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Independent, Normal, kl_divergence

from medmat.errors import MedmatError
from medmat.models.blocks import cat_channels, conv1x1, conv_norm_relu
from medmat.uncertainty.entropy import lesion_uncertainty, uncertainty_map

#: Convolutions per U-Net / encoder level, as in Kohl et al.
CONVS_PER_LEVEL = 3


def _level(in_channels: int, out_channels: int, batch_norm: bool, downsample: bool) -> nn.Sequential:
    """One resolution level: optional 2x2 average pooling, then three 3x3 conv (+BN) + ReLU."""
    layers: list[nn.Module] = []
    if downsample:
        # ceil_mode keeps odd-sized inputs working; the decoder resizes to the skip's size.
        layers.append(nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True))
    layers.append(conv_norm_relu(in_channels, out_channels, batch_norm))
    layers += [conv_norm_relu(out_channels, out_channels, batch_norm) for _ in range(CONVS_PER_LEVEL - 1)]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net without a classifier head: (B, C, H, W) -> features (B, filters[0], H, W), >= 0."""

    def __init__(self, in_channels: int, filters: Sequence[int], batch_norm: bool = True):
        super().__init__()
        self.down = nn.ModuleList(
            _level(in_channels if i == 0 else filters[i - 1], filters[i], batch_norm, downsample=i > 0)
            for i in range(len(filters))
        )
        self.up = nn.ModuleList(
            _level(filters[i + 1] + filters[i], filters[i], batch_norm, downsample=False)
            for i in reversed(range(len(filters) - 1))
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = []
        x = image
        for level in self.down:
            x = level(x)
            skips.append(x)
        skips.pop()  # the bottleneck output is x itself
        for level in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            x = level(cat_channels([x, skip]))
        return x


class AxisAlignedGaussianEncoder(nn.Module):
    """Convolutional encoder of an axis-aligned Gaussian: (B, C, H, W) -> N(mu, diag(sigma^2)).

    Used as the prior net (C = image channels) and the posterior net (C = image channels + 1,
    the mask concatenated). The distribution has batch shape (B,) and event shape (latent_dim,).
    """

    def __init__(self, in_channels: int, filters: Sequence[int], latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            *(
                _level(in_channels if i == 0 else filters[i - 1], filters[i], batch_norm=False, downsample=i > 0)
                for i in range(len(filters))
            )
        )
        self.to_mean_log_sigma = conv1x1(filters[-1], 2 * latent_dim)
        # Kohl et al.'s initialisation: a unit-normal bias spreads the initial means and scales,
        # so different latent samples give visibly different masks from the first step.
        nn.init.kaiming_normal_(self.to_mean_log_sigma.weight, mode="fan_in", nonlinearity="relu")
        nn.init.normal_(self.to_mean_log_sigma.bias)

    def forward(self, x: torch.Tensor) -> Independent:
        encoding = self.encoder(x).mean(dim=(2, 3), keepdim=True)
        mean_log_sigma = self.to_mean_log_sigma(encoding)[:, :, 0, 0]
        mean, log_sigma = mean_log_sigma.split(self.latent_dim, dim=1)
        return Independent(Normal(loc=mean, scale=torch.exp(log_sigma)), 1)


#: Initialisations of Fcomb's layers. "orthogonal": gain 1 everywhere, as Kohl et al.'s code;
#: each ReLU then halves the signal's power, so after three hidden layers the logits and their
#: gradients are small and the lesion is learnt slowly (one Brain-growth batch overfit from the
#: same U-Net: 70 Adam steps before the foreground passes 0.5, benchmarks/mask_learning_speed.py).
#: "orthogonal_relu": gain sqrt(2) (He et al.'s ReLU gain) on the layers followed by a ReLU keeps
#: the power: 1 step, as a plain 1x1 head. The packaged configs choose "orthogonal_relu"; the
#: constructors keep "orthogonal" so that runs whose config predates the option retrain as they did.
FCOMB_INITS = ("orthogonal", "orthogonal_relu")
#: Which code's Fcomb features the matting network reads (:class:`ProbabilisticUNet`).
MATTING_LATENTS = ("sample", "mean", "prior_mean")
#: Outputs of :func:`masks_and_uncertainty` that a model built on the Prob. U-Net passes on.
PROB_UNET_OUTPUTS = ("sample_masks", "uncertainty_map", "mask_logits", "kl", "kl_prior")


#: Values per row of Fcomb's first-layer broadcast add (two AVX-512 vectors of bfloat16).
ROW_VALUES = 64


class Fcomb(nn.Module):
    """1x1 convolutions combining U-Net features with a latent sample broadcast over the image.

    ``forward(features (B, F, H, W), z (B, N, L))`` -> ``(logits (B, N, H, W), latent_features
    (B, N, F, H, W))``: one foreground mask per latent sample, and the last hidden activation
    (>= 0) that produced it.

    The layers are ``nn.Linear`` (a 1x1 convolution is a per-pixel linear map) whose weights are
    applied as 1x1 convolutions to the samples' channels-last (B * N, F, H, W) view of the
    (B, N, H, W, F) activations, oneDNN's fast layout (``F.linear`` on the same memory was no
    faster, and a 1x1 ``Conv2d`` on the default layout slower). The first layer is split as
    ``W [f; z] = W_f f + W_z z``: the image part is computed once, not per sample.
    """

    def __init__(self, feature_channels: int, latent_dim: int, num_convs: int = 4, init: str = "orthogonal"):
        super().__init__()
        if init not in FCOMB_INITS:
            raise MedmatError(f"model option fcomb_init must be one of {', '.join(FCOMB_INITS)}, got {init!r}")
        if num_convs < 2:
            raise ValueError(f"Fcomb needs at least 2 convolutions (hidden + output), got {num_convs}")
        self.feature_channels = feature_channels
        self.combine = nn.Linear(feature_channels + latent_dim, feature_channels)
        self.hidden = nn.ModuleList(nn.Linear(feature_channels, feature_channels) for _ in range(num_convs - 2))
        self.to_logits = nn.Linear(feature_channels, 1)
        for module in self.modules():
            if isinstance(module, nn.Linear):  # orthogonal, as Kohl et al., to keep z's share of the signal
                followed_by_relu = module is not self.to_logits
                gain = math.sqrt(2.0) if init == "orthogonal_relu" and followed_by_relu else 1.0
                nn.init.orthogonal_(module.weight, gain=gain)
                nn.init.normal_(module.bias, std=1e-3)

    def forward(self, features: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight_features = self.combine.weight[:, : self.feature_channels]
        weight_z = self.combine.weight[:, self.feature_channels :]
        image_part = F.linear(features.permute(0, 2, 3, 1), weight_features)  # (B, H, W, F)
        sample_part = F.linear(z, weight_z, self.combine.bias)  # (B, N, F)
        (batch, height, width, channels), samples = image_part.shape, z.shape[1]
        # Added over rows of k pixels' channels (the sample part repeated k times), not of one
        # pixel's: bfloat16's vectorised loop needs 64 values a row, and over rows of F = 16 it ran
        # element by element (2.1 times slower forward + backward: benchmarks/layout_kernels.py).
        pixels = math.gcd(height * width, max(1, ROW_VALUES // channels))
        rows = image_part.reshape(batch, 1, height * width // pixels, pixels * channels)
        hidden = torch.relu(rows + sample_part.repeat(1, 1, pixels)[:, :, None, :])  # (B, N, H * W / k, k * F)
        x = hidden.view(batch * samples, height, width, channels).permute(0, 3, 1, 2)  # channels-last view
        for layer in self.hidden:
            x = torch.relu(F.conv2d(x, layer.weight[:, :, None, None], layer.bias))
        logits = F.conv2d(x, self.to_logits.weight[:, :, None, None], self.to_logits.bias)
        return logits.reshape(batch, samples, height, width), x.unflatten(0, (batch, samples))


def detached_gaussian(distribution: Independent) -> Independent:
    """An axis-aligned Gaussian (batch (B,), event (D,)) with its mean and scale cut from the graph."""
    base = distribution.base_dist
    return Independent(Normal(base.loc.detach(), base.scale.detach()), 1)


class ProbabilisticUNet(nn.Module):
    """Probabilistic U-Net: image (+ mask in training) -> sampled mask logits, KL, latent features.

    Args:
        in_channels: image channels (1 greyscale, 3 colour).
        filters: U-Net (and prior/posterior encoder) filters per level, e.g. (32, 64, 128, 192).
        latent_dim: size of the Gaussian latent space (Kohl et al. 6; the Medical Matting
            release uses 2).
        num_fcomb_convs: 1x1 convolutions in Fcomb (4 in both papers).
        batch_norm: batch norm in the U-Net (the Medical Matting release uses it).
        fcomb_init: Fcomb's initialisation, one of :data:`FCOMB_INITS`.
        matting_latent: whose Fcomb features "latent_features" (the matting network's input)
            are, one of :data:`MATTING_LATENTS`: "sample" (the paper's: the reparameterised
            posterior sample's in training, prior sample 0's in eval mode); "mean" (the same in
            training, the prior's mean code in eval mode: one more Fcomb pass, and a matte that
            does not change with the draw when the latent carries information; a run trained
            with "sample" can be predicted with "mean"); "prior_mean" (the prior's mean code in
            training too, so the matting loss never reaches the posterior: a posterior sample's
            code says which pseudo mask was drawn, which the matte should not depend on, and the
            matting loss would otherwise push the posterior to forget it).
    """

    def __init__(
        self,
        in_channels: int = 1,
        filters: Sequence[int] = (32, 64, 128, 192),
        latent_dim: int = 2,
        num_fcomb_convs: int = 4,
        batch_norm: bool = True,
        fcomb_init: str = "orthogonal",
        matting_latent: str = "sample",
    ):
        super().__init__()
        if matting_latent not in MATTING_LATENTS:
            raise MedmatError(f"model option matting_latent must be one of {', '.join(MATTING_LATENTS)}, got {matting_latent!r}")
        self.matting_latent = matting_latent
        self.unet = UNet(in_channels, filters, batch_norm)
        self.prior_net = AxisAlignedGaussianEncoder(in_channels, filters, latent_dim)
        self.posterior_net = AxisAlignedGaussianEncoder(in_channels + 1, filters, latent_dim)
        self.fcomb = Fcomb(filters[0], latent_dim, num_fcomb_convs, fcomb_init)

    @property
    def size_multiple(self) -> int:
        """Inputs of a multiple of this size pool evenly at every level (others are padded by the engine)."""
        return 2 ** (len(self.unet.down) - 1)

    @property
    def latent_channels(self) -> int:
        """Channels of the latent features handed to the matting network."""
        return self.fcomb.feature_channels

    def prior(self, image: torch.Tensor) -> Independent:
        """P(z | image): batch shape (B,), event shape (latent_dim,)."""
        return self.prior_net(image)

    def posterior(self, image: torch.Tensor, mask: torch.Tensor) -> Independent:
        """Q(z | image, mask), mask (B, 1, H, W) in {0, 1}: batch shape (B,), event (latent_dim,)."""
        return self.posterior_net(torch.cat([image, mask], dim=1))

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None, num_samples: int = 8) -> dict[str, torch.Tensor]:
        """Sample masks for ``image`` (B, C, H, W); ``mask`` (B, 1, H, W) is needed in training.

        Training mode: the posterior Q(z | image, mask) drives everything.
            "mask_logits" (B, 1, H, W): from one reparameterised posterior sample (trained by
                cross-entropy against ``mask``).
            "kl" (B,): analytic KL(Q || P) per image, >= 0.
            "kl_prior" (B,): the same value with Q held fixed: its gradient trains only the
                prior net (KL balancing: a loss can train the prior to follow the posterior
                faster than it pulls the posterior towards the prior).
            "latent_features" (B, F, H, W): Fcomb's hidden features for that same sample (for
                the prior's mean code with ``matting_latent="prior_mean"``).
            "sample_logits" (B, N, H, W): ``num_samples`` further posterior samples, drawn
                without reparameterisation as in the authors' release: their gradient reaches
                the U-Net and Fcomb, not the posterior net.
        Eval mode: everything comes from the prior P(z | image).
            "sample_logits" (B, N, H, W): ``num_samples`` prior samples.
            "mask_logits" (B, 1, H, W) and "latent_features" (B, F, H, W): those of sample 0
                (the features those of the prior's mean code unless ``matting_latent="sample"``).
            "kl" (B,): only when ``mask`` is given (for a validation loss).
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        features = self.unet(image)
        prior = self.prior(image)
        outputs: dict[str, torch.Tensor] = {}
        if self.training:
            if mask is None:
                raise ValueError("the Prob. U-Net needs the (pseudo) mask in training mode, for its posterior")
            posterior = self.posterior(image, mask)
            outputs["kl"] = kl_divergence(posterior, prior)
            outputs["kl_prior"] = kl_divergence(detached_gaussian(posterior), prior)
            mask_logits, latent_features = self.fcomb(features, posterior.rsample()[:, None])
            outputs["mask_logits"] = mask_logits
            if self.matting_latent == "prior_mean":
                outputs["latent_features"] = self._mean_features(features, prior)
            else:
                outputs["latent_features"] = latent_features[:, 0]
            outputs["sample_logits"], _ = self.fcomb(features, posterior.sample((num_samples,)).transpose(0, 1))
            return outputs
        if mask is not None:
            outputs["kl"] = kl_divergence(self.posterior(image, mask), prior)
        sample_logits, latent_features = self.fcomb(features, prior.sample((num_samples,)).transpose(0, 1))
        outputs["sample_logits"] = sample_logits
        outputs["mask_logits"] = sample_logits[:, :1]
        if self.matting_latent == "sample":
            outputs["latent_features"] = latent_features[:, 0]
        else:
            outputs["latent_features"] = self._mean_features(features, prior)
        return outputs

    def _mean_features(self, features: torch.Tensor, distribution: Independent) -> torch.Tensor:
        """Fcomb's hidden features (B, F, H, W) at the mean code of ``distribution``."""
        _, mean_features = self.fcomb(features, distribution.mean[:, None])
        return mean_features[:, 0]


def masks_and_uncertainty(
    prob_unet: ProbabilisticUNet, image: torch.Tensor, pseudo_mask: torch.Tensor | None, num_samples: int
) -> dict[str, torch.Tensor]:
    """The Prob. U-Net's outputs for ``image``, with its N score maps and their uncertainty map.

    Returns the dict of :meth:`ProbabilisticUNet.forward` with "sample_logits" replaced by
    "sample_masks" (B, N, H, W) = their sigmoid, plus "uncertainty_map" (B, 1, H, W), the entropy
    of the mean score map (Eq. 4 of Medical Matting), in nats.
    """
    outputs = prob_unet(image, pseudo_mask, num_samples)
    # float32 even under autocast: the uncertainty map and the losses read these probabilities.
    outputs["sample_masks"] = torch.sigmoid(outputs.pop("sample_logits").float())
    outputs["uncertainty_map"] = uncertainty_map(outputs["sample_masks"])
    return outputs


def matting_outputs(masks: dict[str, torch.Tensor], alpha_logits: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """A Prob. U-Net matting model's outputs: the masks' :data:`PROB_UNET_OUTPUTS` and the alpha.

    Args:
        masks: :func:`masks_and_uncertainty` of the image.
        alpha_logits: (B, 1, H', W') from the matting network, or None for the "Prob. U-Net
            alone" ablation (alpha = mean of the sampled score maps).

    Returns:
        The passed-on mask outputs, "alpha_logits" (when given), "alpha" in [0, 1] and
        "lesion_uncertainty" (its binary entropy in nats, detached).
    """
    outputs = {key: masks[key] for key in PROB_UNET_OUTPUTS if key in masks}
    if alpha_logits is None:
        outputs["alpha"] = masks["sample_masks"].mean(dim=1, keepdim=True)
    else:
        outputs["alpha_logits"] = alpha_logits.float()  # float32 even under autocast
        outputs["alpha"] = torch.sigmoid(outputs["alpha_logits"])
    outputs["lesion_uncertainty"] = lesion_uncertainty(outputs["alpha"].detach())
    return outputs
