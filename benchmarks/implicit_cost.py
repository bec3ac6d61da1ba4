"""Cost of the region-aware implicit matting model against the core Medical Matting model.

Both models are built from their packaged configs (``lite`` and ``region_aware_matting_lite``
by default), in one process, on the same random batch, and measured the same way:

- parameters (whole model, and the matting network alone);
- seconds per training step: forward, the configs' criterion, backward and an Adam step on a
  (batch, 1, size, size) batch (default: the core config's batch size); median of
  ``--repeats`` after one warm-up step. One epoch of a Brain-growth fold is
  ``ceil(29 / batch)`` steps (29 training cases in a 4-fold split);
- prediction throughput: images per second of ``model.predict(images, num_samples)``, and for
  the implicit model also at twice the size through ``output_size`` (read from the implicit
  function, not resized).

The ratios (implicit / core) come from this one run. Defaults are tiny so the script finishes in
seconds; the lite numbers are ``--size 128 --repeats 10``.

    python benchmarks/implicit_cost.py [--size 128 --repeats 10] [--batch-size B] [--threads 1]
"""

from __future__ import annotations

import argparse
import inspect
import math

import torch

from conv_cost import median_seconds  # benchmarks/ is the script's folder, first on sys.path
from medmat.engine.config import load_config
from medmat.engine.inference import build_model_from_config
from medmat.engine.trainer import build_criterion_from_config

#: Training cases of one Brain-growth fold (39 cases, 4 folds; the brain-growth split).
FOLD_TRAINING_CASES = 29


def count_parameters(module: torch.nn.Module) -> int:
    """Number of scalar parameters of ``module``."""
    return sum(parameter.numel() for parameter in module.parameters())


def training_batch(batch_size: int, size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random contract batch: image, alpha (a soft disc), pseudo mask and 3 annotator masks."""
    generator = torch.Generator().manual_seed(seed)
    coords = torch.arange(size, dtype=torch.float32)
    radius = torch.hypot(coords[None, :] - size / 2, coords[:, None] - size / 2)
    alpha = ((size / 4 - radius) / 3 + 0.5).clamp(0, 1).expand(batch_size, 1, size, size).contiguous()
    image = (0.2 + 0.6 * alpha + 0.05 * torch.randn(alpha.shape, generator=generator)).clamp(0, 1)
    masks = torch.cat([(alpha >= level).float() for level in (0.3, 0.5, 0.7)], dim=1)
    return {"image": image, "alpha": alpha, "pseudo_mask": (alpha >= 0.5).float(), "masks": masks}


def step_seconds(config: dict, batch: dict[str, torch.Tensor], repeats: int) -> float:
    """Median seconds of one training step (forward, loss, backward, Adam) of the config's model."""
    torch.manual_seed(config["seed"])
    model = build_model_from_config(config).train()
    criterion = build_criterion_from_config(config)
    optimizer = torch.optim.Adam(list(model.parameters()) + list(criterion.parameters()), lr=config["optim"]["lr"])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        total, _ = criterion(model(batch), batch, 0, config["optim"]["epochs"])
        total.backward()
        optimizer.step()

    return median_seconds(step, repeats)


def predict_rate(model: torch.nn.Module, images: torch.Tensor, num_samples: int, repeats: int, **options) -> float:
    """Images per second of ``model.predict(images, num_samples, **options)``."""
    seconds = median_seconds(lambda: model.predict(images, num_samples=num_samples, **options), repeats)
    return images.shape[0] / seconds


def measure(config_name: str, args: argparse.Namespace, batch: dict[str, torch.Tensor]) -> dict:
    """Parameters, step seconds, epoch seconds and prediction rates of one config's model."""
    config = load_config(config_name)
    torch.manual_seed(config["seed"])
    model = build_model_from_config(config).eval()
    row = {
        "model": config["model"]["name"],
        "parameters": count_parameters(model),
        "matting_parameters": count_parameters(model.matting_net),
        "step_s": step_seconds(config, batch, args.repeats),
        "predict_per_s": predict_rate(model, batch["image"], args.samples, args.repeats),
    }
    row["epoch_s"] = row["step_s"] * math.ceil(FOLD_TRAINING_CASES / args.batch_size)
    if "output_size" in inspect.signature(model.predict).parameters:
        double = (2 * args.size, 2 * args.size)
        row["predict_2x_per_s"] = predict_rate(model, batch["image"], args.samples, args.repeats, output_size=double)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", default="lite", help="config of the core model")
    parser.add_argument("--implicit", default="region_aware_matting_lite", help="config of the implicit model")
    parser.add_argument("--size", type=int, default=32, help="image side (lite: 128)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the core config's optim.batch_size")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats after one warm-up")
    parser.add_argument("--samples", type=int, default=8, help="sampled masks N at prediction")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.batch_size is None:
        args.batch_size = load_config(args.core)["optim"]["batch_size"]
    batch = training_batch(args.batch_size, args.size)
    rows = [measure(args.core, args, batch), measure(args.implicit, args, batch)]

    print(f"{args.size}x{args.size}, batch {args.batch_size}, {args.samples} samples, {args.threads} thread(s), "
          f"median of {args.repeats}; epoch = {math.ceil(FOLD_TRAINING_CASES / args.batch_size)} steps")
    columns = ("params", "matting", "step s", "epoch s", "pred/s", "pred 2x/s")
    print(f"{'model':24s} " + " ".join(f"{name:>9s}" for name in columns))
    for row in rows:
        double = f"{row['predict_2x_per_s']:9.2f}" if "predict_2x_per_s" in row else f"{'-':>9s}"
        print(f"{row['model']:24s} {row['parameters']:9d} {row['matting_parameters']:9d} {row['step_s']:9.3f} "
              f"{row['epoch_s']:9.2f} {row['predict_per_s']:9.2f} {double}")
    core, implicit = rows
    print(f"ratio implicit/core: params {implicit['parameters'] / core['parameters']:.2f}, "
          f"step time {implicit['step_s'] / core['step_s']:.2f}, "
          f"prediction throughput {implicit['predict_per_s'] / core['predict_per_s']:.2f}")


if __name__ == "__main__":
    main()
