"""Tiny models, configs, runs, inputs and benchmark scripts shared by the tests (a plain module, not tests).

Each is defined here once; tests/conftest.py builds its run fixtures from them, and tests import
the constants and helpers (``from tiny_configs import MEDICAL_TINY``).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import torch

from medmat.engine import load_config
from medmat.engine.checkpoint import save_checkpoint
from medmat.engine.inference import build_model_from_config
from medmat.engine.trainer import load_samples
from medmat.models import build_model
from medmat.models.contract import MattingModel, ModelSpec
from medmat.models.registry import register_model
from medmat.uncertainty import lesion_uncertainty

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

#: Every model at a few channels (seconds to train on 32 x 32 phantoms), without its "name".
TINY_MODELS = {
    "medical_matting": {"unet_filters": [4, 8], "matting_channels": [4, 4], "num_samples": 2},
    "region_aware_matting": {"unet_filters": [4, 8], "widths": [4, 8, 8], "implicit_channels": 8, "num_samples": 2},
    "adamatting": {"encoder_channels": [4, 4, 8, 8, 8], "encoder_blocks": [1, 1, 1, 1], "propagation_channels": 4},
    "tcp_matting": {"encoder_channels": [4, 4, 8, 8, 8], "encoder_blocks": [1, 1, 1, 1]},
}


def tiny_model(name: str, **overrides) -> dict:
    """The model section of a tiny ``name`` model: ``{"name": name, **TINY_MODELS[name], **overrides}``."""
    return {"name": name, **TINY_MODELS[name], **overrides}


def tiny_network(name: str, **overrides) -> torch.nn.Module:
    """A tiny ``name`` network (:data:`TINY_MODELS`, then ``overrides``), built after ``torch.manual_seed(0)``."""
    torch.manual_seed(0)
    return build_model(name, **{**TINY_MODELS[name], **overrides})


def soft_discs(height: int, width: int | None = None, batch: int = 2, row_shift: float = 0.0,
               col_shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft discs on a dark background and their noisy images, the same on every call.

    Disc b of the batch has radius height / 4 + 2b and a 3-pixel ramp; its centre is the image's
    centre less the shifts (pixels). Returns (image, alpha), float32 (batch, 1, height, width) in [0, 1].
    """
    width = height if width is None else width
    generator = torch.Generator().manual_seed(1)
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    radius = torch.hypot(cols - width / 2 + col_shift, rows - height / 2 + row_shift)
    alpha = torch.stack([((height / 4 + 2 * b) - radius).div(3.0).add(0.5).clamp(0, 1) for b in range(batch)])[:, None]
    image = (0.2 + 0.6 * alpha + 0.03 * torch.randn(alpha.shape, generator=generator)).clamp(0, 1)
    return image, alpha


MEDICAL_TINY = tiny_model("medical_matting")
#: A dugMatting ("nig") model on the tiny Medical Matting base, and its loss.
NIG_TINY = {"name": "nig", "base": MEDICAL_TINY}
NIG_LOSS = {"name": "nig", "base": {"name": "medical_matting"}}
#: Weight of the user map in γ's logit of the wired run: a foreground label alone gives sigmoid(6) = 0.9975.
GAIN = 6.0


def tiny_phantom_config(model: dict, loss: dict | None = None, two_folds: bool = True) -> dict:
    """A full engine config: 8 phantoms at 32 x 32, one epoch of batch 2, 2 sampled masks, 1 thread.

    Args:
        model: the model section.
        loss: the loss section (None: the engine's default for the model).
        two_folds: a 2-fold k-fold split, fold 0 (False: the engine's default split).
    """
    sections = {
        "model": model,
        "data": {"dataset": "phantom:8", "resize": 32, "input_size": None},
        "optim": {"lr": 0.001, "batch_size": 2, "epochs": 1},
        "eval": {"num_samples": 2, "every": 0},
        "train": {"progress": False, "tensorboard": False, "num_threads": 1},
    }
    if loss is not None:
        sections["loss"] = loss
    if two_folds:
        sections["split"] = {"scheme": "kfold", "k": 2, "fold": 0}
    return load_config(sections)


def nig_config() -> dict:
    """:func:`tiny_phantom_config` of :data:`NIG_TINY` with its loss (2 folds: 4 training, 4 held-out phantoms)."""
    return tiny_phantom_config(NIG_TINY, NIG_LOSS)


def wire_user_map(model: torch.nn.Module, gain: float = GAIN) -> torch.nn.Module:
    """Make a "nig" model with a stem follow its user map: γ = sigmoid(other terms + gain U).

    The stem's last two channels become relu(U) and relu(-U) (centre taps only, batch norm the
    identity, no other channel reads them); the other stem channels no longer read U; γ's layer
    weighs the two by +gain and -gain, the other NIG layers by 0. A one-epoch model has not learnt
    to read the user map yet; the wiring makes the effect of a label large, local and known.
    """
    first, second = model.stem[0], model.stem[1]
    user_map_channel = model.in_channels  # the stem reads [image, U, base alpha]
    width = first[0].out_channels
    with torch.no_grad():
        first[0].weight[:, user_map_channel] = 0.0
        for channel, sign in ((width - 2, 1.0), (width - 1, -1.0)):
            first[0].weight[channel].zero_()
            first[0].weight[channel, user_map_channel, 1, 1] = sign
            second[0].weight[channel].zero_()
            second[0].weight[channel, channel, 1, 1] = 1.0
            second[0].weight[: width - 2, channel] = 0.0
            for norm in (first[1], second[1]):
                norm.running_mean[channel], norm.running_var[channel] = 0.0, 1.0 - norm.eps
                norm.weight[channel], norm.bias[channel] = 1.0, 0.0
            for name, layer in model.head.layers.items():
                layer.weight[0, channel] = sign * gain if name == "gamma" else 0.0
    return model


def save_run(folder: Path, model: dict, wired: bool = False, loss: dict | None = None, two_folds: bool = False) -> Path:
    """A run folder holding the final.pt of an untrained model (seed 0), optionally wired to its user map.

    ``loss`` and ``two_folds`` go to :func:`tiny_phantom_config`.
    """
    config = tiny_phantom_config(model, loss, two_folds)
    torch.manual_seed(0)
    network = build_model_from_config(config).eval()
    if wired:
        wire_user_map(network)
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "final.pt", model=network.state_dict(), config=config)
    return folder


def finished_run(run: Path, model: dict) -> Path:
    """Make ``run`` (from :func:`save_run` with ``two_folds``) a finished run: a metrics.json naming the 4
    training and 4 held-out phantoms of :func:`tiny_phantom_config`'s 2-fold split."""
    ids = [sample.id for sample in load_samples(tiny_phantom_config(model))]
    (run / "metrics.json").write_text(json.dumps({"train_ids": ids[:4], "test_ids": ids[4:]}))
    return run


def user_map_following_run(folder: Path) -> Path:
    """An untrained tiny "nig" run whose NIG head reads a two-layer stem wired to follow its user map."""
    model = {**NIG_TINY, "features": "stem", "head_channels": 4}
    return save_run(folder, model, wired=True)


@register_model("image_following_matting")
class ImageFollowingMatting(MattingModel):
    """alpha = sigmoid(gain (mean image - level)), with its binary entropy as "lesion_uncertainty".

    Untrained tiny networks are unsure everywhere (alpha near 0.5); this one is sure where a
    phantom is dark (background, about 0.17) or bright (lesion, about 0.79) and unsure on the
    lesion's border, like a trained model: what the fusion of user actions is tested on.
    """

    def __init__(self, in_channels: int = 1, gain: float = 20.0, level: float = 0.48):
        super().__init__()
        self.head = torch.nn.Conv2d(in_channels, 1, 1)
        with torch.no_grad():
            self.head.weight.fill_(gain / in_channels)
            self.head.bias.fill_(-gain * level)
        self.spec = ModelSpec(in_channels, gives=("alpha", "alpha_logits", "lesion_uncertainty"))

    def alpha_features_layer(self):
        return self.head

    def forward(self, batch, num_samples=None):
        logits = self.head(batch["image"])
        alpha = logits.sigmoid()
        return {"alpha_logits": logits, "alpha": alpha, "lesion_uncertainty": lesion_uncertainty(alpha)}


#: The model section of :class:`ImageFollowingMatting`.
IMAGE_FOLLOWING = {"name": "image_following_matting"}


def image_following_run(folder: Path) -> Path:
    """A run folder holding :class:`ImageFollowingMatting` (nothing to train: its weights are set)."""
    return save_run(folder, IMAGE_FOLLOWING, loss={"name": "alpha_l1"})


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as a module, its siblings importable as when it is run."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@register_model("probe_echo_matting")
class ProbeEchoMatting(MattingModel):
    """alpha = the answered level on every probe disc, 0.5 elsewhere: shows what the interaction hands a
    model that re-predicts with the probes (:mod:`medmat.models.probe_refiner`)."""

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.spec = ModelSpec(in_channels, takes=("image", "probe_map"), gives=("alpha",))

    def forward(self, batch, num_samples=None):
        image = batch["image"]
        probes = batch.get("probe_map", image.new_zeros(image.shape[0], 2, *image.shape[-2:]))
        return {"alpha": torch.where(probes[:, :1] > 0, probes[:, 1:], 0.5 * self.scale * torch.ones_like(image[:, :1]))}


#: The model section of :class:`ProbeEchoMatting`.
PROBE_ECHO = {"name": "probe_echo_matting"}
