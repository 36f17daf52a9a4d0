"""Digit strings: seeded, one split only, gaps and lengths as asked."""

from __future__ import annotations

import numpy as np
import pytest

from weightwise.audio import SAMPLE_RATE
from weightwise.data import load_manifest
from weightwise.errors import InputError
from weightwise.train.digits import DigitStrings, make_digit_string, write_digit_strings


@pytest.fixture(scope="module")
def clips():
    """Two marker clips of known length and value (the real-audio path is tested in test_transducer)."""
    marks = [("zero", np.full(1600, 0.5, np.float32)), ("one", np.full(800, -0.5, np.float32))]
    return marks


def test_strings_are_seeded_and_within_the_spec(clips):
    spec = DigitStrings(min_digits=3, max_digits=8, min_gap_ms=50, max_gap_ms=400, edge_ms=0)
    a, b = make_digit_string(clips, spec, seed=7), make_digit_string(clips, spec, seed=7)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    lengths = set()
    for seed in range(40):
        text, audio = make_digit_string(clips, spec, seed)
        words = text.split()
        lengths.add(len(words))
        speech = sum(1600 if w == "zero" else 800 for w in words)
        gaps_s = (len(audio) - speech) / SAMPLE_RATE
        assert 0.05 * (len(words) - 1) - 1e-3 <= gaps_s <= 0.4 * (len(words) - 1) + 1e-3
        assert np.count_nonzero(audio) == speech  # clips are joined unchanged, gaps are silence
    assert min(lengths) == 3 and max(lengths) == 8


def test_noise_is_mixed_when_asked(clips):
    spec = DigitStrings(noise_prob=1.0, min_snr_db=10, max_snr_db=10, edge_ms=0)
    noise = [np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32)]
    text, audio = make_digit_string(clips, spec, seed=1, noise=noise)
    clean = make_digit_string(clips, DigitStrings(edge_ms=0), seed=1)[1]
    assert len(audio) == len(clean) and not np.array_equal(audio, clean)
    snr_db = 10 * np.log10(np.mean(clean.astype(float) ** 2) / np.mean((audio - clean).astype(float) ** 2))
    assert snr_db == pytest.approx(10.0, abs=0.01)


def test_bad_spec_is_one_line_error():
    with pytest.raises(InputError, match="min_digits"):
        DigitStrings(min_digits=5, max_digits=3)


def test_written_strings_form_a_manifest(tmp_path, clips):
    path = write_digit_strings(clips, DigitStrings(), 3, seed=2, out=tmp_path)
    manifest = load_manifest(path)
    assert len(manifest) == 3
    assert all(set(u.text.split()) <= {"zero", "one"} for u in manifest)


def test_repeat_prob_repeats_the_previous_digit(clips):
    text, _ = make_digit_string(clips, DigitStrings(repeat_prob=1.0), seed=4)
    assert len(set(text.split())) == 1 and len(text.split()) >= 3
    plain = [make_digit_string(clips, DigitStrings(), seed)[0] for seed in range(5)]
    assert plain == [make_digit_string(clips, DigitStrings(repeat_prob=0.0), seed)[0] for seed in range(5)]
