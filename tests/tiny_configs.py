"""One tiny training config for the tests that train or save a run on phantoms (not a test module)."""

from __future__ import annotations

from medmat.engine import load_config


def tiny_phantom_config(model: dict, loss: dict | None = None, two_folds: bool = True) -> dict:
    """A full engine config: 8 phantoms at 32 x 32, one epoch of batch 2, 2 sampled masks, 1 thread.

    Args:
        model: the model section.
        loss: the loss section (None: the engine's default for the model).
        two_folds: a 2-fold k-fold split, fold 0 (False: the engine's default split).
    """
    sections = {
        "model": model,
        "data": {"dataset": "phantom:8", "resize": 32, "input_size": None},
        "optim": {"lr": 0.001, "batch_size": 2, "epochs": 1},
        "eval": {"num_samples": 2, "every": 0},
        "train": {"progress": False, "tensorboard": False, "num_threads": 1},
    }
    if loss is not None:
        sections["loss"] = loss
    if two_folds:
        sections["split"] = {"scheme": "kfold", "k": 2, "fold": 0}
    return load_config(sections)
