"""Hostile input, end to end: build each bad file in a temporary folder, run ``medmat info`` on it,
and print the exit status and the one line it wrote. Fails (exit 1) if any case exits 0, writes a
traceback or more than one line, or if the code carried by the hostile pickle ran.

    python benchmarks/hostile_inputs.py
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from PIL import Image


class CarriesCode:
    """Pickled, it carries code: unpickling it runs ``touch marker`` (what a hostile release could do)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _release(case: dict) -> bytes:
    return pickle.dumps({"case01": case})


def make_cases(folder: str) -> dict[str, str]:
    """Write every hostile input into ``folder``; returns description -> path."""
    rng = np.random.default_rng(0)
    alpha = (rng.random((16, 16)) * 255).astype(np.uint8)
    good = {"series_uid": "1", "image": alpha, "masks": [(alpha > 100).astype(np.uint8)] * 3, "alpha": alpha}
    cases = {}

    def write(name: str, data: bytes, what: str) -> None:
        path = os.path.join(folder, name)
        with open(path, "wb") as handle:
            handle.write(data)
        cases[what] = path

    write("carries-code.pkl", pickle.dumps({"case01": CarriesCode(os.path.join(folder, "CODE-RAN"))}), "a pickle that carries code")
    whole = _release(good)
    write("truncated.pkl", whole[: len(whole) // 2], "a truncated pickle")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("release.pkl", whole)
    write("truncated.zip", buffer.getvalue()[:-50], "a truncated zip")
    write("mask-shape.pkl", _release({**good, "masks": [np.zeros((8, 8), np.uint8)] * 3}), "masks of another shape than the image")
    write("nan-alpha.pkl", _release({**good, "alpha": np.full((16, 16), np.nan, np.float32)}), "NaN alpha")
    write("mask-values.pkl", _release({**good, "masks": [np.full((16, 16), 7, np.uint8)] * 3}), "mask values outside {0,1}/{0,255}")
    write("empty.pkl", pickle.dumps({}), "an empty dataset")
    write("no-annotators.pkl", _release({**good, "masks": []}), "a case with no annotators")
    own = os.path.join(folder, "not-a-png")
    os.makedirs(os.path.join(own, "imagesTr"))
    os.makedirs(os.path.join(own, "labelsTr"))
    with open(os.path.join(own, "dataset.json"), "w") as handle:
        json.dump({"name": "own", "file_ending": ".png", "annotators": 1}, handle)
    with open(os.path.join(own, "imagesTr", "a_0000.png"), "wb") as handle:
        handle.write(os.urandom(200))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(os.path.join(own, "labelsTr", "a_r0.png"))
    cases["a PNG that is not a PNG"] = own
    cases["a missing file"] = os.path.join(folder, "missing.zip")
    return cases


def main() -> int:
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        for what, path in make_cases(folder).items():
            result = subprocess.run([sys.executable, "-m", "medmat", "info", "--data", path], capture_output=True, text=True)
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            good = result.returncode != 0 and len(lines) == 1 and "Traceback" not in result.stderr
            failures += not good
            shown = lines[0].replace(folder + os.sep, "") if lines else "(nothing)"
            print(f"{'ok  ' if good else 'FAIL'} exit {result.returncode}  {what}: {shown}")
        ran = os.path.exists(os.path.join(folder, "CODE-RAN"))
        print(f"{'FAIL' if ran else 'ok  '} the hostile pickle's code {'RAN' if ran else 'never ran'}")
    return 1 if failures or ran else 0


if __name__ == "__main__":
    sys.exit(main())
