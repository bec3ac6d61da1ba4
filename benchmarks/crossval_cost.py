"""Wall time and peak memory of a full k-fold cross-validation, per configuration.

Runs ``medmat crossval`` in a child process (so its peak resident memory can be read from the
kernel's accounting) and prints the wall time, the peak memory, and the ratio of the wall time
to a target (issue: ``lite`` 4-fold Brain-growth CV under 45 minutes on 2 cores; ``paper``
under 10 minutes on one GPU). The record is also written to ``<run-dir>/cost.json``.

    python benchmarks/crossval_cost.py --config lite --run-dir runs/brain-lite [--target-minutes 45] \
        [--jobs 2] [--set train.num_threads=1 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

# Imported for the record only (the children train): so that "machine" names the torch version and
# the GPU the folds ran on, which describe_machine reports only once torch is imported.
import torch  # noqa: F401

from machine import describe_machine  # benchmarks/ is the script's folder, first on sys.path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="lite")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--target-minutes", type=float, default=45.0)
    parser.add_argument("--resume", action="store_true", help="resume an interrupted CV (its time is then partial)")
    parser.add_argument("--jobs", type=int, default=1, help="folds trained at the same time (medmat crossval --jobs)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    command = [sys.executable, "-m", "medmat", "crossval", "--config", args.config, "--run-dir", args.run_dir]
    command += ["--resume"] if args.resume else []
    command += ["--jobs", str(args.jobs)]
    for override in args.overrides:
        command += ["--set", override]
    start = time.perf_counter()
    status = subprocess.call(command)
    wall = time.perf_counter() - start
    # ru_maxrss of the children is in KiB on Linux: the largest resident set of any child.
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    record = {
        "command": " ".join(command),
        "exit_status": status,
        "wall_seconds": round(wall, 1),
        "wall_minutes": round(wall / 60, 2),
        # The largest single process: with --jobs N, N such fold processes run at once.
        "peak_memory_mib": round(peak_mib, 1),
        "jobs": args.jobs,
        "target_minutes": args.target_minutes,
        "ratio_to_target": round(wall / 60 / args.target_minutes, 3),
        "machine": describe_machine(),  # at the end: its load average is the one after the CV
        "resumed": args.resume,
    }
    print(json.dumps(record, indent=2))
    if status == 0:
        from medmat.io.atomic import atomic_write_json

        atomic_write_json(os.path.join(args.run_dir, "cost.json"), record)
    return status


if __name__ == "__main__":
    sys.exit(main())
