"""Training engine: configs, dataset, schedule, training, exact resume, cross-validation, inference.

A tiny contract model and criterion are registered here (two convolutions, a learnable loss
weight, an epoch counter kept in a buffer) and trained on small numpy-made discs, so every test
runs in seconds. ``tests/test_ddp.py`` reuses them.
"""

from __future__ import annotations

import json
import math
import pickle
import random
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from medmat.data.sample import Sample
from medmat.data.trimap import trimap_levels
from medmat.engine import config as engine_config
from medmat.engine.checkpoint import load_checkpoint
from medmat.engine.config import load_config, packaged_configs
from medmat.engine.dataset import MattingDataset, default_augmentations, fit_to_size, unfit_from_size
from medmat.engine.evaluation import label_masks_from_alpha
from medmat.engine.inference import TEST_TIME_VIEWS, build_model_from_config, load_run, predict, predict_samples
from medmat.engine import distributed
from medmat.engine.checkpoint import restore_rng_states, rng_states
from medmat.engine.logging import read_log, rows_to_csv
from medmat.cli.main import main
from medmat.engine.crossval import crossval
from medmat.engine.loop import build_criterion_from_config, build_training
from medmat.engine.schedule import learning_rate_factor
from medmat.engine.trainer import train
from medmat.errors import MedmatError
from medmat.losses.registry import register_criterion
from medmat.metrics import matting_metrics
from medmat.models.contract import MattingModel, ModelSpec
from medmat.models.registry import register_model

TINY = "engine_test_tiny"


@register_model(TINY)
class TinyMattingModel(MattingModel):
    """Two convolutions following the contract; random sampled masks and dropout exercise the RNG."""

    def __init__(self, in_channels: int = 1, width: int = 4):
        super().__init__()
        # A size multiple of 8 makes the engine pad the odd sizes the tests predict.
        self.spec = ModelSpec(in_channels, gives=("alpha", "mask_logits", "sample_masks"), size_multiple=8)
        self.features = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.dropout = nn.Dropout2d(0.2)
        self.alpha_head = nn.Conv2d(width, 1, 3, padding=1)
        self.mask_head = nn.Conv2d(width, 1, 1)

    def forward(self, batch: dict[str, torch.Tensor], num_samples: int | None = None) -> dict[str, torch.Tensor]:
        features = self.dropout(self.features(batch["image"]))
        mask_logits = self.mask_head(features)
        noise = torch.randn(mask_logits.shape[0], 3, *mask_logits.shape[-2:], device=mask_logits.device)
        return {
            "alpha": torch.sigmoid(self.alpha_head(features)),
            "mask_logits": mask_logits,
            "sample_masks": torch.sigmoid(mask_logits + noise),
        }


@register_criterion(TINY)
class TinyLoss(nn.Module):
    """L1 on alpha weighted by a learnable sigma, plus BCE on the pseudo mask; counts epochs in a buffer."""

    def __init__(self, mask_weight: float = 1.0):
        super().__init__()
        self.mask_weight = mask_weight
        self.log_sigma = nn.Parameter(torch.zeros(()))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_epoch_loss", torch.zeros((), dtype=torch.float64))

    def forward(self, outputs, batch, epoch, num_epochs):
        l1 = (outputs["alpha"] - batch["alpha"]).abs().mean()
        ce = F.binary_cross_entropy_with_logits(outputs["mask_logits"], batch["pseudo_mask"])
        total = l1 * torch.exp(-self.log_sigma) + self.log_sigma + self.mask_weight * ce
        return total, {"l1": l1.item(), "ce": ce.item(), "total": total.item()}

    def end_epoch(self, epoch_mean_parts: dict) -> None:
        self.epochs_seen += 1
        self.last_epoch_loss.fill_(epoch_mean_parts["loss"])


def disc_samples(n: int = 8, size: int = 24, seed: int = 0, with_trimap: bool = True) -> list[Sample]:
    """Soft discs: alpha falls from 1 to 0 over 4 pixels; 3 annotators threshold it at 0.3/0.5/0.7."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size].astype(np.float64)
    samples = []
    for index in range(n):
        centre = rng.uniform(0.4 * size, 0.6 * size, 2)
        radius = rng.uniform(0.2 * size, 0.3 * size)
        distance = np.hypot(rows - centre[0], cols - centre[1]) - radius
        alpha = np.clip(0.5 - distance / 4.0, 0.0, 1.0).astype(np.float32)
        image = np.clip(0.2 + 0.6 * alpha + rng.normal(0.0, 0.03, alpha.shape), 0.0, 1.0).astype(np.float32)
        trimap = np.where(alpha >= 1.0, 255, np.where(alpha <= 0.0, 0, 128)).astype(np.uint8)
        samples.append(
            Sample(
                id=f"disc-{index:02d}",
                image=image[None],
                masks=np.stack([alpha >= level for level in (0.3, 0.5, 0.7)]),
                alpha=alpha,
                trimap=trimap if with_trimap else None,
            )
        )
    return samples


def tiny_config(*overrides: str) -> dict:
    """A 3-epoch, 2-fold config of the tiny model (8 discs: 4 training cases, 2 steps an epoch)."""
    base = {
        "seed": 3,
        "model": {"name": TINY, "width": 4},
        "loss": {"name": TINY},
        "data": {"dataset": "phantom:8"},
        "split": {"scheme": "kfold", "k": 2, "fold": 0},
        "optim": {"lr": 0.01, "batch_size": 2, "epochs": 3},
        "eval": {"num_samples": 4},
        "train": {"progress": False, "tensorboard": False, "num_threads": 1},
    }
    return load_config(base, overrides)


# --- configuration ---------------------------------------------------------------------------


def test_packaged_configs_load_by_name_and_alias():
    lite = load_config("lite")
    assert lite == load_config("medical_matting_lite")
    paper = load_config("paper")
    assert paper["model"]["name"] == "medical_matting" and paper["loss"]["name"] == "medical_matting"
    # Table III, Brain-growth column.
    assert paper["optim"]["lr"] == 1e-4 and paper["optim"]["epochs"] == 150 and paper["optim"]["batch_size"] == 4
    assert paper["optim"]["weight_decay"] == 5e-5 and paper["optim"]["warmup_epochs"] == 1
    assert paper["model"]["unet_filters"] == [32, 64, 128, 192]
    assert paper["eval"]["num_samples"] == 8 and paper["data"]["pseudo_mask_range"] == [0.2, 0.7]


@pytest.mark.parametrize("name", ["lite", "paper"])
def test_packaged_configs_build_the_registered_model_and_loss(name):
    config = load_config(name)
    model = build_model_from_config(config)
    criterion = build_criterion_from_config(config)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert isinstance(criterion, nn.Module)


def test_overrides_are_parsed_as_yaml():
    config = load_config(
        "lite",
        ["optim.epochs=2", "model.use_uncertainty_map=false", "loss.weighting=uws", "data.dataset=phantom:8",
         "optim.lr=1e-3", "data.input_size=[64, 48]"],
    )
    assert config["optim"]["epochs"] == 2
    assert config["model"]["use_uncertainty_map"] is False
    assert config["loss"]["weighting"] == "uws"
    assert config["data"]["dataset"] == "phantom:8"
    assert config["optim"]["lr"] == pytest.approx(1e-3)  # "1e-3" is a string to PyYAML; coerced
    assert engine_config.input_size(config) == (64, 48)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.epochz=2"], "unknown config key optim.epochz"),
        (["optimiser.lr=1"], "unknown config section 'optimiser'"),
        (["optim.epochs=two"], "optim.epochs must be int"),
        (["optim.epochs=true"], "optim.epochs must be int"),
        (["data.augment=3"], "data.augment must be bool"),
        (["split.region=whole"], "unknown config key split.region"),
        (["eval.region=inside"], "eval.region must be one of"),
        (["split.fold=4"], "split.fold must be < split.k"),
        (["data.pseudo_mask_range=[0.7, 0.2]"], "low <= high"),
        (["optim.epochs"], "must look like section.key=value"),
        (["model.name="], "model.name must name a registered model"),
    ],
)
def test_bad_configs_raise_one_line_errors(overrides, message):
    with pytest.raises(MedmatError, match=message) as raised:
        load_config("lite", overrides)
    assert "\n" not in str(raised.value)


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(MedmatError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(MedmatError, match="unknown config 'nonsense'"):
        load_config("nonsense")
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim: {epochs: [1,\n")
    with pytest.raises(MedmatError, match="invalid YAML"):
        load_config(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(MedmatError, match="must be a mapping"):
        load_config(listed)


def test_yaml_file_is_merged_over_defaults(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"optim": {"epochs": 7}, "model": {"name": TINY, "width": 2}, "loss": {"name": TINY}}))
    config = load_config(path)
    assert config["optim"]["epochs"] == 7
    assert config["optim"]["lr"] == engine_config.DEFAULTS["optim"]["lr"]
    assert config["model"] == {"name": TINY, "width": 2}


# --- learning-rate schedule --------------------------------------------------------------------


def test_warmup_then_cosine_by_step_and_by_epoch():
    # 4 steps an epoch, 3 epochs, 1 warm-up epoch: warm-up steps 0..3, cosine over steps 4..11.
    by_step = [learning_rate_factor(s, 4, 3, 1, "cosine", "step") for s in range(12)]
    assert by_step[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert by_step[4] == pytest.approx(1.0)
    assert by_step[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 8)))
    assert by_step[8] == pytest.approx(0.5)
    by_epoch = [learning_rate_factor(s, 4, 3, 1, "cosine", "epoch") for s in range(12)]
    assert by_epoch[4:8] == pytest.approx([1.0] * 4)
    assert by_epoch[8:] == pytest.approx([0.5] * 4)
    assert learning_rate_factor(11, 4, 3, 1, "constant") == 1.0
    assert learning_rate_factor(5, 4, 3, 0, "cosine", "step", min_factor=0.1) == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 12))
    )


# --- dataset ------------------------------------------------------------------------------------


def test_training_items_are_a_function_of_seed_epoch_and_index():
    samples = disc_samples(4)
    dataset = MattingDataset(samples, seed=5)
    dataset.set_epoch(2)
    first = dataset[1]
    again = MattingDataset(samples, seed=5)
    again.set_epoch(0)
    again[1]
    again.set_epoch(2)
    assert all(torch.equal(first[key], again[1][key]) for key in first)
    dataset.set_epoch(3)
    assert not torch.equal(first["image"], dataset[1]["image"])
    assert set(first) == {"image", "alpha", "masks", "pseudo_mask", "trimap"}
    assert first["image"].shape == (1, 24, 24) and first["masks"].shape == (3, 24, 24)
    assert all(value.dtype == torch.float32 for value in first.values())


def test_copies_per_image_draw_anew_per_copy_and_stay_in_one_batch():
    samples = disc_samples(4)
    plain = MattingDataset(samples, seed=5, augment=False)
    copies = MattingDataset(samples, seed=5, augment=False, copies_per_image=2)
    assert len(copies) == 8 and len(plain) == 4
    for index in range(8):
        case = samples[index // 2]
        assert np.array_equal(copies[index]["alpha"].numpy()[0], case.alpha)
    # Each copy has its own pseudo-mask threshold: the pairs of one case are not all alike.
    assert any(not torch.equal(copies[2 * c]["pseudo_mask"], copies[2 * c + 1]["pseudo_mask"]) for c in range(4))
    # One copy per image gives the items of the plain dataset exactly (earlier runs retrain as they did).
    single = MattingDataset(samples, seed=5, augment=False, copies_per_image=1)
    assert all(torch.equal(single[i][key], plain[i][key]) for i in range(4) for key in plain[i])
    with pytest.raises(MedmatError, match="at least 1"):
        MattingDataset(samples, copies_per_image=0)

    context = distributed.DistributedContext()
    sampler = distributed.make_sampler(copies, context, seed=3, group=2)
    sampler.set_epoch(1)
    order = list(sampler)
    assert sorted(order) == list(range(8)) and len(sampler) == 8
    assert all(order[i] % 2 == 0 and order[i + 1] == order[i] + 1 for i in range(0, 8, 2))
    # group 1 is torch's DistributedSampler over the dataset, index for index.
    reference = torch.utils.data.DistributedSampler(plain, num_replicas=1, rank=0, shuffle=True, seed=3)
    reference.set_epoch(1)
    grouped = distributed.make_sampler(plain, context, seed=3)
    grouped.set_epoch(1)
    assert list(grouped) == list(reference)
    # Under two processes every case's pair lands, whole, on one of them.
    halves = [list(distributed.make_sampler(copies, distributed.DistributedContext(world_size=2, rank=r), 3, group=2))
              for r in (0, 1)]
    assert sorted(halves[0] + halves[1]) == list(range(8))
    assert all(h[i] + 1 == h[i + 1] for h in halves for i in range(0, len(h), 2))


def test_intensity_augmentation_changes_only_the_training_images_after_the_same_geometry():
    samples = disc_samples(4)
    plain = MattingDataset(samples, seed=2)
    darker = MattingDataset(samples, seed=2, augmentations=default_augmentations((0.5, 0.7), (1.0, 1.0)))
    for index in range(4):
        item, dark = plain[index], darker[index]
        # The intensity step comes last: geometry (hence alpha, masks) is drawn as without it.
        assert torch.equal(item["alpha"], dark["alpha"]) and torch.equal(item["masks"], dark["masks"])
        ratio = dark["image"].sum() / item["image"].sum()
        assert 0.5 - 1e-4 <= ratio <= 0.7 + 1e-4
    # The config's default adds nothing: every item as the paper's augmentations draw it.
    default = MattingDataset(samples, seed=2, augmentations=default_augmentations())
    assert all(torch.equal(default[i][key], plain[i][key]) for i in range(4) for key in plain[i])


def test_training_with_copies_per_image_takes_images_times_copies_per_batch(tmp_path):
    with pytest.raises(MedmatError, match="not a multiple of data.copies_per_image"):
        tiny_config("data.copies_per_image=2", "optim.batch_size=3")
    steps = []
    record_steps = lambda event, info: steps.append(info["epoch"]) if event == "step_end" else None  # noqa: E731
    record = train(tiny_config("data.copies_per_image=2", "optim.batch_size=4"), tmp_path / "run",
                   samples=disc_samples(), callbacks=[record_steps])
    # 4 training cases x 2 copies in batches of 4 (2 images): 2 steps an epoch, as with 4 single items at batch 2.
    assert steps == [0, 0, 1, 1, 2, 2]
    assert len(record["cases"]) == 4 and np.isfinite(record["mean"]["whole"]["SAD"])
    # Under torchrun each process's share of the batch must hold whole groups of copies too.
    with pytest.raises(MedmatError, match="over 2 processes gives each 2 items"):
        build_training(tiny_config("data.copies_per_image=4", "optim.batch_size=4"), disc_samples(), (24, 24),
                       distributed.DistributedContext(world_size=2, rank=0))


def test_pseudo_mask_is_a_threshold_of_the_augmented_alpha():
    dataset = MattingDataset(disc_samples(3), seed=1)
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(3):
            item = dataset[index]
            alpha, mask = item["alpha"][0], item["pseudo_mask"][0].bool()
            assert mask.any() and (~mask).any()
            # A superlevel set: every pixel inside is at least as opaque as every pixel outside.
            assert alpha[mask].min() >= alpha[~mask].max()
            low, high = 0.2 * alpha.max(), 0.7 * alpha.max()
            assert low - 1e-6 <= alpha[mask].min() and alpha[~mask].max() < high + 1e-6


def test_items_are_padded_to_a_common_size():
    samples = disc_samples(1, size=20) + disc_samples(1, size=24, seed=1)
    samples[1].id = "other"
    dataset = MattingDataset(samples, training=False)
    small = dataset[0]
    assert small["image"].shape == (1, 24, 24)
    assert torch.equal(small["alpha"][0, 2:22, 2:22], torch.from_numpy(samples[0].alpha))
    assert small["alpha"][0, :2].abs().sum() == 0 and small["alpha"][0, :, 22:].abs().sum() == 0


def test_fit_and_unfit_are_inverse():
    array = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    padded = fit_to_size(array, (8, 10))
    assert padded.shape == (8, 10) and padded.sum() == array.sum()
    assert np.array_equal(unfit_from_size(padded, (5, 7)), array)
    cropped = fit_to_size(array, (3, 3))
    assert np.array_equal(cropped, array[1:4, 2:5])
    restored = unfit_from_size(cropped, (5, 7))
    assert np.array_equal(restored[1:4, 2:5], cropped) and restored.sum() == cropped.sum()


def test_trimap_levels_follow_the_shared_trimap_reading():
    trimap = np.array([[0, 20, 30, 128], [200, 230, 240, 255]], dtype=np.uint8)
    # t/255 <= 0.1 background, >= 0.9 foreground, unknown between (30/255 = 0.118, 230/255 = 0.902).
    assert np.array_equal(trimap_levels(trimap), [[0, 0, 0.5, 0.5], [0.5, 1, 1, 1]])


def test_dataset_refuses_cases_without_alpha_or_with_different_annotator_counts():
    samples = disc_samples(2)
    samples[0].alpha = None
    with pytest.raises(MedmatError, match="no alpha"):
        MattingDataset(samples)
    samples = disc_samples(2)
    samples[1].masks = samples[1].masks[:2]
    with pytest.raises(MedmatError, match="numbers of annotator masks"):
        MattingDataset(samples)


# --- logging, checkpoints, processes -----------------------------------------------------------


def test_log_rows_round_trip_exactly_with_seconds_last(tmp_path):
    rows = [
        {"epoch": 1, "lr": 1e-4, "loss": 0.1 + 0.2, "seconds": 3.5},
        {"epoch": 2, "lr": 5e-5, "loss": 1 / 3, "val_SAD": 2.25, "seconds": 3.25},
    ]
    (tmp_path / "log.csv").write_text(rows_to_csv(rows))
    assert (tmp_path / "log.csv").read_text().splitlines()[0] == "epoch,lr,loss,val_SAD,seconds"
    assert read_log(tmp_path / "log.csv") == rows


def test_rng_states_restore_every_generator():
    states = rng_states()
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_states(states)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(drawn[0], again[0]) and np.array_equal(drawn[1], again[1]) and drawn[2] == again[2]


def test_single_process_context_and_batch_split(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = distributed.setup("cpu")
    assert (context.world_size, context.rank, context.is_main, context.is_distributed) == (1, 0, True, False)
    assert distributed.average_across_processes({"loss": 2.5}, context) == {"loss": 2.5}
    two = distributed.DistributedContext(world_size=2, rank=1)
    assert distributed.per_process_batch_size(4, two) == 2
    with pytest.raises(MedmatError, match="not divisible"):
        distributed.per_process_batch_size(3, two)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(MedmatError, match="must be integers"):
        distributed.environment_ranks()


# --- label masks ------------------------------------------------------------------------------


def test_label_masks_threshold_alpha_at_equidistant_levels_of_its_range():
    alpha = np.array([[0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6]], dtype=np.float32)
    masks = label_masks_from_alpha(alpha)
    # min 0.2, range 0.4: thresholds 0.2 + 0.4 * (0.2 + 0.0625 l) = 0.28, 0.305, ..., 0.455.
    thresholds = 0.2 + 0.4 * (0.2 + 0.0625 * np.arange(8))
    assert masks.shape == (8, 1, 7) and masks.dtype == bool
    for level, threshold in enumerate(thresholds):
        assert np.array_equal(masks[level, 0], alpha[0] >= threshold)
    assert masks[0, 0].sum() == 6 and masks[7, 0].sum() == 2


def test_a_constant_alpha_gives_empty_masks_without_lesion_and_whole_ones_with_it():
    assert not label_masks_from_alpha(np.zeros((4, 5))).any()
    full = label_masks_from_alpha(np.full((4, 5), 0.6))
    assert full.shape == (8, 4, 5) and full.all()


# --- training ---------------------------------------------------------------------------------


def test_train_writes_a_complete_run(tmp_path):
    samples = disc_samples()
    record = train(tiny_config(), tmp_path / "run", samples=samples)
    run = tmp_path / "run"
    for name in ("config.yaml", "split.json", "log.csv", "curves.png", "checkpoint.pt", "final.pt", "metrics.json"):
        assert (run / name).is_file(), name
    assert load_config(run / "config.yaml") == tiny_config()
    split = json.loads((run / "split.json").read_text())
    assert split["k"] == 2 and split["scheme"] == "kfold"

    rows = read_log(run / "log.csv")
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    # After epoch 1 the warm-up is over: the cosine starts at the base rate (per epoch, default).
    assert rows[0]["lr"] == pytest.approx(0.01)
    assert rows[2]["lr"] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 2 / 2)), abs=1e-12)
    assert {"loss", "l1", "ce", "val_SAD", "val_MSE", "val_GED", "val_Dice", "seconds"} <= set(rows[0])
    assert "total" not in rows[0]

    assert record["test_ids"] == split["folds"][0]["test"] and len(record["cases"]) == 4
    case = record["cases"][0]
    assert case["region_name"] == "unknown" and set(case["region"]) == {"SAD", "MSE", "Grad", "Conn"}
    assert record["mean"]["whole"]["SAD"] == pytest.approx(np.mean([c["whole"]["SAD"] for c in record["cases"]]))
    assert record["mean"]["Dice"] == pytest.approx(np.mean([c["Dice"] for c in record["cases"]]))
    assert json.loads((run / "metrics.json").read_text()) == {k: v for k, v in record.items() if k != "run_dir"}

    # The saved model reproduces the recorded metrics (alpha is deterministic in eval mode).
    model, config = load_run(run)
    assert config == tiny_config() and not model.training
    by_id = {s.id: s for s in samples}
    for case in record["cases"]:
        sample = by_id[case["id"]]
        alpha = predict(model, sample.image, num_samples=4)["alpha"]
        mask = sample.trimap == 128
        assert matting_metrics(alpha, sample.alpha, mask) == pytest.approx(case["region"])
    criterion_state = load_checkpoint(run / "final.pt")["criterion"]
    assert int(criterion_state["epochs_seen"]) == 3
    assert float(criterion_state["last_epoch_loss"]) == pytest.approx(rows[2]["loss"])


class Interrupted(Exception):
    pass


def interrupt_in_third_epoch(event: str, info: dict) -> None:
    if event == "step_end" and info["epoch"] == 2 and info["step"] == 1:
        raise Interrupted


def test_interrupted_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    samples = disc_samples()
    straight = train(tiny_config(), tmp_path / "straight", samples=samples)

    with pytest.raises(Interrupted):
        train(tiny_config(), tmp_path / "resumed", samples=samples, callbacks=[interrupt_in_third_epoch])
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 2
    assert not (tmp_path / "resumed" / "final.pt").exists()
    resumed = train(tiny_config(), tmp_path / "resumed", samples=samples, resume=True)

    final_straight = load_checkpoint(tmp_path / "straight" / "final.pt")
    final_resumed = load_checkpoint(tmp_path / "resumed" / "final.pt")
    for part in ("model", "criterion"):
        assert final_straight[part].keys() == final_resumed[part].keys()
        for key, value in final_straight[part].items():
            assert torch.equal(value, final_resumed[part][key]), f"{part}.{key}"
    assert resumed["cases"] == straight["cases"]
    drop_seconds = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert drop_seconds(read_log(tmp_path / "resumed" / "log.csv")) == drop_seconds(
        read_log(tmp_path / "straight" / "log.csv")
    )


def test_existing_runs_are_not_overwritten_and_resume_needs_the_same_config(tmp_path):
    samples = disc_samples()
    config = tiny_config("optim.epochs=1")
    train(config, tmp_path / "run", samples=samples)
    with pytest.raises(MedmatError, match="already holds a checkpoint"):
        train(config, tmp_path / "run", samples=samples)
    with pytest.raises(MedmatError, match=r"different config \(changed: optim.lr\)"):
        train(tiny_config("optim.epochs=1", "optim.lr=0.5"), tmp_path / "run", samples=samples, resume=True)
    # A finished run resumes to its recorded result without training again.
    again = train(tiny_config("optim.epochs=1", "train.num_threads=2"), tmp_path / "run", samples=samples, resume=True)
    assert again["cases"] == json.loads((tmp_path / "run" / "metrics.json").read_text())["cases"]


def test_runs_without_trimaps_evaluate_the_whole_image(tmp_path):
    record = train(tiny_config("optim.epochs=1", "eval.every=0"), tmp_path / "run", samples=disc_samples(with_trimap=False))
    assert {case["region_name"] for case in record["cases"]} == {"whole"}
    assert all(case["region"] == case["whole"] for case in record["cases"])
    assert not any(key.startswith("val_") for key in read_log(tmp_path / "run" / "log.csv")[0])


def test_crossval_summarises_every_fold(tmp_path):
    samples = disc_samples()
    summary = crossval(tiny_config("optim.epochs=1"), tmp_path / "cv", samples=samples)
    cv = tmp_path / "cv"
    assert (cv / "split.json").is_file() and not (cv / "fold-0" / "split.json").exists()
    records = [json.loads((cv / f"fold-{fold}" / "metrics.json").read_text()) for fold in (0, 1)]
    all_cases = [case for record in records for case in record["cases"]]
    assert sorted(case["id"] for case in all_cases) == sorted(s.id for s in samples)
    # Table IV: mean over all test predictions; Table V: mean ± std (ddof 0) of the fold means.
    assert summary["table_iv"]["mean"]["SAD"] == pytest.approx(np.mean([c["region"]["SAD"] for c in all_cases]))
    fold_dice = [np.mean([c["Dice"] for c in record["cases"]]) for record in records]
    assert summary["table_v"]["fold_mean"]["Dice"] == pytest.approx(np.mean(fold_dice))
    assert summary["table_v"]["fold_std"]["Dice"] == pytest.approx(np.std(fold_dice))
    markdown = (cv / "summary.md").read_text()
    assert "Table IV" in markdown and "Table V" in markdown and "±" in markdown
    csv_lines = (cv / "summary.csv").read_text().splitlines()
    assert csv_lines[0] == "table,metric,mean,fold_mean,fold_std,n" and any(line.startswith("V,GED,") for line in csv_lines)
    assert json.loads((cv / "summary.json").read_text())["folds"] == [0, 1]
    with pytest.raises(MedmatError, match="already holds a cross-validation"):
        crossval(tiny_config("optim.epochs=1"), cv, samples=samples)
    assert crossval(tiny_config("optim.epochs=1"), cv, samples=samples, resume=True)["table_v"] == summary["table_v"]


def test_parallel_folds_give_the_same_results_as_folds_one_after_another(tmp_path):
    samples = disc_samples()
    config = tiny_config("optim.epochs=2")
    serial = crossval(config, tmp_path / "serial", samples=samples)
    parallel = crossval(config, tmp_path / "parallel", samples=samples, jobs=2)
    assert parallel["folds"] == [0, 1]
    assert parallel["table_iv"] == serial["table_iv"] and parallel["table_v"] == serial["table_v"]
    for fold in (0, 1):
        a, b = (load_checkpoint(tmp_path / run / f"fold-{fold}" / "checkpoint.pt") for run in ("serial", "parallel"))
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    with pytest.raises(MedmatError, match="callbacks"):
        crossval(config, tmp_path / "parallel", samples=samples, resume=True, jobs=2, callbacks=[interrupt_in_third_epoch])


# --- inference --------------------------------------------------------------------------------


def test_predict_samples_matches_single_predictions_and_pads_odd_sizes(tmp_path):
    torch.manual_seed(0)
    model = TinyMattingModel().eval()
    images = [s.image for s in disc_samples(3, size=20)] + [disc_samples(1, size=24)[0].image]
    batched = predict_samples(model, images, num_samples=3, batch_size=2)
    assert [p["alpha"].shape for p in batched] == [(20, 20)] * 3 + [(24, 24)]
    assert batched[0]["sample_masks"].shape == (3, 20, 20)
    for image, prediction in zip(images, batched):
        single = predict(model, image, num_samples=3)
        np.testing.assert_allclose(single["alpha"], prediction["alpha"], atol=1e-6)
        assert 0.0 <= single["alpha"].min() and single["alpha"].max() <= 1.0


def test_load_run_refuses_what_is_not_a_medmat_run(tmp_path):
    with pytest.raises(MedmatError, match="not a medmat run"):
        load_run(tmp_path)
    with pytest.raises(MedmatError, match="not found"):
        load_run(tmp_path / "absent")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(MedmatError, match="no medmat format tag"):
        load_run(foreign)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": "medmat-checkpoint", "payload": Interrupted("code")}, unsafe)
    with pytest.raises(MedmatError, match=r"asks for .*Interrupted, which is not a tensor .*refused without running it"):
        load_run(unsafe)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(MedmatError, match="not a PyTorch checkpoint archive"):
        load_run(garbage)
    plain_pickle = tmp_path / "plain.pt"
    plain_pickle.write_bytes(pickle.dumps({"format": "medmat-checkpoint"}))
    with pytest.raises(MedmatError, match="not a PyTorch checkpoint archive"):
        load_run(plain_pickle)


def test_module_entry_trains_a_phantom_fold(tmp_path, capsys):
    config_path = tmp_path / "tiny.yaml"
    config = tiny_config("optim.epochs=1", "eval.every=0")
    config["model"] = {"name": TINY, "width": 2}
    config_path.write_text(yaml.safe_dump(config))
    phantoms = "data.dataset=phantom:4"
    assert main(["train", "--config", str(config_path), "--run-dir", str(tmp_path / "run"), "--set", phantoms]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["fold"] == 0
    status = main(["train", "--config", str(config_path), "--run-dir", str(tmp_path / "run"), "--set", phantoms])
    assert status == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("medmat: error:") and "already holds a checkpoint" in error and "\n" not in error
    shutil.rmtree(tmp_path / "run")


# --- generated training trimaps, resized cases, output size -------------------------------------


def test_generated_training_trimaps_widen_the_annotators_disagreement_and_change_every_epoch():
    samples = disc_samples(2, size=64)
    generated = MattingDataset(samples, seed=5, augment=False, train_trimaps="annotators", noisy_trimaps=True)
    seen = set()
    for epoch in range(4):
        generated.set_epoch(epoch)
        item = generated[0]
        trimap, noisy = item["trimap"][0].numpy(), item["trimap_noisy"][0].numpy()
        assert set(np.unique(trimap)) <= {0.0, 0.5, 1.0} and set(np.unique(noisy)) <= {0.0, 0.5, 1.0}
        # Random erosion only shrinks the known regions of the annotators' trimap.
        masks = samples[0].masks
        assert np.all(masks.all(axis=0)[trimap == 1.0]) and not np.any(masks.any(axis=0)[trimap == 0.0])
        assert np.all(trimap[masks.any(axis=0) & ~masks.all(axis=0)] == 0.5)
        seen.add(trimap.tobytes())
    assert len(seen) > 1  # epochs draw different erosions
    again = MattingDataset(samples, seed=5, augment=False, train_trimaps="annotators", noisy_trimaps=True)
    again.set_epoch(3)
    assert all(torch.equal(item[key], again[0][key]) for key in item)


def test_generated_trimaps_leave_the_other_random_draws_unchanged():
    samples = disc_samples(3)
    given = MattingDataset(samples, seed=2)
    generated = MattingDataset(samples, seed=2, train_trimaps="alpha")
    for dataset in (given, generated):
        dataset.set_epoch(1)
    for index in range(3):
        before, after = given[index], generated[index]
        assert all(torch.equal(before[key], after[key]) for key in ("image", "alpha", "masks", "pseudo_mask"))
        assert "trimap_noisy" not in after
        # Eq. 2 of the augmented alpha, eroded: foreground only where alpha == 1, background where 0.
        alpha, trimap = after["alpha"][0], after["trimap"][0]
        assert torch.all(alpha[trimap == 1.0] == 1.0) and torch.all(alpha[trimap == 0.0] == 0.0)


def test_evaluation_items_keep_their_given_trimaps():
    samples = disc_samples(2)
    item = MattingDataset(samples, training=False, train_trimaps="annotators", noisy_trimaps=True)[1]
    assert "trimap_noisy" not in item
    assert torch.equal(item["trimap"][0], torch.from_numpy(trimap_levels(samples[1].trimap)))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.train_trimaps=masks"], "data.train_trimaps must be one of given, alpha, annotators"),
        (["data.noisy_trimaps=true"], "data.noisy_trimaps needs generated training trimaps"),
        (["data.resize=[64]"], r"data.resize must be an int or \[H, W\]"),
        (["data.resize=1"], r"data.resize must be an int or \[H, W\]"),
    ],
)
def test_bad_trimap_and_resize_settings_raise_one_line_errors(overrides, message):
    with pytest.raises(MedmatError, match=message) as raised:
        load_config("lite", overrides)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "model, loss, noisy",
    [
        ({"name": "adamatting", "encoder_channels": [4, 4, 8, 8, 8], "encoder_blocks": [1, 1, 1, 1],
          "propagation_channels": 4}, {"name": "adamatting"}, False),
        ({"name": "tcp_matting", "encoder_channels": [4, 4, 8, 8, 8], "encoder_blocks": [1, 1, 1, 1]},
         {"name": "tcp_matting"}, True),
    ],
)
def test_a_training_epoch_with_generated_trimaps_runs_for_trimap_models(model, loss, noisy):
    from medmat.engine.loop import build_training, run_epoch
    from medmat.engine.trainer import load_samples

    config = tiny_config("data.resize=32", "data.train_trimaps=annotators", f"data.noisy_trimaps={str(noisy).lower()}",
                         "optim.epochs=1", "eval.every=0")
    config["model"], config["loss"] = model, loss
    samples = load_samples(config)  # phantoms: no trimaps of their own
    assert all(s.shape == (32, 32) and s.trimap is None for s in samples)
    training = build_training(config, samples[:4], (32, 32), distributed.setup("cpu"))
    assert ("trimap_noisy" in training.dataset[0]) == noisy
    before = [p.detach().clone() for p in training.model.parameters()]
    row = run_epoch(training, 0, config, distributed.setup("cpu"))
    assert math.isfinite(row["loss"]) and not any(k.startswith("val_") for k in row)
    assert any(not torch.equal(a, b) for a, b in zip(before, training.model.parameters()))


def test_resize_sample_averages_shrinking_interpolates_growing_and_moves_the_geometry():
    from medmat.engine.dataset import resize_sample

    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4) / 15
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True
    masks[1, :2, :2] = masks[1, 2, 2] = True  # one pixel of a 2x2 block: dropped
    trimap = np.array([[0, 0, 128, 128], [0, 0, 128, 128], [255, 255, 128, 128], [255, 255, 128, 128]], np.uint8)
    affine = np.array([[0.5, 0, 0, 10], [0, 0.8, 0, 20], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)
    sample = Sample("case", image, masks, alpha=image[0].copy(), trimap=trimap, spacing=(0.5, 0.8), affine=affine)
    small = resize_sample(sample, (2, 2))
    blocks = image[0].reshape(2, 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(small.image[0], blocks, rtol=1e-6)
    np.testing.assert_allclose(small.alpha, blocks, rtol=1e-6)
    np.testing.assert_array_equal(small.masks[1], [[True, False], [False, False]])
    np.testing.assert_array_equal(small.trimap, [[0, 128], [255, 128]])
    assert small.spacing == pytest.approx((1.0, 1.6))
    # Pixel (0, 0) of the 2x2 image is the centre of the 4x4 image's block (0..1, 0..1): index 0.5.
    expected = np.array([[1.0, 0, 0, 10.25], [0, 1.6, 0, 20.4], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(small.affine, expected)
    assert small.id == "case" and resize_sample(small, (2, 2)) is small

    ramp = Sample("ramp", np.array([[[0.0, 1.0]]], np.float32).repeat(2, axis=1), np.zeros((0, 2, 2), bool))
    large = resize_sample(ramp, (2, 4))
    # Bilinear at pixel centres: 4 outputs at source columns -0.25, 0.25, 0.75, 1.25 (clamped).
    np.testing.assert_allclose(large.image[0, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)
    assert large.masks.shape == (0, 2, 4)


def test_data_resize_applies_to_training_and_evaluation(tmp_path):
    samples = disc_samples(size=24)
    record = train(tiny_config("optim.epochs=1", "data.resize=[16, 12]"), tmp_path / "run", samples=samples)
    model, config = load_run(tmp_path / "run")
    assert config["data"]["resize"] == [16, 12]
    # Evaluation scored the predictions of the resized cases against their resized alphas.
    from medmat.engine.dataset import resize_sample

    case = record["cases"][0]
    small = resize_sample(next(s for s in samples if s.id == case["id"]), (16, 12))
    alpha = predict(model, small.image, num_samples=4)["alpha"]
    assert alpha.shape == (16, 12)
    assert matting_metrics(alpha, small.alpha, small.trimap == 128) == pytest.approx(case["region"])


def test_runs_saved_before_new_config_keys_still_resume(tmp_path):
    from medmat.engine.checkpoint import save_checkpoint

    samples = disc_samples()
    config = tiny_config("optim.epochs=1", "eval.every=0")
    first = train(config, tmp_path / "run", samples=samples)
    path = tmp_path / "run" / "checkpoint.pt"
    state = load_checkpoint(path)
    for key in ("resize", "train_trimaps", "noisy_trimaps"):
        del state["config"]["data"][key]  # as written before these keys existed
    save_checkpoint(path, **state)
    assert train(config, tmp_path / "run", samples=samples, resume=True)["mean"] == first["mean"]
    with pytest.raises(MedmatError, match="changed: data.train_trimaps"):
        train(tiny_config("optim.epochs=1", "eval.every=0", "data.train_trimaps=alpha"), tmp_path / "run",
              samples=samples, resume=True)


def test_output_size_is_passed_to_resolution_free_models_without_padding():
    from medmat.models import build_model

    torch.manual_seed(0)
    model = build_model("region_aware_matting", unet_filters=(4, 8), widths=(4, 8, 8), implicit_channels=8).eval()
    image = disc_samples(1, size=20)[0].image
    torch.manual_seed(1)
    predicted = predict_samples(model, [image, image], num_samples=2, output_size=(30, 26))
    torch.manual_seed(1)
    with torch.no_grad():
        direct = model({"image": torch.from_numpy(np.stack([image, image])), "output_size": torch.tensor([[30, 26]] * 2)}, 2)
    assert predicted[0]["alpha"].shape == (30, 26) and predicted[1]["sample_masks"].shape == (2, 30, 26)
    np.testing.assert_allclose(predicted[1]["alpha"], direct["alpha"][1, 0].numpy(), atol=1e-6)
    with pytest.raises(MedmatError, match="model 'TinyMattingModel' predicts at its input's size only"):
        predict(TinyMattingModel().eval(), image, output_size=(30, 26))


def test_moving_average_weights_are_validated_saved_as_final_and_resume(tmp_path):
    samples = disc_samples()
    config = tiny_config("optim.ema_decay=0.5")
    straight = train(config, tmp_path / "straight", samples=samples)
    final = load_checkpoint(tmp_path / "straight" / "final.pt")["model"]
    last = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    # final.pt holds the average, not the last step's weights, and the checkpoint keeps both.
    assert not torch.equal(final["alpha_head.weight"], last["model"]["alpha_head.weight"])
    assert torch.equal(final["alpha_head.weight"], last["ema"]["module.alpha_head.weight"])
    model, _ = load_run(tmp_path / "straight")
    assert torch.equal(model.state_dict()["alpha_head.weight"], final["alpha_head.weight"])

    with pytest.raises(Interrupted):
        train(config, tmp_path / "resumed", samples=samples, callbacks=[interrupt_in_third_epoch])
    resumed = train(config, tmp_path / "resumed", samples=samples, resume=True)
    assert resumed["mean"] == straight["mean"]
    resumed_final = load_checkpoint(tmp_path / "resumed" / "final.pt")["model"]
    assert all(torch.equal(resumed_final[key], value) for key, value in final.items())


def test_flip_averages_the_alpha_with_the_mirror_images():
    torch.manual_seed(0)
    model = TinyMattingModel().eval()
    image = disc_samples(1, size=20)[0].image
    image[:, :, :6] = 0.0  # not symmetric
    plain = predict(model, image, num_samples=3)
    mirrored = predict(model, image[..., ::-1].copy(), num_samples=3)
    flipped = predict(model, image, num_samples=3, flip=True)
    np.testing.assert_allclose(flipped["alpha"], (plain["alpha"] + mirrored["alpha"][..., ::-1]) / 2, atol=1e-6)
    assert not np.allclose(flipped["alpha"], plain["alpha"])
    assert flipped["sample_masks"].shape == plain["sample_masks"].shape


def test_flips_and_dihedral_average_every_view_mapped_back_onto_the_image():
    torch.manual_seed(0)
    model = TinyMattingModel().eval()
    image = disc_samples(1, size=20)[0].image[:, :, :16].copy()  # 20 x 16: a quarter turn changes the shape
    image[:, :4, :6] = 0.0  # no symmetry
    plain = predict(model, image, num_samples=3)["alpha"]
    views = {
        "lr": lambda a: a[..., ::-1], "ud": lambda a: a[..., ::-1, :], "half": lambda a: a[..., ::-1, ::-1],
        "transpose": lambda a: np.swapaxes(a, -1, -2),
        "anti": lambda a: np.swapaxes(a, -1, -2)[..., ::-1, ::-1],
        "quarter": lambda a: np.rot90(a, 1, axes=(-2, -1)), "three": lambda a: np.rot90(a, 3, axes=(-2, -1)),
    }
    inverse = {**views, "quarter": views["three"], "three": views["quarter"]}  # the others are their own inverse
    seen = {name: inverse[name](predict(model, view(image).copy(), num_samples=3)["alpha"]) for name, view in views.items()}
    flips = predict(model, image, num_samples=3, flip="flips")["alpha"]
    np.testing.assert_allclose(flips, (plain + seen["lr"] + seen["ud"] + seen["half"]) / 4, atol=1e-6)
    dihedral = predict(model, image, num_samples=3, flip="dihedral")["alpha"]
    np.testing.assert_allclose(dihedral, (plain + sum(seen.values())) / 8, atol=1e-6)
    assert predict(model, image, num_samples=3, flip="none")["alpha"].tolist() == plain.tolist()
    # The views draw from a fork of the generator: the masks drawn next are those drawn without views.
    following = {}
    for flip in (False, "dihedral"):
        torch.manual_seed(3)
        first = predict(model, image, num_samples=3, flip=flip)["sample_masks"]
        following[flip] = (first, predict(model, image, num_samples=3)["sample_masks"])
    np.testing.assert_array_equal(following[False][0], following["dihedral"][0])
    np.testing.assert_array_equal(following[False][1], following["dihedral"][1])
    with pytest.raises(MedmatError, match="test-time flip must be"):
        predict(model, image, flip="sideways")
    assert engine_config.SCHEMA["eval"]["flip"].choices == (False, True, *TEST_TIME_VIEWS)  # the config takes every view set


def test_moving_average_decay_warms_up_and_forgets_the_initial_weights():
    from torch.optim.swa_utils import AveragedModel

    from medmat.engine.optim import moving_average_update, warmed_up_decay

    assert warmed_up_decay(0.999, 0) == pytest.approx(0.1) and warmed_up_decay(0.999, 10**6) == 0.999
    # A weight that moves from 0 to 1 in the first step and stays: a fixed 0.999 would keep
    # 0.999 ** 900 = 41 % of the initial 0 after a lite fold's 900 steps; the warmed-up average
    # keeps under 1 %.
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    average = AveragedModel(model, multi_avg_fn=moving_average_update(0.999), use_buffers=True)
    average.update_parameters(model)  # the first update copies
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(900):
        average.update_parameters(model)
    assert 0.99 < float(average.module.weight.detach()) <= 1.0


def test_a_config_extends_another_and_states_only_what_it_changes(tmp_path):
    (tmp_path / "wider.yaml").write_text("extends: lite\nmodel:\n  matting_channels: [64, 64]\n")
    (tmp_path / "longer.yaml").write_text("extends: wider.yaml\noptim:\n  epochs: 7\n")
    lite, longer = load_config("lite"), load_config(tmp_path / "longer.yaml")
    assert longer["model"]["matting_channels"] == [64, 64] and longer["optim"]["epochs"] == 7
    # Every other key of a section the child touches is the parent's: merged key by key.
    assert longer["model"]["unet_filters"] == lite["model"]["unet_filters"]
    assert longer["optim"]["lr"] == lite["optim"]["lr"] and longer["loss"] == lite["loss"]
    assert "extends" not in longer


def test_a_config_extends_several_merged_in_order(tmp_path):
    (tmp_path / "recipe.yaml").write_text("optim:\n  epochs: 9\n  batch_size: 4\ntrain:\n  precision: bf16\n")
    (tmp_path / "short.yaml").write_text("optim:\n  epochs: 3\n")
    (tmp_path / "mine.yaml").write_text("extends: [lite, recipe.yaml, short.yaml]\noptim:\n  lr: 0.5\n")
    lite, mine = load_config("lite"), load_config(tmp_path / "mine.yaml")
    # Later parents win key by key (epochs from short.yaml), earlier ones keep the rest (batch_size,
    # precision), the file itself goes over all of them (lr), and lite gives what nobody states.
    assert mine["optim"]["epochs"] == 3 and mine["optim"]["batch_size"] == 4 and mine["optim"]["lr"] == 0.5
    assert mine["train"]["precision"] == "bf16" and mine["model"] == lite["model"]
    assert mine["optim"]["weight_decay"] == lite["optim"]["weight_decay"]


@pytest.mark.parametrize("text, message", [
    ("extends: first.yaml\n", "cycle"),
    ("extends: [lite, first.yaml]\n", "cycle"),
    ("extends: []\n", "must name a config"),
    ("extends: [lite, 3]\n", "must name a config"),
    ("extends: {lite: 1}\n", "must name a config"),
    ("extends: no_such_config\n", "unknown config"),
])
def test_a_bad_extends_is_a_one_line_error(tmp_path, text, message):
    (tmp_path / "first.yaml").write_text("extends: second.yaml\n")
    (tmp_path / "second.yaml").write_text(text)
    with pytest.raises(MedmatError, match=message) as raised:
        load_config(tmp_path / "first.yaml")
    assert "\n" not in str(raised.value)


CPU_CONFIGS = [name for name in packaged_configs() if name.endswith("_cpu")]


def test_every_model_family_has_a_cpu_config():
    lite_families = {name.removesuffix("_lite") for name in packaged_configs() if name.endswith("_lite")}
    assert {name.removesuffix("_cpu") for name in CPU_CONFIGS} == lite_families
    assert load_config("cpu") == load_config("medical_matting_cpu")


def test_the_cpu_recipe_is_one_file_that_every_cpu_config_extends():
    recipe = engine_config.read_config_file(engine_config.CONFIG_DIR / "recipes" / "cpu.yaml")
    assert "model" not in recipe and "recipes" not in " ".join(packaged_configs())
    for name in CPU_CONFIGS:
        config = load_config(name)
        assert {section: {key: config[section][key] for key in keys} for section, keys in recipe.items()} == recipe
        # Stated once: each extends the file instead of repeating its keys.
        stated = yaml.safe_load(engine_config.resolve_config_path(name).read_text())
        assert stated["extends"] == [name.removesuffix("_cpu") + "_lite", "recipes/cpu.yaml"]
        assert not any(set(stated.get(section) or {}) & set(keys) for section, keys in recipe.items())
        assert not {"optim", "data"} & set(stated)


@pytest.mark.parametrize("name", CPU_CONFIGS)
def test_cpu_config_is_its_lite_in_bfloat16_on_the_papers_schedule(name):
    lite, cpu = load_config(name.removesuffix("_cpu") + "_lite"), load_config(name)
    assert cpu["train"]["precision"] == "auto" and isinstance(cpu["train"]["channels_last"], bool)
    # The paper's Brain-growth schedule (Table III: 150 epochs at batch 4: the release's 2 images x
    # 2 augmented copies, docs/medical-matting.md) and the core model's intensity augmentation
    # (measured on each family: docs/medical-matting.md, region-aware.md, trimap-matting.md, dugmatting.md).
    assert cpu["optim"]["epochs"] == 150 and cpu["eval"]["every"] == 20
    # Everything else is the lite config's: the network, the recipe, the data and the evaluation
    # (but the region-aware decoder's leaky ReLU, which ended its stalled folds: docs/region-aware.md).
    same = ("train", "optim", "eval", "model", "data")
    assert {**cpu, **dict.fromkeys(same)} == {**lite, **dict.fromkeys(same)}
    intensity = {"intensity_scale": [0.7, 1.2], "intensity_gamma": [0.8, 1.25]}
    assert cpu["data"] == {**lite["data"], "copies_per_image": 2, **intensity}
    activation = {"decoder_activation": "leaky_relu"} if name == "region_aware_matting_cpu" else {}
    assert cpu["model"] == {**lite["model"], **activation}
    batch = 2 * lite["optim"]["batch_size"]
    assert cpu["optim"] == {**lite["optim"], "epochs": 150, "batch_size": batch}
    # AdaMatting's alpha averaged over the 8 views of the square: -2.4 to -2.9 % Table IV SAD on each of 4
    # seeds (docs/trimap-matting.md), and with the NIG head on each of 3 (docs/dugmatting.md); measured on
    # no other family, which keep their lite flip.
    views = "dihedral" if name in ("adamatting_cpu", "nig_adamatting_cpu") else lite["eval"]["flip"]
    assert cpu["eval"] == {**lite["eval"], "every": 20, "flip": views}
    # A capped fold trains again in the two families whose alpha layer sits behind a ReLU.
    refit = 1 if name in ("medical_matting_cpu", "tcp_matting_cpu") else 0
    assert cpu["train"]["refit_capped"] == refit and lite["train"]["refit_capped"] == 0
    assert {**cpu["train"], "precision": "fp32", "channels_last": False, "refit_capped": 0} == lite["train"]


def test_diverse_cpu_config_is_cpu_with_kl_balancing_and_the_prior_mean_code():
    cpu, diverse = load_config("cpu"), load_config("medical_matting_cpu_diverse")
    assert diverse["model"] == {**cpu["model"], "matting_latent": "prior_mean"}
    assert diverse["loss"] == {**cpu["loss"], "kl_weight": 0.001, "prior_kl_weight": 10.0}
    # Both keep one copy of 2 images a step, 120 epochs and no intensity augmentation, as they were
    # measured (cpu took 2 copies, 150 epochs and the augmentation later).
    as_measured = {"copies_per_image": 1, "intensity_scale": [1.0, 1.0], "intensity_gamma": [1.0, 1.0]}
    one_copy = {"optim": {**cpu["optim"], "batch_size": 2, "epochs": 120}, "data": {**cpu["data"], **as_measured}}
    assert {**diverse, "model": None, "loss": None} == {**cpu, **one_copy, "model": None, "loss": None}
    ensemble = load_config("medical_matting_cpu_ensemble")
    assert {key: ensemble[key] for key in one_copy} == one_copy
    model = build_model_from_config(diverse)
    assert model.prob_unet.matting_latent == "prior_mean"
