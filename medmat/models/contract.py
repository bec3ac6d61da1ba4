"""The model contract: what every medmat model declares it takes and gives.

A medmat model is a :class:`MattingModel`, a plain ``nn.Module`` without file I/O:

- ``forward(batch, num_samples=None) -> outputs``: ``batch`` maps input names to tensors
  ("image" (B, C, H, W) in [0, 1] always; the others of :data:`INPUTS` that the model takes; in
  training the targets of :data:`TRAINING_INPUTS`), ``outputs`` maps names of :data:`OUTPUTS`
  to tensors; "alpha" (B, 1, H', W') in [0, 1] is always among them. ``num_samples`` overrides
  how many masks a sampling model draws (None: its configured count).
- :attr:`MattingModel.spec`, a :class:`ModelSpec`: input channels, the inputs it takes and
  requires, the outputs it gives, the size multiple its inputs need, whether it reads its
  outputs at any size (resolution-free);
- :meth:`MattingModel.alpha_features_layer`: the layer whose *input* holds the features the
  model's alpha is read from, so that a head (dugMatting's NIG head) can wrap any model by a
  forward pre-hook instead of a table of layer names;
- :meth:`MattingModel.training_transform`: a ``(data, rng) -> data`` transform the training
  dataset applies to every item for this model (dugMatting's random user maps), or None.

The engine trains, evaluates and predicts with every model through this contract only
(``medmat.engine.predict.predict``), never by asking a model's class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

#: Inputs a user gives at prediction time, and what each holds.
INPUTS: dict[str, str] = {
    "image": "(B, C, H, W) float in [0, 1]",
    "trimap": "(B, 1, H, W) float levels 0 (background) / 0.5 (unknown) / 1 (foreground)",
    "user_map": "(B, 1, H, W) float in {-1 background, 0 unknown, 0.5 transition, 1 foreground}",
    "probe_map": "(B, 2, H, W) float: 1 on every answered probe's disc, 0 elsewhere; the answered alpha level there",
}
#: Channels of the inputs besides "image" that are not (B, 1, H, W) planes.
INPUT_CHANNELS: dict[str, int] = {"probe_map": 2}

#: Inputs of a training batch besides :data:`INPUTS` (the dataset makes them; losses read them).
TRAINING_INPUTS: dict[str, str] = {
    "alpha": "(B, 1, H, W) ground-truth alpha in [0, 1]",
    "masks": "(B, K, H, W) annotators' masks in {0, 1}",
    "pseudo_mask": "(B, 1, H, W) in {0, 1}: the alpha thresholded at a random level (Eq. 3)",
    "trimap_noisy": "(B, 1, H, W) trimap levels with the TCP's random noise",
    "output_size": "(B, 2) int64: (H', W') at which a resolution-free model reads its alpha",
    "held_out_base_alpha": "(B, 1, H, W) in [0, 1]: a wrapped base's alpha from a fold model that did not train on "
                           "the case (train.cross_fit_from), read in training instead of running the base",
    "held_out_base_uncertainty": "(B, 1, H, W) nats in [0, ln 2]: that prediction's uncertainty map",
}

#: Every output name a model may give, and what it holds. (B, 1, H, W) unless stated.
OUTPUTS: dict[str, str] = {
    "alpha": "alpha matte in [0, 1]",
    "alpha_logits": "logits of the alpha",
    "alpha_raw": "the alpha before known trimap regions are filled in (what trimap models' losses train)",
    "base_alpha": "a wrapped model's own alpha (NIG head)",
    "uncertainty_map": "entropy of the mean sampled mask, nats in [0, ln 2] (Medical Matting Eq. 4)",
    "lesion_uncertainty": "binary entropy of the alpha, nats in [0, ln 2]",
    "sample_masks": "(B, N, H, W) sampled score maps in [0, 1]",
    "mask_logits": "logits of the mask the cross-entropy trains",
    "kl": "(B,) KL(posterior || prior) of the Prob. U-Net",
    "kl_prior": "(B,) the same KL with the posterior held fixed (its gradient reaches only the prior)",
    "trimap_logits": "(B, 3, H, W) background / unknown / foreground logits",
    "adapted_trimap": "adapted trimap, levels 0 / 0.5 / 1",
    "nig_gamma": "NIG gamma (the alpha) in [0, 1]",
    "nig_omega": "NIG omega > 0",
    "nig_alpha": "NIG alpha > 1",
    "nig_beta": "NIG beta > 0",
    "epistemic": "Var[mu] = beta / (omega (alpha - 1))",
    "aleatoric": "E[sigma^2] = beta / (alpha - 1)",
    "aleatoric_variance": "Var[sigma^2] (+inf where alpha <= 2)",
}

#: Outputs that are per-pixel maps a prediction returns (the rest are training signals).
MAP_OUTPUTS: tuple[str, ...] = (
    "alpha",
    "uncertainty_map",
    "lesion_uncertainty",
    "sample_masks",
    "adapted_trimap",
    "base_alpha",
    "nig_gamma",
    "nig_omega",
    "nig_alpha",
    "nig_beta",
    "epistemic",
    "aleatoric",
    "aleatoric_variance",
)
#: The four NIG parameters, in the order of :class:`medmat.uncertainty.nig.NIG`.
NIG_OUTPUTS: tuple[str, ...] = ("nig_gamma", "nig_omega", "nig_alpha", "nig_beta")
#: Maps whose values are entropies in nats (shown in bits by the app and the CLI).
ENTROPY_OUTPUTS: tuple[str, ...] = ("uncertainty_map", "lesion_uncertainty")
#: File stems under which ``medmat predict`` and the app write the entropy maps.
ENTROPY_FILES: dict[str, str] = {"uncertainty_map": "uncertainty", "lesion_uncertainty": "lesion_uncertainty"}
#: Maps that are variances (NIG models).
VARIANCE_OUTPUTS: tuple[str, ...] = ("epistemic", "aleatoric")


@dataclass(frozen=True)
class ModelSpec:
    """What a model takes and gives.

    Attributes:
        in_channels: C of the image (1 greyscale, 3 colour).
        takes: the :data:`INPUTS` the model reads ("image" first).
        requires: those of ``takes`` it cannot do without (a trimap model's "trimap").
        gives: the :data:`OUTPUTS` its forward returns.
        size_multiple: H and W of its input must be multiples of this (the engine pads).
        resolution_free: it reads its alpha at any ``output_size`` (H', W').
    """

    in_channels: int
    takes: tuple[str, ...] = ("image",)
    requires: tuple[str, ...] = ("image",)
    gives: tuple[str, ...] = ("alpha",)
    size_multiple: int = 1
    resolution_free: bool = False

    def __post_init__(self):
        unknown = [name for name in (*self.takes, *self.requires) if name not in INPUTS]
        unknown += [name for name in self.gives if name not in OUTPUTS]
        if unknown:
            raise ValueError(f"undeclared input or output names {unknown}: add them to medmat.models.contract")
        if "image" not in self.requires or not set(self.requires) <= set(self.takes):
            raise ValueError("a model requires 'image', and requires only what it takes")
        if "alpha" not in self.gives:
            raise ValueError("every model gives 'alpha'")
        if self.in_channels < 1 or self.size_multiple < 1:
            raise ValueError("in_channels and size_multiple must be >= 1")

    @property
    def samples_masks(self) -> bool:
        """Whether the model samples masks (and so takes ``num_samples``)."""
        return "sample_masks" in self.gives

    @property
    def gives_nig(self) -> bool:
        """Whether the model gives dugMatting's NIG parameters."""
        return all(name in self.gives for name in NIG_OUTPUTS)

    @property
    def map_outputs(self) -> tuple[str, ...]:
        """The per-pixel maps among :attr:`gives`, in :data:`MAP_OUTPUTS` order."""
        return tuple(name for name in MAP_OUTPUTS if name in self.gives)


class MattingModel(nn.Module):
    """Base class of every medmat model (see the module docstring for the contract).

    A subclass sets :attr:`spec` in its constructor and implements :meth:`forward`; it may
    override :meth:`alpha_features_layer`, :meth:`training_transform` and :meth:`base_model`.
    """

    spec: ModelSpec

    def forward(self, batch: Mapping[str, torch.Tensor], num_samples: int | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def alpha_features_layer(self) -> nn.Module | None:
        """The ``Conv2d`` / ``Linear`` whose input holds the features the alpha is read from, or None."""
        return None

    def training_transform(self) -> Callable | None:
        """A ``(data: dict of numpy arrays, rng) -> data`` transform for every training item, or None."""
        return None

    def base_model(self) -> MattingModel | None:
        """The whole model this one wraps (a NIG head's or a refiner's base), or None.

        The engine loads a trained run's weights into it when they do not fit the wrapper
        (``train.init_from``).
        """
        return None

    def check_batch(self, batch: Mapping[str, torch.Tensor]) -> None:
        """Raise a ValueError unless ``batch`` holds what :attr:`spec` requires, in the right shapes.

        "image" must be (B, in_channels, H, W) and the other inputs (B, c, H, W), c from
        :data:`INPUT_CHANNELS` (1 unless stated there); H and W must be multiples of ``size_multiple``.
        """
        spec = self.spec
        missing = [name for name in spec.requires if batch.get(name) is None]
        if missing:
            raise ValueError(f"{type(self).__name__} needs {', '.join(missing)} in the batch")
        image = batch["image"]
        if image.ndim != 4 or image.shape[1] != spec.in_channels:
            raise ValueError(f"image must be (B, {spec.in_channels}, H, W), got {tuple(image.shape)}")
        height, width = image.shape[-2:]
        if height % spec.size_multiple or width % spec.size_multiple:
            raise ValueError(f"image size {height} x {width} must be a multiple of {spec.size_multiple} (pad it)")
        for name in spec.takes[1:]:
            value = batch.get(name)
            expected = (image.shape[0], INPUT_CHANNELS.get(name, 1), height, width)
            if value is not None and tuple(value.shape) != expected:
                raise ValueError(f"{name} must be {expected}, got {tuple(value.shape)}")
