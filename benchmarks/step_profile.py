"""Where one training step of a config's model spends its time: the ``torch.profiler`` table of
forward + criterion + backward + Adam on a (batch, 1, size, size) batch in a given arithmetic, and
the seconds the training dataset needs to prepare one item (augmentations, pseudo mask, trimaps).

With ``--clock``, each aten operator is timed at its call instead (a dispatch mode around the
steps, no profiler, whose per-call records, more so with ``--shapes``, add to what it times). The
clock adds a Python call of its own to each operator, so its milliseconds run above a plain
step's; its shares are what the step spends on each operator.

    python benchmarks/step_profile.py --config lite --arithmetic bf16+cl --size 128 [--threads 1] [--rows 25] \
        [--shapes] [--clock]
"""

from __future__ import annotations

import argparse
import collections
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from machine import machine_line  # benchmarks/ is the script's folder, first on sys.path
from medmat.engine.config import input_size, load_config
from medmat.engine.dataset import MattingDataset
from medmat.engine.trainer import load_samples
from model_cost import training_batch, training_step_function


class OperatorClock(TorchDispatchMode):
    """Seconds and calls of each aten operator run under it (by operator, or by operator and the
    shape of its first tensor argument with ``by_shape``), timed around the call itself."""

    def __init__(self, by_shape: bool = False):
        super().__init__()
        self.by_shape = by_shape
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        started = time.perf_counter()
        result = func(*args, **(kwargs or {}))
        elapsed = time.perf_counter() - started
        key = str(func)
        if self.by_shape:
            shape = next((tuple(value.shape) for value in args if isinstance(value, torch.Tensor)), ())
            key = f"{key} {list(shape)}"
        self.seconds[key] += elapsed
        self.calls[key] += 1
        return result

    def table(self, steps: int, rows: int) -> str:
        """The ``rows`` costliest operators: ms per step, share of the clocked total, calls per step."""
        total = sum(self.seconds.values())
        lines = [f"clocked operators: {total / steps * 1000:.1f} ms per step, {sum(self.calls.values()) // steps} calls",
                 f"{'ms/step':>8} {'share':>6} {'calls':>6}  operator"]
        for key, seconds in sorted(self.seconds.items(), key=lambda item: -item[1])[:rows]:
            lines.append(f"{seconds / steps * 1000:8.2f} {seconds / total:6.1%} {self.calls[key] / steps:6.0f}  {key}")
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="lite")
    parser.add_argument("--arithmetic", default="fp32", help="fp32, bf16, bf16+cl, ... (as model_cost.py)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps, after one warm-up")
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--shapes", action="store_true",
                        help="one row per operator and input shapes (which tensors the copies are)")
    parser.add_argument("--clock", action="store_true",
                        help="time each aten operator at its call (no profiler): ms per step and share")
    parser.add_argument("--items", type=int, default=20, help="dataset items timed (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    one_step = training_step_function(config, training_batch(config["optim"]["batch_size"], args.size), args.arithmetic)
    one_step()
    print(f"{args.config} [{args.arithmetic}], {args.size}x{args.size}, batch {config['optim']['batch_size']}, "
          f"{args.threads} thread(s), {args.steps} steps")
    recorder = (OperatorClock(by_shape=args.shapes) if args.clock
                else profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes))
    started = time.perf_counter()
    with recorder:
        for _ in range(args.steps):
            one_step()
    if args.clock:
        print(f"wall: {(time.perf_counter() - started) / args.steps * 1000:.1f} ms per step, clock included")
        print(recorder.table(args.steps, args.rows))
    else:
        print(recorder.key_averages(group_by_input_shape=args.shapes).table(sort_by="self_cpu_time_total",
                                                                           row_limit=args.rows))
    if args.items:
        samples = load_samples(config)[: args.items]
        dataset = MattingDataset(samples, training=True, seed=config["seed"], size=input_size(config),
                                 augment=config["data"]["augment"])
        started = time.perf_counter()
        for index in range(len(dataset)):
            dataset[index]
        print(f"dataset: {(time.perf_counter() - started) / len(dataset) * 1000:.1f} ms per training item "
              f"({len(dataset)} items of {config['data']['dataset']})")
    print(f"machine: {machine_line()}")


if __name__ == "__main__":
    main()
