"""benchmarks/step_profile.py: the profiler's table of one training step, by operator or by operator and
shapes, and the operator clock (--clock) that times each call without the profiler."""

from __future__ import annotations

import re
import sys

import torch
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


def test_clock_counts_each_operator_call_and_its_share(monkeypatch, capsys, single_thread):
    script = load_benchmark("step_profile")
    clock = script.OperatorClock()
    left, right = torch.ones(3), torch.full((3,), 2.0)
    with clock:
        total = left + right + right
        total * right
    assert clock.calls == {"aten.add.Tensor": 2, "aten.mul.Tensor": 1}
    assert all(seconds > 0 for seconds in clock.seconds.values())
    rows = clock.table(steps=1, rows=5).splitlines()
    assert rows[0].startswith("clocked operators:") and "3 calls" in rows[0]
    shares = [float(re.search(r"([\d.]+)%", row).group(1)) for row in rows[2:]]
    assert abs(sum(shares) - 100.0) < 0.2


def test_clocked_step_names_the_steps_operators_by_shape(monkeypatch, capsys, single_thread):
    table = _table(monkeypatch, capsys, "--clock", "--shapes")
    assert re.search(r"clocked operators: [\d.]+ ms per step, \d+ calls", table)
    assert "aten.convolution_backward.default [2, " in table and "Input Shapes" not in table
