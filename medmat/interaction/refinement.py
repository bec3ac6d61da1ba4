"""Aleatoric-uncertainty refinement of dugMatting (§3.4, stage 2 of §3.5).

The first stage (a trained "nig" model) is frozen. Its NIG gives the matte γ, the aleatoric
uncertainty E[σ²] and its variance Var[σ²]. Then:

1. the coarse matte ``γ_s = γ + ε``, ``ε ~ N(0, E[σ²])``, one sample (:func:`sample_coarse_alpha`),
   clipped to [0, 1]: the output noise the refiner must learn to be robust to;
2. the pixels of *reliable high* aleatoric uncertainty (:func:`select_refinement_pixels`): high by
   Otsu's threshold on E[σ²] (as the paper), reliable where Var[σ²] is low. The paper says
   Var[σ²] "filters" them but gives no rule; medmat applies Otsu again, to log Var[σ²] of the
   high pixels (the variance spans orders of magnitude, and is infinite where α <= 2, which is
   never reliable), keeping the lower class;
3. 32 x 32 patches centred on selected pixels (:func:`patch_centres`: greedily by E[σ²], each
   new patch centred on a selected pixel no earlier patch covers; windows are shifted to lie
   inside the image) are refined by a small full-resolution network R_φ
   (:class:`RefinementNetwork`) reading the image and γ_s, and written into the matte
   (overlaps averaged). Outside the patches medmat keeps γ, not γ_s: the paper writes the
   patches into γ_s, whose noise is never refined away elsewhere.

Loss (stage 2): ``||y - γ_r||_1 + ||∇y - ∇γ_r||_1`` on the patches (:func:`refinement_loss`, Sobel
gradients as medmat's other gradient losses).

The paper's R_φ is a "Naive Lite-HRNet-18" (0.7 M parameters, App. B.2); no pre-trained HRNet is
reachable here and a 32 x 32 patch needs no multi-resolution branches, so medmat's R_φ is a
full-resolution residual network (about 10 k parameters at width 16) whose output is a residual
on the logit of γ_s, initialised to zero: an untrained refiner returns γ_s unchanged.

:func:`train_refiner` is a plain loop, not the engine: each step runs the frozen first stage,
draws γ_s, selects pixels per image and crops a varying number of patches, none of which fits the
engine's fixed dataset -> model -> criterion contract.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from skimage.filters import threshold_otsu
from torch import nn

from medmat.data.sample import Sample
from medmat.data.user_maps import random_user_map
from medmat.interaction.step import predict_nig
from medmat.losses.gradient import sobel_gradients
from medmat.models.blocks import conv3x3, conv_norm_relu, residual_stage

#: Patch side of §3.4.
PATCH_SIZE = 32
#: Clamp of γ_s before its logit.
LOGIT_EPS = 1e-4


def sample_coarse_alpha(alpha: np.ndarray, aleatoric: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``γ_s = clip(γ + sqrt(E[σ²]) z, 0, 1)``, ``z ~ N(0, 1)`` per pixel: float32 of ``alpha``'s shape."""
    noise = rng.standard_normal(np.shape(alpha)) * np.sqrt(np.asarray(aleatoric, dtype=np.float64))
    return np.clip(np.asarray(alpha, dtype=np.float64) + noise, 0.0, 1.0).astype(np.float32)


def _above_otsu(values: np.ndarray) -> np.ndarray:
    """Bool mask of ``values`` above Otsu's threshold; none when the values are all equal."""
    if values.size == 0 or np.ptp(values) == 0:
        return np.zeros(values.shape, dtype=bool)
    return values > threshold_otsu(values)


def select_refinement_pixels(aleatoric: np.ndarray, aleatoric_variance: np.ndarray) -> np.ndarray:
    """Pixels of reliable high aleatoric uncertainty (module docstring, step 2).

    Args:
        aleatoric: E[σ²], float (H, W), finite, > 0.
        aleatoric_variance: Var[σ²], float (H, W), > 0, +inf where α <= 2.

    Returns:
        bool (H, W): ``E[σ²] > otsu(E[σ²])`` and Var[σ²] finite and not above Otsu's threshold of
        log Var[σ²] over those pixels (all of them when their log variances are equal).
    """
    aleatoric = np.asarray(aleatoric, dtype=np.float64)
    variance = np.asarray(aleatoric_variance, dtype=np.float64)
    candidates = _above_otsu(aleatoric) & np.isfinite(variance)
    log_variance = np.log(variance[candidates])
    unreliable = _above_otsu(log_variance)
    selected = candidates.copy()
    selected[candidates] = ~unreliable
    return selected


def refinement_window(centre: tuple[int, int], patch_size: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """The ``patch_size`` square around ``centre`` shifted to lie inside ``shape`` (smaller only for smaller images)."""
    window = []
    for position, length in zip(centre, shape):
        side = min(patch_size, length)
        start = int(np.clip(position - patch_size // 2, 0, length - side))
        window.append(slice(start, start + side))
    return tuple(window)


def patch_centres(
    selected: np.ndarray, aleatoric: np.ndarray, patch_size: int = PATCH_SIZE, max_patches: int = 16
) -> list[tuple[int, int]]:
    """Centres of the refined patches: selected pixels by decreasing E[σ²], skipping covered ones.

    Args:
        selected: bool (H, W) from :func:`select_refinement_pixels`.
        aleatoric: E[σ²] (H, W), the order of the greedy choice.
        patch_size: side of the patches.
        max_patches: at most this many.

    Returns:
        ``[(row, col), ...]``, at most ``max_patches``; every selected pixel lies in some patch
        unless the cap was reached.
    """
    rows, cols = np.nonzero(selected)
    order = np.argsort(-np.asarray(aleatoric)[rows, cols], kind="stable")
    covered = np.zeros(np.shape(selected), dtype=bool)
    centres = []
    for index in order:
        if len(centres) == max_patches:
            break
        centre = (int(rows[index]), int(cols[index]))
        if covered[centre]:
            continue
        covered[refinement_window(centre, patch_size, covered.shape)] = True
        centres.append(centre)
    return centres


class RefinementNetwork(nn.Module):
    """R_φ: a full-resolution residual network refining matte patches.

    ``forward(image (P, C, h, w) in [0, 1], coarse (P, 1, h, w) in [0, 1])`` -> refined
    (P, 1, h, w) in (0, 1): ``sigmoid(logit(coarse) + residual(image, coarse))``; the residual's
    last convolution starts at zero, so an untrained network returns ``coarse`` (up to the
    logit clamp of 1e-4).

    Args:
        image_channels: C.
        width: channels of every layer.
        num_blocks: residual blocks after the stem.
    """

    def __init__(self, image_channels: int = 1, width: int = 16, num_blocks: int = 2):
        super().__init__()
        self.layers = nn.Sequential(
            conv_norm_relu(image_channels + 1, width), *residual_stage(width, width, num_blocks), conv3x3(width, 1)
        )
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, image: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        logit = torch.logit(coarse.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS))
        return torch.sigmoid(logit + self.layers(torch.cat([image, coarse], dim=1)))


def refinement_loss(refined: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Stage-2 loss of (P, 1, h, w) patches, a scalar.

    ``mean |y - γ_r| + mean (|∂x y - ∂x γ_r| + |∂y y - ∂y γ_r|)`` with Sobel derivatives.
    """
    gx, gy = sobel_gradients(refined)
    gx_target, gy_target = sobel_gradients(target)
    return (refined - target).abs().mean() + ((gx - gx_target).abs() + (gy - gy_target).abs()).mean()


def crop_patches(array: np.ndarray, windows: Sequence[tuple[slice, slice]]) -> np.ndarray:
    """Stack ``array[..., rows, cols]`` for each window: (P, *leading, h, w); windows must share a size."""
    return np.stack([array[(..., *window)] for window in windows])


@torch.no_grad()
def refine_alpha(
    refiner: RefinementNetwork,
    image: np.ndarray,
    maps: dict[str, np.ndarray],
    rng: np.random.Generator,
    patch_size: int = PATCH_SIZE,
    max_patches: int = 16,
) -> dict:
    """Refine one matte with a trained R_φ (module docstring, steps 1-3).

    Args:
        refiner: the refinement network (its mode is restored afterwards).
        image: float32 (C, H, W) in [0, 1].
        maps: "alpha" (γ), "aleatoric" (E[σ²]) and "aleatoric_variance" (Var[σ²]), each (H, W),
            e.g. a :class:`~medmat.interaction.simulate.InteractionRound`'s ``maps``.
        rng: draws γ_s.
        patch_size: side of the refined patches (paper 32).
        max_patches: most patches refined.

    Returns:
        ``{"alpha": float32 (H, W) in [0, 1], "coarse": γ_s (H, W), "selected": bool (H, W),
        "centres": [(row, col), ...]}``.
    """
    alpha = np.asarray(maps["alpha"], dtype=np.float32)
    coarse = sample_coarse_alpha(alpha, maps["aleatoric"], rng)
    selected = select_refinement_pixels(maps["aleatoric"], maps["aleatoric_variance"])
    centres = patch_centres(selected, maps["aleatoric"], patch_size, max_patches)
    refined = alpha.copy()
    if centres:
        windows = [refinement_window(centre, patch_size, alpha.shape) for centre in centres]
        device = next(refiner.parameters()).device
        image_patches = torch.as_tensor(crop_patches(np.asarray(image, dtype=np.float32), windows), device=device)
        coarse_patches = torch.as_tensor(crop_patches(coarse[None], windows), device=device)
        was_training = refiner.training
        refiner.eval()
        try:
            outputs = refiner(image_patches, coarse_patches)[:, 0].cpu().numpy()
        finally:
            refiner.train(was_training)
        total = np.zeros_like(alpha)
        count = np.zeros_like(alpha)
        for window, output in zip(windows, outputs):
            total[window] += output
            count[window] += 1
        refined = np.where(count > 0, total / np.maximum(count, 1), alpha).astype(np.float32)
    return {"alpha": refined, "coarse": coarse, "selected": selected, "centres": centres}


def training_windows(
    selected: np.ndarray, rng: np.random.Generator, count: int, patch_size: int
) -> list[tuple[slice, slice]]:
    """``count`` training windows centred on random selected pixels (uniform pixels when none is selected)."""
    rows, cols = np.nonzero(selected)
    if rows.size == 0:
        rows, cols = np.indices(selected.shape).reshape(2, -1)
    picks = rng.choice(rows.size, size=min(count, rows.size), replace=False)
    return [refinement_window((int(rows[i]), int(cols[i])), patch_size, selected.shape) for i in picks]


def train_refiner(
    first_stage: nn.Module,
    samples: Sequence[Sample],
    steps: int,
    refiner: RefinementNetwork | None = None,
    patch_size: int = PATCH_SIZE,
    patches_per_step: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    random_user_maps: bool = True,
) -> tuple[RefinementNetwork, list[float]]:
    """Train R_φ for ``steps`` Adam steps with the first stage frozen (stage 2 of §3.5).

    Each step takes one random case, predicts its NIG with the first stage (in eval mode, without
    gradients; with a random App. B.1 user map when ``random_user_maps``, so the refiner also sees
    mattes after interaction), draws γ_s, selects pixels, and trains on ``patches_per_step``
    windows centred on random selected pixels (random pixels when none is selected, so that
    untrained first stages still give training patches).

    Args:
        first_stage: a trained "nig" model; its weights are not changed.
        samples: training cases with alpha mattes.
        steps: optimiser steps (>= 0).
        refiner: the network to train; None builds one for the cases' channel count (seeded).
        patch_size, patches_per_step, lr: training patches and Adam's learning rate.
        seed: seeds every draw (cases, user maps, γ_s, windows) and the refiner's initialisation.
        random_user_maps: feed random user maps to the first stage.

    Returns:
        ``(refiner, losses)``: the trained network (in eval mode, on the first stage's device)
        and the loss of every step.
    """
    if not samples:
        raise ValueError("train_refiner needs at least one training case")
    rng = np.random.default_rng(seed)
    device = next(first_stage.parameters()).device
    if refiner is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            refiner = RefinementNetwork(samples[0].image.shape[0])
    refiner = refiner.to(device).train()
    optimizer = torch.optim.Adam(refiner.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        sample = samples[int(rng.integers(len(samples)))]
        user_map = random_user_map(sample.alpha, rng) if random_user_maps else None
        maps, _ = predict_nig(first_stage, sample.image, user_map, sample.trimap)
        coarse = sample_coarse_alpha(maps["alpha"], maps["aleatoric"], rng)
        selected = select_refinement_pixels(maps["aleatoric"], maps["aleatoric_variance"])
        windows = training_windows(selected, rng, patches_per_step, patch_size)
        image = torch.as_tensor(crop_patches(sample.image.astype(np.float32), windows), device=device)
        coarse_patches = torch.as_tensor(crop_patches(coarse[None], windows), device=device)
        target = torch.as_tensor(crop_patches(sample.alpha.astype(np.float32)[None], windows), device=device)
        loss = refinement_loss(refiner(image, coarse_patches), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return refiner.eval(), losses
