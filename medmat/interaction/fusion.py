"""Fusion of a user's actions with any model's predicted alpha: an uncertainty-weighted, edge-aware solve.

A probe click says what alpha is at one pixel; the error of a medical matte is coherent along
the uncertain border (one global logit offset of the predicted alpha removes a quarter of
Brain-growth's Table IV SAD, :mod:`medmat.interaction.ceiling`), so an answer should move the
whole uncertain band near it and nothing the model is sure of. The fusion finds an offset field
``d`` (H, W) in logit space and returns ``alpha = sigmoid(logit(alpha_hat) + d)``, where ``d``
minimises (Levin et al.'s closed-form matting with scribbles, with the network's alpha as a prior
weighted by its confidence as in Rhemann et al.; Barron & Poole's bilateral solver is the same
quadratic)::

    sum_i c_i d_i^2  +  lambda sum_(i~j) w_ij (d_i - d_j)^2  +  beta sum_(i constrained) (d_i - t_i)^2

- ``c_i = (1 - u_i)^p + c_floor``: the prior's confidence, falling with the model's uncertainty
  ``u`` in bits (:func:`fusion_uncertainty`: the largest of the entropy maps the model gives,
  its NIG epistemic map scaled to its maximum, or the alpha's own binary entropy);
- ``w_ij = exp(-|I_i - I_j|^2 / sigma^2)`` between 4- (or 8-) neighbours: an answer spreads
  along the image's iso-intensity lines, not across its edges;
- ``t_i``: an action's target offset, ``logit(value) - logit(alpha_hat_i)`` on the pixels it
  speaks about (:func:`action_targets`); an answer of 0 or 1 is a bound, not a value: it never
  raises a background pixel already below it (or lowers a foreground one).

The problem is solved on the uncertain band only: the pixels with ``u > band_uncertainty`` and
those an action speaks about, grown by ``band_margin`` pixels, with free (Neumann) borders;
``d = 0`` elsewhere, so **a confident pixel keeps its alpha exactly**, whatever the actions. The
system is symmetric positive definite and sparse (5 entries a row; 9 with 8 neighbours); a direct
factorisation (:func:`solve_system`) solves it faster at these sizes than a preconditioned
conjugate gradient, so no iterate is carried from one interaction to the next: every fusion
replays the whole action list from the prediction, and the result depends on nothing else.

An action's own pixels take their whole target (the user said so there); what spreads from them is
clipped to ``spread_limit`` logit units, and a probe spreads the smallest offset that brings its
pixel within ``answer_tolerance`` of the answer: the pixel the simulated (or a real) user clicks is
where the matte is most wrong, and its offset, spread unclipped over the band, overshoots the
neighbours (measured in docs/interaction.md).

The same system with every target 1 gives the *influence* ``g`` in [0, 1] of the actions on each
pixel (the maximum principle of the M-matrix): the updated uncertainty maps are ``u (1 - g)``,
so a pixel the user has settled is no longer uncertain.

Every parameter lives in :class:`FusionParams`; :data:`DEFAULT_PARAMS` holds the defaults and
docs/interaction.md the measurement that chose them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sparse
from scipy import ndimage
from scipy.sparse.linalg import splu

from medmat.errors import MedmatError
from medmat.interaction.actions import Action, Probe, action_mask, check_action
from medmat.models.contract import ENTROPY_OUTPUTS, VARIANCE_OUTPUTS
from medmat.uncertainty import lesion_uncertainty
from medmat.uncertainty.entropy import MAX_ENTROPY


#: FusionParams fields that may be 0 but not negative.
NON_NEGATIVE_PARAMS = ("confidence_power", "band_uncertainty", "band_margin", "click_radius", "answer_tolerance",
                       "spread_uncertainty")


@dataclass(frozen=True)
class FusionParams:
    """The fusion's parameters (module docstring), in one place. The defaults were chosen by the
    measurement in docs/interaction.md (Brain-growth, the clean probe user).

    Attributes:
        smoothness: lambda, weight of the edge-aware smoothness against the prior (confidence 1).
        constraint: beta, weight of an action's target.
        confidence_power: p of ``c = (1 - u)^p + confidence_floor``: larger lets the band give way sooner.
        confidence_floor: the least confidence (keeps the system definite where u = 1 bit).
        edge_sigma: sigma of the edge weights, in image intensity units ([0, 1]).
        neighbours: 4 or 8.
        band_uncertainty: u in bits above which a pixel belongs to the band that is solved.
        band_margin: pixels the band (and every action's pixels) is grown by.
        click_radius: a probe sets the alpha of the pixels within this many pixels of the click.
        spread_limit: the largest offset (logit units) an action spreads to other pixels; its own
            pixels take their whole target.
        answer_tolerance: a probe spreads the offset to the nearest alpha within this of its answer
            (half a level: the answer is the level nearest the alpha the user sees).
        spread_uncertainty: u in bits at a probe's clicked pixel below which its spread shrinks in
            proportion (``spread_limit * min(1, u / spread_uncertainty)``): a click where the model
            was sure and wrong is read as a local miss, not a bias of the whole band. 0: off.
        target_eps: answers of 0 and 1 aim at ``eps`` and ``1 - eps`` (logit +-6.9 for 1e-3).
    """

    smoothness: float = 100.0
    constraint: float = 100.0
    confidence_power: float = 16.0
    confidence_floor: float = 1e-3
    edge_sigma: float = 0.1
    neighbours: int = 4
    band_uncertainty: float = 0.05
    band_margin: int = 2
    click_radius: float = 1.5
    spread_limit: float = 2.0
    answer_tolerance: float = 0.0625
    spread_uncertainty: float = 0.0
    target_eps: float = 1e-3

    def __post_init__(self):
        positive = ("smoothness", "constraint", "confidence_floor", "edge_sigma", "spread_limit", "target_eps")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise MedmatError(f"fusion parameter {name} must be a positive number, got {value!r}")
        if isinstance(self.band_margin, bool) or not isinstance(self.band_margin, int):
            raise MedmatError(f"fusion parameter band_margin must be a whole number of pixels, got {self.band_margin!r}")
        if self.neighbours not in (4, 8):
            raise MedmatError(f"fusion parameter neighbours must be 4 or 8, got {self.neighbours!r}")
        for name in NON_NEGATIVE_PARAMS:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise MedmatError(f"fusion parameter {name} must be a number >= 0, got {value!r}")
        if not self.target_eps < 0.5:
            raise MedmatError(f"fusion parameter target_eps must lie below 0.5, got {self.target_eps!r}")


DEFAULT_PARAMS = FusionParams()


def fusion_params(**overrides) -> FusionParams:
    """:data:`DEFAULT_PARAMS` with some fields replaced (a MedmatError names an unknown one)."""
    unknown = sorted(set(overrides) - set(FusionParams.__dataclass_fields__))
    if unknown:
        raise MedmatError(f"unknown fusion parameter {', '.join(unknown)}; known: "
                          f"{', '.join(FusionParams.__dataclass_fields__)}")
    return replace(DEFAULT_PARAMS, **overrides)


@dataclass(frozen=True)
class Fusion:
    """The result of :func:`fuse`.

    Attributes:
        alpha: float32 (H, W) in [0, 1], the fused matte (the prior's own value where ``offset`` is 0).
        offset: float64 (H, W), d in logit units (0 outside ``domain``).
        influence: float32 (H, W) in [0, 1], how much the actions decide each pixel (None when not asked).
        domain: bool (H, W), the pixels solved for.
        constrained: bool (H, W), the pixels an action gave a target.
        seconds: wall time of the fusion.
    """

    alpha: np.ndarray
    offset: np.ndarray
    influence: np.ndarray | None
    domain: np.ndarray
    constrained: np.ndarray
    seconds: float


def logit(alpha: np.ndarray, eps: float) -> np.ndarray:
    """``log(a / (1 - a))`` of ``alpha`` clipped to [eps, 1 - eps], float64."""
    clipped = np.clip(np.asarray(alpha, dtype=np.float64), eps, 1.0 - eps)
    return np.log(clipped) - np.log1p(-clipped)


def sigmoid(values: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))``, float64, without overflow warnings."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(values, dtype=np.float64)))


#: Clamp of the prior alpha before its logit: far below what 8-bit mattes resolve (1/255).
PRIOR_EPS = 1e-6


def fusion_uncertainty(maps: Mapping[str, np.ndarray]) -> np.ndarray:
    """The uncertainty the fusion weighs the prior by, float64 (H, W) in [0, 1] (bits).

    Args:
        maps: a prediction's maps ("alpha" always): the entropy maps "uncertainty_map" and
            "lesion_uncertainty" (nats, in [0, ln 2]) and the NIG "epistemic" variance when the
            model gives them.

    Returns:
        The pixelwise largest of the entropy maps in bits and the epistemic map divided by its
        maximum (a variance has no natural scale); for a model that gives none of these, the
        binary entropy of its alpha in bits.
    """
    candidates = [np.asarray(maps[key], dtype=np.float64) / MAX_ENTROPY for key in ENTROPY_OUTPUTS if key in maps]
    if "epistemic" in maps:
        epistemic = np.asarray(maps["epistemic"], dtype=np.float64)
        peak = float(np.max(epistemic)) if epistemic.size else 0.0
        candidates.append(epistemic / peak if peak > 0 else np.zeros_like(epistemic))
    if not candidates:
        candidates = [np.asarray(lesion_uncertainty(np.asarray(maps["alpha"], dtype=np.float64))) / MAX_ENTROPY]
    return np.clip(np.nan_to_num(np.max(candidates, axis=0)), 0.0, 1.0)


def confidence(uncertainty: np.ndarray, params: FusionParams = DEFAULT_PARAMS) -> np.ndarray:
    """``c = (1 - u)^p + floor``, float64 (H, W): the weight that keeps each pixel at the prior."""
    return (1.0 - np.clip(uncertainty, 0.0, 1.0)) ** params.confidence_power + params.confidence_floor


def _neighbour_offsets(neighbours: int) -> list[tuple[int, int, float]]:
    """(row step, column step, weight scale) of each edge direction; diagonals count 1/sqrt(2)."""
    straight = [(0, 1, 1.0), (1, 0, 1.0)]
    return straight if neighbours == 4 else straight + [(1, 1, 2**-0.5), (1, -1, 2**-0.5)]


def edge_weights(image: np.ndarray, params: FusionParams = DEFAULT_PARAMS) -> list[tuple[int, int, np.ndarray]]:
    """The weights ``w_ij = exp(-mean_c (I_c,i - I_c,j)^2 / sigma^2)`` of the grid's edges.

    Args:
        image: float (C, H, W) in [0, 1].

    Returns:
        ``[(row step, column step, w)]``: ``w[r, c]`` (float64) joins pixel (r, c) to (r + dr, c + dc),
        with shape (H - dr, W - |dc|) (columns from max(0, -dc)).
    """
    image = np.asarray(image, dtype=np.float64)
    height, width = image.shape[-2:]
    weights = []
    for dr, dc, scale in _neighbour_offsets(params.neighbours):
        left, right = max(0, -dc), width - max(0, dc)
        first = image[:, : height - dr, left:right]
        second = image[:, dr:, left + dc : right + dc]
        distance = np.mean((first - second) ** 2, axis=0)
        weights.append((dr, dc, scale * np.exp(-distance / params.edge_sigma**2)))
    return weights


def action_targets(
    actions: Sequence[Action], prior_logit: np.ndarray, params: FusionParams = DEFAULT_PARAMS,
    uncertainty: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels the actions give a target offset, the targets, and what spreads from them.

    Later actions override earlier ones where they overlap (the newest answer counts).

    - A probe of value v gives its whole disc the offset that takes the clicked pixel to
      ``logit(v)`` (the disc only makes the answer robust to one pixel's noise: a border pixel's
      disc holds background and lesion pixels the answer is not about). What spreads is the
      smallest offset that brings the clicked pixel within ``answer_tolerance`` of v: a quantised
      answer says the alpha lies within half a level of it, and one pixel's offset is a noisy
      estimate of its neighbours'.
    - A stroke or patch answer of 0 (1) aims each of its pixels at ``logit(eps)``
      (``logit(1 - eps)``): the user said so of every pixel.
    - An answer of 0 (1) never raises (lowers) a pixel already beyond it; a "transition" patch
      says nothing. The spread offsets are clipped to ``spread_limit`` (for a probe, with
      ``spread_uncertainty`` set, to its share of it by the clicked pixel's uncertainty).

    Args:
        actions: checked actions.
        prior_logit: float64 (H, W), the prior alpha's logit.
        uncertainty: float (H, W) in [0, 1] bits (:func:`fusion_uncertainty`); needed only with
            ``params.spread_uncertainty`` set.

    Returns:
        ``(constrained, target, spread)``: bool (H, W), float64 (H, W) offsets the constrained
        pixels take, float64 (H, W) offsets they spread (0 where not constrained).
    """
    shape = prior_logit.shape
    constrained = np.zeros(shape, dtype=bool)
    target = np.zeros(shape, dtype=np.float64)
    spread = np.zeros(shape, dtype=np.float64)
    for action in actions:
        value = action.value
        if value is None:
            continue
        pixels = action_mask(action, shape, params.click_radius)
        aimed = prior_logit[action.row, action.col] if isinstance(action, Probe) else prior_logit[pixels]
        wanted = np.broadcast_to(float(logit(np.array(value), params.target_eps)) - aimed, int(pixels.sum()))
        if value == 0.0:
            wanted = np.minimum(wanted, 0.0)
        elif value == 1.0:
            wanted = np.maximum(wanted, 0.0)
        spreading = wanted
        if isinstance(action, Probe):
            # The nearest alpha within the tolerance of the answer, from the clicked pixel's prior.
            low, high = logit(np.array([value - params.answer_tolerance, value + params.answer_tolerance]),
                              params.target_eps)
            spreading = np.broadcast_to(np.clip(aimed, low, high) - aimed, wanted.shape)
        limit = params.spread_limit
        if isinstance(action, Probe) and params.spread_uncertainty > 0:
            if uncertainty is None:
                raise MedmatError("fusion parameter spread_uncertainty needs the uncertainty map")
            limit *= min(1.0, float(uncertainty[action.row, action.col]) / params.spread_uncertainty)
        target[pixels] = wanted
        spread[pixels] = np.clip(spreading, -limit, limit)
        constrained |= pixels
    return constrained, target, spread


def solve_domain(uncertainty: np.ndarray, constrained: np.ndarray, params: FusionParams = DEFAULT_PARAMS) -> np.ndarray:
    """bool (H, W): the uncertain band (u > band_uncertainty) and the constrained pixels, grown by the margin."""
    domain = (uncertainty > params.band_uncertainty) | constrained
    if params.band_margin and domain.any():
        domain = ndimage.binary_dilation(domain, structure=np.ones((3, 3), bool), iterations=params.band_margin)
    return domain


def system_matrix(
    domain: np.ndarray, weights: list[tuple[int, int, np.ndarray]], diagonal: np.ndarray, smoothness: float
) -> sparse.csr_matrix:
    """``diag(diagonal) + lambda L`` on the domain's pixels (row-major order), L the weighted graph
    Laplacian of the edges with both ends in the domain (free borders). float64 CSR (n, n)."""
    height, width = domain.shape
    index = np.full(domain.shape, -1, dtype=np.int64)
    index[domain] = np.arange(int(domain.sum()))
    rows, cols, values = [], [], []
    for dr, dc, w in weights:
        left, right = max(0, -dc), width - max(0, dc)
        first = index[: height - dr, left:right]
        second = index[dr:, left + dc : right + dc]
        inside = (first >= 0) & (second >= 0)
        rows.append(first[inside])
        cols.append(second[inside])
        values.append(w[inside])
    i, j, w = np.concatenate(rows), np.concatenate(cols), smoothness * np.concatenate(values)
    n = int(domain.sum())
    degree = np.bincount(i, w, minlength=n) + np.bincount(j, w, minlength=n)
    matrix = sparse.coo_matrix(
        (np.concatenate([-w, -w, degree + diagonal]),
         (np.concatenate([i, j, np.arange(n)]), np.concatenate([j, i, np.arange(n)]))),
        shape=(n, n),
    )
    return matrix.tocsr()


def solve_system(matrix: sparse.csr_matrix, rhs: np.ndarray) -> np.ndarray:
    """The solution of ``matrix x = rhs`` for a symmetric positive definite band system.

    Args:
        matrix: (n, n) from :func:`system_matrix`.
        rhs: (n,) or (n, k) right-hand sides.

    Returns:
        float64 of ``rhs``'s shape.
    """
    # SuperLU in symmetric mode (minimum-degree ordering of A + A^T, no pivoting: the system is
    # SPD) factorises a 256² band in tens of milliseconds, less than an incomplete Cholesky
    # preconditioner and its conjugate-gradient iterations cost, and the influence's second
    # right-hand side reuses the factor.
    factor = splu(matrix.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                  options={"SymmetricMode": True})
    return factor.solve(np.asarray(rhs, dtype=np.float64))


def check_fusion_inputs(image: np.ndarray, alpha: np.ndarray, uncertainty: np.ndarray) -> tuple[int, int]:
    """(H, W) of matching (C, H, W) image, (H, W) alpha and uncertainty; a MedmatError otherwise."""
    image, alpha, uncertainty = np.asarray(image), np.asarray(alpha), np.asarray(uncertainty)
    if image.ndim != 3 or alpha.ndim != 2 or image.shape[-2:] != alpha.shape or uncertainty.shape != alpha.shape:
        raise MedmatError(f"fusion needs a (C, H, W) image with (H, W) alpha and uncertainty, got "
                          f"{image.shape}, {alpha.shape} and {uncertainty.shape}")
    for name, values in (("image", image), ("alpha", alpha), ("uncertainty", uncertainty)):
        if not np.all(np.isfinite(values)):
            raise MedmatError(f"fusion {name} contains NaN or infinite values")
    return alpha.shape


def fuse(
    image: np.ndarray,
    alpha: np.ndarray,
    uncertainty: np.ndarray,
    actions: Sequence[Action],
    params: FusionParams = DEFAULT_PARAMS,
    with_influence: bool = False,
) -> Fusion:
    """The prior alpha corrected by the actions (module docstring).

    Args:
        image: float (C, H, W) in [0, 1], the image the model predicted.
        alpha: float (H, W) in [0, 1], the model's alpha (the prior, alpha_hat).
        uncertainty: float (H, W) in [0, 1] bits, :func:`fusion_uncertainty` of the prediction.
        actions: the user's actions, oldest first (each is checked against the image here).
        params: :class:`FusionParams`.
        with_influence: also solve for the actions' influence (for the updated uncertainty maps).

    Returns:
        A :class:`Fusion`; with no action (or only "transition" answers) the prior alpha itself.

    Raises:
        MedmatError: mismatched shapes, NaN, or an action outside the image.
    """
    start = time.perf_counter()
    shape = check_fusion_inputs(image, alpha, uncertainty)
    for action in actions:
        check_action(action, shape)
    prior = np.clip(np.asarray(alpha, dtype=np.float64), 0.0, 1.0)
    prior_logit = logit(prior, PRIOR_EPS)
    constrained, target, spread = action_targets(actions, prior_logit, params, uncertainty)
    offset = np.zeros(shape, dtype=np.float64)
    influence = np.zeros(shape, dtype=np.float32) if with_influence else None
    if not constrained.any():
        empty = np.zeros(shape, dtype=bool)
        return Fusion(prior.astype(np.float32), offset, influence, empty, constrained, time.perf_counter() - start)
    domain = solve_domain(uncertainty, constrained, params)
    weight = params.constraint * constrained[domain]
    diagonal = confidence(np.asarray(uncertainty, dtype=np.float64)[domain], params) + weight
    matrix = system_matrix(domain, edge_weights(image, params), diagonal, params.smoothness)
    rhs = weight * spread[domain]
    solution = solve_system(matrix, np.column_stack([rhs, weight]) if with_influence else rhs)
    offset[domain] = solution[:, 0] if with_influence else solution
    # The answers hold where they were given; beyond, only their clipped offsets spread.
    offset[constrained] = target[constrained]
    if with_influence:
        influence[domain] = np.clip(solution[:, 1], 0.0, 1.0)
        influence[constrained] = 1.0
    # The change of the sigmoid, added to the prior: exactly the prior where d = 0 (also at alpha
    # 0 and 1, which the logit's clamp would otherwise move by 1e-6).
    fused = np.clip(prior + sigmoid(prior_logit + offset) - sigmoid(prior_logit), 0.0, 1.0)
    return Fusion(fused.astype(np.float32), offset, influence, domain, constrained, time.perf_counter() - start)


def fused_maps(maps: Mapping[str, np.ndarray], fusion: Fusion) -> dict[str, np.ndarray]:
    """A prediction's maps after the fusion, float32: "alpha" the fused matte; "lesion_uncertainty"
    (when given) the fused alpha's binary entropy; "uncertainty_map", "epistemic", "aleatoric" (when
    given) times ``1 - influence``: what the user settled is no longer uncertain. Other maps as they are."""
    updated = {key: np.asarray(value, dtype=np.float32) for key, value in maps.items()}
    updated["alpha"] = fusion.alpha
    if "lesion_uncertainty" in updated:
        updated["lesion_uncertainty"] = np.asarray(lesion_uncertainty(fusion.alpha), dtype=np.float32)
    if fusion.influence is not None:
        for key in ("uncertainty_map", *VARIANCE_OUTPUTS):
            if key in updated:
                updated[key] = (updated[key] * (1.0 - fusion.influence)).astype(np.float32)
    return updated
