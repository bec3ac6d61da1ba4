"""Hidden units that are never (or hardly ever) positive: where a decoder lost capacity to dying ReLUs.

For every fold of a crossval folder (or one run), runs the model on the first ``--cases`` cases of
its dataset and hooks every ReLU / leaky ReLU module under ``--module`` (default: the matting
network's decoder; its activations are channels-last, so a unit is the last dimension). A unit
whose output is never above zero over all those queries is *never active*: under a ReLU it gets
no gradient and cannot recover; under a leaky ReLU it still learns. Units above zero on fewer than
``--rare`` of the queries (default 1 %) are counted beside them.

    python benchmarks/dead_units.py --run runs/ra-cpu [--cases 8] [--module matting_net.decoder] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from machine import describe_machine, finish_report, machine_line  # benchmarks/ is the script's folder
from medmat.engine.inference import crossval_folds, load_run, predict
from medmat.engine.trainer import load_samples
from medmat.errors import MedmatError

ACTIVATION_TYPES = (nn.ReLU, nn.LeakyReLU)


def active_fractions(model: nn.Module, module_path: str, images) -> dict[str, torch.Tensor]:
    """``{activation module name: (units,) fraction of queries where each unit is above zero}``.

    Args:
        model: a trained medmat model.
        module_path: dotted path of the submodule whose activations are counted (channels last).
        images: (C, H, W) arrays in [0, 1], each predicted once.
    """
    try:
        root = model.get_submodule(module_path)
    except AttributeError:
        raise MedmatError(f"the model has no submodule {module_path!r}") from None
    positive: dict[str, torch.Tensor] = {}
    queries: dict[str, int] = {}
    handles = []
    for name, module in root.named_modules():
        if isinstance(module, ACTIVATION_TYPES):
            def record(_module, _inputs, output, name=name):
                flat = (output.detach() > 0).reshape(-1, output.shape[-1])
                positive[name] = positive.get(name, 0) + flat.sum(dim=0)
                queries[name] = queries.get(name, 0) + flat.shape[0]
            handles.append(module.register_forward_hook(record))
    if not handles:
        raise MedmatError(f"no ReLU or leaky ReLU under {module_path!r}")
    try:
        for image in images:
            predict(model, image)
    finally:
        for handle in handles:
            handle.remove()
    return {name: counts.double() / queries[name] for name, counts in positive.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a crossval folder (or one train run)")
    parser.add_argument("--cases", type=int, default=8, help="cases of the run's dataset to predict")
    parser.add_argument("--module", default="matting_net.decoder")
    parser.add_argument("--rare", type=float, default=0.01, help="'rarely active': above zero on fewer queries")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    run = Path(args.run)
    folds = crossval_folds(run) or [run]
    report, lines = {"run": args.run, "module": args.module, "cases": args.cases, "folds": {}}, []
    try:
        for fold in folds:
            model, config = load_run(fold)  # predict() runs it in eval mode
            images = [sample.image for sample in load_samples(config)[: args.cases]]
            fractions = active_fractions(model, args.module, images)
            report["folds"][fold.name] = {
                name: {"units": fraction.numel(), "never_active": int((fraction == 0).sum()),
                       "rarely_active": int((fraction < args.rare).sum()), "active_fraction": fraction.tolist()}
                for name, fraction in fractions.items()}
            cells = ", ".join(f"{name} {int((f == 0).sum())} / {int((f < args.rare).sum())} of {f.numel()}"
                              for name, f in fractions.items())
            lines.append(f"{fold.name}: never / rarely (< {args.rare:g} of queries) active: {cells}")
    except MedmatError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    lines.append(machine_line())
    return finish_report({**report, "machine": describe_machine()}, "\n".join(lines), args.json)


if __name__ == "__main__":
    sys.exit(main())
