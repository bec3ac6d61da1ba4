"""benchmarks/step_floor.py: a step's convolutions recorded and replayed alone, against the baseline's float32 step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tiny_configs import load_benchmark

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "step_floor.py"


def _two_convolutions() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1, bias=False))
    network.to(memory_format=torch.channels_last)
    image = torch.randn(2, 1, 12, 10).contiguous(memory_format=torch.channels_last)
    return network, image


def test_the_recorder_keeps_each_convolution_and_the_replay_repeats_the_same_calls(single_thread):
    script = load_benchmark("step_floor")
    network, image = _two_convolutions()
    recorder = script.ConvolutionRecorder()
    with recorder:
        network(image).sum().backward()
    names = [str(func) for func, _ in recorder.calls]
    assert names.count("aten.convolution.default") == 2 and names.count("aten.convolution_backward.default") == 2
    first_forward = next(arguments for func, arguments in recorder.calls if str(func) == "aten.convolution.default")
    assert first_forward[0] == script.TensorSpec((2, 1, 12, 10), tuple(image.stride()), torch.float32)
    # The image needs no gradient: the first convolution's backward computes the weight's and bias's only.
    first_backward = [arguments for func, arguments in recorder.calls if str(func) == "aten.convolution_backward.default"][-1]
    assert list(first_backward[-1]) == [False, True, True]

    replay = script.replay_function(recorder.calls)
    again = script.ConvolutionRecorder()
    with again:
        replay()
    assert again.calls == recorder.calls


def test_the_replay_counts_the_steps_convolution_flops(single_thread):
    script = load_benchmark("step_floor")
    network, image = _two_convolutions()
    recorder = script.ConvolutionRecorder()
    counter = FlopCounterMode(display=False)
    with recorder, counter:
        network(image).sum().backward()
    flops = script.counted_flops(script.replay_function(recorder.calls))
    assert flops == counter.get_total_flops() > 0


def test_summary_gives_what_the_target_leaves_beside_the_convolutions():
    script = load_benchmark("step_floor")
    summary = script.summarise({"baseline_fp32": [0.6, 0.7, 0.5], "step": [0.25, 0.2, 0.3], "convolutions": [0.1, 0.15, 0.2]}, 4.0)
    assert summary["median_s"] == {"baseline_fp32": 0.6, "step": 0.25, "convolutions": 0.15}
    assert summary["rest_s"] == pytest.approx(0.10)
    assert summary["ratio"] == pytest.approx(2.4)
    assert summary["target_s"] == pytest.approx(0.15)
    assert summary["rest_budget_s"] == pytest.approx(0.0)  # the convolutions alone use the whole 4x budget
    assert summary["ceiling"] == pytest.approx(4.0)
    alone = script.summarise({"step": [0.3], "convolutions": [0.2]}, 3.0)
    assert set(alone) == {"median_s", "rest_s"}


def test_a_run_against_head_times_the_baseline_the_step_and_its_convolutions(tmp_path):
    path = tmp_path / "floor.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--baseline", "HEAD", "--size", "16", "--rounds", "1", "--repeats", "1",
         "--threads", "1", "--json", str(path)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(path.read_text())
    assert set(report["times_s"]) == {"baseline_fp32", "step", "convolutions"}
    assert all(len(values) == 1 and values[0] > 0 for values in report["times_s"].values())
    # lite's step: 3 encoders and a decoder of the Prob. U-Net and the matting network, forward and backward.
    assert report["convolution_calls"] > 100 and report["convolution_flops"] > 0
    assert report["summary"]["ceiling"] > 0 and "machine" in report
    assert "replayed alone" in done.stdout and "ceiling with everything else free" in done.stdout


def test_an_unknown_revision_is_one_line_and_exit_1():
    done = subprocess.run([sys.executable, str(SCRIPT), "--baseline", "no-such-revision", "--size", "16", "--rounds", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"step_floor: 'no-such-revision' is not a commit of {REPO}"]
