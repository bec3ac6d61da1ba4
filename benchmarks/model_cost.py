"""Cost of every medmat model: parameters, training step and epoch time, prediction throughput.

Every model is built from its config (a packaged name or a YAML file, with ``--set`` overrides
applied to each), in one process, on the same random batch, and measured the same way:

- parameters (whole model, and its matting network where it has one: a ``matting_net``
  submodule, for a "nig" model its base's);
- seconds per training step: forward, the config's criterion, backward and a step of the
  config's optimiser (the engine's ``build_optimizer``), with training's allocator settings
  (``train.keep_freed_memory``), on a (batch, 1, size, size) batch (default: the first config's
  batch size); median of ``--repeats`` after one warm-up step. The batch carries every key a model trains from: image,
  alpha, pseudo mask, 3 annotator masks and the alpha's trimap (a "nig" model draws its own
  random user maps in training, as it does without the engine's). One epoch of a Brain-growth
  fold is ``ceil(29 / batch)`` steps (29 training cases in a 4-fold split);
- prediction throughput: images per second of the engine's
  :func:`~medmat.engine.inference.predict` on the batch's images and uint8 trimaps (what
  ``medmat predict --trimaps`` gives a trimap-guided model), and for resolution-free models
  (``predict`` with ``output_size``) also at twice the size, read from the implicit function.

The ratios to the first config come from this one run. Defaults are tiny so the script finishes
in seconds; the lite numbers are ``--size 128 --repeats 5``.

    python benchmarks/model_cost.py [--configs lite adamatting_lite ...] [--set KEY=VALUE]
        [--variant KEY=VALUE ...]   # the first config again with one change, e.g. wider units
        [--size 128 --repeats 5] [--batch-size B] [--samples 8] [--threads 1] [--json PATH]
        [--arithmetic fp32 bf16 bf16+cl]    # every config's step in each training arithmetic
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from conv_cost import median_seconds  # benchmarks/ is the script's folder, first on sys.path
from machine import finish_report
from medmat.data.trimap import alpha_trimap, trimap_levels
from medmat.engine.allocator import keep_freed_memory
from medmat.engine.config import ALIASES, load_config, packaged_configs
from medmat.engine.inference import build_model_from_config, predict
from medmat.engine.loop import TrainingStep, build_criterion_from_config
from medmat.engine.optim import build_optimizer
from medmat.engine.precision import PRECISIONS, arithmetic_for, prepare_model

#: Training cases of one Brain-growth fold (39 cases, 4 folds; the brain-growth split).
FOLD_TRAINING_CASES = 29
#: The model every other is compared with when no --configs are given.
CORE_CONFIG = "lite"
#: Packaged configs measured by default: the core, then every other ``*_lite`` one.
LITE_SUFFIX = "_lite"


def default_configs() -> list[str]:
    """``lite`` and every other packaged ``*_lite`` config, sorted (new models join automatically)."""
    core = ALIASES[CORE_CONFIG]
    others = [name for name in packaged_configs() if name.endswith(LITE_SUFFIX) and name != core]
    return [CORE_CONFIG] + others


def config_label(name: str) -> str:
    """The row name of a config: a packaged name as given, a YAML file by its stem."""
    return Path(name).stem if name.endswith((".yaml", ".yml")) else name


def count_parameters(module: torch.nn.Module) -> int:
    """Number of scalar parameters of ``module``."""
    return sum(parameter.numel() for parameter in module.parameters())


def matting_network(model: torch.nn.Module) -> torch.nn.Module | None:
    """The model's ``matting_net`` submodule (nested ones too: a "nig" model's base's), or None."""
    for name, module in model.named_modules():
        if name == "matting_net" or name.endswith(".matting_net"):
            return module
    return None


def alpha_trimaps(alpha: torch.Tensor) -> np.ndarray:
    """Eq. 2 trimaps of a batch alpha (B, 1, H, W) in [0, 1]: uint8 (B, H, W), 0 / 128 / 255."""
    return np.stack([alpha_trimap(image) for image in alpha[:, 0].numpy()])


def training_batch(batch_size: int, size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random contract batch: image, alpha (a soft disc), pseudo mask, 3 annotator masks and trimap.

    Returns:
        float32 tensors: "image", "alpha", "pseudo_mask", "trimap" (B, 1, size, size) and "masks"
        (B, 3, size, size). The trimap is the alpha's (0 where alpha == 0, 1 where alpha == 1,
        0.5 between), in the engine's levels.
    """
    generator = torch.Generator().manual_seed(seed)
    coords = torch.arange(size, dtype=torch.float32)
    radius = torch.hypot(coords[None, :] - size / 2, coords[:, None] - size / 2)
    alpha = ((size / 4 - radius) / 3 + 0.5).clamp(0, 1).expand(batch_size, 1, size, size).contiguous()
    image = (0.2 + 0.6 * alpha + 0.05 * torch.randn(alpha.shape, generator=generator)).clamp(0, 1)
    masks = torch.cat([(alpha >= level).float() for level in (0.3, 0.5, 0.7)], dim=1)
    trimap = np.stack([trimap_levels(levels) for levels in alpha_trimaps(alpha)])[:, None]
    return {
        "image": image, "alpha": alpha, "pseudo_mask": (alpha >= 0.5).float(), "masks": masks,
        "trimap": torch.from_numpy(trimap),
    }


def arithmetic_settings(name: str) -> dict:
    """The ``train`` settings of an arithmetic name: a precision, then "+cl" (channels-last) and / or
    "+compile" (torch.compile): "fp32", "bf16", "bf16+cl", "bf16+cl+compile"..."""
    precision, *options = name.split("+")
    if precision not in PRECISIONS or not set(options) <= {"cl", "compile"}:
        raise SystemExit(f"unknown arithmetic {name!r}: a precision ({', '.join(PRECISIONS)}), then +cl, +compile")
    return {"precision": precision, "channels_last": "cl" in options, "compile": "compile" in options}


def training_step_function(config: dict, batch: dict[str, torch.Tensor], arithmetic: str = "fp32") -> Callable[[], None]:
    """One training step (forward, the config's criterion, backward, the config's optimiser) of the
    config's model on ``batch``, as a function, through the engine's
    :class:`~medmat.engine.loop.TrainingStep` in the given arithmetic and with the allocator settings
    training uses (``train.keep_freed_memory``: they stay for the process); compiled models have
    compiled at its return."""
    if config["train"]["keep_freed_memory"]:
        keep_freed_memory()  # as medmat.engine.trainer.train does
    torch.manual_seed(config["seed"])
    model = build_model_from_config(config).train()
    criterion = build_criterion_from_config(config)
    settings = arithmetic_for(arithmetic_settings(arithmetic), torch.device("cpu"))
    compile_model = arithmetic_settings(arithmetic)["compile"]
    training_step = TrainingStep(prepare_model(model, settings), criterion, settings, compile_model)
    optimizer = build_optimizer(training_step.parameters(), config["optim"])  # the engine's, as training

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        total, _ = training_step(batch, 0, config["optim"]["epochs"])
        total.backward()
        optimizer.step()

    if compile_model:
        step()  # compiling happens at the first call: not what a step costs afterwards
    return step


def step_seconds(config: dict, batch: dict[str, torch.Tensor], repeats: int, arithmetic: str = "fp32") -> float:
    """Median seconds of :func:`training_step_function`'s step, after one warm-up."""
    return median_seconds(training_step_function(config, batch, arithmetic), repeats)


def predict_rate(
    model: torch.nn.Module,
    images: np.ndarray,
    num_samples: int,
    repeats: int,
    trimaps: np.ndarray | None = None,
    output_size: tuple[int, int] | None = None,
) -> float:
    """Images per second of the engine's ``predict(model, images, trimaps, output_size=..., num_samples=...)``.

    ``images``: float32 (B, C, H, W) in [0, 1]; ``trimaps``: uint8 (B, H, W) or None.
    """
    seconds = median_seconds(
        lambda: predict(model, images, trimaps, output_size=output_size, num_samples=num_samples), repeats
    )
    return images.shape[0] / seconds


def measure(config: dict, label: str, batch: dict[str, torch.Tensor], args: argparse.Namespace,
            arithmetic: str = "fp32") -> dict:
    """One table row: parameters, step and epoch seconds, prediction rates of one config's model.

    Returns:
        ``{"model", "name", "parameters", "matting_parameters" (None without a matting network),
        "step_s", "epoch_s", "predict_per_s", "predict_2x_per_s" (None unless resolution-free)}``.
    """
    torch.manual_seed(config["seed"])
    model = build_model_from_config(config).eval()
    matting = matting_network(model)
    images = batch["image"].numpy()
    trimaps = alpha_trimaps(batch["alpha"])
    step = step_seconds(config, batch, args.repeats, arithmetic)
    row = {
        "model": label,
        "name": config["model"]["name"],
        "parameters": count_parameters(model),
        "matting_parameters": None if matting is None else count_parameters(matting),
        "step_s": step,
        "epoch_s": step * math.ceil(FOLD_TRAINING_CASES / args.batch_size),
        "predict_per_s": predict_rate(model, images, args.samples, args.repeats, trimaps),
        "predict_2x_per_s": None,
    }
    if model.spec.resolution_free:
        double = (2 * args.size, 2 * args.size)
        row["predict_2x_per_s"] = predict_rate(model, images, args.samples, args.repeats, output_size=double)
    return row


def ratios(rows: Sequence[dict]) -> list[dict]:
    """Every row's parameters, step seconds and prediction rate over the first row's."""
    first = rows[0]
    return [
        {
            "model": row["model"],
            "parameters": row["parameters"] / first["parameters"],
            "step_s": row["step_s"] / first["step_s"],
            "predict_per_s": row["predict_per_s"] / first["predict_per_s"],
        }
        for row in rows
    ]


def _cell(value, spec: str) -> str:
    return f"{'-':>9s}" if value is None else format(value, spec)


def cost_table(report: dict) -> str:
    """The printed report: a header line, one row per model, then the ratios to the first row."""
    rows, width = report["rows"], max(len(row["model"]) for row in report["rows"])
    lines = [
        f"{report['size']}x{report['size']}, batch {report['batch_size']}, {report['samples']} samples, "
        f"{report['threads']} thread(s), median of {report['repeats']}; epoch = {report['epoch_steps']} steps"
    ]
    columns = ("params", "matting", "step s", "epoch s", "pred/s", "pred 2x/s")
    lines.append(f"{'model':{width}s} " + " ".join(f"{name:>9s}" for name in columns))
    for row in rows:
        cells = (
            _cell(row["parameters"], "9d"), _cell(row["matting_parameters"], "9d"), _cell(row["step_s"], "9.3f"),
            _cell(row["epoch_s"], "9.2f"), _cell(row["predict_per_s"], "9.2f"), _cell(row["predict_2x_per_s"], "9.2f"),
        )
        lines.append(f"{row['model']:{width}s} " + " ".join(cells))
    lines.append(f"ratio to {rows[0]['model']}:")
    lines.append(f"{'model':{width}s} " + " ".join(f"{name:>9s}" for name in ("params", "step s", "pred/s")))
    for ratio in report["ratios"]:
        cells = (format(ratio[key], "9.2f") for key in ("parameters", "step_s", "predict_per_s"))
        lines.append(f"{ratio['model']:{width}s} " + " ".join(cells))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=None, metavar="CONFIG",
                        help="packaged names or YAML files; the first is the ratios' reference "
                             "(default: lite and every other packaged *_lite config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override applied to every config, e.g. --set model.num_samples=4 (repeatable)")
    parser.add_argument("--variant", dest="variants", action="append", default=[], metavar="KEY=VALUE",
                        help="one more row: the first config with this override (after --set), named "
                             "'config KEY=VALUE', e.g. --variant model.matting_channels=[32,128] (repeatable)")
    parser.add_argument("--size", type=int, default=32, help="image side (lite: 128)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the first config's optim.batch_size")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats after one warm-up")
    parser.add_argument("--samples", type=int, default=8, help="sampled masks N at prediction")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--arithmetic", nargs="+", default=["fp32"], metavar="NAME",
                        help="training arithmetics to time each config in: fp32, bf16, bf16+cl (channels-last), "
                             "auto ...; rows after the first are named 'config [name]'")
    parser.add_argument("--json", default=None, help="also write the report to this JSON file (atomically)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.configs or default_configs()
    configs = [load_config(name, args.overrides) for name in names]
    # A variant is the first config with one more override: its ratio to the first row is the
    # cost of that one change, measured in the same run.
    labels = [config_label(name) for name in names] + [f"{config_label(names[0])} {v}" for v in args.variants]
    configs += [load_config(names[0], [*args.overrides, variant]) for variant in args.variants]
    if args.batch_size is None:
        args.batch_size = configs[0]["optim"]["batch_size"]
    batch = training_batch(args.batch_size, args.size)
    rows = []
    for name, config in zip(labels, configs):
        for index, arithmetic in enumerate(args.arithmetic):
            label = name if index == 0 else f"{name}[{arithmetic}]"
            rows.append(measure(config, label, batch, args, arithmetic))
    report = {
        "configs": list(names), "overrides": list(args.overrides), "variants": list(args.variants),
        "arithmetic": list(args.arithmetic), "size": args.size,
        "batch_size": args.batch_size, "samples": args.samples, "threads": args.threads, "repeats": args.repeats,
        "epoch_steps": math.ceil(FOLD_TRAINING_CASES / args.batch_size),
        "rows": rows, "ratios": ratios(rows),
    }
    return finish_report(report, cost_table(report), args.json)  # the machine at the end, after the measurements


if __name__ == "__main__":
    raise SystemExit(main())
