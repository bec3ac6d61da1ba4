"""benchmarks/concat_layout.py: the step with medmat's cat_channels against plain torch.cat."""

from __future__ import annotations

import json

import torch

import medmat.models.medical_matting as medical_matting
from medmat.models.blocks import cat_channels
from tiny_configs import load_benchmark


def test_plain_concatenation_swaps_every_models_join_and_restores_it(single_thread):
    script = load_benchmark("concat_layout")
    features = torch.rand(1, 4, 3, 3).bfloat16().contiguous(memory_format=torch.channels_last)
    joined = [features, torch.rand(1, 1, 3, 3)]
    with script.plain_concatenation():
        assert medical_matting.cat_channels is script.plain_cat
        assert medical_matting.cat_channels(joined).dtype == torch.float32  # what torch.cat gives
    assert medical_matting.cat_channels is cat_channels
    assert cat_channels(joined).dtype == torch.bfloat16


def test_report_has_both_joins_and_the_fp32_reference(single_thread, tmp_path, capsys):
    script = load_benchmark("concat_layout")
    path = tmp_path / "concat.json"
    assert script.main(["--configs", "lite", "--size", "16", "--rounds", "2", "--repeats", "1", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    result = report["results"]["lite"]
    assert all(len(result["rounds"][key]) == 2 for key in ("cat_channels", "torch.cat", "fp32"))
    median = result["median_s"]
    assert result["saving"] == 1 - median["cat_channels"] / median["torch.cat"]
    assert result["fp32_ratio"]["torch.cat"] == median["fp32"] / median["torch.cat"]
    assert medical_matting.cat_channels is cat_channels  # restored after the rounds
    assert "| lite |" in capsys.readouterr().out
