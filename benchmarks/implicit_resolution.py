"""Resolution-free output: a 64² model predicting 128² mattes, implicit read vs bilinear upsampling.

A ``region_aware_matting`` model trained on Brain-growth downsampled to 64 x 64 (``train``
below: the engine's ``train`` / ``crossval`` with ``data.resize`` and ``data.input_size`` 64)
predicts every held-out case from its 64 x 64 image in two ways, with the same latent samples:

- implicit: ``predict(model, image_64, output_size=(128, 128))``, the implicit function read at the
  128 x 128 pixel centres;
- bilinear: ``predict(model, image_64)`` at 64 x 64, then bilinear upsampling to 128 x 128;

and both are scored against the original 128 x 128 ground-truth alpha with
:func:`medmat.metrics.matting_metrics`, on the trimap's unknown region (Table IV) and on the whole
image. Downsampling is the engine's :func:`medmat.engine.dataset.resize_sample`: images and
alphas are averaged (``area``), annotator masks averaged then thresholded at 0.5, trimaps
subsampled (``nearest-exact``) so their levels stay 0/128/255.

    python benchmarks/implicit_resolution.py train --run-dir runs/ra64 --crossval [--set optim.epochs=60]
    python benchmarks/implicit_resolution.py train --liif --run-dir runs/ra64-liif --crossval
    python benchmarks/implicit_resolution.py score --run runs/ra64 [--output runs/ra64/resolution.json]
    python benchmarks/implicit_resolution.py score --smoke     # tiny random model on phantoms
    python benchmarks/implicit_resolution.py floor             # the ground truth itself, 64² -> 128²

Two ways to train at 64²: ``train`` trains on the cases downsampled to 64² (``data.resize`` and
``data.input_size`` 64: inputs and ground truth at 64², the implicit function only ever read at
the input's pixel centres; its ``metrics.json`` scores 64² predictions on 64² mattes);
``train --liif`` trains as LIIF does (``data.model_input_size`` 64 on the 128² cases: the inputs
are downsampled to 64², the alpha is read and trained at the 128² ground truth's pixels; its
``metrics.json`` already scores the implicit 128² predictions). ``score`` reads the ground truth
at 128² from the run's dataset (without ``data.resize``) and the input side from the run's
``data.model_input_size`` or else ``data.input_size``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medmat.data.sample import Sample
from medmat.engine.dataset import resize_sample
from medmat.engine.evaluation import mean_case_metrics
from medmat.engine.inference import predict
from medmat.errors import MedmatError
from medmat.metrics import table_iv_metrics
from options import add_run_options  # benchmarks/ is the script's folder, first on sys.path

#: Side of the downsampled inputs, and of the ground truth they are scored against (Brain-growth).
LOW_SIZE, HIGH_SIZE = 64, 128
METHODS = ("implicit", "bilinear")


#: ``sample`` at ``size`` (H, W): the engine's one resampling of a case, under the name this
#: script has always used.
downsample_sample = resize_sample


def predict_both(model, image: np.ndarray, size: tuple[int, int], num_samples: int, seed: int) -> dict[str, np.ndarray]:
    """The two (H, W) alpha predictions at ``size`` from one low-resolution (C, h, w) image.

    Both use the same latent samples (the same seed before each call).
    """
    torch.manual_seed(seed)
    implicit = predict(model, image, output_size=size, num_samples=num_samples)["alpha"]
    torch.manual_seed(seed)
    low = torch.from_numpy(predict(model, image, num_samples=num_samples)["alpha"])[None, None]
    bilinear = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    return {"implicit": np.clip(implicit, 0, 1), "bilinear": bilinear[0, 0].clamp(0, 1).numpy()}


def region_name(sample: Sample) -> str:
    """The Table IV region of a case: its trimap's "unknown" pixels, or the "whole" image without one."""
    return "unknown" if sample.trimap is not None else "whole"


def case_metrics(alpha: np.ndarray, sample: Sample) -> dict:
    """SAD/MSE/Grad/Conn of a full-resolution (H, W) alpha against the case's ground truth:
    ``{"region": ... or None when the region is empty, "whole": ...}``."""
    metrics = table_iv_metrics(alpha, sample.alpha, sample.trimap)
    return {"region": metrics["region"], "whole": metrics["whole"]}


def score_cases(model, samples: Sequence[Sample], low_size: int, num_samples: int = 8, seed: int = 0) -> list[dict]:
    """Score both ways of predicting every full-resolution case from its ``low_size`` version.

    Returns:
        One dict per case: ``{"id", "region_name", "implicit": {"region", "whole"}, "bilinear": {...}}``
        with SAD/MSE/Grad/Conn dicts; "region" is the trimap's unknown pixels (None when the
        trimap has none), or the whole image for cases without a trimap.
    """
    was_training = model.training
    model.eval()
    try:
        cases = []
        for sample in samples:
            low = resize_sample(sample, (low_size, low_size))
            predictions = predict_both(model, low.image, sample.shape, num_samples, seed)
            case = {"id": sample.id, "region_name": region_name(sample)}
            case.update({method: case_metrics(alpha, sample) for method, alpha in predictions.items()})
            cases.append(case)
        return cases
    finally:
        model.train(was_training)


def summarise(cases: Sequence[dict]) -> dict:
    """Means over cases: ``{method: {"region": {metric: mean}, "whole": {...}}, "num_cases": n}``."""
    summary = {method: mean_case_metrics([case[method] for case in cases]) for method in METHODS}
    for method in METHODS:
        summary[method] = {group: summary[method][group] for group in ("region", "whole")}
    summary["num_cases"] = len(cases)
    return summary


def summary_table(summary: dict, low_size: int, high: Sequence[int]) -> str:
    """Markdown table of :func:`summarise`'s means (SAD, Grad, Conn / 1000, as the paper)."""
    lines = [
        f"Resolution-free output: {low_size}x{low_size} inputs, predictions at {high[0]}x{high[1]} "
        f"against the {high[0]}x{high[1]} ground truth ({summary['num_cases']} cases)",
        "",
        "| method | region | SAD | MSE | Grad | Conn |",
        "|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        for group in ("region", "whole"):
            means = summary[method][group]
            if means:
                values = " | ".join(f"{means[name]:.4f}" for name in ("SAD", "MSE", "Grad", "Conn"))
                lines.append(f"| {method} | {group} | {values} |")
    return "\n".join(lines) + "\n"


def smoke_runs(low_size: int = 16, high_size: int = 32, cases: int = 2) -> list[tuple[torch.nn.Module, list[Sample]]]:
    """A tiny randomly initialised model and a few phantoms at ``high_size``: checks the pipeline in seconds."""
    from medmat.data.phantom import make_phantom_dataset
    from medmat.models import build_model

    torch.manual_seed(0)
    model = build_model(
        "region_aware_matting", unet_filters=(4, 8), widths=(4, 8, 8), implicit_channels=8, num_samples=2
    )
    return [(model.eval(), make_phantom_dataset(cases, size=high_size))]


def trained_runs(
    run: str, data: str | None, trimaps: str | None
) -> tuple[list[tuple[torch.nn.Module, list[Sample]]], int]:
    """(model, held-out full-resolution cases) of a train run or of every fold of a crossval run,
    and the run's input side (``data.input_size``)."""
    from medmat.engine import load_run
    from medmat.engine.config import input_size, model_input_size
    from medmat.engine.held_out import run_config, runs_and_cases
    from medmat.engine.trainer import load_samples

    first = run_config(run, data, trimaps)
    size = model_input_size(first) or input_size(first)
    if size is None or size[0] != size[1]:
        message = f"the run's model input must be one square size (a run of `train` here), got {size}"
        raise MedmatError(message, run)
    # The ground truth is scored at full resolution: the cases are not resized as in training.
    first["data"]["resize"] = None
    samples = load_samples(first)
    runs = [(load_run(model_dir)[0], cases) for model_dir, cases in runs_and_cases(run, samples)]
    return runs, size[0]


def score_command(args: argparse.Namespace) -> int:
    if args.smoke:
        runs, low_size = smoke_runs(), 16
    elif args.run is None:
        raise MedmatError("score needs --run (or --smoke)")
    else:
        runs, low_size = trained_runs(args.run, args.data, args.trimaps)
    cases = [case for model, samples in runs for case in score_cases(model, samples, low_size, args.samples, args.seed)]
    summary = summarise(cases)
    high = next(iter(runs))[1][0].shape
    print(summary_table(summary, low_size, high), end="")
    if args.output:
        from medmat.io.atomic import atomic_write_json

        atomic_write_json(args.output, {"run": args.run, "low_size": low_size, "high_size": list(high),
                                        "summary": summary, "cases": cases})
        print(f"written to {args.output}")
    return 0


def floor_cases(samples: Sequence[Sample], low_size: int) -> list[dict]:
    """The upsampling floor: every case's own ground truth downsampled to ``low_size`` and
    upsampled bilinearly, scored as :func:`score_cases` scores a prediction (under "bilinear").

    What a perfect 64² prediction would still lose to bilinear upsampling: the most any reading
    at full resolution can win over it on this data."""
    cases = []
    for sample in samples:
        low = resize_sample(sample, (low_size, low_size))
        alpha = torch.as_tensor(low.alpha, dtype=torch.float32)[None, None]
        upsampled = F.interpolate(alpha, size=sample.shape, mode="bilinear", align_corners=False)[0, 0]
        upsampled = upsampled.clamp(0, 1).numpy()
        cases.append({"id": sample.id, "region_name": region_name(sample), "bilinear": case_metrics(upsampled, sample)})
    return cases


def floor_command(args: argparse.Namespace) -> int:
    from medmat.engine import load_config
    from medmat.engine.trainer import load_samples

    config = load_config(args.config)
    config["data"]["resize"] = None
    if args.data is not None:
        config["data"].update(dataset=args.data, trimaps=args.trimaps)
    cases = floor_cases(load_samples(config), args.low_size)
    mean = mean_case_metrics([case["bilinear"] for case in cases])
    print(f"Ground truth at {args.low_size}x{args.low_size}, upsampled bilinearly ({len(cases)} cases)")
    print("\n| region | SAD | MSE | Grad | Conn |\n|---|---|---|---|---|")
    for group in ("region", "whole"):
        if mean[group]:
            print(f"| {group} | " + " | ".join(f"{mean[group][n]:.4f}" for n in ("SAD", "MSE", "Grad", "Conn")) + " |")
    return 0


def train_command(args: argparse.Namespace) -> int:
    from medmat.engine import crossval, load_config, train

    low = args.low_size
    if args.liif:
        sizes = [f"data.model_input_size={low}", f"data.input_size={HIGH_SIZE}", "data.resize=null"]
    else:
        sizes = [f"data.input_size={low}", f"data.resize={low}"]
    config = load_config(args.config, [*args.overrides, *sizes])
    if args.crossval:
        crossval(config, args.run_dir, resume=args.resume)
    else:
        train(config, args.run_dir, fold=args.fold, resume=args.resume)
    print(f"trained on {args.low_size}x{args.low_size} inputs in {args.run_dir}")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train on downsampled inputs through the engine")
    train_parser.add_argument("--config", default="region_aware_matting_lite")
    train_parser.add_argument("--run-dir", required=True)
    train_parser.add_argument("--low-size", type=int, default=LOW_SIZE)
    train_parser.add_argument("--fold", type=int, default=None)
    train_parser.add_argument("--crossval", action="store_true")
    train_parser.add_argument(
        "--liif", action="store_true", help=f"inputs at --low-size, alpha trained at the {HIGH_SIZE}² ground truth"
    )
    train_parser.add_argument("--resume", action="store_true")
    train_parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    score_parser = commands.add_parser("score", help="score implicit vs bilinear upsampled predictions")
    add_run_options(score_parser, "train run or crossval folder trained by `train`", "JSON of per-case and mean metrics")
    score_parser.add_argument("--smoke", action="store_true", help="tiny random model on phantoms (no run needed)")
    floor_parser = commands.add_parser("floor", help="score the ground truth downsampled and upsampled bilinearly")
    floor_parser.add_argument("--config", default="region_aware_matting_lite", help="config naming the dataset")
    floor_parser.add_argument("--data", default=None)
    floor_parser.add_argument("--trimaps", default=None)
    floor_parser.add_argument("--low-size", type=int, default=LOW_SIZE)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        commands = {"score": score_command, "floor": floor_command, "train": train_command}
        return commands[args.command](args)
    except MedmatError as error:
        print(f"medmat: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
