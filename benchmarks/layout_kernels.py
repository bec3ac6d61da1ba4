"""The bfloat16 kernels whose layout decides their speed, each timed both ways in one run.

What `lite`'s bf16 + channels-last step profile (``benchmarks/step_profile.py --shapes``) pointed
at, isolated at the step's own shapes (batch 2, 128x128), forward + backward unless said:

- **upsampling backward** of a (2, 32, 64, 64) -> 128x128 bilinear upsampling whose output is
  joined to a 16-channel skip: the gradient as ``torch.cat`` hands it (a channel slice of the
  join's channels-last gradient) against ``medmat.models.blocks.cat_channels`` (a copy in the
  input's layout);
- **Fcomb's first layer**: ReLU of the image part (2, 128, 128, 16) plus N = 9 samples' parts
  (2, 9, 16), broadcast over rows of one pixel's 16 channels against rows of 64 values (what
  ``Fcomb`` does);
- **batch norm** (training mode) of a (2, C, 128, 128) bfloat16 map, C = 16 and 32: channels-last
  (what the model runs), the default layout, the default layout reached by copying there and
  back, and a hand-written channels-last batch norm (:class:`RowBatchNorm`: per-channel sums over
  the (pixels, C) rows, one ``addcmul`` each way): the two ways round the channels-last kernel
  that were tried and not kept;
- with ``--compiled``, **batch norm + ReLU** (training mode) of a (2, 32, 128, 128) channels-last
  map: eager (batch norm, then ReLU in place: what the model runs) against ``torch.compile`` of
  the same two calls, which inductor fuses into one generated kernel each way: the fusion that
  eager PyTorch cannot do (compiling takes seconds, hence the switch).

Each row is the median of ``--rounds`` rounds that alternate the variants, each round the median
of ``--repeats`` calls; the ratio is the first variant's time over each other's.

    python benchmarks/layout_kernels.py [--rounds 5] [--repeats 20] [--threads 2] [--compiled] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from conv_cost import median_seconds  # benchmarks/ is the script's folder, first on sys.path
from machine import finish_report, machine_line
from medmat.models.blocks import cat_channels

BATCH, SIZE, SAMPLES, FCOMB_CHANNELS = 2, 128, 9, 16


def _channels_last(*shape: int, requires_grad: bool = False, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    tensor = torch.randn(*shape, generator=generator).contiguous(memory_format=torch.channels_last).bfloat16()
    return tensor.requires_grad_(requires_grad)


def upsampling_variants() -> dict[str, Callable[[], None]]:
    """The decoder's upsample-and-join, forward + backward, with either join."""
    coarse = _channels_last(BATCH, 32, SIZE // 2, SIZE // 2, requires_grad=True)
    skip = _channels_last(BATCH, 16, SIZE, SIZE, seed=1)
    gradient = _channels_last(BATCH, 48, SIZE, SIZE, seed=2)

    def run(join: Callable[[list[torch.Tensor]], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            coarse.grad = None
            upsampled = F.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=True)
            join([upsampled, skip]).backward(gradient)
        return step

    return {"torch.cat (gradient a strided slice)": run(lambda tensors: torch.cat(tensors, dim=1)),
            "cat_channels (gradient in the input's layout)": run(cat_channels)}


def fcomb_first_layer_variants() -> dict[str, Callable[[], None]]:
    """ReLU(image part + sample part), forward + backward, over rows of 16 or of 64 values."""
    generator = torch.Generator().manual_seed(3)
    image_part = torch.randn(BATCH, SIZE, SIZE, FCOMB_CHANNELS, generator=generator).bfloat16().requires_grad_()
    sample_part = torch.randn(BATCH, SAMPLES, FCOMB_CHANNELS, generator=generator).bfloat16().requires_grad_()
    gradient = torch.randn(BATCH, SAMPLES, SIZE, SIZE, FCOMB_CHANNELS, generator=generator).bfloat16()
    pixels = 64 // FCOMB_CHANNELS

    def per_pixel() -> torch.Tensor:
        return torch.relu(image_part[:, None] + sample_part[:, :, None, None, :])

    def per_row() -> torch.Tensor:
        rows = image_part.reshape(BATCH, 1, SIZE * SIZE // pixels, pixels * FCOMB_CHANNELS)
        hidden = torch.relu(rows + sample_part.repeat(1, 1, pixels)[:, :, None, :])
        return hidden.view(BATCH, SAMPLES, SIZE, SIZE, FCOMB_CHANNELS)

    def run(layer: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            image_part.grad = sample_part.grad = None
            layer().backward(gradient)
        return step

    return {"rows of one pixel's 16 channels": run(per_pixel), "rows of 64 values (Fcomb)": run(per_row)}


class RowBatchNorm(torch.autograd.Function):
    """Training-mode batch norm of a channels-last (B, C, H, W) map as per-channel sums over its
    (B * H * W, C) rows and one ``addcmul`` forward and backward; float32 statistics. Not used by
    medmat: the candidate this benchmark rejects. ``apply(x, weight, bias, eps)`` -> normalised x."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        batch, channels, height, width = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, channels)
        mean = rows.sum(0, dtype=torch.float32) / rows.shape[0]
        variance = (torch.mul(rows, rows).sum(0, dtype=torch.float32) / rows.shape[0] - mean * mean).clamp_min(0)
        inverse_std = torch.rsqrt(variance + eps)
        scale = weight * inverse_std
        normalised = torch.addcmul((bias - mean * scale).to(x.dtype), rows, scale.to(x.dtype))
        ctx.save_for_backward(rows, weight, mean, inverse_std)
        return normalised.view(batch, height, width, channels).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor):
        rows, weight, mean, inverse_std = ctx.saved_tensors
        batch, channels, height, width = gradient.shape
        gradient_rows = gradient.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(-1, channels)
        count = rows.shape[0]
        gradient_sum = gradient_rows.sum(0, dtype=torch.float32)
        centred_sum = (torch.mul(gradient_rows, rows).sum(0, dtype=torch.float32) - mean * gradient_sum) * inverse_std
        scale = weight * inverse_std
        row_factor = -scale * inverse_std * centred_sum / count
        offset = -scale * gradient_sum / count - row_factor * mean
        gradient_x = torch.addcmul(torch.addcmul(offset.to(rows.dtype), rows, row_factor.to(rows.dtype)),
                                   gradient_rows, scale.to(rows.dtype))
        return (gradient_x.view(batch, height, width, channels).permute(0, 3, 1, 2), centred_sum, gradient_sum, None)


def batch_norm_variants(channels: int) -> dict[str, Callable[[], None]]:
    """Training-mode batch norm, forward + backward: torch's in either layout, and the two ways round
    its channels-last kernel."""
    norm = torch.nn.BatchNorm2d(channels).train()
    channels_last = _channels_last(BATCH, channels, SIZE, SIZE, requires_grad=True, seed=4)
    default = channels_last.detach().contiguous().requires_grad_()
    gradient_last = _channels_last(BATCH, channels, SIZE, SIZE, seed=5)
    gradient_default = gradient_last.contiguous()

    def run(source: torch.Tensor, gradient: torch.Tensor, way: str = "torch") -> Callable[[], None]:
        def step() -> None:
            source.grad = None
            if way == "copies":
                norm(source.contiguous()).contiguous(memory_format=torch.channels_last).backward(gradient)
            elif way == "rows":
                RowBatchNorm.apply(source, norm.weight, norm.bias, norm.eps).backward(gradient)
            else:
                norm(source).backward(gradient)
        return step

    return {"channels-last (the model's)": run(channels_last, gradient_last),
            "default layout": run(default, gradient_default),
            "copied to the default layout and back": run(channels_last, gradient_last, "copies"),
            "hand-written over rows (RowBatchNorm)": run(channels_last, gradient_last, "rows")}


def batch_norm_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Training-mode batch norm (no running statistics), then ReLU in place: the model's pair of calls."""
    return torch.relu_(F.batch_norm(x, None, None, weight, bias, training=True))


def batch_norm_relu_variants(channels: int) -> dict[str, Callable[[], None]]:
    """Batch norm + ReLU, forward + backward, eager and compiled (compiled here, before any timing)."""
    norm = torch.nn.BatchNorm2d(channels).train()
    source = _channels_last(BATCH, channels, SIZE, SIZE, requires_grad=True, seed=6)
    gradient = _channels_last(BATCH, channels, SIZE, SIZE, seed=7)
    compiled = torch.compile(batch_norm_relu, dynamic=False)

    def run(pair: Callable[..., torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            source.grad = norm.weight.grad = norm.bias.grad = None
            pair(source, norm.weight, norm.bias).backward(gradient)
        return step

    run(compiled)()
    return {"eager (the model's)": run(batch_norm_relu), "torch.compile (one fused kernel each way)": run(compiled)}


def measure(groups: dict[str, dict[str, Callable[[], None]]], rounds: int, repeats: int) -> dict:
    """``{group: {variant: median seconds}}``: rounds alternate each group's variants."""
    times = {group: {name: [] for name in variants} for group, variants in groups.items()}
    for _ in range(rounds):
        for group, variants in groups.items():
            for name, step in variants.items():
                times[group][name].append(median_seconds(step, repeats))
    return {group: {name: statistics.median(values) for name, values in by_name.items()}
            for group, by_name in times.items()}


def report_table(medians: dict) -> str:
    lines = ["| kernel, bfloat16, forward + backward | variant | ms | first variant over this |", "|---|---|---|---|"]
    for group, by_name in medians.items():
        first = next(iter(by_name.values()))
        for name, seconds in by_name.items():
            lines.append(f"| {group} | {name} | {seconds * 1e3:.3f} | {first / seconds:.2f}x |")
    lines.append(machine_line())
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compiled", action="store_true", help="also time batch norm + ReLU compiled against eager")
    parser.add_argument("--json", default=None, help="also write the report to this JSON file (atomically)")
    args = parser.parse_args(argv)
    for name in ("rounds", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    groups = {
        "decoder upsampling + join": upsampling_variants(),
        f"Fcomb first layer, N = {SAMPLES}": fcomb_first_layer_variants(),
        "batch norm, 16 channels": batch_norm_variants(16),
        "batch norm, 32 channels": batch_norm_variants(32),
    }
    if args.compiled:
        groups["batch norm + ReLU, 32 channels"] = batch_norm_relu_variants(32)
    medians = measure(groups, args.rounds, args.repeats)
    report = {"threads": args.threads, "rounds": args.rounds, "repeats": args.repeats, "median_s": medians}
    return finish_report(report, report_table(medians), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
