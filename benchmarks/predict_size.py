"""A run trained on resized cases (``data.resize``), predicting new images as trained or at their own size.

For every case of a dataset with alphas, loaded at its own size, ``medmat predict``'s two paths:
as trained (resampled to ``data.resize`` and every map back) and ``--own-size``; prints the mean
absolute alpha error of each against the case's alpha, with the same seed for both.

    python benchmarks/predict_size.py --run results/demo/run --data results/demo/new-phantoms
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from machine import describe_machine, machine_line  # benchmarks/ is the script's folder
from medmat.data.load import load_dataset
from medmat.engine import load_run, predict_as_trained
from medmat.engine.config import model_input_size, resize_size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True, help="a dataset with alphas, e.g. medmat phantoms' folder")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model, config = load_run(args.run)
    if resize_size(config) is None:
        raise SystemExit(f"{args.run}: the run set no data.resize; both paths are the same")
    errors = {"as trained": [], "own size": []}
    for sample in load_dataset(args.data):
        if sample.alpha is None:
            continue
        for name, resize in (("as trained", resize_size(config)), ("own size", None)):
            torch.manual_seed(args.seed)
            alpha = predict_as_trained(model, sample.image, args.samples, None, model_input_size(config),
                                       config["eval"]["flip"], resize=resize)["alpha"]
            errors[name].append(float(np.abs(alpha - sample.alpha).mean()))
    print(f"machine: {machine_line(describe_machine())}")
    print(f"{len(errors['own size'])} cases, data.resize {resize_size(config)}: mean |alpha error|")
    for name, values in errors.items():
        print(f"  {name}: {np.mean(values):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
