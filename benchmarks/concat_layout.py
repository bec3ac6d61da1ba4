"""What joining maps to features in their dtype and layout saves: a training step with medmat's
:func:`~medmat.models.blocks.cat_channels` against the same step with plain ``torch.cat``.

``torch.cat`` joins a float32 map to bfloat16 features (autocast) as float32, and a one-channel
map to channels-last features in the default layout, so every convolution reading the result
copies it back, forward and backward. The two joins give the convolutions the same values
(tests/test_models_medical_matting.py); this prints what the copies cost. Rounds alternate the two
(and a float32 step, the 3x target's reference), so that a slower spell of the machine falls on
both; the table gives each one's median over the rounds.

    python benchmarks/concat_layout.py [--configs lite adamatting_lite] [--arithmetic bf16+cl] \\
        [--size 128] [--rounds 5] [--repeats 3] [--threads 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from contextlib import contextmanager

import torch

import medmat.models
from machine import finish_report, machine_line  # benchmarks/ is the script's folder, first on sys.path
from medmat.engine.config import load_config
from model_cost import step_seconds, training_batch


def plain_cat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """What the models did before :func:`~medmat.models.blocks.cat_channels`."""
    return torch.cat(list(tensors), dim=1)


@contextmanager
def plain_concatenation():
    """Every medmat model module's ``cat_channels`` replaced by :func:`plain_cat` for the block."""
    modules = [module for name, module in sys.modules.items()
               if name.startswith(medmat.models.__name__ + ".") and hasattr(module, "cat_channels")]
    saved = [module.cat_channels for module in modules]
    try:
        for module in modules:
            module.cat_channels = plain_cat
        yield
    finally:
        for module, original in zip(modules, saved):
            module.cat_channels = original


def measure(config: dict, batch: dict, arithmetic: str, rounds: int, repeats: int) -> dict:
    """Median over ``rounds`` of the step seconds with each join, and of the float32 step."""
    times = {"cat_channels": [], "torch.cat": [], "fp32": []}
    for _ in range(rounds):
        times["cat_channels"].append(step_seconds(config, batch, repeats, arithmetic))
        with plain_concatenation():
            times["torch.cat"].append(step_seconds(config, batch, repeats, arithmetic))
        times["fp32"].append(step_seconds(config, batch, repeats, "fp32"))
    medians = {key: statistics.median(values) for key, values in times.items()}
    return {"rounds": times, "median_s": medians,
            "saving": 1.0 - medians["cat_channels"] / medians["torch.cat"],
            "fp32_ratio": {key: medians["fp32"] / medians[key] for key in ("cat_channels", "torch.cat")}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["lite"])
    parser.add_argument("--arithmetic", default="bf16+cl", help="fp32, bf16, bf16+cl ... (as model_cost.py)")
    parser.add_argument("--size", type=int, default=32, help="image side (lite: 128)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per measurement, after one warm-up")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines = [f"{args.size}x{args.size}, {args.arithmetic}, {args.threads} thread(s), median over {args.rounds} "
             f"alternating rounds of the median of {args.repeats} steps",
             "| config | cat_channels s | torch.cat s | saving | fp32 s | fp32 / cat_channels | fp32 / torch.cat |",
             "|---|---|---|---|---|---|---|"]
    results = {}
    for name in args.configs:
        config = load_config(name)
        batch = training_batch(config["optim"]["batch_size"], args.size)
        result = results[name] = measure(config, batch, args.arithmetic, args.rounds, args.repeats)
        median, ratio = result["median_s"], result["fp32_ratio"]
        lines.append(f"| {name} | {median['cat_channels']:.3f} | {median['torch.cat']:.3f} | {result['saving']:.1%} | "
                     f"{median['fp32']:.3f} | {ratio['cat_channels']:.2f}x | {ratio['torch.cat']:.2f}x |")
    lines.append(machine_line())
    report = {"configs": args.configs, "arithmetic": args.arithmetic, "size": args.size, "rounds": args.rounds,
              "repeats": args.repeats, "threads": args.threads, "results": results}
    return finish_report(report, "\n".join(lines), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
