"""Shared pytest fixtures: where the real speech lives."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The project's shared/data folder (real speech + noise), beside the repository root.

    Skips the test when the folder is absent (e.g. a bare checkout on another machine).
    """
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path
