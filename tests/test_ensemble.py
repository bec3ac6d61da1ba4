"""Deep ensembles: several trained runs predicting as one model (medmat.models.ensemble, load_runs,
ensemble_runs_and_cases, and several --run / --model on the command line)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medmat.app.session import MattingSession
from medmat.cli.main import main
from medmat.data.splits import load_split, save_split
from medmat.engine import crossval, load_config, load_run, load_runs, predict, train
from medmat.engine.checkpoint import load_checkpoint, save_checkpoint
from medmat.engine.held_out import ensemble_runs_and_cases
from medmat.engine.evaluation import read_metrics, whole_image_scores
from medmat.engine.inference import build_model_from_config, ensemble_members
from medmat.engine.summary import left_out_lines
from medmat.engine.trainer import load_samples, member_config
from medmat.errors import MedmatError
from medmat.interaction.evaluation import require_nig_config
from medmat.models import build_model
from medmat.models.ensemble import DeepEnsemble
from medmat.uncertainty import lesion_uncertainty, uncertainty_map
from tiny_configs import MEDICAL_TINY, NIG_LOSS, NIG_TINY, TINY_MODELS, finished_run, tiny_model, tiny_phantom_config

pytestmark = pytest.mark.usefixtures("single_thread")

#: Deterministic alpha (the prior's mean code), random sampled masks.
MEAN_CODE = tiny_model("medical_matting", matting_latent="prior_mean")


def _network(name: str, seed: int, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name, **{**TINY_MODELS[name], **overrides}).eval()


def _seeded_run(folder: Path, seed: int, model: dict = MEAN_CODE, resize: int = 32) -> Path:
    """A finished run (tiny_configs.finished_run) holding an untrained network built after torch.manual_seed(seed)."""
    config = tiny_phantom_config(model)
    config["data"]["resize"] = resize
    torch.manual_seed(seed)
    network = build_model_from_config(config).eval()
    folder.mkdir(parents=True)
    save_checkpoint(folder / "final.pt", model=network.state_dict(), config=config)
    return finished_run(folder, model)


def test_the_ensembles_alpha_is_the_members_mean_and_its_masks_their_interleaved_pool():
    members = [_network("medical_matting", seed, matting_latent="prior_mean") for seed in (0, 1)]
    ensemble = DeepEnsemble(members).eval()
    batch = {"image": torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))}
    with torch.no_grad():
        torch.manual_seed(7)
        alone = [member(batch, 3) for member in members]  # ceil(5 / 2) masks each, in member order
        torch.manual_seed(7)
        outputs = ensemble(batch, 5)
    mean_alpha = (alone[0]["alpha"] + alone[1]["alpha"]) / 2
    assert not torch.allclose(alone[0]["alpha"], alone[1]["alpha"], atol=1e-3)  # two different models
    torch.testing.assert_close(outputs["alpha"], mean_alpha)
    first, second = alone[0]["sample_masks"], alone[1]["sample_masks"]
    interleaved = torch.stack([first[:, 0], second[:, 0], first[:, 1], second[:, 1], first[:, 2]], dim=1)
    torch.testing.assert_close(outputs["sample_masks"], interleaved)
    torch.testing.assert_close(outputs["uncertainty_map"], uncertainty_map(interleaved))
    torch.testing.assert_close(outputs["lesion_uncertainty"], lesion_uncertainty(mean_alpha))
    assert set(outputs) == set(ensemble.spec.gives) == {"alpha", "lesion_uncertainty", "uncertainty_map", "sample_masks"}
    with torch.no_grad():
        assert DeepEnsemble(members, num_samples=3).eval()(batch)["sample_masks"].shape[1] == 3  # None: its own N


def test_an_ensemble_takes_what_any_member_takes_and_samples_only_when_all_do():
    members = [_network("medical_matting", 0, matting_latent="prior_mean"), _network("adamatting", 1)]
    ensemble = DeepEnsemble(members)
    spec = ensemble.spec
    assert spec.takes == ("image", "trimap") and spec.requires == ("image", "trimap")
    assert spec.gives == ("alpha", "lesion_uncertainty")
    assert spec.size_multiple == np.lcm(members[0].spec.size_multiple, members[1].spec.size_multiple)
    image = np.random.default_rng(0).random((1, 32, 32)).astype(np.float32)  # no padding for either
    trimap = np.full((32, 32), 128, np.uint8)
    trimap[:4], trimap[-4:] = 0, 255
    with pytest.raises(MedmatError, match="needs a trimap"):
        predict(ensemble, image)
    together = predict(ensemble, image, trimap)["alpha"]
    apart = [predict(member, image, trimap)["alpha"] for member in members]
    np.testing.assert_allclose(together, (apart[0] + apart[1]) / 2, atol=1e-6)


def test_an_ensemble_refuses_one_member_mixed_channels_and_training():
    with pytest.raises(ValueError, match="at least two"):
        DeepEnsemble([_network("medical_matting", 0)])
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        DeepEnsemble([_network("medical_matting", 0), _network("medical_matting", 1)], num_samples=0)
    with pytest.raises(ValueError, match="different channels"):
        DeepEnsemble([_network("medical_matting", 0), _network("medical_matting", 1, in_channels=3)])
    ensemble = DeepEnsemble([_network("medical_matting", 0), _network("medical_matting", 1)]).train()
    with pytest.raises(ValueError, match="only predicts"):
        ensemble({"image": torch.rand(1, 1, 32, 32), "pseudo_mask": torch.zeros(1, 1, 32, 32)})


def test_load_runs_gives_the_model_of_one_run_and_an_ensemble_of_several(tmp_path):
    first, second = _seeded_run(tmp_path / "a", 0), _seeded_run(tmp_path / "b", 1)
    model, config = load_runs([first])
    assert not isinstance(model, DeepEnsemble) and config["model"]["name"] == "medical_matting"
    ensemble, config = load_runs([first, second])
    assert isinstance(ensemble, DeepEnsemble) and len(ensemble.members) == 2 and not ensemble.training
    other_size = _seeded_run(tmp_path / "c", 2, resize=24)
    with pytest.raises(MedmatError, match="see images alike") as error:
        load_runs([first, other_size])
    assert str(other_size) in str(error.value)
    with pytest.raises(MedmatError, match="no run"):
        load_runs([])


def test_ensemble_runs_must_hold_out_the_same_cases(tmp_path):
    samples = load_samples(tiny_phantom_config(MEDICAL_TINY))
    ids = [s.id for s in samples]

    def crossval_folder(name: str, tests: list[list[str]]) -> Path:
        root = tmp_path / name
        for fold in range(len(tests)):
            _seeded_run(root / f"fold-{fold}", fold)
        folds = [{"fold": f, "train": [i for i in ids if i not in t], "test": t} for f, t in enumerate(tests)]
        save_split(root / "split.json", folds, {"scheme": "random", "seed": 0, "k": len(tests)})
        return root

    a = crossval_folder("a", [ids[:4], ids[4:]])
    b = crossval_folder("b", [ids[:4], ids[4:]])
    pairs = ensemble_runs_and_cases([a, b], samples)
    assert [dirs for dirs, _ in pairs] == [[str(a / "fold-0"), str(b / "fold-0")], [str(a / "fold-1"), str(b / "fold-1")]]
    assert [[c.id for c in cases] for _, cases in pairs] == [ids[:4], ids[4:]]
    swapped = crossval_folder("swapped", [ids[4:], ids[:4]])
    with pytest.raises(MedmatError, match="fold 0 holds out other cases"):
        ensemble_runs_and_cases([a, swapped], samples)
    three = crossval_folder("three", [ids[:3], ids[3:6], ids[6:]])
    with pytest.raises(MedmatError, match="3 folds here, 2"):
        ensemble_runs_and_cases([a, three], samples)


def test_evaluate_and_predict_take_several_runs_as_one_ensemble(tmp_path):
    first, second = _seeded_run(tmp_path / "a", 0), _seeded_run(tmp_path / "b", 1)
    scores = {}
    for name, runs in (("a", [first]), ("b", [second]), ("ab", [first, second])):
        out = tmp_path / f"evaluate-{name}"
        args = [arg for run in runs for arg in ("--run", str(run))]
        assert main(["evaluate", *args, "-o", str(out), "--figure", "1"]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["table_iv"]["n"] == 4
        scores[name] = summary["table_iv"]["mean"]["SAD"]
    assert summary["config"]["ensemble_runs"] == [str(first), str(second)]
    assert scores["ab"] not in (scores["a"], scores["b"])  # both models took part
    images = tmp_path / "images"
    images.mkdir()
    pixels = (np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(images / "scan.png")
    out = tmp_path / "predicted"
    assert main(["predict", "-i", str(images), "-o", str(out), "-m", str(first), "-m", str(second),
                 "--samples", "3"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert "scan_alpha.png" in written and any("uncertainty" in name for name in written), written


def test_interact_fuses_probes_into_an_ensembles_alpha_and_dugmatting_refuses_one(tmp_path, capsys):
    first, second = _seeded_run(tmp_path / "a", 0), _seeded_run(tmp_path / "b", 1)
    runs = ["--run", str(first), "--run", str(second)]
    out = tmp_path / "interact"
    assert main(["interact", *runs, "--protocol", "probe", "--simulate", "1", "--figure", "0", "-o", str(out)]) == 0
    record = json.loads((out / "interaction.json").read_text())
    assert record["settings"]["run"] == f"{first} + {second}"
    assert [len(fold) for fold in record["folds"]] == [4]
    capsys.readouterr()
    assert main(["interact", *runs, "--protocol", "dugmatting", "--simulate", "1", "-o", str(tmp_path / "dug")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "takes one run" in lines[0] and not (tmp_path / "dug").exists()


def test_the_app_session_serves_an_ensemble_and_fuses_a_probe_into_its_alpha(tmp_path):
    first, second = _seeded_run(tmp_path / "a", 0), _seeded_run(tmp_path / "b", 1)
    session = MattingSession.from_run([first, second], num_samples=4)
    assert session.run == f"{first} + {second}" and isinstance(session.model, DeepEnsemble)
    pixels = (np.random.default_rng(1).random((32, 32)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "scan.png")
    session.open_image((tmp_path / "scan.png").read_bytes(), "scan.png")
    before = session.current.maps["alpha"]
    assert session.current.maps["sample_masks"].shape == (4, 32, 32)
    step = session.probe(16, 16, 1.0)
    assert step.maps["alpha"][16, 16] > before[16, 16] + 0.2  # the answer reached the matte
    assert session.undo().maps["alpha"].tobytes() == before.tobytes()


def test_an_ensemble_config_trains_the_single_seed_runs_and_scores_them_as_one(tmp_path, capsys):
    """ensemble.members = 2, seed 3: each fold's member-0 and member-1 are the runs of seeds 6 and 7,
    weight for weight; the fold folders predict as one ensemble everywhere a run is read, and
    ``medmat evaluate`` scores them as it scores the two single-seed runs given together."""
    config = tiny_phantom_config(MEDICAL_TINY)
    samples = load_samples(config)
    ensemble_config = load_config({**config, "seed": 3, "ensemble": {"members": 2}})
    summary = crossval(ensemble_config, tmp_path / "ens", samples=samples)
    singles = {seed: tmp_path / f"seed-{seed}" for seed in (6, 7)}
    for seed, folder in singles.items():
        crossval(load_config({**config, "seed": seed}), folder, samples=samples)
    for fold in (0, 1):
        fold_dir = tmp_path / "ens" / f"fold-{fold}"
        assert ensemble_members(fold_dir) == [fold_dir / "member-0", fold_dir / "member-1"]
        for member, seed in enumerate(singles):
            mine = load_checkpoint(fold_dir / f"member-{member}" / "final.pt")
            theirs = load_checkpoint(singles[seed] / f"fold-{fold}" / "final.pt")
            assert mine["config"]["seed"] == seed and mine["config"]["ensemble"]["members"] == 1
            assert all(torch.equal(mine["model"][key], value) for key, value in theirs["model"].items())
        record = json.loads((fold_dir / "metrics.json").read_text())
        assert record["members"] == [str(fold_dir / "member-0"), str(fold_dir / "member-1")]
        assert record["test_ids"] == json.loads((singles[6] / f"fold-{fold}" / "metrics.json").read_text())["test_ids"]
        model, fold_config = load_run(fold_dir)
        assert isinstance(model, DeepEnsemble) and len(model.members) == 2
        assert (fold_config["seed"], fold_config["ensemble"]["members"]) == (3, 2)
    single_sad = json.loads((singles[6] / "summary.json").read_text())["table_iv"]["mean"]["SAD"]
    # The summary puts each member beside the ensemble: the single-seed run it is, to the last digit.
    assert list(summary["members"]) == ["member 0 (seed 6)", "member 1 (seed 7)"]
    for label, seed in zip(summary["members"], singles):
        single = json.loads((singles[seed] / "summary.json").read_text())
        assert summary["members"][label] == {"table_iv": single["table_iv"], "table_v": single["table_v"]}
        assert "members" not in single and "(ensemble)" not in (singles[seed] / "summary.md").read_text()
    table = (tmp_path / "ens" / "summary.md").read_text()
    assert "| medical_matting (ensemble) |" in table and table.count("| member 1 (seed 7) |") == 2
    assert summary["table_iv"]["n"] == 8 and summary["table_iv"]["mean"]["SAD"] != single_sad
    scored = {}  # the fold folders by default draw with the ensemble's seed, as crossval scored them
    for name, runs, seed in (("ens", [tmp_path / "ens"], []), ("pair", list(singles.values()), ["--seed", "3"])):
        args = [arg for run in runs for arg in ("--run", str(run))]
        assert main(["evaluate", *args, *seed, "-o", str(tmp_path / f"evaluate-{name}"), "--figure", "0"]) == 0
        evaluated = json.loads((tmp_path / f"evaluate-{name}" / "summary.json").read_text())
        assert evaluated["config"]["evaluation_seed"] == 3
        scored[name] = evaluated["table_iv"]["mean"]
    assert scored["ens"] == scored["pair"] == pytest.approx(summary["table_iv"]["mean"], rel=1e-12)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray((np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)).save(images / "scan.png")
    for name, models in (("fold", [tmp_path / "ens" / "fold-0"]), ("members", [singles[6] / "fold-0", singles[7] / "fold-0"])):
        args = [arg for model in models for arg in ("-m", str(model))]
        assert main(["predict", "-i", str(images), "-o", str(tmp_path / name), *args, "--samples", "2"]) == 0
    for written in ("scan_alpha.png", "scan_uncertainty.png"):  # the fold folder predicts as its two members
        assert np.array_equal(np.asarray(Image.open(tmp_path / "fold" / written)),
                              np.asarray(Image.open(tmp_path / "members" / written)))
    with pytest.raises(MedmatError, match="already holds"):
        crossval(ensemble_config, tmp_path / "ens", samples=samples)
    for fold in (0, 1):  # a fold whose ensemble score was lost is rescored from its finished members
        (tmp_path / "ens" / f"fold-{fold}" / "metrics.json").unlink()
    resumed = crossval(ensemble_config, tmp_path / "ens", samples=samples, resume=True)
    assert resumed["table_iv"] == summary["table_iv"]
    alone = train(ensemble_config, tmp_path / "one-fold", fold=0, samples=samples)  # `medmat train`: its own split
    assert load_split(tmp_path / "one-fold" / "split.json")["folds"] == load_split(tmp_path / "ens" / "split.json")["folds"]
    assert alone["test_ids"] == json.loads((tmp_path / "ens" / "fold-0" / "metrics.json").read_text())["test_ids"]
    changed = load_config({**config, "seed": 3, "ensemble": {"members": 3}})
    with pytest.raises(MedmatError, match="ensemble.members"):
        crossval(changed, tmp_path / "ens", samples=samples, resume=True)


def test_member_config_seeds_members_apart_and_refuses_one_outside_the_ensemble():
    config = load_config({"seed": 5, "ensemble": {"members": 3}})
    assert [member_config(config, i)["seed"] for i in range(3)] == [15, 16, 17]
    assert member_config(config, 0)["ensemble"] == {"members": 1} and config["ensemble"]["members"] == 3
    with pytest.raises(MedmatError, match="member 3 of an ensemble of 3"):
        member_config(config, 3)


def test_dugmatting_interaction_refuses_a_config_that_trains_an_ensemble_of_nig_models(tmp_path):
    nig = tiny_phantom_config(NIG_TINY, NIG_LOSS)
    require_nig_config(nig, tmp_path)  # one NIG model per fold: its maps exist
    with pytest.raises(MedmatError, match="deep ensemble of 2 'nig' models per fold") as error:
        require_nig_config(load_config({**nig, "ensemble": {"members": 2}}), tmp_path)
    assert error.value.path == str(tmp_path)


def test_a_member_that_fits_its_training_cases_worse_than_unfit_ratio_allows_is_left_out(tmp_path):
    """ensemble.unfit_ratio: each member's whole-image SAD on the fold's training cases decides;
    with ratio 1 only the best member stays, and the fold folder then predicts and scores as that
    member alone, everywhere a run is read (members.json)."""
    config = tiny_phantom_config(MEDICAL_TINY)
    samples = load_samples(config)
    ensemble_config = load_config({**config, "seed": 3, "ensemble": {"members": 2, "unfit_ratio": 1.0}})
    record = train(ensemble_config, tmp_path / "ens", fold=0, samples=samples)
    kept = json.loads((tmp_path / "ens" / "members.json").read_text())
    training_sad = kept["training_SAD"]
    assert len(training_sad) == 2 and training_sad[0] != training_sad[1]
    best = int(np.argmin(training_sad))
    assert kept["kept"] == [best] and kept["left_out"] == [1 - best] and kept["unfit_ratio"] == 1.0
    assert record["members_training_SAD"] == training_sad
    assert record["kept_members"] == [str(tmp_path / "ens" / f"member-{best}")]
    assert ensemble_members(tmp_path / "ens") == [tmp_path / "ens" / f"member-{best}"]
    (line,) = left_out_lines([record])  # what the crossval summary says of the fold
    assert line.startswith(f"Fold 0: member-{1 - best} left out") and f"{training_sad[best]:.4f}" in line
    assert len(ensemble_members(tmp_path / "ens", every_member=True)) == 2
    model, _ = load_run(tmp_path / "ens")
    assert not isinstance(model, DeepEnsemble)
    # The fold's score is the kept member's, drawn with the ensemble's seed.
    assert main(["evaluate", "--run", str(tmp_path / "ens" / f"member-{best}"), "--seed", "3",
                 "-o", str(tmp_path / "alone"), "--figure", "0"]) == 0
    alone = json.loads((tmp_path / "alone" / "summary.json").read_text())["table_iv"]["mean"]
    assert record["mean"]["region"] == pytest.approx(alone, rel=1e-12)
    # The training SAD is the member's own: recomputed from its folder, it is the same number.
    member = member_config(ensemble_config, best)
    train_samples = [s for s in samples if s.id in set(record["train_ids"])]
    again = whole_image_scores(load_run(tmp_path / "ens" / f"member-{best}")[0], train_samples, member, None)
    assert again["SAD"] == pytest.approx(training_sad[best], rel=1e-9)
    # ... the number each member's own training wrote (train.core_alpha_floor's check), read, not predicted again.
    assert training_sad == [read_metrics(tmp_path / "ens" / f"member-{i}")["training_fit"]["scores"]["SAD"]
                            for i in range(2)]
    # A fold whose score was lost is rescored at train.num_threads although no member trains again
    # (a crossval worker forked with jobs > 1 would otherwise run at its parent's count and deadlock in OpenMP).
    for name in ("metrics.json", "members.json"):
        (tmp_path / "ens" / name).unlink()
    ensemble_config["train"]["num_threads"] = 2
    rescored = train(ensemble_config, tmp_path / "ens", fold=0, samples=samples, resume=True)
    assert rescored["mean"]["region"] == pytest.approx(record["mean"]["region"], rel=1e-5)
    assert torch.get_num_threads() == 2
    # The ratio may change on resume (it chooses among finished members): a lax one keeps both.
    (tmp_path / "ens" / "metrics.json").unlink()
    lax = load_config({**ensemble_config, "ensemble": {"members": 2, "unfit_ratio": 100}})
    assert train(lax, tmp_path / "ens", fold=0, samples=samples, resume=True)["kept_members"] == [
        str(tmp_path / "ens" / "member-0"), str(tmp_path / "ens" / "member-1")]
    assert len(ensemble_members(tmp_path / "ens")) == 2
    (tmp_path / "ens" / "members.json").write_text(json.dumps({"kept": [best]}))  # as the strict ratio left it
    (tmp_path / "ens" / "metrics.json").unlink()
    train(load_config({**ensemble_config, "ensemble": {"members": 2}}), tmp_path / "ens", fold=0, samples=samples,
          resume=True)  # rescored without a ratio: no stale choice survives for later readers
    assert not (tmp_path / "ens" / "members.json").exists() and len(ensemble_members(tmp_path / "ens")) == 2
    # Without the ratio every member counts (the default).
    assert load_config({**config, "ensemble": {"members": 2}})["ensemble"]["unfit_ratio"] is None
    with pytest.raises(MedmatError, match="unfit_ratio"):
        load_config({**config, "ensemble": {"members": 2, "unfit_ratio": 0.5}})


@pytest.mark.parametrize("content, problem", [
    ("{not json", "cannot read"), ('{"kept": []}', "non-empty list"), ('{"kept": [0, 5]}', "member 5"),
])
def test_a_broken_members_json_is_refused_in_one_line_naming_it(tmp_path, content, problem):
    fold = tmp_path / "fold-0"
    for index in (0, 1):
        _seeded_run(fold / f"member-{index}", seed=index)
    (fold / "members.json").write_text(content)
    with pytest.raises(MedmatError, match=problem) as error:
        load_run(fold)
    assert error.value.path == str(fold / "members.json")
