"""Prediction throughput of a trained run: slices per second at 128², N sampled masks included.

Times ``medmat.engine.predict_samples`` (the path ``medmat predict`` uses, without file I/O) on
random 128x128 images, after one warm-up batch, for a few batch sizes, on the CPU and on CUDA
when there is one.

    python benchmarks/predict_throughput.py --run runs/brain-lite/fold-0 [--images 32] [--samples 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from machine import describe_machine, finish_report, machine_line  # benchmarks/ is the script's folder
from medmat.engine import load_run, predict_samples


def throughput(model, images, num_samples: int, batch_size: int) -> float:
    predict_samples(model, images[:batch_size], num_samples, batch_size)  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    predict_samples(model, images, num_samples, batch_size)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--json", default=None, help="also write the rates to this JSON file (atomically)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    machine = describe_machine()
    lines, rates = [f"machine: {machine_line(machine)}"], []
    for device in devices:
        model, config = load_run(args.run, device=device)
        channels = model.spec.in_channels
        images = [rng.random((channels, args.size, args.size), dtype=np.float32) for _ in range(args.images)]
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            rate = throughput(model, images, args.samples, batch_size)
            rates.append({"device": device, "model": config["model"]["name"], "size": args.size,
                          "samples": args.samples, "batch_size": batch_size, "slices_per_second": rate})
            lines.append(f"{device}: {config['model']['name']} {args.size}x{args.size}, {args.samples} samples, "
                         f"batch {batch_size}: {rate:.2f} slices/s")
    return finish_report({"run": args.run, "rates": rates, "machine": machine}, "\n".join(lines), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
