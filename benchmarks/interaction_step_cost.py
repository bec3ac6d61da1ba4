"""How long does one dugMatting interaction step take on CPU? (issue 6: under 0.5 s for 256² on 2 cores)

One interaction step is what happens between the user's click on a proposed patch and the new
matte with its next proposals on screen. It is timed on the browser app's code path, a
:class:`~medmat.app.session.MattingSession` holding the image (opened from PNG bytes, as an
upload is), in two ways:

- **app total**: :meth:`MattingSession.label_patch` on the patch of rank 0, followed by
  :meth:`~MattingSession.undo` outside the clock, so every repeat is the first interaction from the
  same prediction. Beside it, the seconds the app measures itself inside that call (prediction
  and fusion, ``Step.seconds``), necessarily at most the call's wall time;
- **parts**, timed one by one on the session's image and step-0 state with the functions the
  session and ``medmat interact`` (:func:`~medmat.interaction.simulate.simulate_interactions`) call:

  1. *proposal*: Algorithm 1, :func:`~medmat.uncertainty.proposals.propose_patches` of N patches
     from the current epistemic map;
  2. *label*: the simulated user's answer for the first proposed patch,
     :func:`~medmat.interaction.simulate.answer_proposals` (foreground / background / transition
     from the phantom's true alpha; for an image without one, from the first prediction's alpha
     thresholded at 0.5), written into a copy of the user map;
  3. *re-prediction*: :func:`~medmat.interaction.step.predict_nig` with the updated user map
     (after ``torch.manual_seed``, as the session seeds every prediction);
  4. *fusion*: the NIG summation of Eq. 2, :func:`~medmat.uncertainty.nig.nig_sum`, with step 0's NIG;
  5. *maps*: :func:`~medmat.uncertainty.nig.nig_moments` of the fused NIG and the lesion
     uncertainty of its alpha, the maps the app shows and the next proposal reads.

  Their sum per repeat is the *step total*: the same work as ``label_patch`` (which proposes the
  next patches after fusing) without the session's bookkeeping.

The first prediction without interaction (``predict_nig`` with an empty user map) is timed too,
for reference. Each timing is the median and the maximum over ``--repeats`` after one warm-up
repeat; parts and app call alternate within each repeat so both see the same load. The line
``ratio to target (0.5 s)`` divides the app total's median by 0.5 s.

The model is a trained "nig" run (``--run``: a run folder, a fold folder or a crossval folder,
whose fold-0 is used) or a fresh model of ``--config`` (weights do not change the time); the
image a phantom (default), a uniform random image (``--random``) or ``--image PATH`` read by the
app's reader.

    python benchmarks/interaction_step_cost.py [--run RUN | --config nig_medical_matting_lite --set KEY=VALUE ...]
        [--size 256 | --random | --image PATH] [--proposals 4] [--patch-size 16] [--samples N]
        [--repeats 10] [--threads 2] [--seed 0] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from machine import describe_machine, finish_report  # benchmarks/ is the script's folder, first on sys.path
from medmat.app.session import DEFAULT_PATCH_SIZE, DEFAULT_PROPOSALS, LABELS, MattingSession
from medmat.data.phantom import make_phantom
from medmat.engine.config import load_config
from medmat.engine.inference import build_model_from_config, first_model_folder, load_run
from medmat.errors import MedmatError
from medmat.interaction.evaluation import require_nig_config
from medmat.uncertainty.proposals import Patch, propose_patches
from medmat.interaction.simulate import answer_proposals
from medmat.interaction.step import predict_nig
from medmat.data.user_maps import patch_label
from medmat.io.images import write_png
from medmat.uncertainty import lesion_uncertainty
from medmat.uncertainty.nig import nig_moments, nig_sum

#: Issue 6: a step must feel instant, under half a second.
TARGET_SECONDS = 0.5
DEFAULT_CONFIG = "nig_medical_matting_lite"
#: Level at which a prediction's alpha stands in for the truth of an image without one.
PSEUDO_TRUTH_LEVEL = 0.5
#: Parts of one step, in the order they run; their per-repeat sum is the "step total".
PARTS = ("proposal", "label", "re_prediction", "fusion", "maps")
#: Every timed row of the table: (key, label).
ROWS = (
    ("first_prediction", "first prediction (reference)"),
    ("proposal", "1. proposal (Algorithm 1)"),
    ("label", "2. label first patch"),
    ("re_prediction", "3. re-prediction"),
    ("fusion", "4. fusion (NIG sum, Eq. 2)"),
    ("maps", "5. maps (moments)"),
    ("step_total", "step total (sum of 1-5)"),
    ("app_label_patch", "app label_patch (total)"),
    ("app_own_seconds", "  its own clock: predict+fuse"),
)
#: The timing the target is checked on: what the user waits for.
TOTAL_KEY = "app_label_patch"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--run", help="A trained 'nig' run folder, fold folder or crossval folder (its first fold).")
    model.add_argument("--config", default=DEFAULT_CONFIG, help="Config of a fresh model (packaged name or YAML).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="Override a key of --config (repeatable), e.g. model.base.unet_filters=[4,8].")
    image = parser.add_mutually_exclusive_group()
    image.add_argument("--image", help="An image file (PNG, NIfTI, DICOM) instead of a phantom.")
    image.add_argument("--random", action="store_true", help="A uniform random image instead of a phantom.")
    parser.add_argument("--size", type=int, default=256, help="Side of the phantom or random image.")
    parser.add_argument("--proposals", type=int, default=DEFAULT_PROPOSALS, help="Algorithm 1's N.")
    parser.add_argument("--patch-size", type=int, default=DEFAULT_PATCH_SIZE,
                        help="Side of the proposal grid's patches.")
    parser.add_argument("--samples", type=int, default=None,
                        help="Prob. U-Net samples of the base (default: the config's model.base.num_samples).")
    parser.add_argument("--repeats", type=int, default=10, help="Timed repeats after one warm-up.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 = this machine's cores).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the phantom, the weights and the sampled latents.")
    parser.add_argument("--json", help="Write the record here (atomically).")
    args = parser.parse_args(argv)
    for name in ("size", "proposals", "patch_size", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.samples is not None and args.samples < 1:
        parser.error("--samples must be at least 1")
    if args.run and args.overrides:
        parser.error("--set applies to --config; a --run keeps its trained architecture")
    return args


# ------------------------------------------------------------------------------------------------
# Model and image
# ------------------------------------------------------------------------------------------------


def samples_override(num_samples: int) -> str:
    """The config override giving a "nig" model's Prob. U-Net base ``num_samples`` samples."""
    return f"model.base.num_samples={int(num_samples)}"


def with_samples(config: dict, num_samples: int | None) -> dict:
    """``config`` with its "nig" base drawing ``num_samples`` Prob. U-Net samples (unchanged for None)."""
    return config if num_samples is None else load_config(config, [samples_override(num_samples)])


def fresh_model(
    config_name: str, overrides: Sequence[str], num_samples: int | None, seed: int
) -> tuple[torch.nn.Module, dict]:
    """An untrained "nig" model of a config (``overrides`` applied), in eval mode, and its config."""
    config = load_config(config_name, list(overrides))
    require_nig_config(config, config_name)
    config = with_samples(config, num_samples)
    torch.manual_seed(seed)
    return build_model_from_config(config).eval(), config


def trained_model(run: str, num_samples: int | None) -> tuple[torch.nn.Module, dict]:
    """The model of a run (a crossval folder's first fold), in eval mode, and its config.

    With ``num_samples``, the model is rebuilt from the run's config with that many base samples
    and given the trained weights (the sample count is not a weight).
    """
    folder = first_model_folder(run)
    model, config = load_run(folder)
    require_nig_config(config, folder)
    if num_samples is None:
        return model, config
    config = with_samples(config, num_samples)
    rebuilt = build_model_from_config(config)
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt.eval(), config


def base_samples(config: dict) -> int | None:
    """The Prob. U-Net samples a "nig" config's base draws (None when the base does not sample)."""
    value = config["model"].get("base", {}).get("num_samples")
    return None if value is None else int(value)


def synthetic_image(size: int, seed: int, random: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """A phantom (image (1, size, size) in [0, 1] and its true alpha (size, size)), or a uniform
    random image without alpha (None)."""
    if random:
        return np.random.default_rng(seed).random((1, size, size), dtype=np.float32), None
    phantom = make_phantom(seed, size=size)
    return phantom.image, phantom.alpha


def open_session(session: MattingSession, args: argparse.Namespace) -> np.ndarray | None:
    """Open the benchmark's image in ``session`` as an upload (file bytes); returns the true alpha or None.

    A phantom or random image goes through a PNG, as a user's upload would.
    """
    if args.image:
        session.open_image(Path(args.image).read_bytes(), os.path.basename(args.image))
        return None
    image, alpha = synthetic_image(args.size, args.seed, args.random)
    name = "random.png" if args.random else f"phantom-{args.seed:03d}.png"
    with tempfile.TemporaryDirectory(prefix="medmat-bench-") as folder:
        path = os.path.join(folder, name)
        write_png(path, image)
        session.open_image(Path(path).read_bytes(), name)
    return alpha


def user_truth(true_alpha: np.ndarray | None, first_alpha: np.ndarray) -> np.ndarray:
    """What the simulated user answers from: the true alpha, else the first prediction's alpha
    thresholded at :data:`PSEUDO_TRUTH_LEVEL` (float32 (H, W) in {0, 1})."""
    if true_alpha is not None:
        return true_alpha
    return (first_alpha >= PSEUDO_TRUTH_LEVEL).astype(np.float32)


def label_name(value: float) -> str:
    """The session's label ("foreground", ...) of a user-map value."""
    return next(name for name, label in LABELS.items() if label == value)


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------


def timed(function: Callable[[], object]) -> tuple[object, float]:
    """``(function(), its wall seconds)``."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def time_parts(session: MattingSession, truth: np.ndarray, args: argparse.Namespace) -> tuple[dict[str, float], Patch]:
    """Seconds of each of :data:`PARTS` for the first interaction from the session's step 0, and their sum.

    Returns:
        ``({part: seconds, "step_total": sum of the parts, "first_prediction": seconds}, the
        labelled patch)``.
    """
    start = session.history[0]
    image = session.opened.image
    seconds = {}
    _, seconds["first_prediction"] = timed(
        lambda: predict_nig(session.model, image, np.zeros_like(start.user_map), num_samples=session.num_samples)
    )
    proposals, seconds["proposal"] = timed(lambda: propose_patches(
        start.maps["epistemic"], args.proposals, args.patch_size, labelled=start.user_map != 0))
    if not proposals:
        raise MedmatError("no patch proposed: the epistemic map is zero everywhere")
    user_map, seconds["label"] = timed(lambda: answer_proposals(start.user_map, proposals[:1], truth))

    def re_predict():
        torch.manual_seed(session.seed)
        return predict_nig(session.model, image, user_map, num_samples=session.num_samples)[1]

    new_nig, seconds["re_prediction"] = timed(re_predict)
    fused, seconds["fusion"] = timed(lambda: nig_sum(start.nig, new_nig))

    def maps():
        moments = nig_moments(fused)
        return moments, lesion_uncertainty(moments["alpha"])

    _, seconds["maps"] = timed(maps)
    seconds["step_total"] = sum(seconds[part] for part in PARTS)
    return seconds, proposals[0]


def time_app_step(session: MattingSession, truth: np.ndarray) -> dict[str, float]:
    """Seconds of the app's ``label_patch(0, label)`` from step 0 (undone after), and the seconds
    the app measured inside that call (prediction and fusion)."""
    patch = session.history[0].proposals[0]
    label = label_name(patch_label(truth[patch.window]))
    step, seconds = timed(lambda: session.label_patch(0, label))
    session.undo()
    return {"app_label_patch": seconds, "app_own_seconds": step.seconds}


def summarise(times: dict[str, list[float]]) -> dict[str, dict]:
    """``{key: {"median_ms", "max_ms", "seconds": [...]}}`` of per-repeat seconds."""
    return {
        key: {"median_ms": 1000 * statistics.median(values), "max_ms": 1000 * max(values), "seconds": values}
        for key, values in times.items()
    }


def measure(session: MattingSession, truth: np.ndarray, args: argparse.Namespace) -> dict[str, dict]:
    """Every row of :data:`ROWS` over ``args.repeats`` repeats after one warm-up (see :func:`summarise`)."""
    _, labelled = time_parts(session, truth, args)
    # Parts and app must time the same interaction: the app labels its proposal of rank 0.
    if labelled != session.history[0].proposals[0]:
        raise RuntimeError(f"the parts label {labelled}, the app {session.history[0].proposals[0]}")
    time_app_step(session, truth)
    times: dict[str, list[float]] = {key: [] for key, _ in ROWS}
    for _ in range(args.repeats):
        parts, _ = time_parts(session, truth, args)
        for key, seconds in {**parts, **time_app_step(session, truth)}.items():
            times[key].append(seconds)
    return summarise(times)


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def ratio_to_target(timings: dict[str, dict]) -> float:
    """The median of the app total over :data:`TARGET_SECONDS`."""
    return timings[TOTAL_KEY]["median_ms"] / 1000 / TARGET_SECONDS


def step_table(report: dict) -> str:
    """The printed report: a header, one row per timing (ms, median and max), the ratio to the target."""
    settings, timings = report["settings"], report["timings"]
    width = max(len(label) for _, label in ROWS)
    lines = [
        f"interaction step: {report['image']['name']} {report['image']['shape'][0]}x{report['image']['shape'][1]}, "
        f"{report['model']['source']}, {settings['samples']} samples, {settings['proposals']} proposals of "
        f"{settings['patch_size']} px, {settings['threads']} thread(s), {settings['repeats']} repeats after 1 warm-up",
        f"load average before {report['machine_before']['load_average'][0]:.2f}, "
        f"after {report['machine']['load_average'][0]:.2f} ({report['machine']['cpu_count']} cores)",
        f"{'part':{width}s} {'median ms':>10s} {'max ms':>10s}",
    ]
    for key, label in ROWS:
        lines.append(f"{label:{width}s} {timings[key]['median_ms']:10.2f} {timings[key]['max_ms']:10.2f}")
    lines.append(f"ratio to target ({TARGET_SECONDS} s): {report['ratio_to_target']:.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    before = describe_machine()
    overrides = list(args.overrides) + ([samples_override(args.samples)] if args.samples is not None else [])
    if args.run:
        model, config = trained_model(args.run, args.samples)
        source = f"run {args.run}"
    else:
        model, config = fresh_model(args.config, args.overrides, args.samples, args.seed)
        source = f"fresh {args.config}"
    num_samples = base_samples(config)
    session = MattingSession(model, config, args.run or args.config, num_samples=num_samples or 1,
                             num_proposals=args.proposals, patch_size=args.patch_size, seed=args.seed)
    true_alpha = open_session(session, args)
    truth = user_truth(true_alpha, session.history[0].maps["alpha"])
    timings = measure(session, truth, args)
    report = {
        "command": shlex.join([sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)]),
        "model": {"source": source, "run": args.run, "config": None if args.run else args.config,
                  "overrides": overrides, "name": config["model"]["name"], "base": config["model"].get("base")},
        "image": {"name": session.opened.name, "shape": list(session.opened.shape),
                  "user_truth": "true alpha" if true_alpha is not None else f"first alpha >= {PSEUDO_TRUTH_LEVEL}"},
        "settings": {"samples": num_samples, "proposals": args.proposals, "patch_size": args.patch_size,
                     "repeats": args.repeats, "threads": args.threads, "seed": args.seed},
        "timings": timings,
        "target_s": TARGET_SECONDS,
        "ratio_to_target": ratio_to_target(timings),
        "machine_before": before,
        "machine": describe_machine(),
    }
    session.close()
    return finish_report(report, step_table(report), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
