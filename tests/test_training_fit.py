"""A run that fails to fit its training cases is found (train.core_alpha_floor) and trained again
with another seed (train.refit_capped), resumably."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from medmat.engine import load_config, load_run, train
from medmat.engine.checkpoint import load_checkpoint, save_checkpoint
from medmat.engine.config import read_config_file
from medmat.engine.dataset import common_size
from medmat.engine.evaluation import CORE_LEVEL, read_metrics, training_fit, whole_image_scores
from medmat.engine.summary import fit_lines, write_summary
from medmat.engine.trainer import REFIT_SEED_STEP, capped_attempts, load_samples
from medmat.errors import MedmatError
from tiny_configs import IMAGE_FOLLOWING, MEDICAL_TINY, image_following_run, save_run, tiny_phantom_config

pytestmark = pytest.mark.usefixtures("single_thread")


def _fit(run, floor):
    model, config = load_run(run)
    samples = load_samples(config)[:4]
    assert all((sample.alpha >= CORE_LEVEL).any() for sample in samples)  # the phantoms have a core
    return training_fit(model, samples, config, common_size(samples), floor), model, config, samples


def test_a_model_that_reaches_the_core_fits_and_a_capped_alpha_layer_does_not(tmp_path, caplog):
    sure = image_following_run(tmp_path / "sure")
    (sure / "metrics.json").write_text(json.dumps({"training_fit": {"capped": False}}))
    with caplog.at_level(logging.WARNING, logger="medmat.engine"):
        fit, model, config, samples = _fit(sure, 0.8)
    assert "failed to fit" not in caplog.text  # a run that fits loads quietly
    assert not fit["capped"] and fit["core_alpha_max"] > 0.99 and len(fit["core_alpha"]) == 4
    assert fit["scores"] == pytest.approx(whole_image_scores(model, samples, config, common_size(samples)))

    # The tiny core model with its alpha layer's weights all negative: alpha <= sigmoid(bias) behind the ReLU.
    run = save_run(tmp_path / "capped", MEDICAL_TINY)
    payload = load_checkpoint(run / "final.pt")
    weight = payload["model"]["matting_net.output_block.3.weight"]
    payload["model"]["matting_net.output_block.3.weight"] = -weight.abs() - 0.01
    payload["model"]["matting_net.output_block.3.bias"] = torch.tensor([0.4])
    save_checkpoint(run / "final.pt", model=payload["model"], config=payload["config"])
    fit, *_ = _fit(run, 0.8)
    assert fit["capped"] and fit["core_alpha_max"] <= 1 / (1 + math.exp(-0.4)) + 1e-6
    assert _fit(run, None)[0]["capped"] is False and _fit(run, 0.5)[0]["capped"] is False


def test_a_run_that_fails_the_floor_is_set_aside_and_trained_again_with_the_next_seed(tmp_path, caplog):
    # A floor of 1 no model reaches: every attempt is "capped", so the refits are exercised for sure.
    config = load_config({**tiny_phantom_config(MEDICAL_TINY), "seed": 3})
    config["train"].update(core_alpha_floor=1.0, refit_capped=1)
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="medmat.engine"):
        result = train(config, run)
    assert "failed to fit" in caplog.text and f"seed {3 + REFIT_SEED_STEP}" in caplog.text

    (first,) = capped_attempts(run)
    assert first.name == "capped-1" and {p.name for p in first.iterdir()} >= {"final.pt", "metrics.json", "config.yaml"}
    assert read_config_file(first / "config.yaml")["seed"] == 3
    assert read_config_file(run / "config.yaml")["seed"] == 3 + REFIT_SEED_STEP
    assert load_checkpoint(run / "final.pt")["config"]["seed"] == 3 + REFIT_SEED_STEP
    first_weights = load_checkpoint(first / "final.pt")["model"]
    assert any(not torch.equal(v, load_checkpoint(run / "final.pt")["model"][k]) for k, v in first_weights.items())

    metrics = read_metrics(run)
    assert metrics["training_fit"]["capped"] and metrics["training_fit"]["floor"] == 1.0
    assert metrics["refits"] == [{"folder": str(first), "seed": 3,
                                  "core_alpha_max": read_metrics(first)["training_fit"]["core_alpha_max"]}]
    assert result["refits"] == metrics["refits"]
    lines = fit_lines([metrics])
    assert "seed 3 failed to fit" in lines[0] and "capped-1/" in lines[0] and "stays below 1.00" in lines[1]
    write_summary([metrics], config, tmp_path / "cv")  # what a cross-validation's summary.md says of the fold
    assert all(line in (tmp_path / "cv" / "summary.md").read_text() for line in lines)
    # Wherever the capped run is used later (predict, evaluate, the app), loading it says so.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medmat.engine"):
        load_run(run)
    assert f"{run} failed to fit its training cases" in caplog.text and "at most" in caplog.text

    # The attempts are spent: resuming returns the finished run as it is.
    before = (run / "final.pt").stat().st_mtime_ns
    train(config, run, resume=True)
    assert len(capped_attempts(run)) == 1 and (run / "final.pt").stat().st_mtime_ns == before
    with pytest.raises(MedmatError, match="set aside"):
        train(config, run)
    # One more attempt allowed on resume: the finished capped run is set aside and trained again.
    config["train"]["refit_capped"] = 2
    train(config, run, resume=True)
    assert [p.name for p in capped_attempts(run)] == ["capped-1", "capped-2"]
    assert read_config_file(run / "config.yaml")["seed"] == 3 + 2 * REFIT_SEED_STEP
    assert [r["seed"] for r in read_metrics(run)["refits"]] == [3, 3 + REFIT_SEED_STEP]


def test_setting_a_run_aside_that_was_interrupted_is_completed_on_resume(tmp_path):
    config = tiny_phantom_config(MEDICAL_TINY)
    config["train"].update(core_alpha_floor=1.0, refit_capped=0)
    run = tmp_path / "run"
    train(config, run)
    # Interrupted half-way: some of the run's files already moved into capped-1.partial/.
    partial = run / "capped-1.partial"
    partial.mkdir()
    for name in ("metrics.json", "final.pt"):
        (run / name).rename(partial / name)
    config["train"]["refit_capped"] = 1
    train(config, run, resume=True)
    (first,) = capped_attempts(run)
    assert not partial.exists() and {"metrics.json", "final.pt", "checkpoint.pt", "config.yaml"} <= {
        p.name for p in first.iterdir()}
    assert read_config_file(run / "config.yaml")["seed"] == REFIT_SEED_STEP
    assert read_metrics(run)["refits"][0]["folder"] == str(first)


def test_without_a_floor_nothing_is_checked_and_a_bad_floor_is_refused(tmp_path):
    config = tiny_phantom_config(IMAGE_FOLLOWING, {"name": "alpha_l1"})
    config["train"].update(core_alpha_floor=None, refit_capped=3)
    train(config, tmp_path / "run")
    assert "training_fit" not in read_metrics(tmp_path / "run") and not capped_attempts(tmp_path / "run")
    assert load_config({})["train"]["core_alpha_floor"] == 0.8 and load_config({})["train"]["refit_capped"] == 0
    for bad in (1.5, -0.1):
        with pytest.raises(MedmatError, match="core_alpha_floor"):
            load_config({"train": {"core_alpha_floor": bad}})
    with pytest.raises(MedmatError, match="refit_capped"):
        load_config({"train": {"refit_capped": -1}})


def test_a_run_finished_before_the_check_is_checked_on_resume(tmp_path, caplog):
    config = tiny_phantom_config(MEDICAL_TINY)
    config["train"]["core_alpha_floor"] = None
    run = tmp_path / "run"
    train(config, run)
    assert "training_fit" not in read_metrics(run)
    config["train"]["core_alpha_floor"] = 0.0  # any model reaches it: checked, not capped
    train(config, run, resume=True)
    record = read_metrics(run)
    assert record["training_fit"]["capped"] is False and list(record)[-2:] == ["mean", "cases"]
    assert not capped_attempts(run)

    record.pop("training_fit")
    (run / "metrics.json").write_text(json.dumps(record))
    config["train"].update(core_alpha_floor=1.0, refit_capped=1)
    with caplog.at_level(logging.WARNING, logger="medmat.engine"):
        train(config, run, resume=True)
    assert "failed to fit" in caplog.text
    (first,) = capped_attempts(run)
    assert read_metrics(first)["training_fit"]["capped"] and read_metrics(run)["refits"][0]["seed"] == 0
