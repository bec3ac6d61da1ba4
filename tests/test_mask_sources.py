"""benchmarks/mask_sources.py: Table V's GED split into its terms, and level sets of the predicted alpha scored beside the samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medmat.data.phantom import make_phantom
from medmat.engine.evaluation import label_masks_from_alpha
from medmat.metrics import adapted_dice, ged
from tiny_configs import IMAGE_FOLLOWING, MEDICAL_TINY, finished_run, image_following_run, load_benchmark, save_run

mask_sources = load_benchmark("mask_sources")


@pytest.fixture(scope="module")
def truth():
    return make_phantom(2, size=48).alpha


def test_the_terms_add_up_to_the_ged_medmat_reports(truth):
    rng = np.random.default_rng(0)
    masks = truth[None] >= rng.uniform(0.1, 0.9, 5)[:, None, None]
    targets = label_masks_from_alpha(truth)
    terms = mask_sources.scored(masks, targets)
    assert terms["GED"] == pytest.approx(ged(masks, targets), abs=1e-12)
    assert terms["GED"] == pytest.approx(2 * terms["cross"] - terms["within_pred"] - terms["within_labels"])
    assert terms["Dice"] == pytest.approx(adapted_dice(masks, targets))
    assert terms["within_pred"] > 0.05  # five different thresholds of a soft matte differ


def test_a_perfect_alpha_gives_level_sets_equal_to_the_targets_and_identical_samples_have_no_diversity(truth):
    samples = np.repeat((truth > 0.5)[None].astype(np.float32), 8, axis=0)
    scores = mask_sources.mask_sources(truth, samples, truth, np.random.default_rng(0))
    assert scores["alpha level sets"]["GED"] == pytest.approx(0.0, abs=1e-12)
    assert scores["alpha level sets"]["Dice"] == pytest.approx(1.0)
    assert scores["sampled"]["within_pred"] == 0.0
    # Identical samples cannot match the targets' diversity: their GED is above the level sets' 0.
    assert scores["sampled"]["GED"] > 0.02 and scores["sampled"]["within_labels"] > 0.02


def test_the_script_scores_every_held_out_case_and_refuses_a_model_that_does_not_sample(tmp_path, capsys):
    run = finished_run(save_run(tmp_path / "run", MEDICAL_TINY, two_folds=True), MEDICAL_TINY)
    assert mask_sources.main(["--run", str(run), "--samples", "3", "--output", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "mask_sources.json").read_text())
    assert len(report["cases"]) == 4 and report["samples"] == 3  # 8 phantoms, 2 folds: 4 held out
    for case in report["cases"]:
        assert set(case["sources"]) == set(mask_sources.SOURCES)
        assert all(0.0 <= terms["Dice"] <= 1.0 for terms in case["sources"].values())
    assert "| alpha level sets |" in capsys.readouterr().out
    following = finished_run(image_following_run(tmp_path / "following"), IMAGE_FOLLOWING)
    assert mask_sources.main(["--run", str(following)]) == 1
    assert "does not sample masks" in capsys.readouterr().err
