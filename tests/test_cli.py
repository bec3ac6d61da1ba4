"""The command line: user errors give one line and a non-zero exit, never a traceback; commands
produce their files on the built-in phantoms."""

from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medmat.cli.main import COMMAND_MODULES, cli, main
from tiny_configs import load_benchmark

REPO = Path(__file__).resolve().parents[1]
#: The sub-commands the README documents: each must be registered (an import error must not drop one).
DOCUMENTED_COMMANDS = ("info", "split", "label", "baseline", "train", "crossval", "predict", "evaluate", "interact",
                       "serve", "phantoms")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m medmat ARGS`` in a fresh process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "medmat", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _release_pickle(cases: dict) -> bytes:
    return pickle.dumps(cases, protocol=4)


def _good_case(rng, size=16, annotators=3):
    alpha = (rng.random((size, size)) * 255).astype(np.uint8)
    masks = [(alpha > 80 + 20 * k).astype(np.uint8) for k in range(annotators)]
    return {"series_uid": "1.2.3", "image": alpha.copy(), "masks": masks, "alpha": alpha}


def test_pickle_carrying_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.pkl"

    hostile.write_bytes(pickle.dumps({"case01": load_benchmark("hostile_inputs").CarriesCode(str(marker))}))
    result = run_cli("info", "--data", str(hostile))
    assert_one_line_error(result, "hostile.pkl", "refused")
    assert not marker.exists()


@pytest.mark.parametrize(
    "problem, edit, expected",
    [
        ("masks of another shape", lambda c: c.update(masks=[np.zeros((8, 8), np.uint8)] * 3), "shape"),
        ("NaN alpha", lambda c: c.update(alpha=np.full((16, 16), np.nan, np.float32)), "NaN"),
        ("mask values out of range", lambda c: c.update(masks=[np.full((16, 16), 7, np.uint8)] * 3), "mask values"),
        ("no annotators", lambda c: c.update(masks=[]), "annotator"),
    ],
)
def test_bad_release_cases_give_one_line(tmp_path, problem, edit, expected):
    case = _good_case(np.random.default_rng(0))
    edit(case)
    path = tmp_path / "bad.pkl"
    path.write_bytes(_release_pickle({"case01": case}))
    result = run_cli("info", "--data", str(path))
    assert_one_line_error(result, "bad.pkl", expected)


def test_truncated_zip_and_pickle(tmp_path):
    good = _release_pickle({"case01": _good_case(np.random.default_rng(1))})
    truncated_pickle = tmp_path / "cut.pkl"
    truncated_pickle.write_bytes(good[: len(good) // 2])
    assert_one_line_error(run_cli("info", "--data", str(truncated_pickle)), "cut.pkl")

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("release.pkl", good)
    truncated_zip = tmp_path / "cut.zip"
    truncated_zip.write_bytes(buffer.getvalue()[:-60])
    assert_one_line_error(run_cli("info", "--data", str(truncated_zip)), "cut.zip")


def test_empty_dataset_missing_file_and_fake_png(tmp_path):
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(_release_pickle({}))
    assert_one_line_error(run_cli("info", "--data", str(empty)), "empty")

    assert_one_line_error(run_cli("info", "--data", str(tmp_path / "nowhere.zip")), "nowhere.zip")

    folder = tmp_path / "own"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    (folder / "dataset.json").write_text(json.dumps({"name": "own", "file_ending": ".png", "annotators": 1}))
    (folder / "imagesTr" / "a_0000.png").write_bytes(os.urandom(300))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "labelsTr" / "a_r0.png")
    assert_one_line_error(run_cli("info", "--data", str(folder)), "a_0000.png")


def _commands_run_in_the_docs() -> set[str]:
    """The sub-commands of every ``medmat ...`` line in the code blocks of README.md and docs/*.md."""
    names = set()
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        in_code = False
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.lstrip().startswith("```"):
                in_code = not in_code
            elif in_code and (match := re.match(r"\s*(?:\$\s*)?(?:\S*/)?medmat\s+([a-z][a-z-]*)", line)):
                names.add(match.group(1))
    return names


def test_every_documented_command_is_registered():
    documented = set(DOCUMENTED_COMMANDS) | _commands_run_in_the_docs()
    assert set(DOCUMENTED_COMMANDS) <= _commands_run_in_the_docs()
    assert documented <= set(cli.list_commands(None)), documented - set(cli.list_commands(None))
    listed = run_cli("--help")  # a fresh process, as the user's
    assert listed.returncode == 0
    for name in documented:
        assert re.search(rf"^\s+{name}\s", listed.stdout, re.MULTILINE), name


def test_each_command_is_found_in_the_module_that_defines_it():
    """main.COMMAND_MODULES names, without importing it, the module of every command; each module's
    COMMANDS are all named there (a command added to a module but not to the map would be unreachable)."""
    modules = {f"medmat.cli.{path.stem}" for path in (REPO / "medmat" / "cli").glob("*_commands.py")}
    assert {module for module, _ in COMMAND_MODULES.values()} == modules
    by_module = {}
    for name, (module, _) in COMMAND_MODULES.items():
        by_module.setdefault(module, set()).add(name)
    for module, names in by_module.items():
        assert {command.name for command in importlib.import_module(module).COMMANDS} == names, module
    assert all(cli.get_command(None, name).name == name for name in COMMAND_MODULES)
    assert cli.get_command(None, "no-such-command") is None
    # medmat --help lists the map's summaries: each the command's own short help.
    for name, (_, summary) in COMMAND_MODULES.items():
        assert cli.get_command(None, name).get_short_help_str(limit=10_000) == summary, name


def test_the_short_help_loads_no_command_module():
    probe = ("import sys; from medmat.cli.main import main; code = main(['--help']); "
             "print(sorted(m for m in sys.modules if m.endswith('_commands')), code)")
    listed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert listed.stdout.strip().endswith("[] 0"), listed.stdout[-300:]
    assert "train     Train one fold and evaluate it on the held-out cases" in listed.stdout


def test_an_import_error_in_a_command_module_is_not_swallowed():
    # Before: main.py caught the ImportError and silently dropped train, predict, evaluate, ...
    broken = ("import sys; sys.modules['medmat.cli.model_commands'] = None; "
              "from medmat.cli.main import main; main(['train', '--help'])")
    result = subprocess.run([sys.executable, "-c", broken], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "medmat.cli.model_commands" in result.stderr.splitlines()[-1], result.stderr


def test_unknown_method_is_a_user_error(capsys):
    assert main(["baseline", "--data", "phantom:4", "--methods", "cf,nope", "--output", "/tmp/unused"]) == 1
    assert "nope" in capsys.readouterr().err


def test_label_and_baseline_on_phantoms(tmp_path):
    labels = tmp_path / "labels"
    assert main(["label", "--data", "phantom:4", "--output", str(labels), "--method", "cf"]) == 0
    assert (labels / "dataset.json").exists() and (labels / "examples.png").exists()
    alphas = sorted((labels / "alphasTr").iterdir())
    assert len(alphas) == 4
    timing = json.loads((labels / "label_times.json").read_text())
    assert timing["cases"] == 4 and timing["seconds_per_image_mean"] > 0

    out = tmp_path / "baseline"
    assert main(["baseline", "--data", str(labels), "--methods", "cf", "--output", str(out)]) == 0
    table = json.loads((out / "baseline_unknown.json").read_text())
    rows = table["rows"]
    assert set(rows) == {"mean of the annotators' masks", "Closed-form"}
    # The labels were made by closed-form itself on the same trimaps: it must reproduce them
    # almost exactly, far better than the mean of the masks does.
    assert rows["Closed-form"]["mean"]["SAD"] < 0.2 * rows["mean of the annotators' masks"]["mean"]["SAD"]
    assert (out / "baseline_unknown.csv").read_text().startswith("method,n,SAD,MSE,Grad,Conn")


def test_evaluate_a_trimap_based_run_reads_the_cases_trimaps(tmp_path):
    from medmat.engine import train
    from tiny_configs import tiny_model, tiny_phantom_config

    labels = tmp_path / "labels"  # a folder dataset with trimaps, as `medmat label` writes one
    assert main(["label", "--data", "phantom:8", "--output", str(labels), "--method", "cf"]) == 0
    config = tiny_phantom_config(tiny_model("adamatting"), {"name": "adamatting"})
    config["data"].update(dataset=str(labels), train_trimaps="annotators")
    train(config, tmp_path / "run")
    out = tmp_path / "evaluate"
    assert main(["evaluate", "--run", str(tmp_path / "run"), "-o", str(out), "--uncertainty"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["table_iv"]["n"] == 4 and (out / "examples.png").is_file()


def test_evaluate_flip_overrides_the_runs_eval_flip(tmp_path):
    from medmat.engine import train
    from tiny_configs import tiny_model, tiny_phantom_config

    config = tiny_phantom_config(tiny_model("medical_matting"), {"name": "medical_matting"})
    train(config, tmp_path / "run")
    scores = {}
    for flag in ("--flip=none", "--flip"):
        out = tmp_path / flag.strip("-")
        assert main(["evaluate", "--run", str(tmp_path / "run"), "-o", str(out), "--figure", "0", flag]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["config"]["eval"]["flip"] is (flag == "--flip")  # the recorded config says so
        scores[flag] = summary["table_iv"]
    # The run was trained without flip: --flip=none reproduces its own metrics, --flip changes them.
    trained = json.loads((tmp_path / "run" / "metrics.json").read_text())["mean"]
    group = "region" if trained["region"] is not None else "whole"
    assert scores["--flip=none"]["mean"]["SAD"] == pytest.approx(trained[group]["SAD"], rel=1e-4)
    assert scores["--flip"]["mean"]["SAD"] != scores["--flip=none"]["mean"]["SAD"]


def test_evaluate_draws_with_the_runs_own_seed_unless_told(tmp_path):
    """A run trained with seed 5 scored its folds with seed 5: ``medmat evaluate`` without --seed
    repeats those scores; --seed 0 draws other masks, and the summary names the seed it used."""
    from medmat.engine import train
    from tiny_configs import tiny_model, tiny_phantom_config

    config = tiny_phantom_config(tiny_model("medical_matting"), {"name": "medical_matting"})
    train({**config, "seed": 5}, tmp_path / "run")
    trained = json.loads((tmp_path / "run" / "metrics.json").read_text())["mean"]
    group = "region" if trained["region"] is not None else "whole"
    scored = {}
    for name, seed in (("default", []), ("zero", ["--seed", "0"])):
        out = tmp_path / name
        assert main(["evaluate", "--run", str(tmp_path / "run"), "-o", str(out), "--figure", "0", *seed]) == 0
        summary = json.loads((out / "summary.json").read_text())
        scored[name] = (summary["config"]["evaluation_seed"], summary["table_iv"]["mean"], summary["table_v"])
    assert scored["default"][0] == 5 and scored["zero"][0] == 0
    assert scored["default"][1]["SAD"] == pytest.approx(trained[group]["SAD"], rel=1e-4)
    assert scored["default"][2]["mean"]["GED"] == pytest.approx(trained["GED"], rel=1e-4)
    assert scored["zero"][2]["mean"]["GED"] != scored["default"][2]["mean"]["GED"]


def test_cli_startup_benchmark_prints_every_probe_against_the_import_floor(capsys, monkeypatch):
    script = load_benchmark("cli_startup")
    monkeypatch.setattr(sys, "argv", ["cli_startup.py", "--repeats", "1"])
    script.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == list(script.PROBES)
    assert rows[0].endswith("| 1.00 |") and all(float(row.split(" | ")[1]) > 0 for row in rows)
