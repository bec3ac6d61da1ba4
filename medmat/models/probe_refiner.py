"""Re-prediction with the user's alpha probes: any model's matte refined by a network that reads the clicks.

The fusion of :mod:`medmat.interaction.fusion` moves a matte by a smooth offset field, so it can
correct a region only coherently; pasting the answered levels pixel by pixel would do far more
(docs/interaction.md, the region oracles). :class:`ProbeRefiner` learns the per-pixel part: a
small U-Net reads the image, the base model's alpha logit, its uncertainty and the probe map
(:mod:`medmat.data.probe_maps`: the discs of the answered clicks and their levels), and adds an
offset to the base's logit,

    alpha = sigmoid(logit(base alpha) + refiner(image, base logit, uncertainty, probes)).

The refiner's last convolution starts at zero, so before training the wrapper returns the base's
alpha exactly; with ``identity_without_probes`` (the default) it does so after training too for an
image without probes: the offset is applied only once the user has answered, so the first matte a
user sees is the base's, and training draws at least one probe per image. (Trained to matte
without probes as well, the refiner learnt to undo the training perturbation, which a held-out
case does not have: Brain-growth fold 0's Table IV SAD rose from 0.471 to 0.507 before any click.) With ``freeze_base`` (the default) the base keeps the weights it was given (the
engine's ``train.init_from`` loads a trained run's into it), runs in eval mode without gradients,
and only the refiner learns: training is cheap, and the base's alpha is the one the user saw.

Training (docs/interaction.md):

- every training image gets random probes (1, 2, ... clicks, geometric; 0, 1, ... without
  ``identity_without_probes``, so that the network also mattes without probes), answered with the
  ground-truth alpha quantised to the five levels. ``training_probes="error"`` (the default) places them where the
  (perturbed) base alpha is wrong, drawn with probability proportional to the squared error, as
  the simulated user clicks the largest error; ``"band"`` places them uniformly in the ground
  truth's transition band (:class:`~medmat.data.probe_maps.RandomProbeMapd`, drawn by the dataset);
- a frozen base fits its own training cases better than a held-out case, so the refiner would
  rarely see an error to correct: the base logit it reads is perturbed by a random smooth offset
  (a global offset and a field drawn at 1/16 of the resolution, each ~ N(0, ``prior_noise``),
  scaled by ``0.25 + u / ln 2`` with u the uncertainty, so that confident pixels move least), the
  errors a held-out case shows. The loss trains the refined alpha against the ground truth;
- with ``iterative_probes`` = M > 0 (RITM's iterative sampling, Sofiiuk et al. 2022) a training
  batch adds 0..M more clicks (uniform), one at a time, each drawn where the refiner's own alpha
  with the clicks so far is wrong (refiner in eval mode, no gradient), as the simulated user
  clicks the refined matte's remaining error; the gradient step then reads all the clicks.

With ``train.cross_fit_from`` (:mod:`medmat.engine.cross_fit`) a training batch carries each case's
prediction by the base fold model that held it out ("held_out_base_alpha", "held_out_base_uncertainty"),
real held-out errors, which the refiner reads instead of running its own base (then
``prior_noise: 0`` is the natural setting). Evaluation and interaction run the base as always.

``forward(batch, num_samples=None)`` takes the base's batch plus an optional "probe_map" (B, 2,
H, W) (no probes when absent) and gives the base's outputs with "alpha" and "alpha_logits"
replaced by the refined ones, "base_alpha" the base's alpha, and "lesion_uncertainty" (the
binary entropy of the refined alpha) when the base gives one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medmat.data.probe_maps import (
    MAX_TRAINING_PROBES,
    PROBE_COUNT_P,
    PROBE_LEVELS,
    PROBE_MAP_CHANNELS,
    PROBE_MAP_RADIUS,
    RandomProbeMapd,
    probe_map,
)
from medmat.data.transforms import HELD_OUT_BASE_KEYS
from medmat.errors import MedmatError
from medmat.models.blocks import cat_channels, conv1x1, conv_norm_relu, positive_ints
from medmat.models.contract import MattingModel, ModelSpec
from medmat.models.registry import build_base_model, register_model
from medmat.uncertainty.entropy import lesion_uncertainty

#: Alpha is clamped to [eps, 1 - eps] before its logit is taken.
LOGIT_EPS = 1e-4
#: The base logit enters the refiner clamped to +-LOGIT_RANGE and divided by it.
LOGIT_RANGE = 8.0
#: The training perturbation's field is drawn at 1/FIELD_STRIDE of the image's resolution.
FIELD_STRIDE = 16
#: Where training probes go (module docstring).
TRAINING_PROBES = ("error", "band")


def error_probe_maps(prior: torch.Tensor, alpha_gt: torch.Tensor, p: float = PROBE_COUNT_P,
                     max_probes: int = MAX_TRAINING_PROBES, radius: float = PROBE_MAP_RADIUS,
                     min_probes: int = 0) -> torch.Tensor:
    """Training probe maps whose clicks go where ``prior`` is wrong (torch's global generator draws).

    Args:
        prior, alpha_gt: (B, 1, H, W) alphas in [0, 1].
        p, max_probes, min_probes: the click count per image is ``min_probes`` plus a geometric count
            with parameter p on {0, 1, ...}, clipped to ``max_probes``.
        radius: disc radius (pixels) of every click, as :func:`~medmat.data.probe_maps.probe_map`.

    Returns:
        (B, 2, H, W) float32 probe maps (:func:`~medmat.data.probe_maps.probe_map`): clicks drawn
        without replacement with probability proportional to the squared error, in the order drawn,
        each answered with ``alpha_gt`` quantised to the five levels.
    """
    batch, _, height, width = prior.shape
    error = (prior.detach().float() - alpha_gt.float()).square().flatten(1) + 1e-12
    uniform = torch.rand(batch, device=prior.device).clamp_min(1e-12)
    # Inverse CDF of the geometric law on {0, 1, ...}: P(count = k) = p (1 - p)^k.
    counts = torch.full((batch,), min_probes, dtype=torch.long)
    if p < 1.0:
        counts = (min_probes + (torch.log(uniform) / math.log(1.0 - p)).floor()).clamp(max=max_probes).long()
    levels = torch.tensor(PROBE_LEVELS, device=prior.device)
    maps = []
    for index in range(batch):
        count = int(counts[index])
        clicks = []
        if count:
            picked = torch.multinomial(error[index], count, replacement=False)
            answers = levels[(alpha_gt[index, 0].flatten()[picked].float()[:, None] - levels).abs().argmin(dim=1)]
            clicks = [(int(i) // width, int(i) % width, float(a)) for i, a in zip(picked.tolist(), answers.tolist())]
        # The one disc rule of every probe map (the later click's answer where discs overlap).
        maps.append(torch.from_numpy(probe_map((height, width), clicks, radius)))
    return torch.stack(maps).to(prior.device)


def _random_state(device: torch.device) -> tuple[torch.Tensor, ...]:
    """torch's CPU generator state, and the device's for a CUDA device."""
    return (torch.get_rng_state(),) + ((torch.cuda.get_rng_state(device),) if device.type == "cuda" else ())


def _set_random_state(state: tuple[torch.Tensor, ...], device: torch.device) -> None:
    """Restore a :func:`_random_state`."""
    torch.set_rng_state(state[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state[1], device)


class RefinementUNet(nn.Module):
    """A small U-Net: (B, in_channels, H, W) -> (B, 1, H, W) offsets, zero at initialisation.

    Args:
        in_channels: input channels.
        widths: channels at H, H/2, H/4, ... (one level per width; H and W must be multiples of
            2 ** (len(widths) - 1)).
    """

    def __init__(self, in_channels: int, widths: Sequence[int]):
        super().__init__()
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.encoders.append(nn.Sequential(conv_norm_relu(previous, width), conv_norm_relu(width, width)))
            previous = width
        self.decoders = nn.ModuleList(
            conv_norm_relu(widths[level + 1] + widths[level], widths[level]) for level in range(len(widths) - 1)
        )
        self.head = conv1x1(widths[0], 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        skips = []
        features = inputs
        for level, encoder in enumerate(self.encoders):
            if level:
                features = F.max_pool2d(features, 2)
            features = encoder(features)
            skips.append(features)
        for level in reversed(range(len(self.decoders))):
            features = F.interpolate(features, size=skips[level].shape[-2:], mode="bilinear", align_corners=False)
            features = self.decoders[level](cat_channels([features, skips[level]]))
        return self.head(features)


@register_model("probe_refiner")
class ProbeRefiner(MattingModel):
    """A registered model: a base model whose alpha a probe-reading U-Net refines (module docstring).

    Args:
        base: the base model's config section: ``{"name": registered name, **constructor kwargs}``
            without ``in_channels`` (the wrapper's).
        in_channels: image channels (the base's too).
        widths: the refiner U-Net's channels per level.
        freeze_base: keep the base's weights fixed (eval mode, no gradients).
        prior_noise: standard deviation (logit units) of the training perturbation of the base
            logit; 0 turns it off.
        random_probe_maps: give every training image random probes (module docstring).
        training_probes: "error" (where the perturbed base alpha is wrong) or "band" (uniformly
            in the ground truth's transition band, drawn by the dataset, :meth:`training_transform`).
        identity_without_probes: the base's alpha, unchanged, for an image without probes.
        iterative_probes: most training clicks added at the refiner's own errors (module
            docstring); 0 (the default) adds none.
    """

    def __init__(
        self,
        base: Mapping,
        in_channels: int = 1,
        widths: Sequence[int] = (32, 48, 64, 64),
        freeze_base: bool = True,
        prior_noise: float = 0.5,
        random_probe_maps: bool = True,
        training_probes: str = "error",
        identity_without_probes: bool = True,
        iterative_probes: int = 0,
    ):
        super().__init__()
        if isinstance(iterative_probes, bool) or not isinstance(iterative_probes, int) or iterative_probes < 0:
            raise MedmatError(f"model option iterative_probes must be an integer >= 0, got {iterative_probes!r}")
        self.iterative_probes = iterative_probes
        if not (isinstance(prior_noise, (int, float)) and math.isfinite(prior_noise) and prior_noise >= 0):
            raise MedmatError(f"model option prior_noise must be a number >= 0, got {prior_noise!r}")
        if training_probes not in TRAINING_PROBES:
            raise MedmatError(f"model option training_probes must be one of {', '.join(TRAINING_PROBES)}, got {training_probes!r}")
        self.training_probes = training_probes
        self.identity_without_probes = bool(identity_without_probes)
        (self.in_channels,) = positive_ints("in_channels", in_channels, 1)
        widths = positive_ints("widths", widths)
        self.freeze_base, self.prior_noise, self.random_probe_maps = bool(freeze_base), float(prior_noise), bool(random_probe_maps)
        self.base = build_base_model(base, "probe_refiner", self.in_channels)
        if self.freeze_base:
            self.base.requires_grad_(False)
            self.base.eval()
        # (what the outputs depend on, the base's outputs, the random state after its run)
        self._last_base: tuple | None = None
        # image, base logit, uncertainty, probe weight, probe answer
        self.refiner = RefinementUNet(self.in_channels + 2 + PROBE_MAP_CHANNELS, widths)
        base_spec = self.base.spec
        multiple = 2 ** (len(widths) - 1)
        self.spec = ModelSpec(
            in_channels=self.in_channels,
            takes=(*base_spec.takes, "probe_map"),
            requires=base_spec.requires,
            gives=tuple(dict.fromkeys((*base_spec.gives, "alpha_logits", "base_alpha"))),
            size_multiple=base_spec.size_multiple * multiple // math.gcd(base_spec.size_multiple, multiple),
        )

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_base:
            self.base.eval()  # batch-norm statistics and the prior's samples stay the trained base's
        return self

    def base_model(self) -> MattingModel:
        return self.base

    def alpha_features_layer(self) -> nn.Module:
        return self.refiner.head

    def training_transform(self):
        """Random training probe maps in the transition band (``training_probes="band"``), or None."""
        if not (self.random_probe_maps and self.training_probes == "band"):
            return None
        return RandomProbeMapd(min_probes=int(self.identity_without_probes))

    def _base_outputs(self, batch: Mapping[str, torch.Tensor], num_samples: int | None) -> dict[str, torch.Tensor]:
        """The base's outputs for ``batch`` without its probe map.

        A frozen base in eval mode gives the same outputs for the same inputs, weights and random
        state whatever the probes are, and an interaction re-predicts one image after every click:
        the last call's outputs are kept and reused while those stay the same (the base is most
        of a re-prediction's time). A reuse also leaves the random state where the base's own run
        left it, so that what the caller draws next does not depend on the reuse.
        """
        base_batch = {key: value for key, value in batch.items() if key not in ("probe_map", *HELD_OUT_BASE_KEYS)}
        if not self.freeze_base:
            return self.base(base_batch, num_samples)
        key = None if self.training else self._base_key(base_batch, num_samples)
        if key is not None and self._last_base is not None and self._last_base[0] == key:
            _, outputs, random_state = self._last_base
            _set_random_state(random_state, base_batch["image"].device)
            return outputs
        with torch.no_grad():
            outputs = self.base(base_batch, num_samples)
        self._last_base = None if key is None else (key, outputs, _random_state(base_batch["image"].device))
        return outputs

    def _base_key(self, base_batch: Mapping[str, torch.Tensor], num_samples: int | None) -> tuple:
        """What the frozen base's outputs depend on: inputs, N, the random state, autocast and the weights."""
        digest = hashlib.blake2b(digest_size=16)
        for name in sorted(base_batch):
            value = base_batch[name].detach()
            digest.update(f"{name}{tuple(value.shape)}{value.dtype}{value.device}".encode())
            digest.update(value.contiguous().view(-1).view(torch.uint8).cpu().numpy().tobytes())
        device = base_batch["image"].device
        for state in _random_state(device):
            digest.update(state.numpy().tobytes())
        # The weights' bytes, so that new weights (load_state_dict, an optimiser step) are never served
        # the old weights' outputs (about 15 ms for the `cpu` base's 1.4 M parameters on 2 cores;
        # torch's private version counters would be cheaper, but are not an API).
        for tensor in (*self.base.parameters(), *self.base.buffers()):
            digest.update(tensor.detach().contiguous().view(-1).view(torch.uint8).cpu().numpy().tobytes())
        autocast = (torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type))
        return digest.hexdigest(), num_samples, autocast

    def _perturbation(self, logit: torch.Tensor, uncertainty: torch.Tensor) -> torch.Tensor:
        """A random smooth logit offset (B, 1, H, W) for training (module docstring)."""
        batch, _, height, width = logit.shape
        scale = self.prior_noise
        offset = torch.randn(batch, 1, 1, 1, device=logit.device) * scale
        coarse = (max(1, height // FIELD_STRIDE), max(1, width // FIELD_STRIDE))
        field = torch.randn(batch, 1, *coarse, device=logit.device) * scale
        field = F.interpolate(field, size=(height, width), mode="bilinear", align_corners=False)
        return (offset + field) * (0.25 + uncertainty / math.log(2.0))

    @staticmethod
    def _refiner_inputs(image: torch.Tensor, logit: torch.Tensor, uncertainty: torch.Tensor,
                        probes: torch.Tensor) -> torch.Tensor:
        """The refiner U-Net's input (B, C + 2 + 2, H, W): image, scaled logit, scaled uncertainty, probes."""
        scaled_logit = logit.clamp(-LOGIT_RANGE, LOGIT_RANGE) / LOGIT_RANGE
        return torch.cat([image, scaled_logit, uncertainty / math.log(2.0), probes.to(image)], dim=1)

    def _iterated_probes(self, image: torch.Tensor, logit: torch.Tensor, uncertainty: torch.Tensor,
                         probes: torch.Tensor, alpha_gt: torch.Tensor) -> torch.Tensor:
        """``probes`` plus 0..``iterative_probes`` clicks, each at the refined alpha's error so far."""
        rounds = int(torch.randint(0, self.iterative_probes + 1, ()))
        if not rounds:
            return probes
        was_training = self.refiner.training
        # Eval mode, as RITM: the clicks are placed by the network a user would click against.
        self.refiner.eval()
        try:
            with torch.no_grad():
                for _ in range(rounds):
                    offset = self.refiner(self._refiner_inputs(image, logit, uncertainty, probes)).float()
                    click = error_probe_maps(torch.sigmoid(logit + offset), alpha_gt, p=1.0, max_probes=1, min_probes=1)
                    # The later click's answer where discs overlap, the rule of every probe map.
                    probes = torch.where(click[:, :1] > 0, click, probes)
        finally:
            self.refiner.train(was_training)
        return probes

    def forward(self, batch: dict[str, torch.Tensor], num_samples: int | None = None) -> dict[str, torch.Tensor]:
        image = batch["image"]
        held_out = batch.get("held_out_base_alpha") if self.training else None
        if held_out is None:
            outputs = dict(self._base_outputs(batch, num_samples))
        else:
            # Cross-fitting: the base's prediction by a fold model that did not train on the case.
            outputs = {"alpha": held_out.float()}
            if batch.get("held_out_base_uncertainty") is not None:
                outputs["uncertainty_map"] = batch["held_out_base_uncertainty"].float()
        base_alpha = outputs["alpha"].float()
        logit = outputs.get("alpha_logits")
        logit = torch.logit(base_alpha.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS)) if logit is None else logit.float()
        uncertainty = outputs.get("uncertainty_map")
        uncertainty = lesion_uncertainty(base_alpha) if uncertainty is None else uncertainty.float()
        uncertainty = uncertainty.detach()
        base_logit = logit
        if self.training and self.prior_noise > 0:
            logit = logit + self._perturbation(logit, uncertainty)
        probes = batch.get("probe_map")
        wants_error_probes = self.random_probe_maps and self.training_probes == "error"
        if probes is None and self.training and wants_error_probes and batch.get("alpha") is not None:
            probes = error_probe_maps(torch.sigmoid(logit), batch["alpha"], min_probes=int(self.identity_without_probes))
            if self.iterative_probes:
                probes = self._iterated_probes(image, logit, uncertainty, probes, batch["alpha"])
        if probes is None:
            probes = image.new_zeros(image.shape[0], PROBE_MAP_CHANNELS, *image.shape[-2:])
        offset = self.refiner(self._refiner_inputs(image, logit, uncertainty, probes)).float()
        if self.identity_without_probes:
            answered = (probes[:, :1].flatten(1).amax(dim=1) > 0).to(offset.dtype)
            offset = offset * answered[:, None, None, None]
            # Nothing to refine without probes: the base's own logit, not the training perturbation.
            logit = torch.where(answered[:, None, None, None] > 0, logit, base_logit)
        refined = logit + offset
        outputs["base_alpha"] = base_alpha
        outputs["alpha_logits"] = refined
        outputs["alpha"] = torch.sigmoid(refined)
        if "lesion_uncertainty" in outputs:
            outputs["lesion_uncertainty"] = lesion_uncertainty(outputs["alpha"].detach())
        return outputs
