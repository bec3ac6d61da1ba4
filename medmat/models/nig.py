"""dugMatting's NIG output and user-map input for any medmat model (Wu et al., 2023, §3.2, §3.5).

``build_model("nig", base={"name": "medical_matting", ...}, in_channels=1)`` wraps a registered
model (the *base*, built through the registry):

- **user map input**: the user map U (B, 1, H, W) in {-1, 0, 0.5, 1}
  (:mod:`medmat.data.user_maps`) is concatenated to the image, and the base is built with
  ``in_channels + 1``: every medmat model takes ``in_channels``, so no base needs editing, and the
  map reaches the base's first layer as the paper's ``F_θ(x | U)`` does. Without U in the batch the
  map is empty (all 0: "no interaction"); in training mode the wrapper draws random maps from the
  batch's ground-truth alpha (App. B.1) unless the batch brings its own ``"user_map"``.
- **NIG head** (:class:`NIGHead`): four independent per-pixel linear layers (1x1 convolutions)
  with sigmoid, softplus, softplus + 1 and softplus give γ, ω, α, β, "by four independent linear
  layers with shared features" (§3.2).

The shared features. The paper extends the *last layer* of the matting network; medmat reads
the input of the base's last alpha layer through a forward pre-hook, so the head sits on the same
features as the base's own alpha layer without changing the base's code. Every model declares
that layer (:meth:`medmat.models.contract.MattingModel.alpha_features_layer`; for AdaMatting's
recurrent readout the last call wins, i.e. the final propagation step). A base that declares none
(e.g. Medical Matting's "Prob. U-Net alone" ablation) gets a small convolutional stem over
[image, U, base alpha] instead (``features="stem"`` forces it; any module path can be given).
Next to the features, the head reads one more channel: the base's alpha logit ("alpha_logits"
when the base outputs it, else the logit of its clamped "alpha"). γ's layer is initialised to copy
that channel, so a freshly wrapped model predicts exactly its base's alpha, and the base's own
alpha layer stays in the computation graph (trained through γ; no unused parameters under DDP).

Outputs: the base's outputs (its alpha renamed "base_alpha"; "uncertainty_map", "sample_masks",
"mask_logits", "kl", "trimap_logits"... unchanged) plus
    "alpha" = γ (B, 1, H, W) in [0, 1];
    "nig_gamma", "nig_omega", "nig_alpha", "nig_beta" (B, 1, H, W): γ, ω > 0, α > 1, β > 0;
    "epistemic" Var[μ] = β / (ω (α - 1)), "aleatoric" E[σ²] = β / (α - 1),
    "aleatoric_variance" Var[σ²] = β² / ((α - 1)² (α - 2)) (+inf where α <= 2), all (B, 1, H, W);
    "lesion_uncertainty" (B, 1, H, W): binary entropy of γ in nats, detached.

``forward(batch, num_samples)`` hands ``num_samples`` to the base. The wrapper takes what its
base takes plus "user_map", and declares it in its :class:`~medmat.models.contract.ModelSpec`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medmat.data.user_maps import PATCH_COUNT_P, PATCH_SIZE, RandomUserMapd, random_user_maps
from medmat.errors import MedmatError
from medmat.models.blocks import cat_channels, conv1x1, conv_norm_relu, positive_ints
from medmat.models.contract import NIG_OUTPUTS, MattingModel, ModelSpec
from medmat.models.registry import build_base_model, register_model
from medmat.uncertainty import lesion_uncertainty
from medmat.uncertainty.nig import NIG, nig_moments

#: What the wrapper adds to its base's outputs.
NIG_MODEL_OUTPUTS = ("base_alpha", *NIG_OUTPUTS, "epistemic", "aleatoric", "aleatoric_variance", "lesion_uncertainty")
#: Default floor added to ω, α - 1 and β: softplus underflows to exactly 0 in float32 below about
#: -88, and the NLL and the moments divide by these.
MIN_EVIDENCE = 1e-6
#: Clamp of the base alpha before its logit (when the base gives no logits): logit(1e-4) = -9.2.
LOGIT_EPS = 1e-4


class NIGHead(nn.Module):
    """Four independent 1x1 convolutions over shared features -> NIG(γ, ω, α, β).

    ``forward(features (B, C, H, W))`` -> :class:`~medmat.uncertainty.nig.NIG` of (B, 1, H, W)
    tensors: ``γ = sigmoid(·)`` in [0, 1], ``ω = softplus(·) + eps``, ``α = softplus(·) + 1 + eps``,
    ``β = softplus(·) + eps`` (§3.2's activations; eps keeps them strictly valid in float32).

    Args:
        in_channels: C.
        min_evidence: eps (>= 0).
    """

    def __init__(self, in_channels: int, min_evidence: float = MIN_EVIDENCE):
        super().__init__()
        if not min_evidence >= 0:
            raise MedmatError(f"model option min_evidence must be >= 0, got {min_evidence}")
        self.min_evidence = float(min_evidence)
        self.layers = nn.ModuleDict({name: conv1x1(in_channels, 1) for name in NIG._fields})

    def copy_channel_to_gamma(self, channel: int) -> None:
        """Initialise γ's layer to ``sigmoid(features[:, channel])`` (weight 1 there, 0 elsewhere, bias 0)."""
        with torch.no_grad():
            self.layers["gamma"].weight.zero_()
            self.layers["gamma"].weight[0, channel] = 1.0
            self.layers["gamma"].bias.zero_()

    def forward(self, features: torch.Tensor) -> NIG:
        eps = self.min_evidence
        # The activations run in float32 even under autocast: eps is below bfloat16's resolution at 1.
        raw = {name: layer(features).float() for name, layer in self.layers.items()}
        return NIG(
            gamma=torch.sigmoid(raw["gamma"]),
            omega=F.softplus(raw["omega"]) + eps,
            alpha=F.softplus(raw["alpha"]) + 1.0 + eps,
            beta=F.softplus(raw["beta"]) + eps,
        )


def nig_from_outputs(outputs: Mapping[str, torch.Tensor]) -> NIG:
    """The :class:`~medmat.uncertainty.nig.NIG` held in a "nig" model's outputs (their "nig_*" keys)."""
    return NIG(*(outputs[key] for key in NIG_OUTPUTS))


@register_model("nig")
class NIGMatting(MattingModel):
    """A registered model with dugMatting's user-map input and NIG output (module docstring).

    Args:
        base: the base model's config section: ``{"name": registered name, **constructor kwargs}``
            without ``in_channels`` (the wrapper sets it).
        in_channels: image channels; the base gets ``in_channels + 1`` (the user map).
        features: "auto" (the layer the base declares by ``alpha_features_layer()``, else the
            stem), "stem", or the dotted path of a ``Conv2d``/``Linear`` of the base whose input
            to use.
        head_channels: width of the stem (used only without hooked features).
        random_user_maps: in training, draw App. B.1 user maps from the batch's "alpha" when the
            batch has no "user_map" (torch's global generator seeds the draw).
        user_map_patch_size, user_map_p: patch side and geometric parameter of those maps.
        min_evidence: floor of ω, α - 1 and β.
        detach_base: the head reads the base's features and alpha logit without passing its
            gradient back: the NIG likelihood then trains the head alone, and the base learns from
            its own criterion (``loss.base_alpha: true``) as it does without the head. With a
            Prob. U-Net base the likelihood's gradient otherwise reaches the mask generator
            through the latent features and stops the masks from learning (Brain-growth fold 0:
            Dice 0 after 60 epochs, against 0.73 for the plain model).

    ``forward(batch, num_samples=None)`` takes the base's batch plus an optional "user_map"
    (B, 1, H, W) in {-1, 0, 0.5, 1}; see the module docstring for the outputs.
    """

    def __init__(
        self,
        base: Mapping,
        in_channels: int = 1,
        features: str = "auto",
        head_channels: int = 16,
        random_user_maps: bool = True,
        user_map_patch_size: int = PATCH_SIZE,
        user_map_p: float = PATCH_COUNT_P,
        min_evidence: float = MIN_EVIDENCE,
        detach_base: bool = False,
    ):
        super().__init__()
        self.detach_base = bool(detach_base)
        (self.in_channels,) = positive_ints("in_channels", in_channels, 1)
        (head_channels,) = positive_ints("head_channels", head_channels, 1)
        (self.user_map_patch_size,) = positive_ints("user_map_patch_size", user_map_patch_size, 1)
        if not 0.0 < user_map_p <= 1.0:
            raise MedmatError(f"model option user_map_p must be in (0, 1], got {user_map_p}")
        self.user_map_p = float(user_map_p)
        self.random_user_maps = bool(random_user_maps)
        self.base = build_base_model(base, "nig", self.in_channels + 1)
        self.base_name = base["name"]

        self._captured: torch.Tensor | None = None
        self._channels_last = False
        layer = self._feature_layer(features)
        self.feature_layer = None if layer is None else self._layer_name(layer)
        self.stem: nn.Module | None = None
        if layer is None:
            self.stem = nn.Sequential(
                conv_norm_relu(self.in_channels + 2, head_channels), conv_norm_relu(head_channels, head_channels)
            )
            feature_channels = head_channels
        else:
            self._channels_last = isinstance(layer, nn.Linear)
            feature_channels = layer.in_features if self._channels_last else layer.in_channels
            layer.register_forward_pre_hook(self._capture)
        # The last input channel of the head is the base's alpha logit.
        self.head = NIGHead(feature_channels + 1, min_evidence)
        self.head.copy_channel_to_gamma(feature_channels)
        base_spec = self.base.spec
        self.spec = ModelSpec(
            in_channels=self.in_channels,
            takes=(*base_spec.takes, "user_map"),
            requires=base_spec.requires,
            gives=tuple(dict.fromkeys((*base_spec.gives, *NIG_MODEL_OUTPUTS))),
            size_multiple=base_spec.size_multiple,
        )

    def _feature_layer(self, features: str) -> nn.Module | None:
        """The hooked layer of the base, or None for the stem."""
        if features == "stem":
            return None
        if features == "auto":
            return self.base.alpha_features_layer()
        layer = dict(self.base.named_modules()).get(features)
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            raise MedmatError(
                f"model option features: {features!r} is not a Conv2d or Linear layer of {self.base_name!r}"
            )
        return layer

    def _layer_name(self, layer: nn.Module) -> str:
        return next(name for name, module in self.base.named_modules() if module is layer)

    def base_model(self) -> MattingModel:
        return self.base

    def training_transform(self):
        """dugMatting's random training user maps (App. B.1), drawn by the dataset, or None."""
        if not self.random_user_maps:
            return None
        return RandomUserMapd(patch_size=self.user_map_patch_size, p=self.user_map_p)

    def _capture(self, module: nn.Module, inputs: tuple) -> None:
        self._captured = inputs[0]

    def user_map_for(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The batch's "user_map", a random training map (App. B.1), or an empty map: (B, 1, H, W)."""
        image = batch["image"]
        expected = (image.shape[0], 1, *image.shape[-2:])
        user_map = batch.get("user_map")
        if user_map is not None:
            if tuple(user_map.shape) != expected:
                raise ValueError(f"user_map must have shape {expected}, got {tuple(user_map.shape)}")
            return user_map.to(image)
        if self.training and self.random_user_maps and batch.get("alpha") is not None:
            # One torch draw seeds the numpy maps, so the engine's torch seeding fixes them.
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            maps = random_user_maps(batch["alpha"], rng, patch_size=self.user_map_patch_size, p=self.user_map_p)
            return maps.to(image)
        return image.new_zeros(expected)

    def _shared_features(
        self, image: torch.Tensor, user_map: torch.Tensor, base_alpha: torch.Tensor
    ) -> torch.Tensor:
        """(B, F, H, W) features at the alpha's size: hooked from the base, or the stem's."""
        if self.stem is not None:
            return self.stem(torch.cat([image, user_map, base_alpha], dim=1))
        features, self._captured = self._captured, None
        if features is None:
            raise RuntimeError(f"layer {self.feature_layer!r} of {self.base_name!r} did not run in the forward pass")
        if self._channels_last:
            features = features.permute(0, 3, 1, 2)
        if features.shape[-2:] != base_alpha.shape[-2:]:
            features = F.interpolate(features, size=base_alpha.shape[-2:], mode="bilinear", align_corners=False)
        return features

    def forward(self, batch: dict[str, torch.Tensor], num_samples: int | None = None) -> dict[str, torch.Tensor]:
        image = batch["image"]
        user_map = self.user_map_for(batch)
        base_batch = {key: value for key, value in batch.items() if key != "user_map"}
        base_batch["image"] = torch.cat([image, user_map], dim=1)
        self._captured = None
        base_outputs = self.base(base_batch, num_samples)
        base_alpha = base_outputs["alpha"]
        logit = base_outputs.get("alpha_logits")
        if logit is None:
            logit = torch.logit(base_alpha.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS))
        if self.detach_base:
            # The stem (when there is one) belongs to the head and still learns.
            base_alpha_in, logit = base_alpha.detach(), logit.detach()
        else:
            base_alpha_in = base_alpha
        features = self._shared_features(image, user_map, base_alpha_in)
        if self.detach_base and self.stem is None:
            features = features.detach()
        nig = self.head(cat_channels([features, logit]))

        outputs = {key: value for key, value in base_outputs.items() if key != "alpha"}
        outputs["base_alpha"] = base_alpha
        outputs.update(zip(NIG_OUTPUTS, nig))
        outputs.update(nig_moments(nig))  # "alpha" (= γ), "epistemic", "aleatoric", "aleatoric_variance"
        outputs["lesion_uncertainty"] = lesion_uncertainty(nig.gamma.detach())
        return outputs
