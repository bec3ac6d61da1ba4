"""Region-aware implicit matting: implicit functions, multi-scale fusion, resolution-free prediction."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medmat.data.sample import Sample
from medmat.engine import load_config, load_run, predict, train
from medmat.errors import MedmatError
from medmat.losses import build_criterion
from medmat.models import build_model, list_models
from medmat.models.implicit_decoder import (
    BilinearReader,
    ImplicitFunction,
    MultiScaleImplicitDecoder,
    nearest_code_positions,
    normalized_to_pixels,
    pixels_to_normalized,
    query_grid,
)
from medmat.models.region_aware_matting import RegionAwareMatting
from medmat.reporting.offsets import boundary_query_points, learned_offsets_figure
from tiny_configs import TINY_MODELS, load_benchmark, soft_discs, tiny_network

LN2 = math.log(2.0)

def _predict(model, image: torch.Tensor, **options) -> dict[str, torch.Tensor]:
    """The engine's prediction of a (B, C, H, W) tensor, as tensors of (B, 1, H, W) (masks (B, N, H, W))."""
    maps = predict(model, image.numpy(), **options)
    return {key: torch.from_numpy(value if key == "sample_masks" else value[:, None]) for key, value in maps.items()}


#: The tests count 3 sampled masks.
TINY = {**TINY_MODELS["region_aware_matting"], "num_samples": 3}


# Tiny networks: a second thread only waits on a shared CPU.
pytestmark = pytest.mark.usefixtures("single_thread")


def _tiny_model(**overrides) -> RegionAwareMatting:
    return tiny_network("region_aware_matting", **{**TINY, **overrides})


def _phantom(height: int = 24, width: int = 20, batch: int = 2) -> dict[str, torch.Tensor]:
    """Soft discs on a dark background: image, alpha, pseudo mask (alpha >= 0.5)."""
    image, alpha = soft_discs(height, width, batch, col_shift=1.0)
    return {"image": image, "alpha": alpha, "pseudo_mask": (alpha >= 0.5).float()}


def _assert_range(tensor: torch.Tensor, high: float = 1.0) -> None:
    assert torch.all(torch.isfinite(tensor))
    assert tensor.min().item() >= 0.0 and tensor.max().item() <= high + 1e-6


def _identity_function(channels: int, kernel_size: int = 2, learn_offsets: bool = True) -> ImplicitFunction:
    """f_theta(z, r) = relu(z): the function's output is the plain sum of the codes it reads."""
    function = ImplicitFunction(channels, channels, channels, kernel_size, learn_offsets)
    with torch.no_grad():
        function.project_codes.weight.copy_(torch.eye(channels)[:, :, None, None])
        function.project_codes.bias.zero_()
        function.project_relative.weight.zero_()
        function.output_layer.weight.copy_(torch.eye(channels))
        function.output_layer.bias.zero_()
    return function


# 3 x 3 map of 2 channels with distinct positive codes; the query sits between the four codes of
# rows 0-1, columns 0-1: continuous index (0.5, 0.5), normalised x = y = 2 * 1 / 3 - 1 = -1/3.
CODES = torch.arange(1.0, 19.0).reshape(1, 2, 3, 3)
BETWEEN_FIRST_FOUR = torch.tensor([-1 / 3, -1 / 3]).reshape(1, 1, 1, 2)


# --- coordinates -----------------------------------------------------------------------------------


def test_query_grid_holds_pixel_centres_and_pixel_conversions_invert():
    grid = query_grid(2, 4, batch=3)
    assert grid.shape == (3, 2, 4, 2)
    torch.testing.assert_close(grid[0, 0, :, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    torch.testing.assert_close(grid[0, :, 0, 1], torch.tensor([-0.5, 0.5]))
    points = torch.tensor([[0.0, 0.0], [1.0, 3.0], [0.25, 1.5]])
    torch.testing.assert_close(pixels_to_normalized(points, (2, 4))[1], torch.tensor([0.75, 0.5]))
    torch.testing.assert_close(normalized_to_pixels(pixels_to_normalized(points, (2, 4)), (2, 4)), points)


def test_nearest_codes_are_the_four_sub_spaces_or_the_centred_block():
    centres = torch.tensor([-2 / 3, 0.0, 2 / 3])  # code centres of a 3-wide map
    two = nearest_code_positions(BETWEEN_FIRST_FOUR, (3, 3), kernel_size=2)[0, 0, 0]
    expected = torch.stack([centres[[0, 1, 0, 1]], centres[[0, 0, 1, 1]]], dim=-1)  # x fastest
    torch.testing.assert_close(two, expected)
    # A query near code (row 2, col 1): one code for k=1; for k=3 the block around it, clamped
    # at the bottom border (row 3 does not exist).
    near = torch.tensor([0.1, 0.6]).reshape(1, 1, 1, 2)
    torch.testing.assert_close(nearest_code_positions(near, (3, 3), 1)[0, 0, 0], torch.tensor([[0.0, 2 / 3]]))
    three = nearest_code_positions(near, (3, 3), 3)[0, 0, 0]
    assert three.shape == (9, 2)
    torch.testing.assert_close(three[:, 0], centres[[0, 1, 2] * 3])
    torch.testing.assert_close(three[:, 1], centres[[1, 1, 1, 2, 2, 2, 2, 2, 2]])


# --- implicit functions ------------------------------------------------------------------------------


def test_local_ensemble_sums_the_four_nearest_codes():
    function = _identity_function(2, learn_offsets=False)
    value = function(CODES, BETWEEN_FIRST_FOUR)[0, 0, 0]
    torch.testing.assert_close(value, CODES[0, :, 0:2, 0:2].sum(dim=(1, 2)))


def test_relative_coordinates_reach_the_decoder():
    # Codes contribute nothing; f_theta = relu(dx): the two right-hand codes lie half a cell
    # left of the query (dx = +0.5), the two left-hand ones half a cell right (dx = -0.5).
    function = _identity_function(1, learn_offsets=False)
    with torch.no_grad():
        function.project_codes.weight.zero_()
        function.project_relative.weight.copy_(torch.tensor([[1.0, 0.0]]))
    value = function(torch.zeros(1, 1, 3, 3), BETWEEN_FIRST_FOUR)
    torch.testing.assert_close(value, torch.full((1, 1, 1, 1), 2 * 0.5))


def test_zero_offsets_are_the_local_ensemble_and_learned_offsets_move_the_codes():
    region_aware = _identity_function(2, learn_offsets=True)
    local = _identity_function(2, learn_offsets=False)
    assert torch.count_nonzero(region_aware.offset_conv.weight) == 0  # initialised at zero
    queries = query_grid(5, 4)
    features = torch.rand(1, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(region_aware(features, queries), local(features, queries))

    with torch.no_grad():  # every slot moves one cell right: dx = 1, dy = 0
        region_aware.offset_conv.bias.copy_(torch.tensor([1.0, 0.0] * 4))
    positions = region_aware.code_positions(CODES, BETWEEN_FIRST_FOUR)
    base = nearest_code_positions(BETWEEN_FIRST_FOUR, (3, 3), 2)
    torch.testing.assert_close(positions - base, torch.tensor([2 / 3, 0.0]).expand_as(base))
    value = region_aware(CODES, BETWEEN_FIRST_FOUR)[0, 0, 0]
    torch.testing.assert_close(value, CODES[0, :, 0:2, 1:3].sum(dim=(1, 2)))
    assert not torch.allclose(region_aware(features, queries), local(features, queries))

    with torch.no_grad():  # half a cell down: bilinear between rows (0, 1) and rows (1, 2)
        region_aware.offset_conv.bias.copy_(torch.tensor([0.0, 0.5] * 4))
    value = region_aware(CODES, BETWEEN_FIRST_FOUR)[0, 0, 0]
    rows = 0.5 * (CODES[0, :, 0:2, 0:2] + CODES[0, :, 1:3, 0:2])
    torch.testing.assert_close(value, rows.sum(dim=(1, 2)))


def test_bilinear_reader_is_bilinear_upsampling():
    reader = BilinearReader(2, 2, 2)
    with torch.no_grad():
        reader.project_codes.weight.copy_(torch.eye(2)[:, :, None, None])
        reader.project_codes.bias.zero_()
        reader.output_layer.weight.copy_(torch.eye(2))
        reader.output_layer.bias.zero_()
    read = reader(CODES, query_grid(7, 5)).permute(0, 3, 1, 2)
    torch.testing.assert_close(read, F.interpolate(CODES, size=(7, 5), mode="bilinear", align_corners=False))


def test_multi_scale_decoder_reads_every_scale_at_any_size():
    maps = [torch.rand(2, 4, 8, 6), torch.rand(2, 6, 4, 3), torch.rand(2, 5, 2, 2)]
    decoder = MultiScaleImplicitDecoder([4, 6, 5], hidden_channels=3, kernel_size=3)
    assert decoder(maps, query_grid(11, 7, batch=2)).shape == (2, 1, 11, 7)
    assert decoder.output_block[0].in_features == 3 * 3  # Eq. 3: the scales concatenated
    assert [p.shape for p in decoder.code_positions(maps, query_grid(2, 2, batch=2))] == [(2, 2, 2, 9, 2)] * 3
    with pytest.raises(ValueError, match="3 scales"):
        decoder(maps[:2], query_grid(4, 4, batch=2))


@pytest.mark.parametrize("decoder_kind", ["region_aware", "bilinear"])
def test_a_unit_negative_on_every_query_learns_only_with_the_leaky_activation(decoder_kind):
    # The stall on Brain-growth: output-block units pushed below zero everywhere never recover
    # under a ReLU; the leaky ReLU keeps their gradient.
    maps = [torch.rand(1, 4, 8, 8), torch.rand(1, 4, 4, 4)]
    gradients = {}
    for activation in ("relu", "leaky_relu"):
        torch.manual_seed(0)
        decoder = MultiScaleImplicitDecoder([4, 4], hidden_channels=3, decoder=decoder_kind, activation=activation)
        with torch.no_grad():
            decoder.output_block[0].bias[0] = -1.0e3
            decoder.output_block[2].weight.fill_(1.0)
        decoder(maps, query_grid(8, 8)).sum().backward()
        gradients[activation] = decoder.output_block[0].weight.grad
    assert torch.all(gradients["relu"][0] == 0) and torch.all(gradients["relu"][1:].abs().sum(1) > 0)
    assert torch.all(gradients["leaky_relu"].abs().sum(1) > 0)
    with pytest.raises(ValueError, match="activation must be one of"):
        MultiScaleImplicitDecoder([4], activation="tanh")


# --- the model -----------------------------------------------------------------------------------


def test_registry_and_option_checks():
    assert "region_aware_matting" in list_models()
    assert isinstance(build_model("region_aware_matting", **TINY), RegionAwareMatting)
    with pytest.raises(MedmatError, match="decoder must be one of"):
        build_model("region_aware_matting", **TINY, decoder="deformable")
    with pytest.raises(MedmatError, match="scales must be <= 3"):
        build_model("region_aware_matting", **TINY, scales=4)
    with pytest.raises(MedmatError, match="offset_kernel"):
        build_model("region_aware_matting", **TINY, offset_kernel=0)
    with pytest.raises(MedmatError, match="decoder_activation must be one of relu, leaky_relu"):
        build_model("region_aware_matting", **TINY, decoder_activation="gelu")


def test_outputs_in_training_and_evaluation():
    model = _tiny_model().train()
    outputs = model(_phantom())
    for key in ("alpha", "alpha_logits", "uncertainty_map", "lesion_uncertainty", "mask_logits"):
        assert outputs[key].shape == (2, 1, 24, 20), key
    assert outputs["sample_masks"].shape == (2, 3, 24, 20) and outputs["kl"].shape == (2,)
    _assert_range(outputs["alpha"])
    _assert_range(outputs["uncertainty_map"], LN2)
    torch.testing.assert_close(outputs["alpha"], torch.sigmoid(outputs["alpha_logits"]))
    with pytest.raises(ValueError, match="pseudo_mask"):
        model({"image": _phantom()["image"]})
    evaluated = model.eval()({"image": _phantom()["image"]})
    assert "kl" not in evaluated and evaluated["alpha"].shape == (2, 1, 24, 20)
    _assert_range(evaluated["lesion_uncertainty"], LN2)


def test_predict_at_other_sizes_and_at_the_input_size():
    model = _tiny_model().train()
    image = _phantom()["image"]
    larger = _predict(model, image, num_samples=4, output_size=(37, 50))
    assert model.training  # mode restored
    assert larger["alpha"].shape == (2, 1, 37, 50) and larger["sample_masks"].shape == (2, 4, 37, 50)
    assert larger["uncertainty_map"].shape == larger["lesion_uncertainty"].shape == (2, 1, 37, 50)
    _assert_range(larger["alpha"])
    _assert_range(larger["uncertainty_map"], LN2)
    assert _predict(model, image, num_samples=2, output_size=(9, 7))["alpha"].shape == (2, 1, 9, 7)

    model.num_samples = 4  # forward draws num_samples score maps; the prediction is given 4
    torch.manual_seed(5)
    same = _predict(model, image, num_samples=4, output_size=(24, 20))
    torch.manual_seed(5)
    forward = model.eval()({"image": image})
    torch.testing.assert_close(same["alpha"], forward["alpha"])
    torch.testing.assert_close(same["uncertainty_map"], forward["uncertainty_map"])
    with pytest.raises(MedmatError, match="output size .* needs 2 values|output size .* positive integers"):
        _predict(model, image, output_size=(0, 5))


def test_implicit_prediction_is_read_at_positions_not_resized():
    # Pixel (i, j) of an H x W grid and pixel (3i + 1, 3j + 1) of a 3H x 3W grid share a centre:
    # a resolution-free matte takes the same value there, and is not the resized coarse matte.
    model = _tiny_model().eval()
    image = _phantom()["image"]
    torch.manual_seed(2)
    coarse = _predict(model, image, num_samples=2)["alpha"]
    torch.manual_seed(2)
    fine = _predict(model, image, num_samples=2, output_size=(72, 60))["alpha"]
    torch.testing.assert_close(fine[..., 1::3, 1::3], coarse)
    assert not torch.allclose(fine, F.interpolate(coarse, size=(72, 60), mode="bilinear", align_corners=False))


def test_bilinear_decoder_resizes_its_matte():
    model = _tiny_model(decoder="bilinear").eval()
    image = _phantom()["image"]
    torch.manual_seed(3)
    coarse = _predict(model, image, num_samples=2)["alpha"]
    torch.manual_seed(3)
    fine = _predict(model, image, num_samples=2, output_size=(48, 30))
    resized = F.interpolate(coarse, size=(48, 30), mode="bilinear", align_corners=False)
    torch.testing.assert_close(fine["alpha"], resized)
    with pytest.raises(ValueError, match="no codes"):
        model.code_positions(image, torch.tensor([[3.0, 4.0]]))


def test_learned_offsets_move_the_code_positions_of_the_model():
    model = _tiny_model().eval()
    image = _phantom()["image"][:1]
    points = torch.tensor([[5.0, 5.0], [10.5, 3.2]])
    before = model.code_positions(image, points)
    # At initialisation the offsets are zero: scale 1 reads the pixels (5, 5), (5, 6), (6, 5), (6, 6).
    torch.testing.assert_close(before[0][0, 0], torch.tensor([[5.0, 5.0], [5.0, 6.0], [6.0, 5.0], [6.0, 6.0]]))
    torch.manual_seed(4)
    alpha_before = _predict(model, image, num_samples=2)["alpha"]
    scale_two = model.matting_net.decoder.readers[1]
    with torch.no_grad():  # every slot of scale 2 one cell (two input pixels) down and one cell left
        scale_two.offset_conv.bias.copy_(torch.tensor([-1.0, 1.0] * 4))
    after = model.code_positions(image, points)
    torch.testing.assert_close(after[1] - before[1], torch.tensor([2.0, -2.0]).expand_as(before[1]))
    torch.testing.assert_close(after[0], before[0])
    torch.manual_seed(4)
    assert not torch.allclose(_predict(model, image, num_samples=2)["alpha"], alpha_before)


@pytest.mark.parametrize("scales", [1, 2, 3])
@pytest.mark.parametrize("offset_kernel", [1, 2, 3])
def test_scales_and_kernels_build_and_run(scales, offset_kernel):
    model = _tiny_model(scales=scales, offset_kernel=offset_kernel).train()
    assert len(model.matting_net.units) == len(model.matting_net.decoder.readers) == scales
    assert all(reader.num_slots == offset_kernel**2 for reader in model.matting_net.decoder.readers)
    batch = _phantom(16, 12)
    assert model(batch)["alpha"].shape == (2, 1, 16, 12)
    assert _predict(model, batch["image"], num_samples=2, output_size=(20, 10))["alpha"].shape == (2, 1, 20, 10)
    positions = model.code_positions(batch["image"], torch.tensor([[3.0, 4.0]]))
    assert [p.shape for p in positions] == [(2, 1, offset_kernel**2, 2)] * scales


def test_every_parameter_including_the_offset_convolutions_gets_a_gradient():
    model = _tiny_model().train()
    criterion = build_criterion({"name": "medical_matting", "weighting": "none"})
    batch = _phantom()
    total, parts = criterion(model(batch), batch, epoch=0, num_epochs=1)
    assert {"alpha_l1", "alpha_gradient", "ce", "kl"} <= set(parts)
    total.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []
    for reader in model.matting_net.decoder.readers:
        assert reader.offset_conv.weight.grad.abs().sum() > 0


def test_decoder_path_carries_coarse_features_into_the_finest_map():
    torch.manual_seed(0)
    image = torch.rand(1, 1, 16, 16)
    latent = torch.rand(1, 4, 16, 16)  # TINY's Prob. U-Net gives 4 latent channels
    uncertainty = torch.rand(1, 1, 16, 16)
    for decoder_path in (False, True):
        net = _tiny_model(decoder_path=decoder_path).matting_net.eval()
        features = net.encode(image, latent, uncertainty)
        assert [tuple(f.shape[1:]) for f in features] == [(4, 16, 16), (8, 8, 8), (8, 4, 4)]
        # Change the coarsest unit's weights: only a decoder path lets that reach the finest map.
        with torch.no_grad():
            for parameter in net.units[2].parameters():
                parameter.add_(torch.randn_like(parameter))
        finest_changed = not torch.allclose(net.encode(image, latent, uncertainty)[0], features[0])
        assert finest_changed == decoder_path


# --- engine, config, scripts, figure ----------------------------------------------------------------


def test_packaged_config_differs_from_lite_only_in_the_model():
    lite, implicit = load_config("lite"), load_config("region_aware_matting_lite")
    assert {section for section in lite if lite[section] != implicit[section]} == {"model"}
    assert implicit["loss"]["name"] == "medical_matting"
    kwargs = {key: value for key, value in implicit["model"].items() if key != "name"}
    model = build_model(implicit["model"]["name"], **kwargs)
    assert model.decoder_kind == "region_aware" and len(model.matting_net.decoder.readers) == 3
    assert model.prob_unet.latent_channels == lite["model"]["unet_filters"][0]


def test_trains_through_the_engine_and_predicts_at_any_size(tmp_path):
    config = load_config(
        {
            "model": {"name": "region_aware_matting", "unet_filters": [4, 8], "widths": [4, 8, 8],
                      "implicit_channels": 8, "num_samples": 2},
            "loss": {"name": "medical_matting", "weighting": "oaws"},
            "data": {"dataset": "phantom:8", "input_size": [32, 32]},
            "split": {"scheme": "kfold", "k": 2, "fold": 0},
            "optim": {"lr": 1e-3, "batch_size": 2, "epochs": 1},
            "eval": {"num_samples": 2, "every": 0},
            "train": {"progress": False, "tensorboard": False, "num_threads": 1},
        }
    )
    record = train(config, tmp_path / "run")
    assert len(record["cases"]) == 4 and math.isfinite(record["mean"]["whole"]["SAD"])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["model"] == "region_aware_matting"
    model, _ = load_run(tmp_path / "run")
    assert isinstance(model, RegionAwareMatting) and not model.training
    predicted = _predict(model, torch.rand(1, 1, 32, 32), num_samples=2, output_size=(64, 64))
    assert predicted["alpha"].shape == (1, 1, 64, 64)


def test_forward_reads_alpha_at_the_batch_output_size():
    batch = _phantom(16, 16)
    batch["output_size"] = torch.tensor([[32, 32], [32, 32]])
    for decoder in ("region_aware", "bilinear"):
        model = _tiny_model(decoder=decoder).train()
        outputs = model(batch)
        assert outputs["alpha"].shape == outputs["alpha_logits"].shape == (2, 1, 32, 32)
        assert outputs["lesion_uncertainty"].shape == (2, 1, 32, 32)
        assert outputs["uncertainty_map"].shape == outputs["mask_logits"].shape == (2, 1, 16, 16)
        _assert_range(outputs["alpha"])
        # The criterion trains it against 32 x 32 targets (the gradient region is resized).
        targets = {**batch, "alpha": F.interpolate(batch["alpha"], size=(32, 32), mode="bilinear")}
        total, _ = build_criterion({"name": "medical_matting"})(outputs, targets, 0, 1)
        total.backward()
        assert math.isfinite(total.item())
    model = _tiny_model().eval()
    torch.manual_seed(3)
    read = model(batch)["alpha"]
    torch.manual_seed(3)
    predicted = _predict(model, batch["image"], num_samples=TINY["num_samples"], output_size=(32, 32))["alpha"]
    torch.testing.assert_close(read, predicted)


def test_liif_training_reads_inputs_small_and_scores_at_full_size(tmp_path):
    from medmat.data.phantom import make_phantom_dataset
    from medmat.engine.dataset import MattingDataset, to_model_input
    from tiny_configs import tiny_phantom_config

    config = tiny_phantom_config({"name": "region_aware_matting", **TINY, "num_samples": 2})
    config["data"]["model_input_size"] = 16
    config["optim"]["epochs"] = 2
    config["eval"]["every"] = 1
    dataset = MattingDataset(make_phantom_dataset(2, size=32), model_input_size=(16, 16))
    item = dataset[0]
    assert item["image"].shape == item["pseudo_mask"].shape == (1, 16, 16)
    assert item["alpha"].shape == (1, 32, 32) and item["masks"].shape[-2:] == (32, 32)
    assert item["output_size"].tolist() == [32, 32]
    assert set(torch.unique(item["pseudo_mask"]).tolist()) <= {0.0, 1.0}
    # The image is averaged over 2 x 2 blocks (area), as resize_sample does.
    full = {"image": torch.rand(1, 4, 4), "alpha": torch.rand(1, 4, 4), "trimap": torch.full((1, 4, 4), 0.5)}
    small = to_model_input(full, (2, 2))
    torch.testing.assert_close(small["image"][0], full["image"][0].reshape(2, 2, 2, 2).mean(dim=(1, 3)))
    assert torch.equal(small["trimap"], torch.full((1, 2, 2), 0.5)) and small["alpha"] is full["alpha"]

    record = train(config, tmp_path / "run")
    assert math.isfinite(record["mean"]["whole"]["SAD"]) and len(record["cases"]) == 4
    log = (tmp_path / "run" / "log.csv").read_text()
    assert "val_SAD" in log.splitlines()[0]
    # `medmat evaluate` scores the run as it was trained (small inputs, full-size alpha).
    from medmat.cli.main import main

    assert main(["evaluate", "--run", str(tmp_path / "run"), "-o", str(tmp_path / "eval"), "--samples", "2"]) == 0
    evaluated = json.loads((tmp_path / "eval" / "summary.json").read_text())["per_fold"][0]["mean"]
    assert evaluated["whole"]["SAD"] == pytest.approx(record["mean"]["whole"]["SAD"], rel=1e-6)

    medical = tiny_phantom_config({"name": "medical_matting", "unet_filters": [4, 8], "num_samples": 2})
    medical["data"]["model_input_size"] = 16
    with pytest.raises(MedmatError, match="output_size"):
        train(medical, tmp_path / "refused")


def _script(name: str):
    return load_benchmark(name)


def test_downsampling_averages_pixels_and_keeps_trimap_levels():
    script = _script("implicit_resolution")
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4) / 15
    masks = np.zeros((1, 4, 4), bool)
    masks[0, :2, :2] = True
    masks[0, 2, 2] = True  # one pixel of four: below half, dropped
    trimap = np.array([[0, 0, 128, 128], [0, 0, 128, 128], [255, 255, 128, 128], [255, 255, 128, 128]], np.uint8)
    sample = Sample("case", image, masks, alpha=image[0].copy(), trimap=trimap)
    small = script.downsample_sample(sample, (2, 2))
    blocks = image[0].reshape(2, 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(small.image[0], blocks, rtol=1e-6)
    np.testing.assert_allclose(small.alpha, blocks, rtol=1e-6)
    np.testing.assert_array_equal(small.masks[0], [[True, False], [False, False]])
    np.testing.assert_array_equal(small.trimap, [[0, 128], [255, 128]])
    assert small.id == "case"


def test_resolution_script_smoke_run(tmp_path, capsys):
    script = _script("implicit_resolution")
    assert script.main(["score", "--smoke", "--output", str(tmp_path / "resolution.json")]) == 0
    assert "| implicit | whole |" in capsys.readouterr().out
    saved = json.loads((tmp_path / "resolution.json").read_text())
    assert saved["low_size"] == 16 and saved["high_size"] == [32, 32] and saved["summary"]["num_cases"] == 2
    for case in saved["cases"]:
        assert set(case["implicit"]["whole"]) == {"SAD", "MSE", "Grad", "Conn"}


def test_upsampling_floor_is_zero_for_smooth_mattes_and_positive_for_sharp_ones():
    script = _script("implicit_resolution")
    image = np.full((1, 8, 8), 0.5, dtype=np.float32)
    masks = np.zeros((1, 8, 8), bool)
    sharp = np.zeros((8, 8), np.float32)
    sharp[:, 3:] = 1.0  # an edge inside a 2 x 2 block: averaged to 0.5, then smeared
    cases = script.floor_cases(
        [Sample("flat", image, masks, alpha=np.full((8, 8), 0.25, np.float32)), Sample("sharp", image, masks, alpha=sharp)],
        low_size=4,
    )
    assert [case["id"] for case in cases] == ["flat", "sharp"]
    assert cases[0]["bilinear"]["whole"]["SAD"] == pytest.approx(0.0, abs=1e-9)
    assert cases[1]["bilinear"]["whole"]["SAD"] > 0 and cases[1]["region_name"] == "whole"


def test_boundary_points_follow_the_half_alpha_rim():
    alpha = np.tile(np.arange(9) / 8, (5, 1))  # alpha = 0.5 on column 4
    np.testing.assert_array_equal(boundary_query_points(alpha, count=2, min_distance=3), [[0, 4], [3, 4]])


def test_offsets_figure_is_written(tmp_path):
    model = _tiny_model().eval()
    image = _phantom(batch=1)["image"][0].numpy()
    path = learned_offsets_figure(tmp_path / "offsets.png", model, image, count=3, title="tiny")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_dead_units_script_finds_a_unit_that_never_fires():
    script = load_benchmark("dead_units")
    torch.manual_seed(0)
    model = build_model("region_aware_matting", **TINY).eval()
    with torch.no_grad():
        model.matting_net.decoder.output_block[0].bias[0] = -1.0e3
    images = [np.random.default_rng(seed).random((1, 16, 16)) for seed in range(2)]
    fractions = script.active_fractions(model, "matting_net.decoder", images)
    assert set(fractions) == {"readers.0.activation", "readers.1.activation", "readers.2.activation", "output_block.1"}
    output_block = fractions["output_block.1"]
    assert output_block.shape == (TINY["implicit_channels"],) and output_block[0] == 0
    assert torch.all((output_block >= 0) & (output_block <= 1)) and output_block.max() > 0
    with pytest.raises(MedmatError, match="no submodule"):
        script.active_fractions(model, "matting_net.nowhere", images)
    with pytest.raises(MedmatError, match="no ReLU"):
        script.active_fractions(model, "matting_net.attention.mlp.0", images)  # a Linear layer
