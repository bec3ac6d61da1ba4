"""Training arithmetic (medmat/engine/precision.py): bf16 autocast, channels-last, compile, and their fallbacks."""

from __future__ import annotations

import logging

import pytest
import torch

from medmat.engine import precision
from medmat.engine.config import load_config
from medmat.engine.loop import TrainingStep
from medmat.errors import MedmatError
from medmat.losses import build_criterion
from medmat.models import build_model
from tiny_configs import MEDICAL_TINY

CPU = torch.device("cpu")


def _batch(size: int = 16) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    alpha = torch.rand(2, 1, size, size, generator=generator)
    return {"image": torch.rand(2, 1, size, size, generator=generator), "alpha": alpha,
            "pseudo_mask": (alpha > 0.5).float()}


def _step(settings: dict, compile_model: bool = False) -> tuple[TrainingStep, dict]:
    torch.manual_seed(0)
    model = build_model(**MEDICAL_TINY)
    arithmetic = precision.arithmetic_for(settings, CPU)
    precision.prepare_model(model, arithmetic)
    return TrainingStep(model, build_criterion({"name": "medical_matting"}), arithmetic, compile_model).train(), _batch()


def test_fp32_is_the_plain_forward_bit_for_bit():
    step, batch = _step({"precision": "fp32"})
    torch.manual_seed(1)
    total, parts = step(batch, 0, 2)
    torch.manual_seed(1)
    expected, expected_parts = step.criterion(step.model(batch), batch, 0, 2)
    assert torch.equal(total, expected) and parts == expected_parts


@pytest.mark.skipif(not precision.bf16_supported(CPU), reason="this CPU has no AVX-512 BF16 or AMX")
def test_bf16_runs_the_convolutions_in_bfloat16_and_the_rest_in_float32():
    step, batch = _step({"precision": "bf16", "channels_last": True})
    seen = []
    step.model.matting_net.unit1.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    total, parts = step(batch, 0, 2)
    assert seen == [torch.bfloat16] and total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    assert all(p.dtype == torch.float32 and p.grad is not None for p in step.model.parameters() if p.requires_grad)
    # The entropy map and the alpha are float32 (losses, metrics and the app read them).
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = step.model(batch)
    assert outputs["uncertainty_map"].dtype == outputs["alpha"].dtype == outputs["sample_masks"].dtype == torch.float32
    # bf16 is close to, not equal to, float32.
    reference, _ = _step({"precision": "fp32"})[0](batch, 0, 2)
    assert abs(total.item() - reference.item()) < 0.05 * abs(reference.item()) and total.item() != reference.item()


def test_channels_last_puts_the_weights_in_nhwc():
    step, _ = _step({"precision": "fp32", "channels_last": True})
    convolutions = [p for p in step.model.parameters() if p.ndim == 4 and p.shape[-1] > 1]
    assert convolutions and all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)


def test_bf16_asked_on_a_cpu_without_it_falls_back_to_fp32_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(precision, "bf16_supported", lambda device: False)
    with caplog.at_level(logging.WARNING, logger="medmat.engine"):
        arithmetic = precision.arithmetic_for({"precision": "bf16"}, CPU)
    assert arithmetic.dtype is None and "no AVX-512 BF16" in caplog.text
    assert precision.resolve_precision("auto", CPU) == (None, None)
    assert precision.resolve_precision("fp16", CPU)[0] is None  # fp16 is for GPUs


def test_compile_without_a_compiler_runs_eagerly_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(precision, "compiler_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="medmat.engine"):
        step, batch = _step({"precision": "fp32"}, compile_model=True)
    assert "no C++ compiler" in caplog.text
    total, _ = step(batch, 0, 2)
    assert torch.isfinite(total)


def test_a_compile_failure_at_the_first_step_falls_back_to_eager(monkeypatch, caplog):
    def broken_compile(module):
        def fail(*args, **kwargs):
            raise RuntimeError("inductor: backend compiler failed\nmore lines")
        return fail

    monkeypatch.setattr(precision, "compiler_available", lambda: True)
    monkeypatch.setattr(torch, "compile", broken_compile)
    step, batch = _step({"precision": "fp32"}, compile_model=True)
    with caplog.at_level(logging.WARNING, logger="medmat.engine"):
        total, _ = step(batch, 0, 2)
    assert torch.isfinite(total) and "train.compile failed (inductor: backend compiler failed)" in caplog.text


def test_the_config_declares_the_switches_with_safe_defaults():
    config = load_config("lite")
    assert (config["train"]["precision"], config["train"]["channels_last"], config["train"]["compile"]) == ("fp32", False, False)
    assert load_config("lite", ["train.precision=auto"])["train"]["precision"] == "auto"
    with pytest.raises(MedmatError, match="train.precision must be one of"):
        load_config("lite", ["train.precision=int8"])
