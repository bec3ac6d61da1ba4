"""benchmarks/matting_latent.py: a run scored with its matting network reading the sampled and the mean code."""

from __future__ import annotations

import json

import pytest

from tiny_configs import IMAGE_FOLLOWING, MEDICAL_TINY, finished_run, image_following_run, load_benchmark, save_run

matting_latent = load_benchmark("matting_latent")


def test_both_codes_score_the_same_masks_and_different_mattes(tmp_path, capsys):
    model = {**MEDICAL_TINY, "use_uncertainty_map": False}
    run = finished_run(save_run(tmp_path / "run", model, two_folds=True), model)
    assert matting_latent.main(["--run", str(run), "--samples", "3", "--output", str(tmp_path / "out")]) == 0
    summaries = {latent: json.loads((tmp_path / "out" / latent / "summary.json").read_text())
                 for latent in ("sample", "mean")}
    printed = capsys.readouterr().out
    assert "reads the sample code" in printed and "reads the mean code" in printed
    sample_v, mean_v = (json.dumps(s) for s in summaries.values())
    assert sample_v != mean_v  # the mattes differ ...
    records = matting_latent.evaluate_both(str(run), matting_latent.run_config(str(run), None, None), 3, 0)
    sample_cases, mean_cases = records["sample"][0]["cases"], records["mean"][0]["cases"]
    assert len(sample_cases) == len(mean_cases) == 4
    for sampled, mean in zip(sample_cases, mean_cases):
        assert sampled["GED"] == pytest.approx(mean["GED"]) and sampled["Dice"] == pytest.approx(mean["Dice"])  # ... the masks do not
    assert any(sampled["whole"]["SAD"] != pytest.approx(mean["whole"]["SAD"]) for sampled, mean in zip(sample_cases, mean_cases))


def test_a_model_without_a_prob_unet_is_refused(tmp_path, capsys):
    following = finished_run(image_following_run(tmp_path / "following"), IMAGE_FOLLOWING)
    assert matting_latent.main(["--run", str(following)]) == 1
    assert "has no Prob. U-Net" in capsys.readouterr().err
