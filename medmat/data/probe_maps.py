"""Probe maps: the alpha probes a user answered, as a two-channel input plane of a model.

A probe is a click at pixel (row, col) answering the alpha there with one of the five levels
:data:`PROBE_LEVELS` (0, ¼, ½, ¾, 1; :class:`~medmat.interaction.actions.Probe`). A model that
re-predicts with the probes (``"probe_map"`` among its inputs, :mod:`medmat.models.probe_refiner`)
reads them as ``P`` float32 (2, H, W):

- ``P[0]``, the weight: 1 on the disc of radius :data:`PROBE_MAP_RADIUS` around every answered
  click, 0 elsewhere;
- ``P[1]``, the answer: the click's level on its disc, 0 elsewhere (where discs overlap, the later
  click's).

Both channels are 0 where nobody answered, so padding an image with zeros pads its probe map
correctly, and an all-zero map is "no interaction".

Training maps (:func:`random_probe_map`): K clicks, K geometric with parameter ``p`` *including
none* (the network learns to matte with and without probes, as dugMatting's user maps), each at a
random pixel of the ground truth's transition band (alpha strictly between 0 and 1, grown by
``band_margin`` pixels; any pixel when the case has none), answered with the ground-truth alpha
there quantised to the nearest level, as the simulated user of :mod:`medmat.interaction.users`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from scipy import ndimage

from medmat.data.transforms import AlphaDrawnMapd
from medmat.errors import MedmatError

#: The five alpha levels a probe answers with.
PROBE_LEVELS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Radius (pixels) of the disc a probe marks in a probe map: large enough that a 3 x 3
#: convolution of the network's first layer sees every click.
PROBE_MAP_RADIUS = 2.0
#: Channels of a probe map: (weight, answer).
PROBE_MAP_CHANNELS = 2
#: Geometric parameter of the training click count (mean (1 - p) / p = 2 clicks, none with p).
PROBE_COUNT_P = 1.0 / 3.0
#: Most clicks in one training map: the simulated user's longest session.
MAX_TRAINING_PROBES = 8
#: Pixels the ground truth's transition band grows by before training clicks are drawn in it.
BAND_MARGIN = 3


def quantised_map(values: np.ndarray, levels: Iterable[float] = PROBE_LEVELS) -> np.ndarray:
    """Each value replaced by the nearest of ``levels`` (float64, the shape of ``values``)."""
    levels = np.asarray(tuple(levels), dtype=np.float64)
    return levels[np.argmin(np.abs(np.asarray(values, dtype=np.float64)[..., None] - levels), axis=-1)]


def disc_mask(shape: tuple[int, int], row: int, col: int, radius: float) -> np.ndarray:
    """bool (H, W): the pixels whose centre lies within ``radius`` of pixel (``row``, ``col``)
    (the pixel itself always; parts of the disc outside the image are dropped)."""
    height, width = shape
    reach = int(np.floor(max(radius, 0.0)))
    rows = np.arange(max(row - reach, 0), min(row + reach + 1, height))
    cols = np.arange(max(col - reach, 0), min(col + reach + 1, width))
    mask = np.zeros(shape, dtype=bool)
    inside = (rows[:, None] - row) ** 2 + (cols[None, :] - col) ** 2 <= max(radius, 0.0) ** 2
    mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = inside
    mask[row, col] = True
    return mask


def probe_map(shape: tuple[int, int], probes: Iterable[tuple[int, int, float]], radius: float = PROBE_MAP_RADIUS) -> np.ndarray:
    """The probe map (module doc) of ``probes``, in the order they were answered.

    Args:
        shape: (H, W) of the image.
        probes: (row, col, level) per click: row and col inside the image, level in [0, 1].
        radius: disc radius in pixels.

    Returns:
        float32 (2, H, W): weight, answer.
    """
    height, width = shape
    planes = np.zeros((PROBE_MAP_CHANNELS, height, width), dtype=np.float32)
    for row, col, level in probes:
        row, col, level = int(row), int(col), float(level)
        if not (0 <= row < height and 0 <= col < width):
            raise MedmatError(f"probe at ({row}, {col}) lies outside the {height} x {width} image")
        if not 0.0 <= level <= 1.0:
            raise MedmatError(f"probe level {level!r} is not an alpha in [0, 1]")
        disc = disc_mask(shape, row, col, radius)
        planes[0][disc] = 1.0
        planes[1][disc] = level
    return planes


def transition_band(alpha: np.ndarray, margin: int = BAND_MARGIN) -> np.ndarray:
    """bool (H, W): pixels with alpha strictly between 0 and 1, grown by ``margin`` pixels."""
    band = (alpha > 0.0) & (alpha < 1.0)
    if margin > 0 and band.any():
        band = ndimage.binary_dilation(band, iterations=margin)
    return band


def random_probe_map(
    alpha: np.ndarray,
    rng: np.random.Generator,
    p: float = PROBE_COUNT_P,
    max_probes: int = MAX_TRAINING_PROBES,
    radius: float = PROBE_MAP_RADIUS,
    band_margin: int = BAND_MARGIN,
    min_probes: int = 0,
) -> np.ndarray:
    """A training probe map drawn from a ground-truth alpha (module doc).

    Args:
        alpha: float (H, W) in [0, 1].
        rng: the generator of every draw (count, positions).
        p: geometric parameter of the click count (the empty map included), in (0, 1].
        max_probes: the count is clipped to this.
        min_probes: added to the geometric count (1: never an empty map).
        radius, band_margin: of :func:`probe_map` and :func:`transition_band`.

    Returns:
        float32 (2, H, W).
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    count = min(min_probes + int(rng.geometric(p)) - 1, max_probes)
    band = transition_band(alpha, band_margin)
    rows, cols = np.nonzero(band) if band.any() else np.indices(alpha.shape).reshape(2, -1)
    picks = rng.integers(rows.size, size=count)
    levels = quantised_map(alpha[rows[picks], cols[picks]])
    return probe_map(alpha.shape, zip(rows[picks], cols[picks], levels), radius)


def random_probe_maps(alpha: torch.Tensor, rng: np.random.Generator, **options) -> torch.Tensor:
    """:func:`random_probe_map` for every (1, H, W) alpha of a (B, 1, H, W) batch: (B, 2, H, W)
    float32 on ``alpha``'s device (images drawn in batch order)."""
    alphas = alpha.detach()[:, 0].float().cpu().numpy()
    maps = np.stack([random_probe_map(a, rng, **options) for a in alphas])
    return torch.from_numpy(maps).to(alpha.device)


class RandomProbeMapd(AlphaDrawnMapd):
    """Dict transform adding a random training probe map drawn from ``data[alpha_key]``
    (:class:`~medmat.data.transforms.AlphaDrawnMapd`).

    ``transform(data, rng) -> data`` like :class:`~medmat.data.user_maps.RandomUserMapd`: the
    input dict is not modified; the returned one holds ``data[output_key]`` float32 (2, H, W).
    Apply it after the geometric augmentations, so that the clicks answer the augmented alpha.

    Args:
        p, max_probes, radius, band_margin, min_probes: as :func:`random_probe_map`.
        alpha_key, output_key: where the alpha is read and the map goes.
    """

    what = "probe map"

    def __init__(
        self,
        p: float = PROBE_COUNT_P,
        max_probes: int = MAX_TRAINING_PROBES,
        radius: float = PROBE_MAP_RADIUS,
        band_margin: int = BAND_MARGIN,
        min_probes: int = 0,
        alpha_key: str = "alpha",
        output_key: str = "probe_map",
    ):
        if not 0.0 < p <= 1.0:
            raise MedmatError(f"probe map p must be in (0, 1], got {p}")
        if not (isinstance(max_probes, int) and max_probes >= 0) or not (isinstance(band_margin, int) and band_margin >= 0):
            raise MedmatError("probe map max_probes and band_margin must be integers >= 0")
        if not radius >= 0:
            raise MedmatError(f"probe map radius must be >= 0, got {radius!r}")
        self.p, self.max_probes, self.radius, self.band_margin = float(p), max_probes, float(radius), band_margin
        self.min_probes = int(min_probes)
        super().__init__(alpha_key, output_key)

    def draw(self, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return random_probe_map(alpha, rng, self.p, self.max_probes, self.radius, self.band_margin, self.min_probes)
