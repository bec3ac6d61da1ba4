"""How long does one fused action take? (issue 15: under 0.2 s at 256² and under 1 s at 512² on 2 cores)

One action is what happens between a user's answer and the new matte: the fusion of every action
so far into the model's prediction (:func:`~medmat.interaction.fusion.fuse`) with the actions'
influence (the updated uncertainty maps), then
:func:`~medmat.interaction.fusion.fused_maps`: the app's code path after the model's one
prediction. The model's prediction itself is not part of it (it is made once, when the image opens).

The cases are phantoms of each ``--sizes`` side, or with ``--run`` and ``--case`` a held-out case of
a trained run (the model's maps predicted at the run's size, then resized bilinearly with the
image and the truth to each side, as an upsampled scan is). The prior of a phantom is its true alpha
blurred and shifted by -1.5 in logit space (a matte too small all along its border); its
uncertainty, the prior's binary entropy. On each case the clean probe user of ``medmat interact``
clicks ``--actions`` times; each fusion is timed. Printed per size: the fraction of the image solved
for, the median and maximum seconds per action, and the ratio of the median to the target.

    python benchmarks/fusion_cost.py [--sizes 256 512] [--actions 5] [--repeats 3]
        [--run RUN --case ID] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from machine import describe_machine, finish_report, machine_line  # benchmarks/ is first on sys.path
from medmat.data.phantom import make_phantom
from medmat.data.sample import Sample
from medmat.engine.dataset import resize_planes
from medmat.errors import MedmatError
from medmat.interaction.fusion import DEFAULT_PARAMS, fuse, fused_maps, fusion_uncertainty, logit, sigmoid
from medmat.interaction.simulate import make_user

#: Seconds per action the issue asks for, by image side.
TARGETS = {256: 0.2, 512: 1.0}


def phantom_case(size: int) -> tuple[Sample, dict]:
    """A phantom of ``size`` and its synthetic prediction (module docstring)."""
    from scipy import ndimage

    case = make_phantom(3, size=size)
    prior = sigmoid(logit(ndimage.gaussian_filter(case.alpha, size / 96), 1e-4) - 1.5).astype(np.float32)
    return case, {"alpha": prior}


def run_case(run: str, case_id: str, size: int, num_samples: int) -> tuple[Sample, dict]:
    """A held-out case of a run with the model's maps, resized to ``size``."""
    from medmat.engine.held_out import run_config
    from medmat.engine import load_run
    from medmat.engine.config import input_size
    from medmat.engine.dataset import fit_sample
    from medmat.engine.inference import predict
    from medmat.engine.trainer import load_samples

    config = run_config(run, None, None)
    by_id = {sample.id: sample for sample in load_samples(config)}
    if case_id not in by_id:
        raise MedmatError(f"no case {case_id!r} in the run's dataset", run)
    model, fold_config = load_run(run)
    sample = fit_sample(by_id[case_id], input_size(fold_config))
    torch.manual_seed(0)
    maps = predict(model, sample.image, sample.trimap, num_samples=num_samples)
    shape = (size, size)
    resized = {key: np.clip(resize_planes(value, shape), 0.0, None) for key, value in maps.items()
               if key != "sample_masks"}
    resized["alpha"] = np.clip(resized["alpha"], 0.0, 1.0)
    image = np.clip(resize_planes(sample.image, shape), 0.0, 1.0)
    alpha = np.clip(resize_planes(sample.alpha, shape), 0.0, 1.0)
    trimap = None if sample.trimap is None else resize_planes(sample.trimap, shape, label=True).astype(np.uint8)
    return Sample(sample.id, image, sample.masks[:, :1, :1], alpha, trimap), resized


def time_actions(case: Sample, prediction: dict, actions: int) -> dict:
    """The clean probe user's ``actions`` clicks on one case, each fusion timed (app path)."""
    uncertainty = fusion_uncertainty(prediction)
    user = make_user("probe", prediction)
    done, alpha, seconds, band = (), prediction["alpha"], [], []
    for _ in range(actions):
        new = user.interact(case, alpha, done)
        if not new:
            break
        done += tuple(new)
        start = time.perf_counter()
        fusion = fuse(case.image, prediction["alpha"], uncertainty, done, DEFAULT_PARAMS, with_influence=True)
        fused_maps(prediction, fusion)
        seconds.append(time.perf_counter() - start)
        band.append(float(fusion.domain.mean()))
        alpha = fusion.alpha
    return {"seconds": seconds, "band_fraction": band}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--actions", type=int, default=5, help="Clicks per case.")
    parser.add_argument("--repeats", type=int, default=3, help="Times the clicks are replayed (after one warm-up).")
    parser.add_argument("--run", default=None, help="A trained run (fold) whose held-out --case is used.")
    parser.add_argument("--case", default=None, help="The case id with --run.")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if (args.run is None) != (args.case is None):
        parser.error("give --run and --case together")
    report = {"sizes": {}, "actions": args.actions, "repeats": args.repeats, "run": args.run, "case": args.case}
    lines = []
    try:
        for size in args.sizes:
            case, prediction = run_case(args.run, args.case, size, args.samples) if args.run else phantom_case(size)
            time_actions(case, prediction, 1)  # warm-up: first calls
            runs = [time_actions(case, prediction, args.actions) for _ in range(args.repeats)]
            seconds = [value for run in runs for value in run["seconds"]]
            if not seconds:
                raise MedmatError(f"the simulated user found nothing to correct at {size}²")
            median, peak = statistics.median(seconds), max(seconds)
            target = TARGETS.get(size)
            entry = {"seconds": seconds, "median": median, "max": peak, "target": target,
                     "ratio": None if target is None else median / target,
                     "band_fraction": runs[0]["band_fraction"]}
            report["sizes"][str(size)] = entry
            ratio = "" if target is None else f", ratio to the {target:g} s target {median / target:.2f}"
            lines.append(f"{size}²: {len(seconds)} actions, {100 * np.mean(entry['band_fraction']):.0f} % of the image "
                         f"solved for; median {1000 * median:.0f} ms, max {1000 * peak:.0f} ms per action{ratio}")
    except MedmatError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    lines.append(machine_line())
    report["machine"] = describe_machine()
    return finish_report(report, "\n".join(lines), args.json)


if __name__ == "__main__":
    sys.exit(main())
