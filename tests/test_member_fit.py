"""benchmarks/member_fit.py: how a run fits its training cases, and whether its alpha is capped."""

from __future__ import annotations

import math

import pytest
import torch

from medmat.engine import load_run
from medmat.engine.checkpoint import load_checkpoint, save_checkpoint
from medmat.engine.dataset import common_size
from medmat.engine.evaluation import read_metrics, whole_image_scores
from medmat.engine.trainer import load_samples
from tiny_configs import MEDICAL_TINY, finished_run, load_benchmark, save_run

pytestmark = pytest.mark.usefixtures("single_thread")


def test_a_run_whose_alpha_layer_has_no_positive_weight_is_reported_capped_at_sigmoid_bias(tmp_path):
    script = load_benchmark("member_fit")
    run = finished_run(save_run(tmp_path / "capped", MEDICAL_TINY, two_folds=True), MEDICAL_TINY)
    payload = load_checkpoint(run / "final.pt")
    weight = payload["model"]["matting_net.output_block.3.weight"]
    payload["model"]["matting_net.output_block.3.weight"] = -weight.abs() - 0.01
    payload["model"]["matting_net.output_block.3.bias"] = torch.tensor([0.4])
    save_checkpoint(run / "final.pt", model=payload["model"], config=payload["config"])

    row = script.run_fit(run)
    positive, channels, bias = row["output layer"]
    assert positive == 0 and channels == weight.shape[1] and bias == pytest.approx(0.4)
    assert row["core medians"] and max(row["core medians"]) <= 1 / (1 + math.exp(-0.4)) + 1e-6
    model, config = load_run(run)
    samples = [s for s in load_samples(config) if s.id in set(read_metrics(run)["train_ids"])]
    assert row["cases"] == len(samples) == 4
    assert row["training SAD"] == pytest.approx(whole_image_scores(model, samples, config, common_size(samples))["SAD"])
    assert row["alpha_l1"] is None  # no log.csv
    table = script.markdown([row])
    assert f"| 0 of {channels}, 0.400 (0.599) |" in table
