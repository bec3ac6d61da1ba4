"""A model's training step now against the float32 step of an earlier commit, measured in one run.

Issue 14's step target is "at least 3x faster than today's float32 step", today being the day it
was filed. Since then the float32 step has changed too, so this times three steps of one config
in the same run: the earlier commit's float32 step (that commit's own ``benchmarks/model_cost.py``
and its own ``medmat``, extracted with ``git archive`` into a temporary folder), today's float32
step and today's step in the given arithmetic. Rounds alternate the three, so that a slower spell
of the machine falls on all of them; the table gives each one's median over the rounds and the
ratios of the medians. Each step is its model_cost's median of ``--repeats`` after a warm-up,
forward + loss + backward + Adam at the config's batch size.

The default baseline, ``96213e0~1``, is the last commit before the training arithmetic switches
(the code the issue was written against). ``--baseline-arithmetic`` also times the baseline's step
in an arithmetic of its own (a later baseline's ``bf16+cl``: what a change since then saved in
the same arithmetic, measured in the same alternating rounds).

    python benchmarks/step_against_commit.py [--baseline REV] [--config lite] [--arithmetic bf16+cl] \\
        [--baseline-arithmetic bf16+cl] [--size 128] [--rounds 5] [--repeats 3] [--threads 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from machine import finish_report, machine_line  # benchmarks/ is the script's folder, first on sys.path

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = "96213e0~1"


def extract_commit(revision: str, folder: Path) -> None:
    """Write the tree of ``revision`` into ``folder`` (no git metadata); exit with one line if git cannot."""
    archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", "--format=tar", revision],
                             capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"step_against_commit: git archive {revision}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)


def takes_arithmetic(tree: Path) -> bool:
    """Whether ``tree``'s model_cost.py has ``--arithmetic`` (earlier ones time float32 only)."""
    return '"--arithmetic"' in (tree / "benchmarks" / "model_cost.py").read_text()


def model_cost_steps(tree: Path, args: argparse.Namespace, arithmetic: Sequence[str] | None) -> list[float]:
    """Step seconds of ``args.config`` from ``tree``'s model_cost.py, one per arithmetic, in a child process.

    ``arithmetic`` None: no ``--arithmetic`` is passed (a model_cost that predates it times float32
    only, one row). The child imports ``medmat`` from ``tree`` (its folder first on PYTHONPATH,
    before the installed one).
    """
    with tempfile.TemporaryDirectory() as scratch:
        report_path = Path(scratch) / "report.json"
        command = [sys.executable, str(tree / "benchmarks" / "model_cost.py"), "--configs", args.config,
                   "--size", str(args.size), "--repeats", str(args.repeats), "--threads", str(args.threads),
                   "--json", str(report_path)]
        if arithmetic is not None:
            command += ["--arithmetic", *arithmetic]
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])))
        done = subprocess.run(command, env=environment, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise SystemExit(f"step_against_commit: model_cost.py in {tree} failed: {tail[0]}")
        rows = json.loads(report_path.read_text())["rows"]
    return [row["step_s"] for row in rows]


def summarise(rounds: dict[str, list[float]]) -> dict:
    """Medians over the rounds and the ratios of the medians.

    Args:
        rounds: ``{"baseline_fp32": [...], "fp32": [...], "arithmetic": [...]}``, seconds per step,
            and ``"baseline_arithmetic"`` when the baseline was also timed in an arithmetic.

    Returns:
        ``{"median_s": {key: median}, "baseline_fp32_over_arithmetic", "fp32_over_arithmetic",
        "baseline_fp32_over_fp32"}`` (how many times faster the step in the arithmetic is than
        the baseline's and today's float32 step, and today's float32 step than the baseline's),
        with ``"baseline_arithmetic_over_arithmetic"`` (today's step against the baseline's in
        its arithmetic) when that was timed.
    """
    median = {key: statistics.median(values) for key, values in rounds.items()}
    summary = {
        "median_s": median,
        "baseline_fp32_over_arithmetic": median["baseline_fp32"] / median["arithmetic"],
        "fp32_over_arithmetic": median["fp32"] / median["arithmetic"],
        "baseline_fp32_over_fp32": median["baseline_fp32"] / median["fp32"],
    }
    if "baseline_arithmetic" in median:
        summary["baseline_arithmetic_over_arithmetic"] = median["baseline_arithmetic"] / median["arithmetic"]
    return summary


def report_table(report: dict) -> str:
    """A markdown table: each round's three steps, the medians, then the ratios."""
    rounds, summary, arithmetic = report["rounds"], report["summary"], report["arithmetic"]
    columns = {"baseline_fp32": "baseline fp32 s"}
    if "baseline_arithmetic" in rounds:
        columns["baseline_arithmetic"] = f"baseline {report['baseline_arithmetic']} s"
    columns |= {"fp32": "today fp32 s", "arithmetic": f"today {arithmetic} s"}
    lines = [
        f"{report['config']}, {report['size']}x{report['size']}, {report['threads']} thread(s), "
        f"median of {report['repeats']} steps per measurement; baseline {report['baseline']} ({report['baseline_commit'][:7]})",
        "| round | " + " | ".join(columns.values()) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for index, values in enumerate(zip(*(rounds[key] for key in columns)), start=1):
        lines.append(f"| {index} | " + " | ".join(f"{value:.3f}" for value in values) + " |")
    median = summary["median_s"]
    lines.append("| median | " + " | ".join(f"{median[key]:.3f}" for key in columns) + " |")
    lines.append(
        f"today's {arithmetic} step is {summary['baseline_fp32_over_arithmetic']:.2f}x faster than the baseline's "
        f"fp32 step and {summary['fp32_over_arithmetic']:.2f}x faster than today's; today's fp32 step is "
        f"{summary['baseline_fp32_over_fp32']:.2f}x the baseline's speed"
    )
    if "baseline_arithmetic_over_arithmetic" in summary:
        lines.append(f"today's {arithmetic} step is {summary['baseline_arithmetic_over_arithmetic']:.2f}x faster than "
                     f"the baseline's {report['baseline_arithmetic']} step")
    lines.append(machine_line())
    return "\n".join(lines)


#: Options both step benchmarks (this one and ``step_floor.py``) take, each at least 1.
TIMING_COUNTS = {"size": 128, "rounds": 5, "repeats": 3, "threads": 2}


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """``--size``, ``--rounds``, ``--repeats``, ``--threads`` (:data:`TIMING_COUNTS`) and ``--json``."""
    for name, default in TIMING_COUNTS.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--json", default=None, help="also write the report to this JSON file (atomically)")


def parse_timing_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser``'s arguments, with a usage error when a count of :data:`TIMING_COUNTS` is below 1."""
    args = parser.parse_args(argv)
    for name in TIMING_COUNTS:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def resolve_commit(revision: str, script: str) -> str:
    """The full hash of ``revision`` in this repository; exit with one line naming ``script`` when it is not a commit."""
    commit = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "--verify", f"{revision}^{{commit}}"],
                            capture_output=True, text=True)
    if commit.returncode != 0:
        raise SystemExit(f"{script}: {revision!r} is not a commit of {REPOSITORY}")
    return commit.stdout.strip()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="the earlier commit (any git revision)")
    parser.add_argument("--config", default="lite", help="a config both commits have (packaged name or YAML)")
    parser.add_argument("--arithmetic", default="bf16+cl", help="today's arithmetic to time (model_cost's names)")
    parser.add_argument("--baseline-arithmetic", default=None,
                        help="also time the baseline's step in this arithmetic (its model_cost must take --arithmetic)")
    add_timing_arguments(parser)
    return parse_timing_arguments(parser, argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    commit = resolve_commit(args.baseline, "step_against_commit")
    rounds = {"baseline_fp32": [], "fp32": [], "arithmetic": []}
    with tempfile.TemporaryDirectory(prefix="medmat-baseline-") as folder:
        baseline = Path(folder)
        extract_commit(commit, baseline)
        baseline_arithmetic = ["fp32"] if takes_arithmetic(baseline) else None
        if args.baseline_arithmetic is not None:
            if baseline_arithmetic is None:
                raise SystemExit(f"step_against_commit: {args.baseline}'s model_cost.py times float32 only "
                                 f"(no --arithmetic): drop --baseline-arithmetic")
            baseline_arithmetic.append(args.baseline_arithmetic)
            rounds["baseline_arithmetic"] = []
        for _ in range(args.rounds):
            baseline_steps = model_cost_steps(baseline, args, baseline_arithmetic)
            rounds["baseline_fp32"].append(baseline_steps[0])
            if args.baseline_arithmetic is not None:
                rounds["baseline_arithmetic"].append(baseline_steps[1])
            fp32, in_arithmetic = model_cost_steps(REPOSITORY, args, ["fp32", args.arithmetic])
            rounds["fp32"].append(fp32)
            rounds["arithmetic"].append(in_arithmetic)
    report = {
        "baseline": args.baseline, "baseline_commit": commit, "config": args.config,
        "arithmetic": args.arithmetic, "baseline_arithmetic": args.baseline_arithmetic, "size": args.size, "threads": args.threads, "repeats": args.repeats,
        "rounds": rounds, "summary": summarise(rounds),
    }
    return finish_report(report, report_table(report), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
