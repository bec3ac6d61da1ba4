"""Entropy-based uncertainty maps of Medical Matting (Wang et al., 2023).

- :func:`uncertainty_map` (Eq. 4): the entropy of the *mean* of N sampled score maps, i.e. where
  the Prob. U-Net's samples disagree; it guides the matting network like a soft trimap.
- :func:`lesion_uncertainty` (Eq. 2): the binary entropy of the alpha matte, i.e. where the
  lesion itself is a mixture of lesion and normal tissue.

Both are in **nats** (natural logarithm; the paper writes ``log`` without a base), so they lie in
[0, ln 2 ~ 0.693]. The authors' released code takes ``log2`` for the uncertainty map (bits, in
[0, 1]); multiply by ``1 / ln 2`` to compare with it. Probabilities are clamped to
[eps, 1 - eps] so that the maps (and their gradients) are finite at 0 and 1: a certain pixel
gets about ``eps * (1 - ln eps)`` (1.5e-5 nats for the default eps), not exactly 0.

Both functions take a torch tensor or a numpy array and return the same kind, in the input's
floating dtype (float64 for integer or boolean arrays).
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Default clamp: keeps log() finite at probabilities 0 and 1.
EPS = 1e-6

#: Largest value either map can take (a 50/50 pixel), in nats.
MAX_ENTROPY = math.log(2.0)


def _as_tensor(values: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values if values.is_floating_point() else values.double()
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    return torch.from_numpy(np.ascontiguousarray(array))


def _like_input(result: torch.Tensor, values: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    return result if isinstance(values, torch.Tensor) else result.numpy()


def _binary_entropy(probability: torch.Tensor, eps: float) -> torch.Tensor:
    # Entropies are computed in float32 at least, also under bfloat16 / float16 autocast.
    if probability.dtype in (torch.bfloat16, torch.float16):
        probability = probability.float()
    p = probability.clamp(eps, 1.0 - eps)
    return -(p * torch.log(p) + (1.0 - p) * torch.log1p(-p))


def lesion_uncertainty(alpha: torch.Tensor | np.ndarray, eps: float = EPS) -> torch.Tensor | np.ndarray:
    """Binary entropy of an alpha matte (Eq. 2): ``-a ln a - (1 - a) ln(1 - a)``, elementwise.

    Args:
        alpha: alpha values in [0, 1], any shape, e.g. (B, 1, H, W) or (H, W).
        eps: clamp of alpha to [eps, 1 - eps] before the logarithms.

    Returns:
        Same shape and kind (tensor or array) as ``alpha``, in nats: 0 where alpha is 0 or 1
        (up to the clamp), ln 2 at alpha = 0.5.
    """
    return _like_input(_binary_entropy(_as_tensor(alpha), eps), alpha)


def uncertainty_map(score_maps: torch.Tensor | np.ndarray, eps: float = EPS) -> torch.Tensor | np.ndarray:
    """Entropy of the mean of N foreground score maps (Eq. 4 with C = 2 classes).

    With one foreground probability per sample, the background class is its complement, so
    Eq. 4's sum over the two classes is the binary entropy of the mean foreground probability.

    Args:
        score_maps: (B, N, H, W) foreground probabilities in [0, 1], N samples per image.
        eps: clamp of the mean probability to [eps, 1 - eps] before the logarithms.

    Returns:
        (B, 1, H, W), same kind (tensor or array) as the input, in nats, in [0, ln 2]: ~0 where
        all samples agree on a certain label, ln 2 where the mean is 0.5 (e.g. half the samples
        say 1, half say 0).
    """
    maps = _as_tensor(score_maps)
    if maps.ndim != 4:
        raise ValueError(f"score maps must have shape (B, N, H, W), got {tuple(maps.shape)}")
    mean_probability = maps.mean(dim=1, keepdim=True)
    return _like_input(_binary_entropy(mean_probability, eps), score_maps)
