"""Training engine: configs, datasets, the training loop and its handlers, cross-validation,
evaluation, checkpoints, torchrun support, and the one prediction path.

Every medmat model trains and predicts through the model contract (:mod:`medmat.models.contract`):

    from medmat.engine import load_config, train, crossval, load_run, predict
    config = load_config("lite", ["optim.epochs=2", "data.dataset=phantom:8"])
    record = train(config, "runs/demo", fold=0)        # metrics.json of the held-out fold
    model, config = load_run("runs/demo")
    prediction = predict(model, image)                 # image: float32 (C, H, W) in [0, 1]

or from a shell (also under ``torchrun --nproc_per_node N -m medmat train ...``)::

    medmat train --config lite --run-dir runs/demo --set optim.epochs=2
"""

from medmat.engine.config import load_config, packaged_configs, save_config
from medmat.engine.crossval import crossval
from medmat.engine.dataset import MattingDataset
from medmat.engine.evaluation import evaluate_samples, label_masks_from_alpha, mean_case_metrics
from medmat.engine.inference import load_run, load_runs, predict, predict_as_trained, predict_samples
from medmat.engine.trainer import train

__all__ = [
    "MattingDataset",
    "crossval",
    "evaluate_samples",
    "label_masks_from_alpha",
    "load_config",
    "load_run",
    "load_runs",
    "mean_case_metrics",
    "packaged_configs",
    "predict",
    "predict_as_trained",
    "predict_samples",
    "save_config",
    "train",
]
