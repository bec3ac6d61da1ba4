"""Training engine: configs, datasets, training loop, checkpoints, torchrun support, inference.

Every medmat model trains through the same contract (``medmat.models`` / ``medmat.losses``):

    from medmat.engine import load_config, train, crossval, load_run, predict_sample
    config = load_config("lite", ["optim.epochs=2", "data.dataset=phantom:8"])
    record = train(config, "runs/demo", fold=0)        # metrics.json of the held-out fold
    model, config = load_run("runs/demo")
    prediction = predict_sample(model, image)          # image: float32 (C, H, W) in [0, 1]

or from a shell (also under ``torchrun --nproc_per_node N``)::

    python -m medmat.engine.trainer --config lite --run-dir runs/demo --set optim.epochs=2
"""

import importlib

# Names resolve on first use, so that ``python -m medmat.engine.trainer`` does not import the
# trainer twice (once through this package, once as __main__).
_EXPORTS = {
    "MattingDataset": "medmat.engine.dataset",
    "crossval": "medmat.engine.trainer",
    "evaluate_samples": "medmat.engine.inference",
    "label_masks_from_alpha": "medmat.engine.inference",
    "load_config": "medmat.engine.config",
    "load_run": "medmat.engine.inference",
    "packaged_configs": "medmat.engine.config",
    "predict_sample": "medmat.engine.inference",
    "predict_samples": "medmat.engine.inference",
    "save_config": "medmat.engine.config",
    "train": "medmat.engine.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medmat.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return __all__
