"""docs/architecture.md's "Add a model" recipe, followed on a tiny model: its file (here, this test
module), its config (a YAML file) and its test are all it takes to train, cross-validate, predict,
evaluate and wear the NIG head."""

from __future__ import annotations

import json

import numpy as np
import torch
import yaml
from torch import nn

from medmat.cli.main import main
from medmat.engine import load_run, predict
from medmat.models.contract import MattingModel, ModelSpec
from medmat.models.registry import build_model, register_model


@register_model("recipe_matting")
class RecipeMatting(MattingModel):
    """The recipe's model: one convolution and a 1x1 head."""

    def __init__(self, in_channels: int = 1, width: int = 4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(width, 1, 1)
        self.spec = ModelSpec(in_channels, gives=("alpha", "alpha_logits"), size_multiple=1)

    def alpha_features_layer(self):
        return self.head

    def forward(self, batch, num_samples=None):
        logits = self.head(self.body(batch["image"]))
        return {"alpha_logits": logits, "alpha": logits.sigmoid()}


def _config(tmp_path, model: dict, loss: dict) -> str:
    config = {
        "model": model,
        "loss": loss,
        "data": {"dataset": "phantom:8", "input_size": 32, "resize": 32},
        "split": {"k": 2},
        "optim": {"batch_size": 4, "epochs": 1, "lr": 1e-3},
        "eval": {"num_samples": 2, "every": 0},
        "train": {"progress": False, "tensorboard": False, "num_threads": 1},
    }
    path = tmp_path / f"{model['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_a_new_model_trains_predicts_and_evaluates_through_the_contract(tmp_path):
    config = _config(tmp_path, {"name": "recipe_matting", "width": 4}, {"name": "alpha_l1"})
    assert main(["crossval", "--config", config, "--run-dir", str(tmp_path / "cv")]) == 0
    summary = json.loads((tmp_path / "cv" / "summary.json").read_text())
    assert summary["model"] == "recipe_matting" and np.isfinite(summary["table_iv"]["mean"]["SAD"])

    model, _ = load_run(tmp_path / "cv" / "fold-0")
    image = np.random.default_rng(0).random((1, 20, 17)).astype(np.float32)
    prediction = predict(model, image)
    assert set(prediction) == {"alpha"} and prediction["alpha"].shape == (20, 17)
    assert main(["evaluate", "--run", str(tmp_path / "cv"), "--output", str(tmp_path / "eval")]) == 0

    # An unknown option is refused when the config is loaded, with the key's name.
    bad = _config(tmp_path, {"name": "recipe_matting", "depth": 3}, {"name": "alpha_l1"})
    assert main(["train", "--config", bad, "--run-dir", str(tmp_path / "bad")]) == 1
    assert not (tmp_path / "bad").exists()


def test_the_nig_head_wraps_the_new_model_by_its_declared_layer(tmp_path):
    torch.manual_seed(0)
    wrapped = build_model("nig", base={"name": "recipe_matting", "width": 4})
    assert wrapped.feature_layer == "head" and wrapped.stem is None
    assert wrapped.spec.takes == ("image", "user_map") and wrapped.spec.gives_nig
    # A freshly wrapped model predicts exactly its base's alpha (gamma copies the base's logit).
    image = torch.rand(2, 1, 12, 12)
    outputs = wrapped.eval()({"image": image})
    torch.testing.assert_close(outputs["alpha"], outputs["base_alpha"])

    config = _config(tmp_path, {"name": "nig", "base": {"name": "recipe_matting"}},
                     {"name": "nig", "base": {"name": "alpha_l1"}})
    assert main(["train", "--config", config, "--run-dir", str(tmp_path / "nig")]) == 0
    model, _ = load_run(tmp_path / "nig")
    prediction = predict(model, image[0].numpy(), user_map=np.zeros((12, 12), np.float32))
    assert {"alpha", "epistemic", "aleatoric", "nig_gamma"} <= set(prediction)
