"""Training configurations: YAML files merged over defaults, with dotted command-line overrides.

A configuration is a plain nested ``dict`` with the sections of :data:`SCHEMA`, which declares
every key once (:class:`Option`: default, types, choices, lower bound, doc); :data:`DEFAULTS`
is derived from it. ``model`` and ``loss`` (:class:`Registered`) name a registered model and
criterion, their other keys being that class's constructor keywords: they are checked against the
constructor when the config is loaded (nested sections such as the "nig" ``base`` too). Every
other section is checked against :data:`SCHEMA` (unknown key, wrong type, value out of its choices
or below its bound), and a problem is raised as a one-line :class:`~medmat.errors.MedmatError`
naming the file when there is one.

Packaged configurations live in ``medmat/configs/`` and are found by name
(``medical_matting_lite`` or the aliases ``lite``, ``cpu``, ``cpu_ensemble``, ``paper`` and ``demo``).

A file may start from another: ``extends: lite`` (a packaged name, or a path relative to the
file) loads that configuration first and merges the file's sections over it, key by key, so a
variant states only what it changes. ``extends`` may list several, merged in order: the packaged
``*_cpu`` configs are their model's ``*_lite`` config with the training recipe of
``medmat/configs/recipes/cpu.yaml`` over it. What a run saves is the resolved configuration, without
``extends``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from medmat.data.splits import SCHEMES
from medmat.engine.optim import OPTIMIZERS
from medmat.engine.precision import PRECISIONS
from medmat.errors import MedmatError
from medmat.io.atomic import atomic_write_text

# Importing a registry imports its package first, which registers every model and criterion.
from medmat.losses.registry import CRITERIA
from medmat.models.registry import MODELS
from medmat.registry import Registry

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
#: The resolved config a run folder keeps (:func:`save_config`).
CONFIG_NAME = "config.yaml"

#: Short names for the packaged configurations.
ALIASES = {"lite": "medical_matting_lite", "paper": "medical_matting_paper", "demo": "medical_matting_demo",
           "cpu": "medical_matting_cpu", "cpu_ensemble": "medical_matting_cpu_ensemble"}


@dataclass(frozen=True)
class Option:
    """One config key: its default, accepted types, and optionally its choices, lower bound and a check.

    Args:
        default: the value a config that leaves the key out gets.
        types: accepted Python types (``type(None)`` for null); ``bool`` is never taken for a
            number unless listed, and a string is read as a float where ``float`` is listed
            (PyYAML reads ``1e-4`` as a string).
        choices: the allowed values, or None for any value of the types.
        minimum: a bound the value must be >= (null values aside), or None.
        check: ``check(dotted_key, value)`` returns a problem (one line) or None; run after the
            type, choices and bound.
        doc: what the key does.
    """

    default: Any
    types: tuple
    choices: tuple | None = None
    minimum: float | None = None
    check: Callable[[str, Any], str | None] | None = None
    doc: str = ""


@dataclass(frozen=True)
class Registered:
    """A section naming a registered class (``name``), its other keys that class's constructor arguments.

    The options are checked against the constructor when the config is loaded
    (:meth:`medmat.registry.Registry.check_options`), nested sections (the "nig" ``base``) too.
    """

    registry: Registry
    default: str
    doc: str = ""


NONE = type(None)
NUMBER = (int, float)
OPTIONAL_INT = (int, NONE)
SIZE = (int, list, NONE)


def _unit_pair(key: str, value) -> str | None:
    if (
        len(value) != 2
        or not all(isinstance(v, NUMBER) and not isinstance(v, bool) for v in value)
        or not all(0.0 <= v <= 1.0 for v in value)
    ):
        return f"{key} must be two numbers in [0, 1], got {value!r}"
    return None


def _positive_range(key: str, value) -> str | None:
    if (
        len(value) != 2
        or not all(isinstance(v, NUMBER) and not isinstance(v, bool) for v in value)
        or not 0.0 < value[0] <= value[1]
    ):
        return f"{key} must be [low, high] with 0 < low <= high, got {value!r}"
    return None


def _unit_or_null(key: str, value) -> str | None:
    if value is not None and not 0.0 <= value <= 1.0:
        return f"{key} must be in [0, 1] or null, got {value!r}"
    return None


def _decay_problem(key: str, value) -> str | None:
    if value is not None and not 0.0 < value < 1.0:
        return f"{key} must be in (0, 1) or null, got {value!r}"
    return None


def _size_problem(key: str, size) -> str | None:
    """The problem of a size (null, an int or [H, W] of ints >= 2), or None."""
    if size is None:
        return None
    pair = [size, size] if isinstance(size, int) and not isinstance(size, bool) else size
    if (
        not isinstance(pair, list)
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 2 for v in pair)
    ):
        return f"{key} must be an int or [H, W] of ints >= 2, got {size!r}"
    return None


#: Every section and key: one declaration each. A scalar section (``seed``) is an :class:`Option`,
#: ``model`` and ``loss`` are :class:`Registered`, the others map their keys to :class:`Option`.
#: Adding a key is one line here (then document it in medmat/configs/README.md).
SCHEMA: dict[str, Option | Registered | dict[str, Option]] = {
    "seed": Option(0, (int,), doc="the model's initialisation; with the epoch, every random draw of training"),
    "model": Registered(MODELS, "medical_matting", doc="name of a registered model + its constructor's keywords"),
    "loss": Registered(CRITERIA, "medical_matting", doc="name of a registered criterion + its constructor's keywords"),
    "data": {
        "dataset": Option("phantom:16", (str,), doc='a path medmat.data.load.load_dataset reads, or "phantom:N"'),
        "trimaps": Option(None, (str, NONE), doc=(
            "optional trimaps (file or folder) for cases that have none; only the evaluation's "
            '"unknown" region (Table IV) and trimap-based models use them')),
        "augment": Option(True, (bool,), doc="flips, rotation, elastic deformation of the training items"),
        "intensity_scale": Option([1.0, 1.0], (list,), check=_positive_range, doc=(
            "with data.augment, each training item's image times a factor drawn from [low, high] "
            "(scan-to-scan brightness; medmat.data.transforms.RandomIntensityd); [1, 1] = off")),
        "intensity_gamma": Option([1.0, 1.0], (list,), check=_positive_range, doc=(
            "with data.augment, each training item's image to a power drawn from [low, high]; [1, 1] = off")),
        "pseudo_mask_range": Option([0.2, 0.7], (list,), check=_unit_pair, doc=(
            "Eq. 3: the pseudo mask thresholds the alpha at a level drawn from this range")),
        "copies_per_image": Option(1, (int,), minimum=1, doc=(
            "training items per image and epoch, each with its own augmentation and pseudo mask, side "
            "by side in one batch (the authors' release: 2 images x 2 copies per step); optim.batch_size "
            "counts the items and must be a multiple of it")),
        "input_size": Option(None, SIZE, check=_size_problem, doc=(
            "int or [H, W]; null pads every case to the largest one (Brain-growth, LIDC: 128)")),
        "resize": Option(None, SIZE, check=_size_problem, doc=(
            "int or [H, W]: every case is resampled to this size when it is loaded, for training and "
            "evaluation alike (medmat.engine.dataset.resize_sample); null keeps the cases' own size")),
        "model_input_size": Option(None, SIZE, check=_size_problem, doc=(
            "int or [H, W]: LIIF-style training of a resolution-free model (region_aware_matting): the "
            "model sees its inputs resampled to this size while its alpha is read, trained and scored at "
            "data.input_size (medmat.engine.dataset.to_model_input); null = input_size")),
        "train_trimaps": Option("given", (str,), choices=("given", "alpha", "annotators"), doc=(
            'trimaps of the training items: "given" (data.trimaps or the dataset\'s own, as they are) or '
            "drawn anew every epoch from the ground truth by random erosion, as AdaMatting and the TCP "
            'paper train: "alpha" (Eq. 2 of the alpha matte) or "annotators" (unknown where the '
            "annotators' masks disagree); evaluation always reads the cases' given trimaps")),
        "context_slices": Option(0, (int,), minimum=0, doc=(
            "2.5-D: the k slices on each side of a slice as extra image channels (model.in_channels = 1 + 2k "
            "for grey); read from LIDC nodule folders and volume cases (medmat.engine.volumes); 0 = 2-D")),
        "noisy_trimaps": Option(False, (bool,), doc=(
            'with generated trimaps, also a "trimap_noisy" (the TCP paper\'s random steps, §3.3)')),
    },
    "split": {
        "scheme": Option("auto", (str,), choices=SCHEMES, doc=(
            "the folds (medmat.data.splits); auto: Brain-growth's own for Brain-growth, else group/kfold")),
        "k": Option(4, (int,), minimum=2, doc="number of folds"),
        "fold": Option(0, (int,), minimum=0, doc="the held-out fold (< k)"),
        "seed": Option(0, (int,), doc="seed of the fold assignment"),
    },
    "optim": {
        "name": Option("adam", (str,), choices=tuple(OPTIMIZERS), doc=(
            "the optimiser (medmat.engine.optim.build_optimizer): adam (weight decay as L2, the "
            "paper's) or adamw (decoupled weight decay)")),
        "lr": Option(1.0e-4, NUMBER, minimum=0.0, doc="peak learning rate"),
        "weight_decay": Option(5.0e-5, NUMBER, minimum=0.0),
        "betas": Option([0.9, 0.999], (list,), check=_unit_pair, doc='Table III\'s "momentum 0.9" is beta1'),
        "batch_size": Option(4, (int,), minimum=1, doc=(
            "the global batch: under torchrun every process takes batch_size / world_size")),
        "epochs": Option(150, (int,), minimum=1),
        "warmup_epochs": Option(1, (int,), minimum=0, doc="linear warm-up from 0 (<= epochs)"),
        "scheduler": Option("cosine", (str,), choices=("cosine", "constant"), doc="after the warm-up"),
        "schedule_unit": Option("step", (str,), choices=("step", "epoch"), doc="the schedule's step"),
        "min_lr": Option(0.0, NUMBER, minimum=0.0, doc="the cosine's end"),
        "grad_clip": Option(None, (int, float, NONE), doc="gradient-norm clipping; null = none"),
        "ema_decay": Option(None, (float, NONE), check=_decay_problem, doc=(
            "exponential moving average of the weights, updated every step with the decay warmed up "
            "as min(decay, (1 + n) / (10 + n)); validation, the final weights and metrics use the "
            "average; null = none")),
    },
    "eval": {
        "num_samples": Option(8, (int,), minimum=1, doc="N sampled masks"),
        "region": Option("unknown", (str,), choices=("unknown", "whole"), doc="Table IV's region"),
        "every": Option(1, (int,), minimum=0, doc="validate every n epochs; 0 = only at the end"),
        "flip": Option(False, (bool, str), choices=(False, True, "none", "lr", "flips", "dihedral"), doc=(
            "test-time flip: average the alpha of the image and its mirror image (true, \"lr\"), also its "
            "up-down mirror and half turn (\"flips\"), or all 8 views of the square (\"dihedral\")")),
    },
    "ensemble": {
        "members": Option(1, (int,), minimum=1, doc=(
            "models trained per fold, member i with seed seed x members + i (distinct ensemble seeds never "
            "share a member) in <fold>/member-<i>/; they predict as one deep ensemble (mean alpha, pooled "
            "sampled masks; medmat.models.ensemble), which the fold's metrics.json scores")),
        "unfit_ratio": Option(None, (*NUMBER, NONE), minimum=1, doc=(
            "leave out of the fold's ensemble a member whose whole-image SAD on the fold's training "
            "cases is above this multiple of the best member's: it failed to fit (kept members in "
            "<fold>/members.json); null = every member counts")),
    },
    "train": {
        "device": Option("auto", (str,), doc="auto, cpu, cuda"),
        "num_threads": Option(None, OPTIONAL_INT, minimum=1, doc="torch threads; null = torch's default"),
        "num_workers": Option(0, (int,), minimum=0, doc="DataLoader workers"),
        "log_every": Option(10, (int,), minimum=1, doc="log every n steps"),
        "tensorboard": Option("auto", (str, bool), choices=("auto", True, False)),
        "progress": Option("auto", (str, bool), choices=("auto", True, False), doc="progress bar"),
        "find_unused_parameters": Option(False, (bool,), doc=(
            "DDP only: for models whose loss leaves some parameters unused")),
        "precision": Option("fp32", (str,), choices=PRECISIONS, doc=(
            "autocast dtype of the model's forward (losses, metrics, weights stay float32); "
            "auto = bf16 where the hardware has it (medmat.engine.precision)")),
        "channels_last": Option(False, (bool,), doc="NHWC weights and inputs (oneDNN / cuDNN fast convolutions)"),
        "compile": Option(False, (bool,), doc="torch.compile the model (needs a C++ compiler; eager on failure)"),
        "keep_freed_memory": Option(True, (bool,), doc=(
            "glibc malloc keeps freed blocks up to 32 MiB instead of returning them to the kernel: no page "
            "faults on fresh memory every step (medmat.engine.allocator); values are unaffected")),
        "init_from": Option(None, (str, NONE), doc=(
            "start from a trained run's weights (its folder or checkpoint; {fold} = this fold), loaded into the "
            "model or, when they fit only there, into its base (medmat.engine.inference.load_initial_weights)")),
        "cross_fit_from": Option(None, (str, NONE), doc=(
            "a cross-validation folder of the wrapped base: every training case gets the prediction of the fold "
            "model that held it out, which the model reads instead of its base's (medmat.engine.cross_fit)")),
        "core_alpha_floor": Option(0.8, (*NUMBER, NONE), check=_unit_or_null, doc=(
            "after training, the median alpha in the lesion core (label alpha >= 0.98) of each training case; "
            "when no case's reaches this floor the model failed to fit (a capped alpha layer): a warning, "
            "training_fit in metrics.json, and train.refit_capped; null = no check")),
        "refit_capped": Option(0, (int,), minimum=0, doc=(
            "times a run that failed the core_alpha_floor check trains again from scratch with seed + 1000 x "
            "attempt (the failed run kept in <run>/capped-<attempt>/); the last attempt is kept either way")),
    },
}


def _default(spec):
    if isinstance(spec, Option):
        return copy.deepcopy(spec.default)
    if isinstance(spec, Registered):
        return {"name": spec.default}
    return {key: _default(option) for key, option in spec.items()}


#: The default configuration, derived from :data:`SCHEMA`.
DEFAULTS: dict = {section: _default(spec) for section, spec in SCHEMA.items()}

#: Every checked key by its dotted name ("optim.lr", "seed"), derived from :data:`SCHEMA`.
OPTIONS: dict[str, Option] = {
    **{section: spec for section, spec in SCHEMA.items() if isinstance(spec, Option)},
    **{
        f"{section}.{key}": option
        for section, spec in SCHEMA.items()
        if isinstance(spec, dict)
        for key, option in spec.items()
    },
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
        The resolved configuration: a new nested ``dict`` with every section of :data:`SCHEMA`.

    Raises:
        MedmatError: missing file, YAML syntax error, unknown key, wrong type or value, a model
            or loss that is not registered or an option its constructor does not take.
    """
    if isinstance(path_or_name, dict):
        where, loaded = None, copy.deepcopy(path_or_name)
    else:
        where = resolve_config_path(path_or_name)
        loaded = read_config_file(where)
    config = merge(DEFAULTS, loaded, where)
    for override in overrides:
        apply_override(config, override)
    validate_config(config, where)
    return config


def check_buildable(config: dict, where=None) -> None:
    """Build ``config``'s model and criterion once and drop them, leaving torch's random state as it was.

    :func:`load_config` checks the options' names against the constructors; their values (a
    ``model.unet_filters: [a, b]``, a float where a size is due) are only judged by the
    constructors themselves. The commands that train call this right after loading, so that such
    a value is a one-line error naming the file before any data is read.

    Raises:
        MedmatError: what a constructor refused, naming ``where`` (the config file) when the
            error names no file of its own.
    """
    for section, spec in SCHEMA.items():
        if not isinstance(spec, Registered):
            continue
        options = dict(config[section])
        try:
            with torch.random.fork_rng(devices=[]):
                spec.registry.build(options.pop("name"), **options)
        except MedmatError as error:
            if error.path is not None:
                raise
            raise MedmatError(error.problem, where) from None
        except (TypeError, ValueError) as error:
            raise MedmatError(f"{section} {config[section]['name']!r} refuses its options: {error}", where) from None


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


#: The key of a config file that names the configuration it starts from.
EXTENDS = "extends"


def read_config_file(path: Path, extending: tuple[Path, ...] = ()) -> dict:
    """The sections of a config file, with those of the configurations it ``extends`` beneath.

    ``extends`` names one configuration or lists several (``[region_aware_matting_lite,
    recipes/cpu.yaml]``: a model's config and a training recipe); each is a packaged name or a
    path relative to the file, and each later one is merged over the earlier ones.

    Args:
        path: the YAML file.
        extending: the files that (transitively) extend this one, to refuse a cycle.

    Returns:
        The file's sections merged over its parents' (a section's keys one by one), without ``extends``.

    Raises:
        MedmatError: as :func:`load_config`; also a parent that is not a name or path, cannot be
            found, or extends back to this file.
    """
    loaded = _read_yaml(path)
    parents = loaded.pop(EXTENDS, None)
    if parents is None:
        return loaded
    names = [parents] if isinstance(parents, str) else parents
    if not isinstance(names, list) or not names or not all(isinstance(name, str) and name.strip() for name in names):
        raise MedmatError(f"{EXTENDS} must name a config (a packaged name or a YAML path) or list them, got {parents!r}", path)
    chain = (*extending, path.resolve())
    combined: dict = {}
    for parent in names:
        beside = path.parent / parent
        parent_path = resolve_config_path(beside if beside.is_file() else parent)
        if parent_path.resolve() in chain:
            raise MedmatError(f"{EXTENDS} makes a cycle: {parent_path} extends back to {path}", path)
        _merge_sections(combined, read_config_file(parent_path, chain))
    _merge_sections(combined, loaded)
    return combined


def _merge_sections(combined: dict, sections: dict) -> None:
    """Merge a config file's ``sections`` over ``combined`` in place, a section's keys one by one."""
    for section, value in sections.items():
        if isinstance(value, dict) and isinstance(combined.get(section), dict):
            combined[section] = {**combined[section], **value}
        else:
            combined[section] = value


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
    """Check sections, keys, types, choices and bounds against :data:`SCHEMA`, and ``model`` and
    ``loss`` against their registered classes; raise a one-line MedmatError on the first problem."""
    for section in config:
        if section not in SCHEMA:
            raise MedmatError(f"unknown config section {section!r} (known: {', '.join(SCHEMA)})", where)
    for section, spec in SCHEMA.items():
        if not isinstance(spec, Option) and not isinstance(config.get(section), dict):
            raise MedmatError(f"config section {section!r} must be a mapping", where)
    for section, spec in SCHEMA.items():
        if isinstance(spec, Registered):
            options = dict(config[section])
            name = options.pop("name", None)
            if not isinstance(name, str) or not name:
                raise MedmatError(f"{section}.name must name a registered {spec.registry.kind}", where)
            spec.registry.check_options(name, options, section, where)
        elif isinstance(spec, dict):
            for key in config[section]:
                if key not in spec:
                    raise MedmatError(f"unknown config key {section}.{key} (known: {', '.join(spec)})", where)
    for key, option in OPTIONS.items():
        _check_option(config, key, option, where)
    low, high = config["data"]["pseudo_mask_range"]
    if low > high:
        raise MedmatError(f"data.pseudo_mask_range must be [low, high] with low <= high, got {[low, high]}", where)
    copies = config["data"]["copies_per_image"]
    if config["optim"]["batch_size"] % copies:
        raise MedmatError(f"optim.batch_size {config['optim']['batch_size']} is not a multiple of "
                          f"data.copies_per_image {copies}: an image's copies share one batch", where)
    if config["data"]["noisy_trimaps"] and config["data"]["train_trimaps"] == "given":
        raise MedmatError("data.noisy_trimaps needs generated training trimaps (data.train_trimaps alpha or annotators)", where)
    if config["split"]["fold"] >= config["split"]["k"]:
        raise MedmatError(f"split.fold must be < split.k = {config['split']['k']}, got {config['split']['fold']}", where)
    if config["optim"]["warmup_epochs"] > config["optim"]["epochs"]:
        raise MedmatError("optim.warmup_epochs must not exceed optim.epochs", where)


def _check_option(config: dict, key: str, option: Option, where) -> None:
    """Check one key's type, choices, bound and own check, in place (number strings become floats)."""
    try:
        value = get_key(config, key)
    except KeyError:
        raise MedmatError(f"missing config key {key}", where) from None
    types = option.types
    if float in types and isinstance(value, str):
        # PyYAML reads "1e-4" (no decimal point) as a string; accept it where a float is meant.
        try:
            value = float(value)
        except ValueError:
            pass
        else:
            set_key(config, key, value)
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        expected = " or ".join("null" if t is NONE else t.__name__ for t in types)
        raise MedmatError(f"{key} must be {expected}, got {value!r}", where)
    if option.choices is not None and value not in option.choices:
        raise MedmatError(f"{key} must be one of {', '.join(map(str, option.choices))}, got {value!r}", where)
    if option.minimum is not None and value is not None and value < option.minimum:
        raise MedmatError(f"{key} must be >= {option.minimum:g}, got {value!r}", where)
    problem = option.check(key, value) if option.check is not None else None
    if problem:
        raise MedmatError(problem, where)


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
    problem = _size_problem(f"data.{key}", size)
    if problem:
        raise MedmatError(problem)
    if size is None:
        return None
    pair = [size, size] if isinstance(size, int) else size
    return int(pair[0]), int(pair[1])


def config_to_yaml(config: dict) -> str:
    """The configuration as YAML text, sections in the order of :data:`DEFAULTS`."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def save_config(config: dict, path: str | os.PathLike) -> None:
    """Write the resolved configuration to ``path`` (YAML, atomically)."""
    atomic_write_text(path, config_to_yaml(config))


def without_runtime(config: dict) -> dict:
    """The configuration minus what may change on resume: the ``train`` section, and
    ``ensemble.unfit_ratio`` (it chooses among finished members, and a resume rescores with it)."""
    kept = {section: value for section, value in config.items() if section != "train"}
    if "ensemble" in kept:
        kept["ensemble"] = {key: value for key, value in kept["ensemble"].items() if key != "unfit_ratio"}
    return kept
