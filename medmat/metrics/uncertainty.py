"""Is the uncertainty trustworthy? AUROCs of uncertainty maps and calibration of NIG predictive intervals.

- **AUROC for errors**: how well an uncertainty map ranks the pixels whose alpha error exceeds
  0.1 (``|alpha - alpha_gt| > 0.1``) above the others; 1 perfect, 0.5 chance.
- **AUROC for annotator disagreement**: the same for the pixels where the annotators' masks
  differ (some say lesion, some do not).
- **Calibration** (Kuleshov et al., 2018, cited by dugMatting App. C.2): the NIG's marginal of y is
  a Student-t (2α dof, location γ, squared scale β(1 + ω)/(ωα)); with ``F`` its CDF, the
  probability integral transform ``u = F(y)`` of a calibrated model is uniform, so for every
  confidence level p the fraction of pixels with ``u <= p`` (y below the p-quantile, Kuleshov's
  one-sided intervals) is p; for central intervals the fraction with ``|2u - 1| <= p`` is p.
  The calibration curve is (expected p, observed fraction) at equally spaced levels; the expected
  calibration error is the mean of ``|observed - p|`` over the levels (0 for a calibrated model).
  Note: y is a matte in [0, 1] with many pixels exactly 0 or 1, which a Student-t cannot
  represent exactly; the curve measures how well the NIG's intervals cover them nonetheless.
- **Recalibration** (Kuleshov et al., 2018, Algorithm 1): a map R fitted on held-out PIT values
  so that R(F(y)) is uniform; the calibrated forecast is R∘F. Kuleshov fit R by isotonic
  regression of the empirical CDF of the PIT values on the values, which are already monotone,
  so R is the empirical CDF itself (:func:`fit_recalibration`). :func:`uncertainty_report`
  cross-fits it over cases (:func:`cross_fitted_pit`): every case's PIT values are recalibrated
  by a map fitted on other cases only, as a user would fit R on a few labelled cases of their own.

Pixel sets are pooled over cases by the caller (concatenate the flattened maps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

from medmat.uncertainty.nig import NIG, predictive_scale

#: |alpha error| above which a pixel counts as wrong (the issue's, as Fig. 1 of dugMatting).
ERROR_THRESHOLD = 0.1
#: Confidence levels of the calibration curves: 0, 0.05, ..., 1.
DEFAULT_LEVELS = np.linspace(0.0, 1.0, 21)
INTERVALS = ("one_sided", "central")
#: Groups of cases for the cross-fitted recalibration (fewer when there are fewer cases).
RECALIBRATION_GROUPS = 5
#: Suffix of the report's recalibrated calibration curves ("one_sided_recalibrated", ...).
RECALIBRATED = "_recalibrated"

#: Uncertainty maps compared by :func:`uncertainty_report`: model output key -> report name.
UNCERTAINTY_MAPS = {
    "uncertainty_map": "prob_unet_entropy",
    "lesion_uncertainty": "alpha_entropy",
    "epistemic": "epistemic",
    "aleatoric": "aleatoric",
}


def error_labels(alpha: np.ndarray, alpha_gt: np.ndarray, threshold: float = ERROR_THRESHOLD) -> np.ndarray:
    """bool, same shape: ``|alpha - alpha_gt| > threshold``."""
    return np.abs(np.asarray(alpha, dtype=np.float64) - np.asarray(alpha_gt, dtype=np.float64)) > threshold


def disagreement_labels(masks: np.ndarray) -> np.ndarray:
    """bool (H, W): pixels where the K annotator masks (K, H, W) differ (some 1, some 0)."""
    masks = np.asarray(masks, dtype=bool)
    return masks.any(axis=0) & ~masks.all(axis=0)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` ranking the positive ``labels`` first.

    Args:
        scores: float, any shape (flattened), finite; higher = more uncertain.
        labels: bool, same shape.

    Returns:
        The AUROC in [0, 1] (ties count 1/2), or None when all labels are equal (undefined).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in size: {scores.size} vs {labels.size}")
    if labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels, scores))


def uncertainty_aurocs(
    maps: Mapping[str, np.ndarray],
    alpha: np.ndarray,
    alpha_gt: np.ndarray,
    disagreement: np.ndarray | None = None,
    threshold: float = ERROR_THRESHOLD,
) -> dict[str, float | None]:
    """AUROC of every uncertainty map for the error pixels and, optionally, the disagreement pixels.

    Args:
        maps: name -> uncertainty values of the same pixels (any shape, e.g. pooled (P,)).
        alpha, alpha_gt: predicted and ground-truth alpha of those pixels.
        disagreement: bool labels of those pixels (:func:`disagreement_labels`), or None.
        threshold: the error threshold.

    Returns:
        ``{"<name>/error": auroc, "<name>/disagreement": auroc}`` (None where undefined).
    """
    errors = error_labels(alpha, alpha_gt, threshold)
    result = {}
    for name, values in maps.items():
        result[f"{name}/error"] = auroc(values, errors)
        if disagreement is not None:
            result[f"{name}/disagreement"] = auroc(values, disagreement)
    return result


def nig_pit(target: np.ndarray, nig: NIG) -> np.ndarray:
    """Probability integral transform ``F(y)`` of the NIG's Student-t marginal, elementwise in [0, 1].

    Args:
        target: y, any shape.
        nig: γ, ω, α, β arrays of the same shape (ω > 0, α > 1, β > 0).
    """
    gamma, omega, alpha, beta = (np.asarray(value, dtype=np.float64) for value in nig)
    scale = predictive_scale(omega, alpha, beta)
    return stats.t.cdf(np.asarray(target, dtype=np.float64), df=2.0 * alpha, loc=gamma, scale=scale)


def fit_recalibration(pit: np.ndarray):
    """Kuleshov et al.'s recalibration map fitted on held-out PIT values: ``R(u)`` = fraction <= u.

    Args:
        pit: PIT values F(y) in [0, 1] of held-out pixels (any shape, flattened; at least one).

    Returns:
        ``R``: a function from PIT values (any shape) to float64 values in [0, 1], non-decreasing;
        R(F(y)) is uniform on data distributed as ``pit``.
    """
    reference = np.sort(np.asarray(pit, dtype=np.float64).ravel())
    if reference.size == 0:
        raise ValueError("recalibration needs at least one PIT value")

    def recalibrate(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        return np.searchsorted(reference, values.ravel(), side="right").reshape(values.shape) / reference.size

    return recalibrate


def cross_fitted_pit(pits: Sequence[np.ndarray], groups: int = RECALIBRATION_GROUPS) -> list[np.ndarray]:
    """Each case's PIT values recalibrated by a map fitted on the other groups of cases.

    Args:
        pits: one array of PIT values per case (>= 2 cases).
        groups: the cases are split into ``min(groups, len(pits))`` interleaved groups (case i in
            group i mod g); each group is recalibrated by :func:`fit_recalibration` of the rest.

    Returns:
        The recalibrated PIT values, one array per case, shapes kept.
    """
    if len(pits) < 2:
        raise ValueError("cross-fitted recalibration needs at least two cases")
    groups = min(int(groups), len(pits))
    recalibrated: list[np.ndarray | None] = [None] * len(pits)
    for group in range(groups):
        held_out = [i for i in range(len(pits)) if i % groups == group]
        rest = np.concatenate([np.ravel(pits[i]) for i in range(len(pits)) if i % groups != group])
        recalibrate = fit_recalibration(rest)
        for i in held_out:
            recalibrated[i] = recalibrate(pits[i])
    return recalibrated


def calibration_curve(
    pit: np.ndarray, levels: Sequence[float] = DEFAULT_LEVELS, interval: str = "one_sided"
) -> tuple[np.ndarray, np.ndarray]:
    """Observed coverage of the predictive intervals at each confidence level.

    Args:
        pit: PIT values F(y) in [0, 1] (any shape, flattened).
        levels: confidence levels p in [0, 1].
        interval: "one_sided" (``u <= p``, Kuleshov et al.) or "central" (``|2u - 1| <= p``).

    Returns:
        ``(expected, observed)`` float64 arrays of ``len(levels)``.
    """
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}, got {interval!r}")
    pit = np.asarray(pit, dtype=np.float64).ravel()
    expected = np.asarray(levels, dtype=np.float64)
    statistic = pit if interval == "one_sided" else np.abs(2.0 * pit - 1.0)
    observed = np.array([np.mean(statistic <= level) for level in expected])
    return expected, observed


def expected_calibration_error(expected: np.ndarray, observed: np.ndarray) -> float:
    """Mean ``|observed - expected|`` over the levels of a calibration curve, in [0, 1]."""
    return float(np.mean(np.abs(np.asarray(observed) - np.asarray(expected))))


def uncertainty_report(
    predictions: Sequence[Mapping[str, np.ndarray]],
    alphas_gt: Sequence[np.ndarray],
    masks: Sequence[np.ndarray] | None = None,
    map_names: Mapping[str, str] | None = None,
    levels: Sequence[float] = DEFAULT_LEVELS,
) -> dict:
    """AUROCs and calibration of a model's uncertainty over many cases, pixels pooled.

    Args:
        predictions: one dict per case of (H, W) maps: "alpha", the maps named in ``map_names``
            that are present, and "nig_gamma", "nig_omega", "nig_alpha", "nig_beta" for the
            calibration (skipped when absent).
        alphas_gt: the ground-truth alphas (H, W), one per case.
        masks: the annotators' masks (K, H, W) per case (None: no disagreement AUROC). Cases may
            have different K.
        map_names: output key -> name in the report; default :data:`UNCERTAINTY_MAPS`.
        levels: the calibration curve's confidence levels.

    Returns:
        ``{"auroc": {"<name>/error" | "<name>/disagreement": float | None},
        "calibration": {"one_sided" | "central" | "one_sided_recalibrated" |
        "central_recalibrated": {"expected": [...], "observed": [...], "ece": float}} (empty
        without NIG outputs; the recalibrated curves, :func:`cross_fitted_pit`, need >= 2 cases),
        "num_pixels": int}``.
    """
    map_names = dict(UNCERTAINTY_MAPS if map_names is None else map_names)

    def pooled(key: str) -> np.ndarray:
        return np.concatenate([np.ravel(p[key]) for p in predictions])

    alpha = pooled("alpha")
    alpha_gt = np.concatenate([np.ravel(a) for a in alphas_gt])
    disagreement = None
    if masks is not None:
        disagreement = np.concatenate([disagreement_labels(m).ravel() for m in masks])
    present = [key for key in map_names if all(key in p for p in predictions)]
    aurocs = uncertainty_aurocs({map_names[k]: pooled(k) for k in present}, alpha, alpha_gt, disagreement)
    calibration = {}
    nig_keys = ("nig_gamma", "nig_omega", "nig_alpha", "nig_beta")
    if all(key in p for p in predictions for key in nig_keys):
        pits = [nig_pit(gt, NIG(*(p[key] for key in nig_keys))) for p, gt in zip(predictions, alphas_gt)]
        versions = {"": pits}
        if len(pits) >= 2:
            versions[RECALIBRATED] = cross_fitted_pit(pits)
        for suffix, values in versions.items():
            pit = np.concatenate([np.ravel(v) for v in values])
            for interval in INTERVALS:
                expected, observed = calibration_curve(pit, levels, interval)
                calibration[interval + suffix] = {
                    "expected": expected.tolist(),
                    "observed": observed.tolist(),
                    "ece": expected_calibration_error(expected, observed),
                }
    return {"auroc": aurocs, "calibration": calibration, "num_pixels": int(alpha.size)}

