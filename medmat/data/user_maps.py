"""User maps of dugMatting: what the user said about image patches, as one extra input channel.

``U`` (H, W) float32 holds, per pixel (App. B.1): 1 foreground, -1 background, 0.5 transition,
0 unknown (nobody said anything). A patch is labelled the way a user answering from the ground
truth would (:func:`patch_label`): foreground when its alpha is 1 everywhere, background when 0
everywhere, transition otherwise (the paper's three choices, Fig. 3; "everywhere" up to
:data:`LABEL_TOLERANCE`, which absorbs the rounding of resampled mattes).

Training maps (App. B.1): L patches of 15 x 15, L geometric with p = 1/6 *including none*, so one
network learns to matte with and without interaction (§3.5: "generating random user map U
including the empty case"). numpy's geometric counts trials (1, 2, ...); L is that minus one,
the number of failures before the first success, so ``P(L = l) = p (1 - p)^l``, ``P(L = 0) = p``
and ``E[L] = (1 - p) / p = 5``.

Where the patches go is not in the paper. By default (``centres="class_balanced"``) each patch's
centre is a random pixel of a random class among those present (alpha == 1, alpha == 0,
transition), as the authors' release samples one class at a time: uniform centres would put
nearly every patch in the background of a small lesion, while the proposals the model will get
at interaction time (:mod:`medmat.uncertainty.proposals`) sit on its uncertain borders.
``centres="uniform"`` draws them uniformly over the image. (The release also differs in size and
count: 10 x 10 squares, three counts, one per class, each Geom(1/6) with probability 1/2 and 0
otherwise; medmat follows the paper.)
"""

from __future__ import annotations

import numpy as np
import torch

from medmat.data.transforms import AlphaDrawnMapd
from medmat.errors import MedmatError

#: User map values (App. B.1).
BACKGROUND, UNKNOWN, TRANSITION, FOREGROUND = -1.0, 0.0, 0.5, 1.0
USER_MAP_VALUES = (BACKGROUND, UNKNOWN, TRANSITION, FOREGROUND)
#: App. B.1: patch side and the parameter of the geometric patch count.
PATCH_SIZE = 15
PATCH_COUNT_P = 1.0 / 6.0
#: Alpha within this distance of 0 (1) counts as background (foreground) when labelling a patch.
LABEL_TOLERANCE = 1e-3
CENTRE_MODES = ("class_balanced", "uniform")


def patch_label(alpha_patch: np.ndarray, tolerance: float = LABEL_TOLERANCE) -> float:
    """The label a user reading the ground truth gives a patch.

    Args:
        alpha_patch: ground-truth alpha of the patch, float, any shape, values in [0, 1].
        tolerance: alpha <= tolerance is background, >= 1 - tolerance foreground.

    Returns:
        :data:`FOREGROUND` (1.0) when every pixel is foreground, :data:`BACKGROUND` (-1.0) when
        every pixel is background, :data:`TRANSITION` (0.5) otherwise (mixed or partial alpha).
    """
    alpha_patch = np.asarray(alpha_patch)
    if alpha_patch.size == 0:
        raise ValueError("cannot label an empty patch")
    if np.all(alpha_patch >= 1.0 - tolerance):
        return FOREGROUND
    if np.all(alpha_patch <= tolerance):
        return BACKGROUND
    return TRANSITION


def pixel_classes(alpha: np.ndarray, tolerance: float = LABEL_TOLERANCE) -> np.ndarray:
    """Per-pixel user-map value of a ground-truth alpha (H, W): 1, -1 or 0.5, float32 (H, W)."""
    alpha = np.asarray(alpha)
    classes = np.full(alpha.shape, TRANSITION, dtype=np.float32)
    classes[alpha >= 1.0 - tolerance] = FOREGROUND
    classes[alpha <= tolerance] = BACKGROUND
    return classes


def patch_window(centre: tuple[int, int], size: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """Rows and columns of a ``size`` x ``size`` patch centred on ``centre``, clipped to the image."""
    half = size // 2
    row, col = centre
    return (
        slice(max(row - half, 0), min(row - half + size, shape[0])),
        slice(max(col - half, 0), min(col - half + size, shape[1])),
    )


def draw_patch_count(rng: np.random.Generator, p: float = PATCH_COUNT_P) -> int:
    """L ~ Geometric(p) on {0, 1, 2, ...}: ``P(L = l) = p (1 - p)^l`` (App. B.1, the empty map included)."""
    return int(rng.geometric(p)) - 1


def draw_centre(alpha: np.ndarray, rng: np.random.Generator, mode: str, tolerance: float) -> tuple[int, int]:
    """A patch centre (row, col): a random pixel of a random present class, or uniform (see the module doc)."""
    if mode == "uniform":
        return int(rng.integers(alpha.shape[0])), int(rng.integers(alpha.shape[1]))
    classes = pixel_classes(alpha, tolerance)
    present = [value for value in (FOREGROUND, BACKGROUND, TRANSITION) if np.any(classes == value)]
    rows, cols = np.nonzero(classes == present[int(rng.integers(len(present)))])
    index = int(rng.integers(rows.size))
    return int(rows[index]), int(cols[index])


def random_user_map(
    alpha: np.ndarray,
    rng: np.random.Generator,
    patch_size: int = PATCH_SIZE,
    p: float = PATCH_COUNT_P,
    centres: str = "class_balanced",
    tolerance: float = LABEL_TOLERANCE,
) -> np.ndarray:
    """A training user map (App. B.1): L ~ Geom(p) - 1 patches labelled from the ground truth.

    Args:
        alpha: ground-truth alpha, float (H, W) in [0, 1].
        rng: the generator of every draw (count, centres).
        patch_size: patch side in pixels (paper 15); patches at the border are clipped.
        p: parameter of the geometric count (paper 1/6).
        centres: "class_balanced" or "uniform" (module doc).
        tolerance: of :func:`patch_label`.

    Returns:
        float32 (H, W) with values in {-1, 0, 0.5, 1}; all 0 when L = 0. Overlapping patches:
        the later one is written over the earlier one.
    """
    if centres not in CENTRE_MODES:
        raise MedmatError(f"user map centres must be one of {', '.join(CENTRE_MODES)}, got {centres!r}")
    alpha = np.asarray(alpha)
    user_map = np.zeros(alpha.shape, dtype=np.float32)
    for _ in range(draw_patch_count(rng, p)):
        window = patch_window(draw_centre(alpha, rng, centres, tolerance), patch_size, alpha.shape)
        user_map[window] = patch_label(alpha[window], tolerance)
    return user_map


def random_user_maps(alpha: torch.Tensor, rng: np.random.Generator, **options) -> torch.Tensor:
    """:func:`random_user_map` for every image of a batch.

    Args:
        alpha: (B, 1, H, W) ground-truth alpha in [0, 1], any device.
        rng: the generator (images are drawn in batch order).
        options: keyword arguments of :func:`random_user_map`.

    Returns:
        (B, 1, H, W) float32 user maps on ``alpha``'s device.
    """
    alphas = alpha.detach()[:, 0].float().cpu().numpy()
    maps = np.stack([random_user_map(a, rng, **options) for a in alphas])[:, None]
    return torch.from_numpy(maps).to(alpha.device)


class RandomUserMapd(AlphaDrawnMapd):
    """Dict transform adding a random training user map drawn from ``data[alpha_key]``.

    ``transform(data, rng) -> data`` like :mod:`medmat.data.transforms` and
    :class:`~medmat.labels.training_trimaps.RandomTrimapd`: the input dict is not modified; the
    returned one holds ``data[output_key]`` float32 (H, W) in {-1, 0, 0.5, 1}. Apply it after the
    geometric augmentations, so that the map labels the augmented alpha.

    Args:
        patch_size, p, centres, tolerance: as :func:`random_user_map`.
        alpha_key: the ground-truth alpha to read.
        output_key: where the map goes.
    """

    what = "user map"

    def __init__(
        self,
        patch_size: int = PATCH_SIZE,
        p: float = PATCH_COUNT_P,
        centres: str = "class_balanced",
        tolerance: float = LABEL_TOLERANCE,
        alpha_key: str = "alpha",
        output_key: str = "user_map",
    ):
        if not (isinstance(patch_size, int) and patch_size >= 1):
            raise MedmatError(f"user map patch_size must be a positive integer, got {patch_size!r}")
        if not 0.0 < p <= 1.0:
            raise MedmatError(f"user map p must be in (0, 1], got {p}")
        if centres not in CENTRE_MODES:
            raise MedmatError(f"user map centres must be one of {', '.join(CENTRE_MODES)}, got {centres!r}")
        self.patch_size, self.p, self.centres, self.tolerance = patch_size, float(p), centres, float(tolerance)
        super().__init__(alpha_key, output_key)

    def draw(self, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return random_user_map(alpha, rng, self.patch_size, self.p, self.centres, self.tolerance)
