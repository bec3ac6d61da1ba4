"""Checkpoints: written atomically, read back with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values only (no pickled classes), so loading
one can never run code, and an interrupted write never leaves a truncated file behind:

- ``checkpoint.pt``, every epoch: everything needed to resume (model, criterion, optimiser,
  scheduler, completed ``epoch``, RNG states, config, split, fold);
- ``final.pt``, at the end: the trained model and criterion with the config, for inference.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from medmat.errors import MedmatError
from medmat.io.atomic import atomic_path

FORMAT = "medmat-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
FINAL_NAME = "final.pt"


def rng_states() -> dict:
    """The torch, numpy and Python global RNG states, as tensors and plain values."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}


def restore_rng_states(states: dict) -> None:
    """Inverse of :func:`rng_states`."""
    torch.set_rng_state(states["torch"])
    numpy_state = dict(states["numpy"])
    numpy_state["state"] = dict(numpy_state["state"])
    numpy_state["state"]["key"] = numpy_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state(numpy_state)
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: str | os.PathLike, **content) -> None:
    """Write ``content`` (tensors, state dicts, plain values) to ``path`` atomically, tagged as medmat's."""
    payload = {"format": FORMAT, "version": VERSION, **content}
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def unpickling_refusal(message: str) -> str:
    """What torch's weights-only unpickler refused, in a few words, from its long error message
    (which otherwise advises ``weights_only=False``: exactly what medmat must not do)."""
    found = re.search(r"GLOBAL ([\w.]+)|[Uu]nsupported global: (?:GLOBAL )?([\w.]+)", message)
    if found:
        return f"it asks for {found.group(1) or found.group(2)}, which is not a tensor or plain value"
    return "it holds something other than tensors and plain values"


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, on the CPU.

    Raises:
        MedmatError: missing file, not a torch file, a file that would need arbitrary code to
            unpickle, or a torch file that is not a medmat checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise MedmatError("checkpoint not found", path)
    # torch.save writes a zip archive; anything else (an image, a plain pickle, text) is refused
    # before the unpickler sees it, with a message about the file rather than about torch.
    if not zipfile.is_zipfile(path):
        raise MedmatError("not a medmat checkpoint (not a PyTorch checkpoint archive, or a truncated one)", path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise MedmatError(f"not a medmat checkpoint ({unpickling_refusal(str(error))}; refused without running it)",
                          path) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise MedmatError(f"not a readable torch checkpoint ({type(error).__name__})", path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MedmatError("not a medmat checkpoint (no medmat format tag)", path)
    if payload.get("version", 0) > VERSION:
        raise MedmatError(f"checkpoint format version {payload['version']} is newer than this medmat ({VERSION})", path)
    return payload
