"""The transducer behind the streaming protocol: the same words as its offline decode, any split."""

import glob

import numpy as np
import pytest

from weightwise import create_stream, load_audio, load_model
from weightwise.errors import InputError
from weightwise.stream import StreamResult


@pytest.fixture(scope="module")
def digits(shared_data_dir):
    model = load_model("transducer-fsdd")
    clips = sorted(glob.glob(str(shared_data_dir / "speech/fsdd_digits/audio/jackson/*_jackson_[0-2].flac")))[:4]
    audio = np.concatenate([load_audio(c, model.sample_rate) for c in clips])
    return model, audio


def _stream(model, audio, sizes):
    stream = create_stream(model, chunk_ms=320)
    start = 0
    for size in sizes:
        stream.accept_waveform(audio[start : start + size])
        start += size
    stream.accept_waveform(audio[start:])
    return stream, stream.finish()


def test_protocol_result_equals_the_offline_decode_whatever_the_split(digits):
    model, audio = digits
    offline = model.decode_audio(audio).text
    rng = np.random.default_rng(0)
    finals = []
    for _ in range(3):
        sizes = rng.integers(0, 4000, size=20)
        stream, final = _stream(model, audio, sizes)
        assert isinstance(final, StreamResult) and final.is_final
        finals.append((final.text, [(w.text, w.end_s) for w in final.confirmed]))
        assert [c.word for c in stream.confirmations] == list(final.confirmed)
        assert all(c.confirmed_at_audio_s >= c.word.end_s - 1e-9 for c in stream.confirmations)
    assert final.text == offline and len({str(f) for f in finals}) == 1


def test_garbage_is_one_line_and_vad_is_refused(digits):
    model, audio = digits
    stream = create_stream(model, chunk_ms=320)
    with pytest.raises(InputError, match="NaN"):
        stream.accept_waveform(np.full(100, np.nan, np.float32))
    stream.accept_waveform(np.zeros(0, np.float32))
    assert stream.finish().is_final
    with pytest.raises(InputError, match="Whisper streams only"):
        create_stream(model, chunk_ms=320, vad=True)
