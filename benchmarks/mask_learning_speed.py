"""How fast does the Prob. U-Net learn the lesion? Fcomb (both initialisations) against a plain 1x1 head.

Overfits one batch of Brain-growth images (their random-threshold pseudo masks, Eq. 3) with
binary cross-entropy only, from the same U-Net initialisation, once through the Prob. U-Net's
Fcomb (with a random latent sample, as in training) and once through a single 1x1 convolution,
and prints how many Adam steps each needs before the mean foreground probability passes 0.5.

    python benchmarks/mask_learning_speed.py [--data ../shared/data/medical-matting/brain_growth_alpha.zip]
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medmat.data.load import load_dataset
from medmat.data.transforms import pseudo_mask
from medmat.models.prob_unet import Fcomb, UNet


class FcombHead(nn.Module):
    """Fcomb with one fixed latent sample per image: U-Net features -> (B, 1, H, W) logits."""

    def __init__(self, channels: int, latent: torch.Tensor, init: str = "orthogonal"):
        super().__init__()
        self.fcomb = Fcomb(channels, latent_dim=latent.shape[-1], num_convs=4, init=init)
        self.register_buffer("latent", latent)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fcomb(features, self.latent)[0]


def steps_to_learn(unet: nn.Module, head, image, target, max_steps: int) -> tuple[int | None, float]:
    """Adam steps until the mean probability on target pixels passes 0.5 (None if never)."""
    parameters = list(unet.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    for step in range(1, max_steps + 1):
        logits = head(unet(image))
        loss = F.binary_cross_entropy_with_logits(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        foreground = torch.sigmoid(logits.detach())[target > 0].mean().item()
        if foreground > 0.5:
            return step, foreground
    return None, foreground


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/medical-matting/brain_growth_alpha.zip")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=300)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    samples = load_dataset(args.data)[: args.images]
    rng = np.random.default_rng(0)
    image = torch.tensor(np.stack([s.image for s in samples]))
    target = torch.tensor(np.stack([pseudo_mask(s.alpha, rng)[None] for s in samples]), dtype=torch.float32)
    filters = (16, 32, 64, 96)
    unet = UNet(1, filters, True)
    latent = torch.randn(len(samples), 1, 2)
    heads = {
        "Fcomb (latent sample, 3 hidden 1x1 layers), orthogonal init": FcombHead(filters[0], latent),
        "Fcomb, orthogonal_relu init (gain sqrt 2 before each ReLU)": FcombHead(filters[0], latent, "orthogonal_relu"),
        "plain 1x1 convolution": nn.Conv2d(filters[0], 1, 1),
    }
    print(f"{len(samples)} Brain-growth images, foreground fraction {target.mean().item():.3f}, Adam lr 1e-3, 1 thread")
    for name, head in heads.items():
        steps, foreground = steps_to_learn(copy.deepcopy(unet), head, image, target, args.max_steps)
        shown = f"{steps} steps" if steps else f"not within {args.max_steps} steps"
        print(f"{name}: mean foreground probability > 0.5 after {shown} (then {foreground:.3f})")


if __name__ == "__main__":
    main()
