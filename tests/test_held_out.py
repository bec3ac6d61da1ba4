"""medmat.engine.held_out: a run's models and held-out cases, and a fold scored as it was trained."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from medmat.data.splits import save_split
from medmat.engine import evaluate_samples, load_run
from medmat.engine.held_out import evaluate_fold, run_config, runs_and_cases
from medmat.engine.inference import crossval_folds, first_model_folder, fold_folder
from medmat.engine.trainer import load_samples
from medmat.errors import MedmatError
from tiny_configs import MEDICAL_TINY, finished_run, save_run, tiny_phantom_config


def test_a_train_run_gives_its_model_and_test_cases(tmp_path):
    run = finished_run(save_run(tmp_path / "run", MEDICAL_TINY, two_folds=True), MEDICAL_TINY)
    samples = load_samples(tiny_phantom_config(MEDICAL_TINY))
    [(model_dir, cases)] = runs_and_cases(run, samples)
    assert model_dir == str(run)
    assert [c.id for c in cases] == json.loads((run / "metrics.json").read_text())["test_ids"]
    other = run_config(run, "phantom:3", None)
    assert other["data"]["dataset"] == "phantom:3" and other["data"]["trimaps"] is None


def _two_fold_crossval(root, samples, with_split=True):
    """Fold folders 0 and 1 (fold 0 holds out the first 4 cases, fold 1 the rest), the split if asked."""
    ids = [s.id for s in samples]
    for fold in (0, 1):
        save_run(root / f"fold-{fold}", MEDICAL_TINY, two_folds=True)
    if with_split:
        folds = [{"fold": 0, "train": ids[4:], "test": ids[:4]}, {"fold": 1, "train": ids[:4], "test": ids[4:]}]
        save_split(root / "split.json", folds, {"scheme": "random", "seed": 0, "k": 2})
    return root


def test_a_crossval_run_gives_each_folds_held_out_cases(tmp_path):
    samples = load_samples(tiny_phantom_config(MEDICAL_TINY))
    ids = [s.id for s in samples]
    root = _two_fold_crossval(tmp_path / "cv", samples, with_split=False)
    with pytest.raises(MedmatError, match="without split.json"):
        runs_and_cases(root, samples)
    root = _two_fold_crossval(tmp_path / "cv2", samples)
    pairs = runs_and_cases(root, samples)
    assert [d for d, _ in pairs] == [str(root / "fold-0"), str(root / "fold-1")]
    assert [[c.id for c in cases] for _, cases in pairs] == [ids[:4], ids[4:]]
    with pytest.raises(MedmatError, match="not a finished medmat run"):
        runs_and_cases(tmp_path / "empty", samples)


def test_fold_folders_are_listed_by_number_and_stray_names_are_skipped(tmp_path):
    for name in ("fold-10", "fold-2", "fold-3.partial", "fold-notes", "member-0"):
        (tmp_path / name).mkdir()
    (tmp_path / "fold-4").write_text("a file, not a fold")
    assert [d.name for d in crossval_folds(tmp_path)] == ["fold-2", "fold-10"]  # not the text order
    assert fold_folder(tmp_path, 2) == tmp_path / "fold-2"
    assert first_model_folder(tmp_path) == tmp_path / "fold-2"  # a crossval trained without fold 0
    assert first_model_folder(tmp_path / "fold-2") == tmp_path / "fold-2"  # a train run is itself


def test_evaluate_fold_is_evaluate_samples_at_the_folds_settings_and_seed(tmp_path):
    run = finished_run(save_run(tmp_path / "run", MEDICAL_TINY, two_folds=True), MEDICAL_TINY)
    model, config = load_run(run)
    [(_, cases)] = runs_and_cases(run, load_samples(config))
    record = evaluate_fold(model, config, cases, 3, seed=5, fold=2)
    assert record["fold"] == 2 and record["test_ids"] == [c.id for c in cases]
    assert record["mean"]["num_cases"] == len(cases) == len(record["cases"])
    torch.manual_seed(5)
    direct = evaluate_samples(model, cases, 3, config["eval"]["region"], None, flip=config["eval"]["flip"])
    assert record["cases"] == direct
    assert evaluate_fold(model, config, cases, 3, seed=5)["cases"] == direct  # the same draws again


def test_another_dataset_is_scored_whole_and_a_superset_without_the_training_cases(tmp_path):
    run = finished_run(save_run(tmp_path / "run", MEDICAL_TINY, two_folds=True), MEDICAL_TINY)
    samples = load_samples(tiny_phantom_config(MEDICAL_TINY))
    record = json.loads((run / "metrics.json").read_text())
    train, test = record["train_ids"], record["test_ids"]
    assert train and test and not set(train) & set(test)
    # Other patients: ids the training set lacks, plus one that collides with a training id (another image).
    others = [replace(sample, id=f"other-{i}") for i, sample in enumerate(samples[:3])]
    others.append(replace(samples[-1], id=train[0]))
    [(_, cases)] = runs_and_cases(run, others)
    assert [c.id for c in cases] == [s.id for s in others]
    # The run's own dataset with new cases added: the held-out cases first, then the new ones.
    [(_, cases)] = runs_and_cases(run, list(samples) + others[:2])
    assert [c.id for c in cases] == test + ["other-0", "other-1"]
    # A dataset made only of the training cases leaves nothing to score.
    with pytest.raises(MedmatError, match="nothing left to score"):
        runs_and_cases(run, [s for s in samples if s.id in set(train)])


def test_a_crossval_run_scores_another_dataset_with_every_fold_model(tmp_path):
    samples = load_samples(tiny_phantom_config(MEDICAL_TINY))
    root = _two_fold_crossval(tmp_path / "cv", samples)
    (root / "fold-notes").mkdir()  # not a fold folder: ignored
    others = [replace(sample, id=f"other-{i}") for i, sample in enumerate(samples[:3])]
    pairs = runs_and_cases(root, others)
    assert [d for d, _ in pairs] == [str(root / "fold-0"), str(root / "fold-1")]
    assert [[c.id for c in cases] for _, cases in pairs] == [[s.id for s in others]] * 2
