"""Streaming the shipped transducer: offline equality, split invariance, garbage in."""

from __future__ import annotations

import jiwer
import numpy as np
import pytest
import torch

from weightwise.errors import InputError
from weightwise.models.transducer.features import offline_log_mel


def _stream(model, pieces, beam_size=1):
    stream = model.create_stream(beam_size)
    for piece in pieces:
        stream.accept_waveform(piece)
    return stream.finish()


def test_chunked_encoder_equals_offline_masked_encoder(fsdd_model, test_string):
    """The encoder run chunk by chunk with its caches gives the offline (chunk-masked) output."""
    network, config = fsdd_model.network, fsdd_model.config
    features = offline_log_mel(test_string[1], config)
    with torch.inference_mode():
        offline, _ = network.encode(features[None], torch.tensor([len(features)]))
        stacked, states, pieces = network.stack(network.normalize(features[None])), None, []
        for start in range(0, stacked.shape[1], config.chunk_frames):
            out, states = network.encoder.step(stacked[:, start : start + config.chunk_frames], states)
            pieces.append(out)
    assert stacked.shape[1] > 3 * config.chunk_frames  # several chunks, so the caches are used
    torch.testing.assert_close(torch.cat(pieces, dim=1), offline, atol=1e-4, rtol=1e-4)


def test_whole_input_chunk_equals_offline_greedy_decoding(fsdd_model, test_string):
    """A chunk covering the whole input (one encoder call) decodes what the streamed chunks decode,
    and what greedy search over the offline encoder output decodes."""
    from weightwise.models.transducer.search import GreedySearch

    text, audio = test_string
    streamed = _stream(fsdd_model, [audio])
    features = offline_log_mel(audio, fsdd_model.config)
    with torch.inference_mode():
        enc, _ = fsdd_model.network.encode(features[None], torch.tensor([len(features)]))
        search = GreedySearch(fsdd_model.network)
        search.accept(enc[0])
    assert streamed.tokens == tuple(e.token for e in search.best())
    assert jiwer.wer(text, streamed.text) <= 0.2  # and it is (nearly) right: at most 1 of 5 words wrong


def test_result_does_not_depend_on_how_audio_is_split(fsdd_model, test_string):
    audio = test_string[1]
    whole = _stream(fsdd_model, [audio])
    rng = np.random.default_rng(0)
    for _ in range(3):
        cuts = np.sort(rng.integers(0, len(audio), size=int(rng.integers(1, 40))))
        pieces = np.split(audio, cuts)  # includes empty pieces where cuts repeat
        split = _stream(fsdd_model, pieces)
        assert split.tokens == whole.tokens
        assert split.words == whole.words  # same words at the same times
    tiny = _stream(fsdd_model, np.array_split(audio, len(audio) // 160))  # 10 ms pieces
    assert tiny.tokens == whole.tokens


def test_beam_search_stream_matches_offline_beam(fsdd_model, test_string):
    audio = test_string[1]
    assert _stream(fsdd_model, [audio], beam_size=4).tokens == _stream(fsdd_model, np.array_split(audio, 9), 4).tokens


def test_partial_results_grow_and_confirm_with_times(fsdd_model, test_string):
    text, audio = test_string
    stream = fsdd_model.create_stream()
    partials = [stream.accept_waveform(piece).text for piece in np.array_split(audio, 10)]
    final = stream.finish()
    assert all(final.text.startswith(p) for p in partials)  # greedy: partial text only grows
    assert len(partials[0].split()) < len(partials[5].split()) < len(final.text.split())  # words arrive early
    assert final.is_final and final.confirmed_text == final.text and len(final.words) == len(text.split())
    ends = [w.end_s for w in final.words]
    assert ends == sorted(ends) and 0 < ends[-1] <= len(audio) / 16000 + 0.1


def test_garbage_input_is_one_line_error_or_ignored(fsdd_model, test_string):
    audio = test_string[1]
    stream = fsdd_model.create_stream()
    stream.accept_waveform(audio[:8000])
    stream.accept_waveform(np.zeros(0, dtype=np.float32))  # empty chunk: ignored
    bad = [
        (np.full(100, np.nan, dtype=np.float32), {}, "NaN"),
        (np.array([0.1, np.inf], dtype=np.float32), {}, "NaN or inf"),
        (audio[:100], {"sample_rate": 8000}, "8000 Hz"),
        (np.zeros((2, 100), dtype=np.float32), {}, "1-D"),
        (np.array(["a", "b"]), {}, "numbers"),
    ]
    for samples, kwargs, words in bad:
        with pytest.raises(InputError, match=words) as err:
            stream.accept_waveform(samples, **kwargs)
        assert "\n" not in str(err.value)
    stream.accept_waveform(audio[8000:])  # the stream is unharmed by what it refused
    assert stream.finish().tokens == _stream(fsdd_model, [audio]).tokens
    with pytest.raises(InputError, match="after finish"):
        stream.accept_waveform(audio[:100])


def test_empty_stream_finishes_with_no_words(fsdd_model):
    result = fsdd_model.create_stream().finish()
    assert result.text == "" and result.words == () and result.is_final
