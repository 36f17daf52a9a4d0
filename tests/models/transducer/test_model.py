"""The shipped digits transducer: registered, loads offline, transcribes FSDD test clips."""

from __future__ import annotations

import jiwer
import pytest

from weightwise.data import Manifest, iter_audio
from weightwise.decode import DecodingOptions, transcribe
from weightwise.errors import InputError
from weightwise.models import available_models, load_model


def test_registered_and_loaded_from_the_package(fsdd_model):
    assert "transducer-fsdd" in available_models()
    assert fsdd_model.info.family == "transducer"
    assert 100_000 < fsdd_model.info.n_params < 1_000_000  # small enough to live on-chip
    assert len(fsdd_model.info.weights_sha256) == 64


def test_transcribes_20_test_clips(fsdd_model, fsdd_manifest):
    """20 test-split clips (every speaker, every digit): at most 2 wrong (the whole test split is in
    benchmarks/results/transducer)."""
    by_id = {u.id: u for u in fsdd_manifest if u.extra.get("split") == "test"}
    speakers = sorted({u.speaker for u in by_id.values()})
    test = [by_id[f"{i % 10}_{speakers[i % len(speakers)]}_{i % 5}"] for i in range(20)]
    assert len({u.speaker for u in test}) == 6 and len({u.text for u in test}) == 10
    refs, hyps = [], []
    for utt, samples in iter_audio(Manifest(tuple(test), "fsdd test")):
        out = transcribe(fsdd_model, samples)
        refs.append(utt.text)
        hyps.append(out.text)
        assert len(out.windows) >= 1 and out.audio_s == pytest.approx(len(samples) / 16000)
    assert jiwer.wer(refs, hyps) <= 0.10


def test_beam_search_through_transcribe(fsdd_model, test_string):
    text, audio = test_string
    beam = transcribe(fsdd_model, audio, DecodingOptions(beam_size=4)).text
    assert jiwer.wer(text, beam) <= 0.2 and beam != transcribe(fsdd_model, audio[: len(audio) // 2]).text


def test_transcribe_refuses_nan(fsdd_model, test_string):
    audio = test_string[1].copy()
    audio[5] = float("nan")
    with pytest.raises(InputError, match="clip.flac: samples are not finite"):
        transcribe(fsdd_model, audio, file_id="clip.flac")


def test_only_fp32(fsdd_model):
    with pytest.raises(InputError, match="fp32 only"):
        load_model("transducer-fsdd", precision="int8")
