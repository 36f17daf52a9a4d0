"""The silero-vad gate on real speech joined with silence and noise: silence is not decoded."""

from __future__ import annotations

import numpy as np
import pytest

from weightwise.decode import DecodeCounter
from weightwise.evaluate.normalize import normalize
from weightwise.stream import create_stream
from weightwise.stream.pauses import make_paused_audio
from weightwise.stream.vad import FRAME_SAMPLES, VadGate, vad_cost

pytest.importorskip("silero_vad", reason="silero-vad not installed (make setup installs it with --no-deps)")


@pytest.fixture(scope="module")
def paused(sample_audio):
    """One ARCTIC clip (1.2 s) between 2.0-2.5 s gaps of silence or pink noise."""
    utt, audio = next((u, a) for u, a in sample_audio if u.id.startswith("arctic_a0287"))
    return make_paused_audio([(utt.text, audio)], seed=3, gap_s=(2.0, 2.5), noise_gap_fraction=0.5)


def test_paused_audio_keeps_the_clip_where_it_says(paused, sample_audio):
    audio = next(a for u, a in sample_audio if u.id.startswith("arctic_a0287"))
    ((start_s, end_s),) = paused.speech_s
    start = round(start_s * 16000)
    np.testing.assert_array_equal(paused.samples[start : start + len(audio)], audio)
    assert 4.0 <= paused.duration_s - len(audio) / 16000 <= 5.0
    again = make_paused_audio([(paused.text, audio)], seed=3, gap_s=(2.0, 2.5), noise_gap_fraction=0.5)
    np.testing.assert_array_equal(again.samples, paused.samples)  # seeded


def test_gate_finds_speech_only_where_the_clip_is(paused):
    gate = VadGate(16000)
    gate.accept(paused.samples)
    ((start_s, end_s),) = paused.speech_s
    speech_frames = np.flatnonzero(gate.speech) * FRAME_SAMPLES / 16000
    assert gate.n_calls == len(paused.samples) // FRAME_SAMPLES
    assert len(speech_frames) > 0
    assert speech_frames.min() >= start_s - 0.1 and speech_frames.max() <= end_s + 0.3  # silero holds on ~0.2 s


def test_silence_and_noise_are_not_decoded(tiny_model, paused):
    counter = DecodeCounter()
    stream = create_stream(tiny_model, chunk_ms=1000, vad=True, observer=counter)
    stream.accept_waveform(paused.samples)
    final = stream.finish()
    n_scheduled = len(stream.steps)
    assert counter.n_windows == n_scheduled - sum(s.skipped for s in stream.steps)
    assert counter.n_windows <= 3 < n_scheduled  # 1.2 s of speech: at most 3 of the ~6 decodes run
    assert normalize(final.text) == normalize(paused.text)


def test_pure_silence_costs_no_decode(tiny_model):
    counter = DecodeCounter()
    rng = np.random.default_rng(0)
    stream = create_stream(tiny_model, chunk_ms=500, vad=True, observer=counter)
    stream.accept_waveform(np.zeros(16000, np.float32))
    stream.accept_waveform((rng.standard_normal(16000) * 1e-3).astype(np.float32))
    assert stream.finish().text == "" and counter.n_windows == 0


def test_vad_cost_reads_the_shipped_weights():
    cost = vad_cost()
    assert 200_000 < cost.n_params < 1_000_000  # silero v5/v6: ~0.3 M parameters
    assert cost.weight_bytes == 4 * cost.n_params  # float32 weights
    assert cost.n_params < cost.macs_per_call < 10 * cost.n_params  # a few frames per call
