"""benchmarks/step_against_commit.py: today's training step against an earlier commit's float32 step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_configs import load_benchmark

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "step_against_commit.py"


def test_summary_is_the_ratio_of_the_medians():
    script = load_benchmark("step_against_commit")
    summary = script.summarise({"baseline_fp32": [0.9, 0.6, 0.7], "fp32": [0.5, 0.4, 0.6], "arithmetic": [0.2, 0.3, 0.1]})
    assert summary["median_s"] == {"baseline_fp32": 0.7, "fp32": 0.5, "arithmetic": 0.2}
    assert summary["baseline_fp32_over_arithmetic"] == pytest.approx(3.5)
    assert summary["fp32_over_arithmetic"] == pytest.approx(2.5)
    assert summary["baseline_fp32_over_fp32"] == pytest.approx(1.4)
    assert "baseline_arithmetic_over_arithmetic" not in summary
    summary = script.summarise({"baseline_fp32": [0.9], "baseline_arithmetic": [0.3], "fp32": [0.5], "arithmetic": [0.2]})
    assert summary["baseline_arithmetic_over_arithmetic"] == pytest.approx(1.5)


def test_a_run_against_head_times_both_trees(tmp_path):
    """HEAD exists in every clone; its model_cost takes --arithmetic, so both trees time real steps,
    the baseline's in its float32 and in the asked arithmetic too."""
    path = tmp_path / "steps.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--baseline", "HEAD", "--baseline-arithmetic", "bf16", "--size", "16",
         "--rounds", "1", "--repeats", "1", "--threads", "1", "--json", str(path)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(path.read_text())
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert report["baseline_commit"] == head
    assert set(report["rounds"]) == {"baseline_fp32", "baseline_arithmetic", "fp32", "arithmetic"}
    assert all(len(values) == 1 and values[0] > 0 for values in report["rounds"].values())
    assert "| median |" in done.stdout and "faster than the baseline's fp32 step" in done.stdout
    assert "| baseline bf16 s |" in done.stdout and "faster than the baseline's bf16 step" in done.stdout


def test_an_unknown_revision_is_one_line_and_exit_1():
    done = subprocess.run([sys.executable, str(SCRIPT), "--baseline", "no-such-revision", "--rounds", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"step_against_commit: 'no-such-revision' is not a commit of {REPO}"]
