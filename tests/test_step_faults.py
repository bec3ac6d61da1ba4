"""benchmarks/step_faults.py and medmat.engine.allocator: the step's page faults with and without
the allocator settings training uses (train.keep_freed_memory)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from medmat.engine.allocator import keep_freed_memory
from medmat.engine.config import load_config
from tiny_configs import load_benchmark

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "step_faults.py"
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def test_training_keeps_freed_memory_by_default_and_a_config_can_say_no():
    assert load_config("lite")["train"]["keep_freed_memory"] is True
    assert load_config("lite", ["train.keep_freed_memory=false"])["train"]["keep_freed_memory"] is False


def test_the_settings_take_on_glibc_and_are_refused_quietly_elsewhere():
    # Run in a child: the settings last for the process, and the suite's other tests run in this one.
    done = subprocess.run([sys.executable, "-c", "from medmat.engine.allocator import keep_freed_memory; "
                           "print(keep_freed_memory())"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(GLIBC)
    if not GLIBC:
        assert keep_freed_memory() is False


def test_summary_is_the_medians_and_their_ratio():
    script = load_benchmark("step_faults")
    row = lambda wall, faults: {"wall_s": wall, "minor_faults": faults, "user_s": wall, "system_s": faults / 1e5}
    summary = script.summarise({"default": [row(0.3, 900), row(0.2, 1100), row(0.4, 1000)],
                                "kept": [row(0.2, 10), row(0.1, 30), row(0.25, 20)]})
    assert summary["median"]["default"]["minor_faults"] == 1000 and summary["median"]["kept"]["wall_s"] == 0.2
    assert summary["default_over_kept"]["minor_faults"] == pytest.approx(50)
    assert summary["default_over_kept"]["wall_s"] == pytest.approx(1.5)


@pytest.mark.skipif(not GLIBC, reason="the allocator settings are glibc's mallopt")
def test_kept_memory_takes_the_page_faults_out_of_a_lite_step(tmp_path):
    path = tmp_path / "faults.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--size", "32", "--rounds", "1", "--steps", "3", "--warmup", "2",
                           "--threads", "1", "--json", str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(path.read_text())
    default, kept = report["rounds"]["default"][0], report["rounds"]["kept"][0]
    # glibc hands back and maps again the step's larger buffers every step (hundreds of faults
    # at 32x32); kept, they are reused
    assert default["minor_faults"] > 100 and kept["minor_faults"] < default["minor_faults"] / 5
    assert "| median | kept |" in done.stdout and "default over kept" in done.stdout
