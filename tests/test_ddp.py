"""torchrun data parallelism: two gloo processes train the tiny model of ``test_engine.py``.

The test starts ``python -m torch.distributed.run --nproc_per_node 2`` on this very file; run as
a script it is the worker: each rank trains through :func:`medmat.engine.trainer.train` and
saves its own final parameters beside the run, so the test can compare the two ranks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
EPOCHS = 2


def save_rank_parameters(run_dir: Path):
    """An epoch_end callback writing this rank's trained parameters after the last epoch."""

    def callback(event: str, info: dict) -> None:
        if event == "epoch_end" and info["epoch"] == EPOCHS - 1:
            parameters = {
                **{f"model.{k}": v.detach().clone() for k, v in info["model"].named_parameters()},
                **{f"criterion.{k}": v.detach().clone() for k, v in info["criterion"].named_parameters()},
            }
            torch.save(parameters, run_dir.parent / f"rank-{os.environ['RANK']}.pt")

    return callback


def worker(run_dir: str) -> None:
    from test_engine import disc_samples, tiny_config

    from medmat.engine.trainer import train

    run_dir = Path(run_dir)
    config = tiny_config(f"optim.epochs={EPOCHS}", "train.device=cpu")
    train(config, run_dir, samples=disc_samples(), callbacks=[save_rank_parameters(run_dir)])


def test_torchrun_two_processes_train_one_run_with_identical_weights(tmp_path):
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(Path(__file__).resolve()), str(run_dir),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=180, env=environment)
    assert finished.returncode == 0, finished.stderr[-3000:]

    written = sorted(path.name for path in run_dir.iterdir())
    # One set of files, written once by rank 0, with no temporary file left behind.
    assert written == sorted(["checkpoint.pt", "config.yaml", "curves.png", "final.pt", "log.csv", "metrics.json", "split.json"])
    assert len((run_dir / "log.csv").read_text().splitlines()) == 1 + EPOCHS

    rank0 = torch.load(tmp_path / "rank-0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank-1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys() and "criterion.log_sigma" in rank0
    for name, value in rank0.items():
        assert torch.equal(value, rank1[name]), name
    saved = torch.load(run_dir / "final.pt", weights_only=True)
    for name, value in saved["model"].items():
        if f"model.{name}" in rank0:
            assert torch.equal(value, rank0[f"model.{name}"]), name
    # The run really trained: the weights moved away from their seeded initialisation.
    from test_engine import tiny_config

    from medmat.engine.inference import build_model_from_config
    from medmat.engine.seeding import seed_everything

    seed_everything(tiny_config()["seed"])
    initial = build_model_from_config(tiny_config()).state_dict()
    assert not torch.equal(saved["model"]["alpha_head.weight"], initial["alpha_head.weight"])


def test_the_medmat_command_trains_under_torchrun(tmp_path):
    # `python -m medmat` is the one command-line front end, also for torchrun.
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "medmat",
        "train", "--config", "demo", "--run-dir", str(run_dir), "--data", "phantom:8",
        "--set", "optim.epochs=1", "--set", "model.unet_filters=[4, 8]", "--set", "model.matting_channels=[4, 4]",
        "--set", "train.device=cpu", "--set", "train.progress=false", "--set", "eval.num_samples=2",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=180, env=environment)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("fold 0 done") == 1  # rank 0 alone reports
    assert (run_dir / "metrics.json").is_file() and (run_dir / "final.pt").is_file()


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    worker(sys.argv[1])
