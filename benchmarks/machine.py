"""The machine a benchmark ran on: one description, stored or printed beside every measurement.

A benchmark imports it as its sibling (``from machine import describe_machine``: benchmarks/ is
the script's folder, first on ``sys.path``); JSON reports store :func:`describe_machine` under
``"machine"`` (:func:`finish_report` adds it), printed reports :func:`machine_line`.
"""

from __future__ import annotations

import os
import platform
import sys


def describe_machine() -> dict:
    """Platform, CPU, Python, torch and the 1/5/15-minute load averages, now.

    Returns:
        ``{"platform", "machine", "processor", "cpu_count", "python", "torch", "torch_threads",
        "cuda_device", "load_average"}``; "torch" (version) and "torch_threads" (this process's) are
        None when the benchmark has not imported torch (one that only times child processes);
        "cuda_device" is the first CUDA GPU's name, None without one.
    """
    torch = sys.modules.get("torch")
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": None if torch is None else torch.__version__,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else None,
        "load_average": list(os.getloadavg()),
    }


def machine_line(machine: dict | None = None) -> str:
    """One line of a description (default: :func:`describe_machine` now).

    E.g. ``x86_64, 2 cores, Python 3.11.7, torch 2.13.0 with 1 thread(s), load average 0.52``.
    """
    machine = describe_machine() if machine is None else machine
    torch = "" if machine["torch"] is None else f", torch {machine['torch']} with {machine['torch_threads']} thread(s)"
    return (f"{machine['machine']}, {machine['cpu_count']} cores, Python {machine['python']}"
            f"{torch}, load average {machine['load_average'][0]:.2f}")


def finish_report(report: dict, text: str, json_path: str | None) -> int:
    """Print a benchmark's ``text`` and write its ``report`` atomically as JSON to ``json_path`` (when given).

    The written report has the machine, described now, under "machine" unless it has its own.
    Returns 0, the benchmark's exit status.
    """
    print(text)
    if json_path:
        from medmat.io.atomic import atomic_write_json

        atomic_write_json(json_path, {**report, "machine": report.get("machine") or describe_machine()})
    return 0
