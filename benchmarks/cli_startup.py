"""How long the ``medmat`` command takes to answer before doing any work, in fresh processes.

Each command runs ``--repeats`` times (the best is printed, as the least disturbed by other
work); ``import medmat`` alone is the floor every command pays, and each row's ratio is to it.

    python benchmarks/cli_startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

#: What is timed: a label and the Python code of a fresh interpreter.
PROBES = {
    "import medmat": "import medmat",
    "medmat --help": "from medmat.cli.main import main; main(['--help'])",
    "medmat train --help": "from medmat.cli.main import main; main(['train', '--help'])",
    "medmat baseline --help": "from medmat.cli.main import main; main(['baseline', '--help'])",
}


def best_seconds(code: str, repeats: int) -> float:
    """The shortest wall time of ``repeats`` fresh interpreters running ``code``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    seconds = {label: best_seconds(code, args.repeats) for label, code in PROBES.items()}
    floor = seconds["import medmat"]
    print(f"| command (best of {args.repeats}) | seconds | ratio to import medmat |")
    print("|---|---|---|")
    for label, value in seconds.items():
        print(f"| {label} | {value:.2f} | {value / floor:.2f} |")


if __name__ == "__main__":
    main()
