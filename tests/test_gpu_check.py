"""benchmarks/gpu_check.sh without a GPU: the smoke version, two seeds at once, and a failing seed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the script runs the paper's CV")


def _run(output: Path, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHON": sys.executable, "JOBS": "1", **env}
    return subprocess.run(["bash", str(SCRIPT), str(output)], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=600)


def test_two_seeds_at_once_give_one_table_with_their_mean(tmp_path):
    result = _run(tmp_path / "check", SEEDS="0 1", SEED_JOBS="2", SET="data.input_size=32")
    assert result.returncode == 0, result.stderr[-2000:]
    report = (tmp_path / "check" / "gpu_check.md").read_text()
    assert "# medmat GPU check (smoke)" in report
    for seed in (0, 1):
        assert f"| crossval-demo-s{seed} |" in report and (tmp_path / "check" / f"crossval-demo-s{seed}" / "cost.json").is_file()
        folds = sorted((tmp_path / "check" / f"crossval-demo-s{seed}").glob("fold-*/metrics.json"))
        assert len(folds) == 4
    rows = [line for line in report.splitlines() if line.startswith("| crossval-demo-s")]
    assert all(line.split(" | ")[3] == "2" for line in rows)  # seeds at a time
    assert "**mean ± std over 2 seeds**" in report and "slices/s" in report


def test_a_failing_seed_stops_the_script_and_names_its_log(tmp_path):
    result = _run(tmp_path / "check", SEEDS="0", SET="optim.lr=-1")
    assert result.returncode == 1
    assert "the cross-validation of seed 0 failed" in result.stderr
    assert "optim.lr must be >= 0" in (tmp_path / "check" / "crossval-s0.txt").read_text()
