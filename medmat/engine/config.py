"""Training configurations: YAML files merged over defaults, with dotted command-line overrides.

A configuration is a plain nested ``dict`` with the sections of :data:`DEFAULTS`. ``model`` and
``loss`` are passed as keyword arguments to the model's constructor and the criterion builder,
so any key is allowed there beside ``name``; every other section is checked against
:data:`DEFAULTS` (unknown key, wrong type, value out of its choices), and a problem is raised
as a one-line :class:`~medmat.errors.MedmatError`.

Packaged configurations live in ``medmat/configs/`` and are found by name
(``medical_matting_lite`` or the aliases ``lite`` and ``paper``).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from medmat.errors import MedmatError
from medmat.io.atomic import atomic_write_text

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

#: Short names for the packaged configurations.
ALIASES = {"lite": "medical_matting_lite", "paper": "medical_matting_paper", "demo": "medical_matting_demo"}

#: Sections whose keys are free-form keyword arguments (only ``name`` is required).
FREE_SECTIONS = ("model", "loss")

DEFAULTS: dict = {
    "seed": 0,
    "model": {"name": "medical_matting"},
    "loss": {"name": "medical_matting"},
    "data": {
        # A path understood by medmat.data.load.load_dataset, or "phantom:N".
        "dataset": "phantom:16",
        # Optional trimaps (file or folder) for cases that have none; only the evaluation's
        # "unknown" region (Table IV) and trimap-based models use them.
        "trimaps": None,
        "augment": True,
        # Eq. 3: the pseudo mask thresholds the alpha at a level drawn from this range.
        "pseudo_mask_range": [0.2, 0.7],
        # int or [H, W]; null pads every case to the largest one (Brain-growth, LIDC: 128).
        "input_size": None,
        # int or [H, W]: every case is resampled to this size when it is loaded, for training and
        # evaluation alike (medmat.engine.dataset.resize_sample); null keeps the cases' own size.
        "resize": None,
        # int or [H, W]: LIIF-style training of a resolution-free model (region_aware_matting):
        # the model sees its inputs resampled to this size while its alpha is read, trained and
        # scored at data.input_size (medmat.engine.dataset.to_model_input); null = input_size.
        "model_input_size": None,
        # Trimaps of the training items: "given" (data.trimaps or the dataset's own, as they are)
        # or drawn anew every epoch from the ground truth by random erosion, as AdaMatting and the
        # TCP paper train: "alpha" (Eq. 2 of the alpha matte) or "annotators" (unknown where the
        # annotators' masks disagree). Evaluation always reads the cases' given trimaps.
        "train_trimaps": "given",
        # With generated trimaps, also a "trimap_noisy" (the TCP paper's random steps, §3.3).
        "noisy_trimaps": False,
    },
    "split": {"scheme": "auto", "k": 4, "fold": 0, "seed": 0},
    "optim": {
        "name": "adam",
        "lr": 1.0e-4,
        "weight_decay": 5.0e-5,
        # Table III's "momentum 0.9" is Adam's beta1.
        "betas": [0.9, 0.999],
        # The global batch: under torchrun every process takes batch_size / world_size.
        "batch_size": 4,
        "epochs": 150,
        "warmup_epochs": 1,
        "scheduler": "cosine",
        "schedule_unit": "step",
        "min_lr": 0.0,
        "grad_clip": None,
    },
    "eval": {"num_samples": 8, "region": "unknown", "every": 1},
    "train": {
        "device": "auto",
        "num_threads": None,
        "num_workers": 0,
        "log_every": 10,
        "tensorboard": "auto",
        "progress": "auto",
        # DDP only: for models whose loss leaves some parameters unused.
        "find_unused_parameters": False,
    },
}

_NUMBER = (int, float)
_OPTIONAL_INT = (int, type(None))
_SIZE = (int, list, type(None))

#: Expected types of the checked keys (``bool`` is never accepted where a number is meant).
TYPES: dict[str, tuple] = {
    "seed": (int,),
    "data.dataset": (str,),
    "data.trimaps": (str, type(None)),
    "data.augment": (bool,),
    "data.pseudo_mask_range": (list,),
    "data.input_size": _SIZE,
    "data.resize": _SIZE,
    "data.model_input_size": _SIZE,
    "data.train_trimaps": (str,),
    "data.noisy_trimaps": (bool,),
    "split.scheme": (str,),
    "split.k": (int,),
    "split.fold": (int,),
    "split.seed": (int,),
    "optim.name": (str,),
    "optim.lr": _NUMBER,
    "optim.weight_decay": _NUMBER,
    "optim.betas": (list,),
    "optim.batch_size": (int,),
    "optim.epochs": (int,),
    "optim.warmup_epochs": (int,),
    "optim.scheduler": (str,),
    "optim.schedule_unit": (str,),
    "optim.min_lr": _NUMBER,
    "optim.grad_clip": (int, float, type(None)),
    "eval.num_samples": (int,),
    "eval.region": (str,),
    "eval.every": (int,),
    "train.device": (str,),
    "train.num_threads": _OPTIONAL_INT,
    "train.num_workers": (int,),
    "train.log_every": (int,),
    "train.tensorboard": (str, bool),
    "train.progress": (str, bool),
    "train.find_unused_parameters": (bool,),
}

CHOICES: dict[str, tuple] = {
    "data.train_trimaps": ("given", "alpha", "annotators"),
    "split.scheme": ("auto", "kfold", "group", "brain-growth"),
    "optim.name": ("adam",),
    "optim.scheduler": ("cosine", "constant"),
    "optim.schedule_unit": ("step", "epoch"),
    "eval.region": ("unknown", "whole"),
    "train.tensorboard": ("auto", True, False),
    "train.progress": ("auto", True, False),
}

#: Keys that must be >= their bound.
MINIMUM: dict[str, float] = {
    "split.k": 2,
    "split.fold": 0,
    "optim.lr": 0.0,
    "optim.weight_decay": 0.0,
    "optim.batch_size": 1,
    "optim.epochs": 1,
    "optim.warmup_epochs": 0,
    "optim.min_lr": 0.0,
    "eval.num_samples": 1,
    "eval.every": 0,
    "train.num_threads": 1,
    "train.num_workers": 0,
    "train.log_every": 1,
}


def packaged_configs() -> list[str]:
    """Names of the configurations shipped in ``medmat/configs/`` (without ``.yaml``)."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(path_or_name: str | os.PathLike) -> Path:
    """Turn a YAML path or a packaged name (``lite``, ``medical_matting_paper``) into a file path."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    name = ALIASES.get(str(path_or_name), str(path_or_name))
    packaged = CONFIG_DIR / f"{name}.yaml"
    if os.sep not in name and packaged.is_file():
        return packaged
    if path.suffix in (".yaml", ".yml") or os.sep in str(path_or_name):
        raise MedmatError("config file not found", path)
    known = ", ".join(packaged_configs() + sorted(ALIASES))
    raise MedmatError(f"unknown config {str(path_or_name)!r}: not a file, and not one of {known}")


def load_config(path_or_name: str | os.PathLike | dict, overrides=()) -> dict:
    """Load, complete and check a training configuration.

    Args:
        path_or_name: a YAML file, the name of a packaged config (``lite``, ``paper``,
            ``medical_matting_lite``), or an already loaded ``dict``.
        overrides: ``"section.key=value"`` strings applied after the file; the value is parsed
            as YAML (``optim.epochs=2``, ``model.use_uncertainty_map=false``).

    Returns:
        The resolved configuration: a new nested ``dict`` with every section of :data:`DEFAULTS`.

    Raises:
        MedmatError: missing file, YAML syntax error, unknown key, wrong type or value.
    """
    if isinstance(path_or_name, dict):
        where, loaded = None, copy.deepcopy(path_or_name)
    else:
        where = resolve_config_path(path_or_name)
        loaded = _read_yaml(where)
    config = merge(DEFAULTS, loaded, where)
    for override in overrides:
        apply_override(config, override)
    validate_config(config, where)
    return config


def _read_yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise MedmatError(f"invalid YAML{line}: {getattr(error, 'problem', error)}", path) from None
    except (OSError, UnicodeDecodeError) as error:
        raise MedmatError(f"cannot read config: {error}", path) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise MedmatError(f"a config must be a mapping of sections, got {type(loaded).__name__}", path)
    return loaded


def merge(defaults: dict, loaded: dict, where=None) -> dict:
    """Deep-merge ``loaded`` over a copy of ``defaults``; unknown top-level sections are errors."""
    config = copy.deepcopy(defaults)
    for section, value in loaded.items():
        if section not in defaults:
            raise MedmatError(f"unknown config section {section!r} (known: {', '.join(defaults)})", where)
        if isinstance(defaults[section], dict):
            if not isinstance(value, dict):
                raise MedmatError(f"config section {section!r} must be a mapping", where)
            config[section].update(copy.deepcopy(value))
        else:
            config[section] = value
    return config


def apply_override(config: dict, override: str) -> None:
    """Apply one ``"dotted.key=yaml value"`` override in place."""
    key, separator, text = str(override).partition("=")
    key = key.strip()
    if not separator or not key:
        raise MedmatError(f"override {override!r} must look like section.key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise MedmatError(f"override {override!r}: the value is not valid YAML") from None
    parts = key.split(".")
    if parts[0] not in config:
        raise MedmatError(f"unknown config section {parts[0]!r} in override {override!r}")
    node = config
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise MedmatError(f"unknown config key {key!r} in override {override!r}")
        node = node[part]
    node[parts[-1]] = value


def validate_config(config: dict, where=None) -> None:
    """Check keys, types, choices and bounds; raise a one-line MedmatError on the first problem."""
    for section in FREE_SECTIONS:
        name = config[section].get("name")
        if not isinstance(name, str) or not name:
            raise MedmatError(f"{section}.name must name a registered {section}", where)
    for section, default in DEFAULTS.items():
        if section in FREE_SECTIONS:
            continue
        if isinstance(default, dict):
            for key in config[section]:
                if key not in default:
                    known = ", ".join(default)
                    raise MedmatError(f"unknown config key {section}.{key} (known: {known})", where)
    for key, types in TYPES.items():
        _coerce_number_strings(config, key, types)
        value = get_key(config, key)
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise MedmatError(f"{key} must be {expected}, got {value!r}", where)
        if key in CHOICES and value not in CHOICES[key]:
            raise MedmatError(f"{key} must be one of {', '.join(map(str, CHOICES[key]))}, got {value!r}", where)
        if key in MINIMUM and value is not None and value < MINIMUM[key]:
            raise MedmatError(f"{key} must be >= {MINIMUM[key]:g}, got {value!r}", where)
    _check_pair(config, "data.pseudo_mask_range", where, low=0.0, high=1.0)
    _check_pair(config, "optim.betas", where, low=0.0, high=1.0)
    low, high = config["data"]["pseudo_mask_range"]
    if low > high:
        raise MedmatError(f"data.pseudo_mask_range must be [low, high] with low <= high, got {[low, high]}", where)
    input_size(config)  # each raises on a malformed size
    resize_size(config)
    model_input_size(config)
    if config["data"]["noisy_trimaps"] and config["data"]["train_trimaps"] == "given":
        raise MedmatError("data.noisy_trimaps needs generated training trimaps (data.train_trimaps alpha or annotators)", where)
    if config["split"]["fold"] >= config["split"]["k"]:
        raise MedmatError(f"split.fold must be < split.k = {config['split']['k']}, got {config['split']['fold']}", where)
    if config["optim"]["warmup_epochs"] > config["optim"]["epochs"]:
        raise MedmatError("optim.warmup_epochs must not exceed optim.epochs", where)


def _coerce_number_strings(config: dict, key: str, types: tuple) -> None:
    # PyYAML reads "1e-4" (no decimal point) as a string; accept it where a float is meant.
    value = get_key(config, key)
    if float in types and isinstance(value, str):
        try:
            set_key(config, key, float(value))
        except ValueError:
            pass


def _check_pair(config: dict, key: str, where, low: float, high: float) -> None:
    value = get_key(config, key)
    if (
        len(value) != 2
        or not all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in value)
        or not all(low <= v <= high for v in value)
    ):
        raise MedmatError(f"{key} must be two numbers in [{low:g}, {high:g}], got {value!r}", where)


def get_key(config: dict, dotted: str):
    """``config["a"]["b"]`` for ``"a.b"``."""
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def set_key(config: dict, dotted: str, value) -> None:
    """Set ``config["a"]["b"] = value`` for ``"a.b"``."""
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = value


def input_size(config: dict) -> tuple[int, int] | None:
    """``data.input_size`` as ``(H, W)``, or None to keep the dataset's common size."""
    return _size_pair(config, "input_size")


def resize_size(config: dict) -> tuple[int, int] | None:
    """``data.resize`` as ``(H, W)``, or None to keep every case at its own size."""
    return _size_pair(config, "resize")


def model_input_size(config: dict) -> tuple[int, int] | None:
    """``data.model_input_size`` as ``(h, w)``, or None when the model sees ``data.input_size``."""
    return _size_pair(config, "model_input_size")


def _size_pair(config: dict, key: str) -> tuple[int, int] | None:
    """``data.<key>`` (null, an int or [H, W] of ints >= 2) as ``(H, W)`` or None; MedmatError otherwise."""
    size = config["data"].get(key)
    if size is None:
        return None
    pair = [size, size] if isinstance(size, int) and not isinstance(size, bool) else size
    if (
        not isinstance(pair, list)
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 2 for v in pair)
    ):
        raise MedmatError(f"data.{key} must be an int or [H, W] of ints >= 2, got {size!r}")
    return int(pair[0]), int(pair[1])


def config_to_yaml(config: dict) -> str:
    """The configuration as YAML text, sections in the order of :data:`DEFAULTS`."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def save_config(config: dict, path: str | os.PathLike) -> None:
    """Write the resolved configuration to ``path`` (YAML, atomically)."""
    atomic_write_text(path, config_to_yaml(config))


def without_runtime(config: dict) -> dict:
    """The configuration minus the ``train`` section, which may change on resume."""
    return {section: value for section, value in config.items() if section != "train"}
