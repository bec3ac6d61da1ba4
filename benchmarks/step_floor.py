"""How fast a training step could get: its convolutions alone, replayed at their kernels' own speed.

A step's convolutions (forward and backward) are most of its arithmetic. This records every
convolution call of one training step of a config's model (shapes, strides, dtypes and the
non-tensor arguments; a dispatch mode around the step), then replays the same calls on their own
(fresh tensors of the same shapes and layouts, the same aten operators, in the step's order):
the seconds a step would take if everything but its convolutions cost nothing. Each round times,
alternately, the baseline commit's float32 step (that commit's own ``model_cost.py`` in a child
process, as ``step_against_commit.py``), today's step in the given arithmetic, and the replay;
the report gives the medians, and for a target ratio (default 3x the baseline) the time that
leaves for everything but the convolutions, against what everything else takes today. The
convolutions' rate is set beside a large bfloat16 matrix product's (the CPU's own peak, measured
in the same run): convolutions that run near it cannot get much faster.

    python benchmarks/step_floor.py [--config lite] [--arithmetic bf16+cl] [--baseline 96213e0~1 | --no-baseline] \\
        [--target 3] [--size 128] [--rounds 5] [--repeats 3] [--threads 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from conv_cost import median_seconds  # benchmarks/ is the script's folder, first on sys.path
from machine import finish_report, machine_line
from medmat.engine.config import load_config
from model_cost import training_batch, training_step_function
from step_against_commit import (DEFAULT_BASELINE, add_timing_arguments, extract_commit, model_cost_steps,
                                 parse_timing_arguments, resolve_commit, takes_arithmetic)

#: The aten operators replayed: a convolution's forward and its backward (input and weight gradients).
CONVOLUTIONS = (torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default)
#: Side of the square bfloat16 matrix product that measures the CPU's peak rate.
PEAK_MATMUL_SIDE = 2048


class TensorSpec(NamedTuple):
    """What a recorded call's tensor argument was: shape, strides (the memory layout) and dtype."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype


class ConvolutionRecorder(TorchDispatchMode):
    """Records each convolution call run under it as ``(operator, arguments)``, tensors as :class:`TensorSpec`."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[object, tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in CONVOLUTIONS:
            self.calls.append((func, tuple(_spec(value) for value in args)))
        return func(*args, **(kwargs or {}))


def _spec(value):
    """A tensor as its :class:`TensorSpec`, a list of them element-wise, anything else as it is."""
    if isinstance(value, torch.Tensor):
        return TensorSpec(tuple(value.shape), tuple(value.stride()), value.dtype)
    if isinstance(value, (list, tuple)) and any(isinstance(item, torch.Tensor) for item in value):
        return type(value)(_spec(item) for item in value)
    return value


def replay_function(calls: Sequence[tuple[object, tuple]], seed: int = 0) -> Callable[[], None]:
    """Runs the recorded ``calls`` in order, on random tensors made once per distinct :class:`TensorSpec`.

    Outside autograd, no gradients kept: only the convolution kernels run.
    """
    generator = torch.Generator().manual_seed(seed)
    made: dict[TensorSpec, torch.Tensor] = {}

    def materialise(value):
        if isinstance(value, TensorSpec):
            if value not in made:
                # A flat storage viewed with the recorded strides: expanded (stride 0) gradients too.
                extent = 1 + sum((size - 1) * stride for size, stride in zip(value.shape, value.stride) if size > 0)
                storage = torch.empty(extent).normal_(generator=generator).to(value.dtype)
                made[value] = storage.as_strided(value.shape, value.stride)
            return made[value]
        if isinstance(value, (list, tuple)):
            return type(value)(materialise(item) for item in value)
        return value

    prepared = [(func, tuple(materialise(value) for value in arguments)) for func, arguments in calls]

    def replay() -> None:
        with torch.no_grad():
            for func, arguments in prepared:
                func(*arguments)

    return replay


def counted_flops(function: Callable[[], None]) -> int:
    """Floating-point operations of one ``function()`` call (torch's flop counter: products and convolutions)."""
    counter = FlopCounterMode(display=False)
    with counter:
        function()
    return counter.get_total_flops()


def matmul_rate(repeats: int) -> float:
    """FLOP per second of a square bfloat16 matrix product (:data:`PEAK_MATMUL_SIDE`), median of ``repeats``."""
    left = torch.randn(PEAK_MATMUL_SIDE, PEAK_MATMUL_SIDE).to(torch.bfloat16)
    right = torch.randn(PEAK_MATMUL_SIDE, PEAK_MATMUL_SIDE).to(torch.bfloat16)
    return 2 * PEAK_MATMUL_SIDE**3 / median_seconds(lambda: left @ right, repeats)


def summarise(rounds: dict[str, list[float]], target: float) -> dict:
    """Medians over the rounds, what the convolutions leave for everything else, and the ceiling.

    Args:
        rounds: ``{"step": [...], "convolutions": [...]}`` seconds, with ``"baseline_fp32"`` when the
            baseline was timed.
        target: how many times faster than the baseline's float32 step the step should be.

    Returns:
        ``{"median_s", "rest_s"}`` (the step less its convolutions), and with a baseline
        ``"ratio"`` (baseline over step), ``"target_s"`` (the baseline over ``target``),
        ``"rest_budget_s"`` (the target less the convolutions: negative when they alone miss it)
        and ``"ceiling"`` (the baseline over the convolutions: the ratio with everything else free).
    """
    median = {key: statistics.median(values) for key, values in rounds.items()}
    summary = {"median_s": median, "rest_s": median["step"] - median["convolutions"]}
    if "baseline_fp32" in median:
        target_s = median["baseline_fp32"] / target
        summary |= {
            "ratio": median["baseline_fp32"] / median["step"],
            "target_s": target_s,
            "rest_budget_s": target_s - median["convolutions"],
            "ceiling": median["baseline_fp32"] / median["convolutions"],
        }
    return summary


def report_table(report: dict) -> str:
    """A markdown table of the medians, then what the target leaves for everything else."""
    summary, median = report["summary"], report["summary"]["median_s"]
    gflop = report["convolution_flops"] / 1e9
    rate = report["convolution_flops"] / median["convolutions"] / 1e9
    lines = [f"{report['config']} [{report['arithmetic']}], {report['size']}x{report['size']}, batch {report['batch']}, "
             f"{report['threads']} thread(s), median of {report['rounds']} rounds ({report['repeats']} repeats each)",
             "| | ms per step |", "|---|---|"]
    if "baseline_fp32" in median:
        lines.append(f"| baseline float32 step ({report['baseline']}) | {median['baseline_fp32'] * 1000:.1f} |")
    lines += [
        f"| today's {report['arithmetic']} step | {median['step'] * 1000:.1f} |",
        f"| its {report['convolution_calls']} convolution calls, replayed alone | {median['convolutions'] * 1000:.1f} "
        f"({gflop:.1f} GFLOP, {rate:.0f} GFLOP/s; a {PEAK_MATMUL_SIDE}^2 bf16 matrix product: "
        f"{report['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s) |",
        f"| everything else (step less convolutions) | {summary['rest_s'] * 1000:.1f} |",
    ]
    if "baseline_fp32" in median:
        target = report["target"]
        lines += [
            f"today's step is {summary['ratio']:.2f}x faster than the baseline's float32 step; {target:g}x is "
            f"{summary['target_s'] * 1000:.1f} ms, which leaves {summary['rest_budget_s'] * 1000:.1f} ms for everything "
            f"but the convolutions (today {summary['rest_s'] * 1000:.1f} ms)",
            f"ceiling with everything else free: {summary['ceiling']:.2f}x",
        ]
    lines.append(machine_line())
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="lite", help="packaged name or YAML (the baseline must have it too)")
    parser.add_argument("--arithmetic", default="bf16+cl", help="today's arithmetic (model_cost's names)")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="the commit whose float32 step is the reference")
    parser.add_argument("--no-baseline", action="store_true", help="time today's step and its convolutions only")
    parser.add_argument("--target", type=float, default=3.0, help="the ratio to the baseline's step aimed at")
    add_timing_arguments(parser)
    args = parse_timing_arguments(parser, argv)
    if args.target <= 0:
        parser.error("--target must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    commit = None if args.no_baseline else resolve_commit(args.baseline, "step_floor")
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    batch_size = config["optim"]["batch_size"]
    step = training_step_function(config, training_batch(batch_size, args.size), args.arithmetic)
    step()  # warm-up: the allocator and oneDNN's kernel choice, before the convolutions are recorded
    recorder = ConvolutionRecorder()
    with recorder:
        step()
    replay = replay_function(recorder.calls)
    rounds: dict[str, list[float]] = {"step": [], "convolutions": []}
    with tempfile.TemporaryDirectory(prefix="medmat-baseline-") as folder:
        baseline = Path(folder)
        if commit is not None:
            extract_commit(commit, baseline)
            baseline_arithmetic = ["fp32"] if takes_arithmetic(baseline) else None
            rounds["baseline_fp32"] = []
        for _ in range(args.rounds):
            if commit is not None:
                rounds["baseline_fp32"].append(model_cost_steps(baseline, args, baseline_arithmetic)[0])
            rounds["step"].append(median_seconds(step, args.repeats))
            rounds["convolutions"].append(median_seconds(replay, args.repeats))
    report = {
        "config": args.config, "arithmetic": args.arithmetic, "size": args.size, "batch": batch_size,
        "threads": args.threads, "rounds": args.rounds, "repeats": args.repeats, "target": args.target,
        "baseline": None if commit is None else args.baseline, "baseline_commit": commit,
        "convolution_calls": len(recorder.calls), "convolution_flops": counted_flops(replay),
        "matmul_flops_per_s": matmul_rate(args.repeats),
        "times_s": rounds, "summary": summarise(rounds, args.target),
    }
    return finish_report(report, report_table(report), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
