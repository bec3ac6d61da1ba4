"""Typed training configs: one declaration per key, model and loss checked against their constructors."""

from __future__ import annotations

import re

import pytest
import torch
import yaml
from torch import nn

from medmat.cli.main import main
from medmat.engine import config as engine_config
from medmat.engine.config import DEFAULTS, OPTIONS, SCHEMA, Option, load_config
from medmat.engine.optim import OPTIMIZERS, build_optimizer
from medmat.errors import MedmatError
from medmat.models.registry import MODELS
from medmat.registry import Registry

MEDICAL_TINY = {"name": "medical_matting", "unet_filters": [4, 8], "matting_channels": [4, 4], "num_samples": 2}


def load_raising(source, overrides=()) -> str:
    """The problem (the message without the file) of the one-line MedmatError that loading raises."""
    with pytest.raises(MedmatError) as raised:
        load_config(source, overrides)
    assert "\n" not in str(raised.value)
    return raised.value.problem


# --- one declaration per key -------------------------------------------------------------------


def test_defaults_are_derived_from_the_schema():
    assert set(DEFAULTS) == set(SCHEMA)
    assert DEFAULTS["model"] == {"name": "medical_matting"} and DEFAULTS["loss"] == {"name": "medical_matting"}
    for key, option in OPTIONS.items():
        assert isinstance(option, Option)
        assert engine_config.get_key(DEFAULTS, key) == option.default
    # Every default passes its own checks.
    assert load_config({}) == DEFAULTS
    # The defaults are copies: a loaded config does not share the declaration's lists.
    config = load_config({})
    config["optim"]["betas"].append(0.5)
    assert OPTIONS["optim.betas"].default == [0.9, 0.999]


def test_a_new_key_is_one_line(monkeypatch):
    data = dict(SCHEMA["data"], crop_margin=Option(3, (int,), minimum=0, doc="test"))
    monkeypatch.setitem(SCHEMA, "data", data)
    monkeypatch.setitem(OPTIONS, "data.crop_margin", data["crop_margin"])
    monkeypatch.setitem(DEFAULTS, "data", dict(DEFAULTS["data"], crop_margin=3))
    assert load_config({})["data"]["crop_margin"] == 3
    assert "data.crop_margin must be >= 0, got -1" in load_raising({}, ["data.crop_margin=-1"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=fast", "optim.lr must be int or float, got 'fast'"),
        ("optim.lr=-1", "optim.lr must be >= 0, got -1"),
        ("optim.batch_size=0", "optim.batch_size must be >= 1, got 0"),
        ("optim.batch_size=true", "optim.batch_size must be int, got True"),
        ("optim.name=sgd", "optim.name must be one of adam, adamw, got 'sgd'"),
        ("optim.betas=[0.9]", r"optim.betas must be two numbers in \[0, 1\], got \[0.9\]"),
        ("optim.grad_clip=high", "optim.grad_clip must be int or float or null, got 'high'"),
        ("train.tensorboard=maybe", "train.tensorboard must be one of auto, True, False, got 'maybe'"),
        ("train.num_threads=0", "train.num_threads must be >= 1, got 0"),
        ("split.scheme=random", "split.scheme must be one of auto, brain-growth, kfold, group"),
        ("data.input_size=[64, 1]", r"data.input_size must be an int or \[H, W\] of ints >= 2"),
        ("seed=1.5", "seed must be int, got 1.5"),
        ("data.intensity_scale=[0, 1.2]", r"data.intensity_scale must be \[low, high\] with 0 < low <= high"),
        ("data.intensity_gamma=[1.5, 0.7]", r"data.intensity_gamma must be \[low, high\] with 0 < low <= high"),
        ("optim.warmup=2", r"unknown config key optim.warmup \(known: name, lr,"),
    ],
)
def test_wrong_type_choice_bound_or_key_is_refused_with_its_name(override, message):
    assert re.search(message, load_raising("lite", [override]))


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    for sections, problem in [
        ({"optim": {"batch_size": 0}}, "optim.batch_size must be >= 1, got 0"),
        ({"data": {"resize": [64]}}, "data.resize must be an int or [H, W]"),
        ({"model": {"name": "medical_matting", "filters": [8]}}, "unknown option model.filters"),
        ({"loss": {"name": "nig", "base": {"name": "medical_matting", "kl": 1}}}, "unknown option loss.base.kl"),
    ]:
        path.write_text(yaml.safe_dump(sections))
        with pytest.raises(MedmatError) as raised:
            load_config(path)
        assert str(raised.value).startswith(f"{path}: {problem}") and raised.value.path == str(path)


def test_a_value_the_model_refuses_is_one_line_naming_the_file_before_any_data_is_read(tmp_path, capsys):
    """Option names are checked when loading; values only the constructors judge (a size that is
    letters or a float) are built once by the training commands, which name the file."""
    for value, problem in (("[a, b]", "model option unet_filters must be positive integers, got ['a', 'b']"),
                           ("7.5", "model option unet_filters must be a positive integer or a list of them, got 7.5")):
        path = tmp_path / "mine.yaml"
        path.write_text(f"extends: lite\nmodel:\n  unet_filters: {value}\n")
        state = torch.random.get_rng_state()
        with pytest.raises(MedmatError) as raised:
            engine_config.check_buildable(load_config(path), path)
        assert str(raised.value) == f"{path}: {problem}"
        assert torch.equal(torch.random.get_rng_state(), state)
        capsys.readouterr()
        # the dataset does not exist: the value's error comes first, so no data is read
        assert main(["train", "--config", str(path), "--run-dir", str(tmp_path / "run"), "--data", str(tmp_path / "none")]) == 1
        assert capsys.readouterr().err.strip() == f"medmat: error: {path}: {problem}"
    state = torch.random.get_rng_state()
    engine_config.check_buildable(load_config("lite"))  # a good config builds, leaving the random state
    assert torch.equal(torch.random.get_rng_state(), state)


def test_number_strings_are_read_as_floats_where_a_float_is_meant():
    config = load_config("lite", ["optim.lr=1e-3", "optim.grad_clip=5e-1"])
    assert config["optim"]["lr"] == pytest.approx(1e-3) and config["optim"]["grad_clip"] == pytest.approx(0.5)
    assert "data.dataset" not in [key for key, option in OPTIONS.items() if float in option.types]


# --- model and loss checked at load time --------------------------------------------------------


def test_unknown_model_option_is_refused_with_its_name_when_loading():
    message = load_raising("lite", ["model.foo=1"])
    assert message.startswith("unknown option model.foo for model 'medical_matting' (it takes: ")
    assert "unet_filters" in message and "matting_channels" in message


def test_unknown_loss_option_is_refused_with_its_name_when_loading():
    message = load_raising("lite", ["loss.kl_scale=10"])
    assert message.startswith("unknown option loss.kl_scale for loss 'medical_matting' (it takes: ")
    assert "kl_weight" in message


def test_unregistered_model_or_loss_name_is_refused_when_loading():
    message = load_raising("lite", ["model.name=dim"])
    assert message.startswith("unknown model 'dim' (model.name); known models: ") and "medical_matting" in message
    message = load_raising("lite", ["loss.name=nope"])
    assert message.startswith("unknown loss 'nope' (loss.name); known losses: ")
    assert "model.name must name a registered model" in load_raising("lite", ["model.name=7"])


def test_options_of_another_model_are_refused_after_switching_the_name():
    # lite's medical_matting options do not configure AdaMatting.
    message = load_raising("lite", ["model.name=adamatting"])
    assert "for model 'adamatting'" in message and message.startswith("unknown option model.")


def test_missing_required_option_is_refused_when_loading():
    assert load_raising({"model": {"name": "nig"}}) == "model 'nig' needs option model.base"


def test_nested_nig_bases_are_checked_recursively():
    nig = load_config("nig_medical_matting_lite")
    assert "in_channels" not in nig["model"]["base"]  # the wrapper passes it: accepted without
    message = load_raising("nig_medical_matting_lite", ["model.base.foo=1"])
    assert message.startswith("unknown option model.base.foo for model 'medical_matting' (it takes: ")
    message = load_raising("nig_medical_matting_lite", ["loss.base.kl_scale=1"])
    assert message.startswith("unknown option loss.base.kl_scale for loss 'medical_matting'")
    message = load_raising("nig_adamatting_lite", ["model.base.name=dim"])
    assert message.startswith("unknown model 'dim' (model.base.name); known models: ")
    # Options of the wrapper itself are still its own.
    assert load_raising("nig_medical_matting_lite", ["model.unet_filters=[4, 8]"]).startswith(
        "unknown option model.unet_filters for model 'nig'"
    )
    # A loss without a base criterion.
    assert load_config("nig_medical_matting_lite", ["loss.base=null"])["loss"]["base"] is None


def test_a_config_that_loads_builds():
    from medmat.losses import build_criterion
    from medmat.models import build_model

    nig_loss = {"name": "nig", "base": {"name": "medical_matting"}}
    config = load_config({"model": {"name": "nig", "base": MEDICAL_TINY}, "loss": nig_loss})
    options = {key: value for key, value in config["model"].items() if key != "name"}
    assert isinstance(build_model(config["model"]["name"], **options), nn.Module)
    assert isinstance(build_criterion(config["loss"]), nn.Module)


# --- the registry's check -----------------------------------------------------------------------


class _Part(nn.Module):
    def __init__(self, size: int, scale: float = 1.0):
        super().__init__()
        self.size, self.scale = size, scale


class _Wrapper(nn.Module):
    def __init__(self, inner=None, gain: float = 1.0):
        super().__init__()
        self.inner = inner


class _Open(nn.Module):
    def __init__(self, **options):
        super().__init__()
        self.options = options


def small_registry() -> Registry:
    registry = Registry("part", "parts")
    registry.register("part")(_Part)
    registry.register("wrapper")(_Wrapper)
    registry.register("open")(_Open)
    return registry


def test_check_options_names_the_key_and_what_the_class_takes():
    registry = small_registry()
    assert registry.check_options("part", {"size": 2}) is _Part
    with pytest.raises(MedmatError, match=r"^unknown option colour for part 'part' \(it takes: size, scale\)$"):
        registry.check_options("part", {"size": 2, "colour": 1})
    with pytest.raises(MedmatError, match=r"^f.yaml: unknown option sec.colour for part 'part'"):
        registry.check_options("part", {"size": 2, "colour": 1}, "sec", "f.yaml")
    with pytest.raises(MedmatError, match="^part 'part' needs option size$"):
        registry.check_options("part", {})
    with pytest.raises(MedmatError, match="^unknown part 'nope'; known parts: open, part, wrapper$"):
        registry.check_options("nope", {})
    registry.check_options("open", {"anything": 1})  # **kwargs takes any key


def test_check_options_recurses_into_nested_sections_keys_only():
    registry = small_registry()
    # The builder of the nested section may pass its required "size" itself.
    registry.check_options("wrapper", {"inner": {"name": "part", "scale": 2.0}}, "model")
    with pytest.raises(MedmatError, match=r"^unknown option model.inner.colour for part 'part'"):
        registry.check_options("wrapper", {"inner": {"name": "part", "colour": 1}}, "model")
    with pytest.raises(MedmatError, match=r"^unknown part 'nope' \(model.inner.name\)"):
        registry.check_options("wrapper", {"inner": {"name": "nope"}}, "model")
    registry.check_options("wrapper", {"inner": None})


def test_build_runs_the_same_check():
    registry = small_registry()
    assert registry.build("part", size=3).size == 3
    with pytest.raises(MedmatError, match=r"^unknown option colour for part 'part' \(it takes: size, scale\)$"):
        registry.build("part", size=3, colour=1)
    with pytest.raises(MedmatError, match="^part 'part' needs option size$"):
        registry.build("part")
    with pytest.raises(MedmatError, match=r"^unknown option filters for model 'medical_matting'"):
        MODELS.build("medical_matting", filters=[8, 16])


# --- optim.name ----------------------------------------------------------------------------------


def test_optim_name_chooses_adam_or_adamw_with_the_section_s_settings():
    assert set(OPTIMIZERS) == {"adam", "adamw"} == set(OPTIONS["optim.name"].choices)
    parameters = [nn.Parameter(torch.zeros(3))]
    config = load_config("lite", ["optim.name=adamw", "optim.weight_decay=0.01", "optim.betas=[0.8, 0.99]"])
    optimizer = build_optimizer(parameters, config["optim"])
    assert type(optimizer) is torch.optim.AdamW
    group = optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(5e-4) and group["weight_decay"] == pytest.approx(0.01)
    assert group["betas"] == (0.8, 0.99)
    adam = build_optimizer(parameters, load_config("paper")["optim"])
    assert type(adam) is torch.optim.Adam
    group = adam.param_groups[0]
    assert group["lr"] == pytest.approx(1e-4) and group["weight_decay"] == pytest.approx(5e-5)


def test_adamw_decays_the_weights_where_adam_adds_the_decay_to_the_gradient():
    # With a zero loss gradient AdamW shrinks the weight by lr * weight_decay exactly, while
    # Adam's L2 term goes through the adaptive normalisation.
    section = dict(DEFAULTS["optim"], lr=0.1, weight_decay=0.5)
    weight = nn.Parameter(torch.ones(1))
    optimizer = build_optimizer([weight], dict(section, name="adamw"))
    weight.grad = torch.zeros(1)
    optimizer.step()
    assert weight.item() == pytest.approx(1.0 - 0.1 * 0.5)
    weight = nn.Parameter(torch.ones(1))
    optimizer = build_optimizer([weight], dict(section, name="adam"))
    weight.grad = torch.zeros(1)
    optimizer.step()  # the decay is the whole (normalised) gradient: a full lr step
    assert weight.item() == pytest.approx(1.0 - 0.1, abs=1e-6)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_the_multi_tensor_update_gives_the_per_parameter_loop_s_values_bit_for_bit(name):
    # Earlier runs were trained with torch's per-parameter loop (its CPU default): the same numbers.
    section = dict(load_config("lite")["optim"], name=name, weight_decay=0.01)
    generator = torch.Generator().manual_seed(0)
    shapes = [(16, 1, 3, 3), (16,), (32, 16, 3, 3), (1,)]
    initial = [torch.randn(shape, generator=generator) for shape in shapes]
    gradients = [[torch.randn(shape, generator=generator) for shape in shapes] for _ in range(5)]
    finals = []
    for foreach in (True, False):
        weights = [nn.Parameter(value.clone()) for value in initial]
        optimizer = build_optimizer(weights, section)
        assert optimizer.param_groups[0]["foreach"] is True
        optimizer.param_groups[0]["foreach"] = foreach
        for step_gradients in gradients:
            for weight, gradient in zip(weights, step_gradients):
                weight.grad = gradient.clone()
            optimizer.step()
        finals.append(weights)
    for multi, loop, start in zip(*finals, initial):
        assert not torch.equal(multi, start)  # the steps moved every weight
        torch.testing.assert_close(multi, loop, rtol=0, atol=0)


def test_build_optimizer_refuses_an_unknown_name():
    with pytest.raises(MedmatError, match="optim.name must be one of adam, adamw, got 'sgd'"):
        build_optimizer([nn.Parameter(torch.zeros(1))], dict(DEFAULTS["optim"], name="sgd"))


def test_old_run_configs_with_optim_name_adam_still_load(tmp_path):
    saved = tmp_path / "config.yaml"
    engine_config.save_config(load_config("lite"), saved)
    assert "name: adam" in saved.read_text()
    assert load_config(saved) == load_config("lite")
