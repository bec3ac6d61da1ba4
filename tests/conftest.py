"""Shared fixtures.

Tests that need the real data find it at ``../shared/data`` beside the repository (CI has it
there) or at ``$MEDMAT_SHARED``. When it is missing they are skipped with a reason, except under
CI (``CI=true``), where a missing data folder is a failure, not a silent pass.

The tiny runs are made once per test session from tests/tiny_configs.py; tests only read them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_root() -> Path:
    return Path(os.environ.get("MEDMAT_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``shared/data``; skip (or fail under CI) when it is absent."""
    data = _shared_root() / "data"
    if not (data / "README.md").exists():
        message = f"shared data not found at {data} (set MEDMAT_SHARED)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return data


@pytest.fixture
def single_thread():
    """Run a test with one torch thread (tiny networks: a second thread only waits), then restore."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def nig_run(tmp_path_factory) -> Path:
    """A tiny "nig" run trained for one epoch on 8 phantoms at 32 x 32, fold 0 of 2 (4 held-out cases)."""
    from medmat.engine import train
    from tiny_configs import nig_config

    run = tmp_path_factory.mktemp("nig") / "run"
    train(nig_config(), run)
    return run


@pytest.fixture(scope="session")
def wired_nig_run(tmp_path_factory) -> Path:
    """The untrained tiny "nig" run wired to follow its user map (tiny_configs.user_map_following_run)."""
    from tiny_configs import user_map_following_run

    return user_map_following_run(tmp_path_factory.mktemp("wired-nig") / "run")


@pytest.fixture(scope="session")
def image_following_run(tmp_path_factory) -> Path:
    """A run of tiny_configs' ImageFollowingMatting: sure of a phantom's background and lesion, unsure on its border."""
    from tiny_configs import image_following_run

    return image_following_run(tmp_path_factory.mktemp("image-following") / "run")
