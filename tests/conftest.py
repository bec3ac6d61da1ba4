"""Shared fixtures.

Tests that need the real data find it at ``../shared/data`` beside the repository (CI has it
there) or at ``$MEDMAT_SHARED``. When it is missing they are skipped with a reason, except under
CI (``CI=true``), where a missing data folder is a failure, not a silent pass.
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
