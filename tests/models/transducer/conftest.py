"""The shipped digits transducer and real FSDD audio, loaded once per session."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def fsdd_model():
    from weightwise.models import load_model

    return load_model("transducer-fsdd")


@pytest.fixture(scope="session")
def fsdd_manifest(shared_data_dir):
    from weightwise.data import load_manifest

    return load_manifest(shared_data_dir / "speech" / "fsdd_digits" / "manifest.jsonl")


@pytest.fixture(scope="session")
def test_string(fsdd_manifest):
    """(text, samples): 5 test-split clips of 5 speakers joined with gaps (a real digit string)."""
    from weightwise.data import Manifest
    from weightwise.train.digits import DigitStrings, clips_by_split, make_digit_string

    picked = [u for u in fsdd_manifest if u.extra.get("split") == "test"][::61][:5]
    clips = [(text, audio) for text, audio in clips_by_split(Manifest(tuple(picked), "picked"))["test"]]
    spec = DigitStrings(min_digits=5, max_digits=5)
    text, audio = make_digit_string(clips, spec, seed=11)
    return text, np.asarray(audio, dtype=np.float32)
