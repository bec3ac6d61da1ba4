"""benchmarks/intensity_robustness.py: a run's held-out scores with darker and brighter test scans."""

from __future__ import annotations

import numpy as np
import pytest

from medmat.engine import load_run
from medmat.engine.evaluation import mean_case_metrics
from medmat.engine.held_out import evaluate_fold, runs_and_cases
from medmat.engine.trainer import load_samples
from tiny_configs import MEDICAL_TINY, finished_run, load_benchmark, save_run, tiny_phantom_config


def test_scale_one_is_the_run_s_own_evaluation_and_each_scale_scores_the_changed_scans(tmp_path, monkeypatch):
    script = load_benchmark("intensity_robustness")
    run = finished_run(save_run(tmp_path / "run", MEDICAL_TINY, two_folds=True), MEDICAL_TINY)
    scored_images = []

    def recording(model, config, cases, *args):
        scored_images.append([case.image for case in cases])
        return evaluate_fold(model, config, cases, *args)

    monkeypatch.setattr(script, "evaluate_fold", recording)
    results = script.scored_run(str(run), [1.0, 0.5], 1.0, seed=3)
    [(folder, cases)] = runs_and_cases(run, load_samples(tiny_phantom_config(MEDICAL_TINY)))
    model, config = load_run(folder)
    own = mean_case_metrics(evaluate_fold(model, config, cases, config["eval"]["num_samples"], 3)["cases"])
    assert results[1.0]["num_cases"] == results[0.5]["num_cases"] == len(cases) == 4
    assert results[1.0]["whole"]["SAD"] == pytest.approx(own["whole"]["SAD"], rel=1e-12)
    assert results[1.0]["Dice"] == pytest.approx(own["Dice"], rel=1e-12)
    unchanged, darker = scored_images
    for case, image, dark in zip(cases, unchanged, darker):
        assert np.array_equal(image, case.image)
        np.testing.assert_allclose(dark, 0.5 * case.image, rtol=1e-6)
    lines = script.table_lines({"tiny": results}, 1.0)
    assert len(lines) == 4 and lines[2].startswith("| tiny | 1 | 4 |") and lines[3].startswith("| tiny | 0.5 | 4 |")
    # The mean over runs, per scale: of two copies of one run, the run's values and a zero spread.
    both = script.table_lines({"a": results, "b": results}, 1.0, "2 runs")
    dice = results[0.5]["Dice"]
    assert both[-1].startswith("| **2 runs** | 0.5 | 8 |") and both[-1].endswith(f"| {dice:.4f} ± 0.0000 |")


def test_bad_arguments_are_one_line_errors(capsys):
    script = load_benchmark("intensity_robustness")
    assert script.main(["plain=runs/none", "--scales", "0,1"]) == 1
    assert capsys.readouterr().err.strip() == "error: --scales and --gamma must be positive, got '0,1' and 1.0"
    assert script.main(["named-but-no-folder="]) == 1
    assert "NAME=RUN_DIR" in capsys.readouterr().err
