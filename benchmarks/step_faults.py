"""Page faults and kernel time of a training step with the C allocator's defaults and with medmat's
``train.keep_freed_memory`` settings (:mod:`medmat.engine.allocator`), measured in one run.

The settings last for a process, so each measurement is a child process: it builds the config's
model (``benchmarks/model_cost.py``'s step: forward, criterion, backward, Adam on a random batch),
takes ``--warmup`` steps, then times ``--steps`` more and reads ``getrusage`` around them: wall
seconds, minor page faults, user and system CPU seconds, each per step. Rounds alternate the two
allocators so that a slower spell of the machine falls on both; the table gives each round, the
medians and the ratios of the medians (default over kept: how many times more).

    python benchmarks/step_faults.py [--config lite] [--arithmetic bf16+cl] [--size 128] [--rounds 4] \\
        [--steps 10] [--threads 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from machine import finish_report, machine_line  # benchmarks/ is the script's folder, first on sys.path
from medmat.engine.allocator import keep_freed_memory
from medmat.engine.config import load_config
from model_cost import training_batch, training_step_function

#: The two allocators compared: glibc's defaults, and medmat's training settings.
ALLOCATORS = ("default", "kept")
#: Per-step figures a child reports.
FIGURES = ("wall_s", "minor_faults", "user_s", "system_s")


def measure_here(args: argparse.Namespace, allocator: str) -> dict[str, float]:
    """Per-step wall seconds, minor page faults, user and system seconds of ``args.steps`` steps in this process."""
    if allocator == "kept" and not keep_freed_memory():
        raise SystemExit("step_faults: this C library does not take the allocator settings (glibc only)")
    torch.set_num_threads(args.threads)
    # The allocator is this benchmark's variable, set above: the config's switch stays off.
    config = load_config(args.config, ["train.keep_freed_memory=false"])
    step = training_step_function(config, training_batch(config["optim"]["batch_size"], args.size), args.arithmetic)
    for _ in range(args.warmup):
        step()
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(args.steps):
        step()
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - started
    return {
        "wall_s": wall / args.steps,
        "minor_faults": (after.ru_minflt - before.ru_minflt) / args.steps,
        "user_s": (after.ru_utime - before.ru_utime) / args.steps,
        "system_s": (after.ru_stime - before.ru_stime) / args.steps,
    }


def measure_in_child(args: argparse.Namespace, allocator: str) -> dict[str, float]:
    """:func:`measure_here` in a fresh process (the allocator's settings cannot be undone)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", allocator, "--config", args.config,
               "--arithmetic", args.arithmetic, "--size", str(args.size), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"step_faults: the {allocator} measurement failed: {tail[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(rounds: dict[str, list[dict[str, float]]]) -> dict:
    """Each allocator's median of every figure, and the default's over the kept one's."""
    median = {allocator: {figure: statistics.median(row[figure] for row in rows) for figure in FIGURES}
              for allocator, rows in rounds.items()}
    ratio = {figure: median["default"][figure] / median["kept"][figure] if median["kept"][figure] else float("inf")
             for figure in FIGURES}
    return {"median": median, "default_over_kept": ratio}


def report_table(report: dict) -> str:
    """A markdown table: every round of both allocators, the medians, then the ratios."""
    lines = [
        f"{report['config']} [{report['arithmetic']}], {report['size']}x{report['size']}, {report['threads']} thread(s), "
        f"{report['steps']} steps per measurement after {report['warmup']}",
        "| round | allocator | wall s/step | minor faults/step | user s/step | system s/step |",
        "|---|---|---|---|---|---|",
    ]

    def cells(values: dict[str, float]) -> str:
        return (f"{values['wall_s']:.3f} | {values['minor_faults']:.0f} | {values['user_s']:.3f} | "
                f"{values['system_s']:.4f}")

    for index, rows in enumerate(zip(*(report["rounds"][allocator] for allocator in ALLOCATORS)), start=1):
        for allocator, values in zip(ALLOCATORS, rows):
            lines.append(f"| {index} | {allocator} | {cells(values)} |")
    for allocator in ALLOCATORS:
        lines.append(f"| median | {allocator} | {cells(report['summary']['median'][allocator])} |")
    ratio = report["summary"]["default_over_kept"]
    lines += [
        f"default over kept: wall {ratio['wall_s']:.2f}x, minor faults {ratio['minor_faults']:.0f}x, "
        f"user {ratio['user_s']:.2f}x, system {ratio['system_s']:.1f}x",
        machine_line(),
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="lite", help="packaged name or YAML")
    parser.add_argument("--arithmetic", default="bf16+cl", help="model_cost's names: fp32, bf16, bf16+cl, ...")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the report to this JSON file (atomically)")
    parser.add_argument("--child", choices=ALLOCATORS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("size", "rounds", "steps", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure_here(args, args.child)))
        return 0
    rounds: dict[str, list[dict[str, float]]] = {allocator: [] for allocator in ALLOCATORS}
    for _ in range(args.rounds):
        for allocator in ALLOCATORS:
            rounds[allocator].append(measure_in_child(args, allocator))
    report = {"config": args.config, "arithmetic": args.arithmetic, "size": args.size, "threads": args.threads,
              "steps": args.steps, "warmup": args.warmup, "rounds": rounds, "summary": summarise(rounds)}
    return finish_report(report, report_table(report), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
