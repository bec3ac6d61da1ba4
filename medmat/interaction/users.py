"""Simulated users who answer with actions, in the interactive-segmentation tradition adapted to alpha.

RITM and SimpleClick score a segmentation tool by a user who clicks at the centre of the largest
error region: the pixel of that region farthest from its border (the maximum of its distance
transform). The users here do the same on an alpha matte:

- the error map is ``|alpha - alpha_gt|`` on the evaluation band (the trimap's unknown pixels,
  ``trimap == 128``; the whole image for a case without a trimap, :func:`user_band`);
- an *error region* is a connected component (``scipy.ndimage.label``, 4-connected) of the
  pixels whose error exceeds :data:`ERROR_THRESHOLD`; the user picks the largest one that holds
  none of their earlier clicks (when every region holds one, the largest remainder of the regions
  once discs around the clicks are carved out) and clicks where the distance transform times the
  error is largest (:func:`click_position`);
- :class:`ProbeUser` answers the ground-truth alpha there, quantised to the five probe levels;
  with ``noise`` the answer is one level off with probability 0.2 and the click lands up to
  ±2 pixels from where it was aimed (seeded). With ``levels=(0, 1)`` it is the *binary-click*
  control: an answer of 0 or 1 only, as a segmentation click;
- :class:`BrushUser` paints the largest error region's skeleton (its longest path) with
  "foreground" where the matte lies below the truth there, "background" where above;
- :class:`PatchUser` is dugMatting's protocol through the fusion: the N patches of highest mean
  uncertainty (Algorithm 1) answered foreground / background / transition from the ground truth.

A user's :meth:`interact` returns the actions of one interaction (an empty list when nothing is
left to correct); it never reads more of the ground truth than a person looking at the image would
know at the pixels it answers about.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sparse
from scipy import ndimage
from scipy.sparse.csgraph import dijkstra
from skimage.morphology import skeletonize

from medmat.data.probe_maps import quantised_map
from medmat.data.sample import Sample
from medmat.data.user_maps import patch_label
from medmat.interaction.actions import PROBE_LEVELS, Action, PatchAnswer, Probe, Stroke, probe_disc
from medmat.uncertainty.proposals import propose_patches

#: An error region holds the band pixels whose |alpha - alpha_gt| exceeds this.
ERROR_THRESHOLD = 0.1
#: The noisy user's chance of answering one level off, and how far (pixels) a click may land.
NOISE_PROBABILITY = 0.2
JITTER_PIXELS = 2
#: Radius (pixels) of the discs carved around earlier clicks when every region holds one.
CARVE_RADIUS = 2.0
#: Radius (pixels) of the simulated brush.
BRUSH_RADIUS = 1.0
#: The user map's answers (App. B.1) as the patch labels of :class:`~medmat.interaction.actions.PatchAnswer`.
PATCH_ANSWERS = {1.0: "foreground", -1.0: "background", 0.5: "transition"}


def user_band(sample: Sample) -> np.ndarray:
    """bool (H, W): where the simulated user looks for errors: ``trimap == 128``, or every pixel
    for a case without a trimap (or whose trimap has no unknown pixel), as the Table IV region."""
    if sample.trimap is not None:
        band = np.asarray(sample.trimap) == 128
        if band.any():
            return band
    return np.ones(sample.shape, dtype=bool)


def quantise(value: float, levels: Sequence[float] = PROBE_LEVELS) -> float:
    """The level nearest ``value`` (ties to the lower level)."""
    return float(quantised_map(np.asarray(value), levels))


def error_map(alpha: np.ndarray, alpha_gt: np.ndarray, band: np.ndarray) -> np.ndarray:
    """``|alpha - alpha_gt|`` on the band, 0 elsewhere; float64 (H, W)."""
    return np.where(band, np.abs(np.asarray(alpha, np.float64) - np.asarray(alpha_gt, np.float64)), 0.0)


def largest_error_region(error: np.ndarray, clicked: Sequence[tuple[int, int]],
                         threshold: float = ERROR_THRESHOLD) -> np.ndarray | None:
    """bool (H, W): the largest error region (``error > threshold``, 4-connected) holding no click.

    When every region holds a click, discs of :data:`CARVE_RADIUS` around the clicks are carved out
    and the largest remaining region is taken. None when no error is left.
    """
    wrong = error > threshold
    labels, count = ndimage.label(wrong)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    for row, col in clicked:
        sizes[labels[row, col]] = 0
    if sizes.max() == 0:
        carved = wrong.copy()
        for row, col in clicked:
            carved &= ~probe_disc(wrong.shape, row, col, CARVE_RADIUS)
        labels, count = ndimage.label(carved)
        if count == 0:
            return None
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        sizes[0] = 0
    return labels == int(np.argmax(sizes))


def click_position(region: np.ndarray, error: np.ndarray) -> tuple[int, int]:
    """The pixel of ``region`` where its distance transform times the error is largest (the
    image's border counts as the region's border); ties go to the first in raster order."""
    # Padding with background makes the image border a boundary, as RITM's click simulation does.
    distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    score = np.where(region, distance * error, -1.0)
    row, col = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(row), int(col)


def skeleton_path(region: np.ndarray) -> np.ndarray:
    """The longest path through a region's skeleton: float (P, 2) (row, col), ordered along it.

    The skeleton (:func:`skimage.morphology.skeletonize`) is a graph of 8-neighbour pixels; its
    longest shortest path is found by two Dijkstra sweeps (the farthest pixel from any pixel, then
    the farthest from that one), exact on a tree. A region too small to skeletonise gives its
    deepest pixel.
    """
    skeleton = skeletonize(region)
    if not skeleton.any():
        distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
        return np.array([np.unravel_index(int(np.argmax(distance)), region.shape)], dtype=np.float64)
    points = np.argwhere(skeleton)
    index = np.full(region.shape, -1, dtype=np.int64)
    index[skeleton] = np.arange(len(points))
    rows, cols, weights = [], [], []
    height, width = region.shape
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        target = points + (dr, dc)
        inside = (target[:, 0] < height) & (target[:, 1] >= 0) & (target[:, 1] < width)
        neighbour = np.full(len(points), -1, dtype=np.int64)
        neighbour[inside] = index[target[inside, 0], target[inside, 1]]
        linked = neighbour >= 0
        rows.append(np.flatnonzero(linked))
        cols.append(neighbour[linked])
        weights.append(np.full(int(linked.sum()), np.hypot(dr, dc)))
    graph = sparse.coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                              shape=(len(points), len(points))).tocsr()
    far = dijkstra(graph, directed=False, indices=0)
    start = int(np.argmax(np.where(np.isfinite(far), far, -1.0)))
    distances, predecessors = dijkstra(graph, directed=False, indices=start, return_predecessors=True)
    end = int(np.argmax(np.where(np.isfinite(distances), distances, -1.0)))
    path = [end]
    while path[-1] != start:
        path.append(int(predecessors[path[-1]]))
    return points[path[::-1]].astype(np.float64)


@dataclass
class ProbeUser:
    """Clicks the largest error region's centre and answers the alpha there (module docstring).

    Attributes:
        levels: the answers allowed (:data:`PROBE_LEVELS`; ``(0.0, 1.0)``: binary clicks).
        noisy: answer one level off with probability :data:`NOISE_PROBABILITY` and jitter the
            click by up to :data:`JITTER_PIXELS` in each direction.
        seed: seeds the noise.
    """

    levels: tuple[float, ...] = PROBE_LEVELS
    noisy: bool = False
    seed: int = 0
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def interact(self, sample: Sample, alpha: np.ndarray, actions: Sequence[Action]) -> list[Action]:
        """One click: ``[Probe]``, or ``[]`` when no error region is left."""
        error = error_map(alpha, sample.alpha, user_band(sample))
        clicked = [(action.row, action.col) for action in actions if isinstance(action, Probe)]
        region = largest_error_region(error, clicked)
        if region is None:
            return []
        row, col = click_position(region, error)
        # The user reads the truth where they aim; the noisy hand may land a little off.
        value = quantise(float(sample.alpha[row, col]), self.levels)
        if self.noisy:
            if self.rng.random() < NOISE_PROBABILITY:
                index, step = self.levels.index(value), 1 if self.rng.random() < 0.5 else -1
                if not 0 <= index + step < len(self.levels):
                    step = -step  # one level off inside the scale: at its ends, the only neighbour
                value = self.levels[index + step]
            height, width = region.shape
            row = int(np.clip(row + self.rng.integers(-JITTER_PIXELS, JITTER_PIXELS + 1), 0, height - 1))
            col = int(np.clip(col + self.rng.integers(-JITTER_PIXELS, JITTER_PIXELS + 1), 0, width - 1))
        return [Probe(row, col, value)]


@dataclass
class BrushUser:
    """Paints the largest error region's skeleton foreground (matte too low there) or background (too high)."""

    radius: float = BRUSH_RADIUS

    def interact(self, sample: Sample, alpha: np.ndarray, actions: Sequence[Action]) -> list[Action]:
        """One stroke: ``[Stroke]``, or ``[]`` when no error region is left."""
        band = user_band(sample)
        error = error_map(alpha, sample.alpha, band)
        painted = [tuple(int(round(v)) for v in point) for action in actions if isinstance(action, Stroke)
                   for point in action.points]
        region = largest_error_region(error, painted)
        if region is None:
            return []
        signed = np.asarray(sample.alpha, np.float64)[region] - np.asarray(alpha, np.float64)[region]
        label = "foreground" if float(np.mean(signed)) > 0 else "background"
        return [Stroke(tuple(map(tuple, skeleton_path(region))), self.radius, label)]


@dataclass
class PatchUser:
    """dugMatting's protocol through the fusion: the N patches of highest mean uncertainty
    (Algorithm 1, :func:`~medmat.uncertainty.proposals.propose_patches`; answered patches are not
    proposed again), each answered from the ground truth (:func:`~medmat.data.user_maps.patch_label`).

    Attributes:
        uncertainty: float (H, W), the map the patches are proposed from (the NIG epistemic map, or
            :func:`~medmat.interaction.fusion.fusion_uncertainty` of the prediction).
        num_proposals: N patches per interaction.
        patch_size: side of the proposal grid's patches in pixels.
    """

    uncertainty: np.ndarray
    num_proposals: int = 4
    patch_size: int = 16

    def interact(self, sample: Sample, alpha: np.ndarray, actions: Sequence[Action]) -> list[Action]:
        """The answers of one round: one :class:`PatchAnswer` per proposed patch (``[]`` when none is left)."""
        answered = np.zeros(sample.shape, dtype=bool)
        for action in actions:
            if isinstance(action, PatchAnswer):
                answered[action.window] = True
        proposals = propose_patches(self.uncertainty, self.num_proposals, self.patch_size, labelled=answered)
        return [PatchAnswer(patch.top, patch.left, patch.height, patch.width,
                            PATCH_ANSWERS[patch_label(sample.alpha[patch.window])]) for patch in proposals]
