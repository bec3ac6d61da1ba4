"""benchmarks/step_profile.py: the profiler's table of one training step, by operator or by operator and shapes."""

from __future__ import annotations

import re
import sys

from tiny_configs import load_benchmark


def _table(monkeypatch, capsys, *extra: str) -> str:
    script = load_benchmark("step_profile")
    monkeypatch.setattr(sys, "argv", ["step_profile.py", "--config", "lite", "--size", "16", "--steps", "1",
                                      "--items", "0", "--rows", "40", *extra])
    script.main()
    return capsys.readouterr().out


def test_shapes_split_the_rows_by_input_shape(monkeypatch, capsys, single_thread):
    plain = _table(monkeypatch, capsys)
    assert "aten::convolution_backward" in plain and "Input Shapes" not in plain
    shaped = _table(monkeypatch, capsys, "--shapes")
    assert "Input Shapes" in shaped
    assert re.search(r"\[\[2, \d+, 16, 16\]", shaped)  # full-resolution (batch 2) tensors name their rows
