"""Trustworthiness of uncertainty: AUROC for errors and disagreement, NIG calibration (Kuleshov et al.), plots."""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy import integrate, special

from medmat.metrics.uncertainty import (
    auroc,
    calibration_curve,
    cross_fitted_pit,
    disagreement_labels,
    error_labels,
    expected_calibration_error,
    fit_recalibration,
    nig_pit,
    uncertainty_aurocs,
    uncertainty_report,
)
from medmat.reporting.figures import reliability_plot
from medmat.uncertainty.nig import NIG, predictive_scale


def test_auroc_by_hand():
    labels = np.array([0, 0, 1, 1], bool)
    assert auroc(np.array([0.1, 0.2, 0.3, 0.4]), labels) == 1.0  # perfect ranking
    assert auroc(np.array([0.4, 0.3, 0.2, 0.1]), labels) == 0.0  # reversed
    # Pairs (positive, negative): 0.35 > 0.1, 0.35 < 0.4, 0.8 > both: 3 of 4.
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), labels) == pytest.approx(0.75)
    assert auroc(np.full(4, 0.3), labels) == pytest.approx(0.5)  # ties count one half
    assert auroc(np.array([0.1, 0.2]), np.array([True, True])) is None  # undefined with one class


def test_error_and_disagreement_labels_by_hand():
    assert error_labels(np.array([0.0, 0.5, 0.95]), np.array([0.05, 0.3, 1.0])).tolist() == [False, True, False]
    masks = np.array([[[1, 1, 0]], [[1, 0, 0]], [[1, 1, 0]]], bool)  # (K=3, 1, 3)
    assert disagreement_labels(masks).tolist() == [[False, True, False]]


def test_uncertainty_aurocs_name_each_map_and_task():
    alpha_gt = np.array([0.0, 0.0, 1.0, 1.0])
    alpha = np.array([0.0, 0.5, 1.0, 0.2])  # pixels 1 and 3 are wrong
    disagreement = np.array([False, True, True, False])
    maps = {"good": np.array([0.0, 0.9, 0.1, 0.8]), "flat": np.zeros(4)}
    result = uncertainty_aurocs(maps, alpha, alpha_gt, disagreement)
    # Disagreement pairs (positive, negative) of "good": 0.9 > 0, 0.9 > 0.8, 0.1 > 0, 0.1 < 0.8: 3 of 4.
    assert result == {"good/error": 1.0, "good/disagreement": 0.75, "flat/error": 0.5, "flat/disagreement": 0.5}


def synthetic_nig(n: int, seed: int) -> tuple[NIG, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return NIG(rng.uniform(0, 1, n), rng.uniform(0.5, 5, n), rng.uniform(1.5, 6, n), rng.uniform(0.01, 0.1, n)), rng


def test_pit_of_the_mean_is_one_half_and_matches_the_student_t():
    nig, _ = synthetic_nig(50, 0)
    np.testing.assert_allclose(nig_pit(nig.gamma, nig), 0.5)
    scale = predictive_scale(nig.omega, nig.alpha, nig.beta)
    # One scale above the mean with 2α dof: compare with the t CDF at 1 computed by integration.
    def t_cdf_at_one(dof: float) -> float:
        def density(x: float) -> float:
            norm = special.gamma((dof + 1) / 2) / (np.sqrt(dof * np.pi) * special.gamma(dof / 2))
            return norm * (1 + x * x / dof) ** (-(dof + 1) / 2)

        return 0.5 + integrate.quad(density, 0, 1)[0]

    expected = [t_cdf_at_one(2 * a) for a in nig.alpha[:5]]
    np.testing.assert_allclose(nig_pit(nig.gamma[:5] + scale[:5], NIG(*(v[:5] for v in nig))), expected, rtol=1e-8)


def test_calibration_curve_by_hand():
    pit = np.array([0.1, 0.2, 0.6, 0.9])
    expected, observed = calibration_curve(pit, [0.0, 0.5, 1.0])
    assert observed.tolist() == [0.0, 0.5, 1.0]
    # Central intervals: |2u - 1| = 0.8, 0.6, 0.2, 0.8.
    assert calibration_curve(pit, [0.0, 0.5, 1.0], "central")[1].tolist() == [0.0, 0.25, 1.0]
    assert expected_calibration_error(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.25, 1.0])) == pytest.approx(0.25 / 3)


def test_ece_is_near_zero_for_a_calibrated_student_t_sample_and_not_otherwise():
    nig, rng = synthetic_nig(20000, 1)
    scale = predictive_scale(nig.omega, nig.alpha, nig.beta)
    calibrated = nig.gamma + scale * rng.standard_t(2 * nig.alpha)
    overdispersed = nig.gamma + 3 * scale * rng.standard_t(2 * nig.alpha)  # errors 3x what the NIG claims
    for interval in ("one_sided", "central"):
        # Each observed fraction has a standard error below 0.0036 at n = 20000.
        assert expected_calibration_error(*calibration_curve(nig_pit(calibrated, nig), interval=interval)) < 0.01
        assert expected_calibration_error(*calibration_curve(nig_pit(overdispersed, nig), interval=interval)) > 0.1


def test_recalibration_is_the_empirical_cdf_and_fixes_held_out_intervals():
    recalibrate = fit_recalibration(np.array([0.1, 0.2, 0.2, 0.9]))
    np.testing.assert_allclose(recalibrate(np.array([[0.0, 0.1], [0.2, 0.5]])), [[0.0, 0.25], [0.75, 0.75]])
    assert recalibrate(np.array(1.0)) == 1.0
    with pytest.raises(ValueError):
        fit_recalibration(np.array([]))
    # Ten "cases" of targets 3x more spread than the NIG claims, plus a point mass at gamma
    # (a matte's exact 0s): raw intervals are off, cross-fitted recalibrated ones are not.
    pits = []
    for case in range(10):
        nig, rng = synthetic_nig(4000, 10 + case)
        scale = predictive_scale(nig.omega, nig.alpha, nig.beta)
        target = nig.gamma + 3 * scale * rng.standard_t(2 * nig.alpha)
        target[:1000] = nig.gamma[:1000] - 0.1 * scale[:1000]
        pits.append(nig_pit(target, nig))
    recalibrated = cross_fitted_pit(pits, groups=5)
    assert [r.shape for r in recalibrated] == [p.shape for p in pits]
    for interval in ("one_sided", "central"):
        raw = expected_calibration_error(*calibration_curve(np.concatenate(pits), interval=interval))
        fixed = expected_calibration_error(*calibration_curve(np.concatenate(recalibrated), interval=interval))
        assert raw > 0.05 and fixed < 0.02  # 0.05: the bound
    with pytest.raises(ValueError):
        cross_fitted_pit(pits[:1])


def test_reliability_plot_writes_a_png_atomically(tmp_path):
    nig, rng = synthetic_nig(500, 2)
    curves = {"calibrated": calibration_curve(nig_pit(nig.gamma + 0.01 * rng.standard_normal(500), nig))}
    path = reliability_plot(tmp_path / "reliability.png", curves, title="test")
    assert path == os.fspath(tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["reliability.png"]


def test_uncertainty_report_pools_cases():
    rng = np.random.default_rng(3)
    predictions, alphas, masks = [], [], []
    for _ in range(2):
        alpha_gt = rng.uniform(0, 0.5, (8, 8))  # + 0.5 stays in [0, 1]: no error is clipped away
        error = np.where(rng.uniform(size=(8, 8)) < 0.3, 0.5, 0.0)  # 30 % of pixels off by 0.5
        prediction = {
            "alpha": alpha_gt + error,
            "epistemic": error + 0.01,  # ranks the errors perfectly
            "aleatoric": rng.uniform(size=(8, 8)),
            "nig_gamma": alpha_gt + error,
            "nig_omega": np.ones((8, 8)),
            "nig_alpha": np.full((8, 8), 3.0),
            "nig_beta": np.full((8, 8), 0.1),
        }
        predictions.append(prediction)
        alphas.append(alpha_gt)
        masks.append(np.stack([alpha_gt > 0.2, alpha_gt > 0.3]))
    report = uncertainty_report(predictions, alphas, masks)
    assert report["num_pixels"] == 128
    assert report["auroc"]["epistemic/error"] == 1.0
    assert set(report["auroc"]) == {"epistemic/error", "epistemic/disagreement", "aleatoric/error",
                                    "aleatoric/disagreement"}  # absent maps are skipped
    assert set(report["calibration"]) == {"one_sided", "central", "one_sided_recalibrated", "central_recalibrated"}
    curve = report["calibration"]["one_sided"]
    assert curve["ece"] == pytest.approx(np.mean(np.abs(np.array(curve["observed"]) - np.array(curve["expected"]))))
    without_nig = uncertainty_report([{k: p[k] for k in ("alpha", "epistemic")} for p in predictions], alphas)
    assert without_nig["calibration"] == {} and set(without_nig["auroc"]) == {"epistemic/error"}
