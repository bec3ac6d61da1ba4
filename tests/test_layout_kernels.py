"""benchmarks/layout_kernels.py: the layout-bound bfloat16 kernels, each variant the same arithmetic."""

from __future__ import annotations

import torch

from tiny_configs import load_benchmark


def test_the_rejected_row_batch_norm_is_batch_norm_forward_and_backward():
    # A candidate rejected for speed must still have been the same operation, or its time says nothing.
    script = load_benchmark("layout_kernels")
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 8, 6, 5, generator=generator) * 2 + 1).contiguous(memory_format=torch.channels_last)
    gradient = torch.randn(2, 8, 6, 5, generator=generator).contiguous(memory_format=torch.channels_last)
    norm = torch.nn.BatchNorm2d(8).train()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=generator)
        norm.bias.uniform_(-1, 1, generator=generator)
    mine = x.clone().requires_grad_()
    theirs = x.clone().requires_grad_()
    ours = script.RowBatchNorm.apply(mine, norm.weight, norm.bias, norm.eps)
    ours.backward(gradient)
    weight_gradient, bias_gradient = norm.weight.grad.clone(), norm.bias.grad.clone()
    norm.weight.grad = norm.bias.grad = None
    norm(theirs).backward(gradient)
    torch.testing.assert_close(ours, norm(x.clone()), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(weight_gradient, norm.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bias_gradient, norm.bias.grad, rtol=1e-4, atol=1e-4)


def test_a_run_times_every_variant_of_every_kernel(capsys):
    script = load_benchmark("layout_kernels")
    assert script.main(["--rounds", "1", "--repeats", "1", "--threads", "1"]) == 0
    table = capsys.readouterr().out
    for variant in ("torch.cat (gradient a strided slice)", "rows of 64 values (Fcomb)",
                    "copied to the default layout and back", "hand-written over rows (RowBatchNorm)"):
        assert variant in table
    assert table.count("| batch norm, 32 channels |") == 4


def test_compiled_batch_norm_relu_is_the_eager_pair_forward_and_backward():
    # The compiled variant is timed against the eager one: it must compute the same thing.
    script = load_benchmark("layout_kernels")
    generator = torch.Generator().manual_seed(1)
    x = (torch.randn(2, 8, 6, 5, generator=generator) * 2 + 1).contiguous(memory_format=torch.channels_last)
    gradient = torch.randn(2, 8, 6, 5, generator=generator).contiguous(memory_format=torch.channels_last)
    weight = torch.empty(8).uniform_(0.5, 1.5, generator=generator).requires_grad_()
    bias = torch.empty(8).uniform_(-1, 1, generator=generator).requires_grad_()
    results = []
    for pair in (script.batch_norm_relu, torch.compile(script.batch_norm_relu, dynamic=False)):
        source = x.clone().requires_grad_()
        weight.grad = bias.grad = None
        output = pair(source, weight, bias)
        output.backward(gradient)
        results.append((output.detach(), source.grad, weight.grad.clone(), bias.grad.clone()))
    assert (results[0][0] == 0).any() and (results[0][0] > 0).any()  # the ReLU cuts some values, keeps others
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
