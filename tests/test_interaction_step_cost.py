"""benchmarks/interaction_step_cost.py: the time of one dugMatting interaction step, by part and in total.

Timings between separately measured calls have no fixed order (the load of a shared machine
changes between them), so the tests check what holds by construction: every part is timed on
every repeat and is positive, medians and maxima are those of the recorded seconds, the step
total of a repeat is the sum of its parts, and the app's own clock (inside ``label_patch``)
never exceeds the wall time of the call that contains it.
"""

from __future__ import annotations

import json
import os
import statistics

import numpy as np
import pytest
import torch

from medmat.engine.checkpoint import save_checkpoint
from medmat.engine.config import load_config
from medmat.engine.inference import build_model_from_config
from medmat.errors import MedmatError
from medmat.io.images import write_png
from tiny_configs import load_benchmark

#: A tiny Medical Matting base for the lite "nig" config: the timings take milliseconds.
TINY = ["--set", "model.base.unet_filters=[4,8]", "--set", "model.base.matting_channels=[4,4]"]
#: The parts of one step issue 6 names (proposal, re-prediction, fusion) with the two the app adds.
PARTS = ("proposal", "label", "re_prediction", "fusion", "maps")
QUICK = ["--size", "32", "--repeats", "3", "--threads", "1", "--samples", "2"]


@pytest.fixture
def script(single_thread):
    """The benchmark module (torch threads restored after the test by conftest's fixture)."""
    return load_benchmark("interaction_step_cost")


def _run(script, tmp_path, *arguments) -> dict:
    path = tmp_path / "step.json"
    assert script.main([*TINY, *QUICK, *arguments, "--json", str(path)]) == 0
    return json.loads(path.read_text())


def test_every_part_is_timed_and_the_totals_hold(script, tmp_path, capsys):
    report = _run(script, tmp_path)
    timings = report["timings"]
    assert set(PARTS) | {"first_prediction", "step_total", "app_label_patch", "app_own_seconds"} == set(timings)
    for key, timing in timings.items():
        seconds = timing["seconds"]
        assert len(seconds) == 3 and all(value > 0 for value in seconds), key
        assert timing["median_ms"] == pytest.approx(1000 * statistics.median(seconds))
        assert timing["max_ms"] == pytest.approx(1000 * max(seconds))
    for repeat in range(3):
        parts = sum(timings[part]["seconds"][repeat] for part in PARTS)
        assert timings["step_total"]["seconds"][repeat] == pytest.approx(parts, rel=1e-12)
        assert timings["app_own_seconds"]["seconds"][repeat] <= timings["app_label_patch"]["seconds"][repeat]
    ratio = timings["app_label_patch"]["median_ms"] / 1000 / 0.5
    assert report["ratio_to_target"] == pytest.approx(ratio)

    lines = capsys.readouterr().out.splitlines()
    for _, label in script.ROWS:
        assert any(line.startswith(label) for line in lines), label
    assert lines[-1] == f"ratio to target (0.5 s): {ratio:.2f}"

    assert report["settings"]["samples"] == report["model"]["base"]["num_samples"] == 2
    assert report["image"] == {"name": "phantom-000.png", "shape": [32, 32], "user_truth": "true alpha"}
    machine = report["machine"]
    assert machine["cpu_count"] == os.cpu_count() and machine["torch_threads"] == 1
    assert len(machine["load_average"]) == 3 and machine["platform"]


def test_an_image_file_without_truth_is_labelled_from_the_first_alpha(script, tmp_path):
    # 24 x 40 is no multiple of 16: the app pads for the network and crops back.
    picture = np.linspace(0.0, 1.0, 24 * 40, dtype=np.float32).reshape(1, 24, 40)
    write_png(tmp_path / "ramp.png", picture)
    report = _run(script, tmp_path, "--image", str(tmp_path / "ramp.png"))
    assert report["image"] == {"name": "ramp.png", "shape": [24, 40], "user_truth": "first alpha >= 0.5"}


def test_user_truth_thresholds_the_first_alpha_only_without_a_true_one(script):
    first_alpha = np.array([[0.2, 0.5], [0.7, 0.49]], dtype=np.float32)
    assert np.array_equal(script.user_truth(None, first_alpha), [[0.0, 1.0], [1.0, 0.0]])
    true_alpha = np.full((2, 2), 0.3, dtype=np.float32)
    assert script.user_truth(true_alpha, first_alpha) is true_alpha
    assert [script.label_name(value) for value in (1.0, -1.0, 0.5)] == ["foreground", "background", "transition"]


def test_a_run_keeps_its_weights_with_other_samples(script, tmp_path):
    config = load_config({"model": {"name": "nig", "base": {"name": "medical_matting", "unet_filters": [4, 8],
                                                            "matting_channels": [4, 4], "num_samples": 3}}})
    torch.manual_seed(1)
    weights = build_model_from_config(config).state_dict()
    (tmp_path / "cv" / "fold-0").mkdir(parents=True)
    save_checkpoint(tmp_path / "cv" / "fold-0" / "final.pt", model=weights, config=config)

    model, loaded = script.trained_model(str(tmp_path / "cv"), num_samples=5)  # a crossval folder: its fold-0
    assert loaded["model"]["base"]["num_samples"] == model.base.num_samples == 5 and not model.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
    kept, _ = script.trained_model(str(tmp_path / "cv" / "fold-0"), num_samples=None)
    assert kept.base.num_samples == 3


def test_a_model_without_nig_outputs_is_refused(script):
    with pytest.raises(MedmatError, match="not a 'nig' model"):
        script.main(["--config", "lite", *QUICK])


def test_sizes_below_one_are_refused(script):
    with pytest.raises(SystemExit):
        script.main([*TINY, "--repeats", "0"])
