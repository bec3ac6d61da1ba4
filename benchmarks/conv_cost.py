"""What does training Medical Matting cost on this CPU?

1. Times one 128-channel 3x3 convolution (the paper-size matting network's typical layer) at
   128x128, batch 4, forward + backward (input and weight gradients).
2. Counts the multiply-accumulates of every convolution in one training forward of the
   ``paper`` model, expresses them in units of that reference convolution, and extrapolates the
   time of one epoch on Brain-growth (31 training images per fold, batch 4) and of one fold
   (150 epochs, Table III), plus the evaluation of the held-out images.
3. Times the real forward + backward (+ criterion) of one batch of 4 at 128x128 for the
   ``paper`` and ``lite`` presets, the number the extrapolation is checked against.

    python benchmarks/conv_cost.py [--threads 1] [--skip-models]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections import defaultdict

import torch
from torch import nn

from machine import machine_line  # benchmarks/ is the script's folder, first on sys.path
from medmat.losses import build_criterion
from medmat.models import build_model
from medmat.models.medical_matting import PRESETS

BATCH, SIZE, CHANNELS = 4, 128, 128
TRAIN_IMAGES, TEST_IMAGES, EPOCHS = 31, 8, 150  # Brain-growth, 4-fold; Table III


def median_seconds(step, repeats: int) -> float:
    """Median wall time of ``step()`` over ``repeats`` calls, after one warm-up call."""
    step()  # warm-up: allocator and oneDNN kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reference_conv_seconds(repeats: int = 5) -> float:
    """Median seconds of forward + backward of one 128->128 3x3 conv, (4, 128, 128, 128) input."""
    conv = nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1)
    x = torch.randn(BATCH, CHANNELS, SIZE, SIZE, requires_grad=True)

    def step() -> None:
        conv.zero_grad(set_to_none=True)
        x.grad = None
        conv(x).sum().backward()

    return median_seconds(step, repeats)


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    alpha = torch.rand(BATCH, 1, SIZE, SIZE, generator=generator)
    return {"image": torch.rand(BATCH, 1, SIZE, SIZE, generator=generator), "alpha": alpha, "pseudo_mask": (alpha > 0.5).float()}


def conv_macs_by_part(model: nn.Module) -> dict[str, float]:
    """Multiply-accumulates of every Conv2d and Linear in one training forward, per sub-network."""
    macs: dict[str, float] = defaultdict(float)
    handles = []
    for name, module in model.named_modules():
        part = ".".join(name.split(".")[:2])
        if isinstance(module, nn.Conv2d):

            def count_conv(module, inputs, output, part=part):
                kernel = module.kernel_size[0] * module.kernel_size[1]
                macs[part] += output.numel() * (module.in_channels // module.groups) * kernel

            handles.append(module.register_forward_hook(count_conv))
        elif isinstance(module, nn.Linear):  # Fcomb's 1x1 convolutions, run as per-pixel matmuls

            def count_linear(module, inputs, output, part=part):
                macs[part] += output.numel() * module.in_features

            handles.append(module.register_forward_hook(count_linear))
    model.train()
    with torch.no_grad():
        model(_batch())
    for handle in handles:
        handle.remove()
    return dict(macs)


def model_step_seconds(preset: str, repeats: int = 3) -> float:
    """Median seconds of forward + criterion + backward of the preset model on one batch."""
    torch.manual_seed(0)
    model = build_model("medical_matting", **PRESETS[preset]).train()
    criterion = build_criterion({"name": "medical_matting", "weighting": "oaws"})
    batch = _batch()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        total, _ = criterion(model(batch), batch, epoch=5, num_epochs=EPOCHS)
        total.backward()

    return median_seconds(step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--skip-models", action="store_true", help="skip timing the real models")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line())

    conv_seconds = reference_conv_seconds()
    reference_macs = BATCH * SIZE * SIZE * CHANNELS * CHANNELS * 9
    print(f"one 128->128 3x3 conv, batch {BATCH} at {SIZE}^2, forward+backward: {conv_seconds:.3f} s")

    paper_model = build_model("medical_matting", **PRESETS["paper"])
    layers = defaultdict(int)
    for name, module in paper_model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            layers[".".join(name.split(".")[:2])] += 1
    macs = conv_macs_by_part(paper_model)
    print("paper model, convolution cost of one training forward (batch 4, N = 8 samples):")
    for part, value in sorted(macs.items(), key=lambda item: -item[1]):
        print(f"  {part:28s} {layers[part]:3d} layers {value / 1e9:7.1f} GMAC = {value / reference_macs:5.2f} reference convs")
    equivalents = sum(macs.values()) / reference_macs
    batches = TRAIN_IMAGES / BATCH
    train_epoch = equivalents * conv_seconds * batches
    # Evaluation: a forward only (about a third of forward + backward) of the held-out images.
    eval_epoch = equivalents * conv_seconds / 3 * TEST_IMAGES / BATCH
    print(f"  total {equivalents:.1f} reference convs per batch")
    print(
        f"extrapolated paper config: {train_epoch:.0f} s per training epoch ({batches:.2f} batches), "
        f"{(train_epoch + eval_epoch) * EPOCHS / 3600:.1f} h per fold ({EPOCHS} epochs, evaluating each epoch), "
        f"{(train_epoch + eval_epoch) * EPOCHS * 4 / 3600:.1f} h for 4 folds"
    )

    if args.skip_models:
        return
    steps = math.ceil(TRAIN_IMAGES / BATCH)
    for preset in ("lite", "paper"):
        seconds = model_step_seconds(preset)
        epoch = seconds * steps + seconds / 3 * TEST_IMAGES / BATCH
        print(
            f"measured {preset:5s}: {seconds:.2f} s per batch of {BATCH} (forward+loss+backward), "
            f"{epoch:.0f} s per epoch with evaluation: {epoch * 50 / 60:.1f} min per 50 epochs, "
            f"{epoch * EPOCHS / 3600:.1f} h per fold of {EPOCHS} epochs"
        )


if __name__ == "__main__":
    main()
