"""weightwise.decode: greedy/beam search, long-form windows and the DecodeObserver hooks, on the real
tiny.en model and real speech."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jiwer
import numpy as np
import pytest
import torch
from whisper_normalizer.english import EnglishTextNormalizer

from weightwise.decode import DecodeObserver, DecodingOptions, transcribe

_norm = EnglishTextNormalizer()


def _corpus_wer(refs, hyps) -> float:
    """jiwer on openai's English normalizer, without weightwise.evaluate."""
    return jiwer.wer([_norm(r) for r in refs], [_norm(h) for h in hyps])


class Recorder(DecodeObserver):
    """Counts every hook call, in order."""

    def __init__(self):
        self.files, self.windows, self.steps, self.ends = [], [], [], []

    def on_file(self, file_id, audio_s):
        self.files.append((file_id, audio_s))

    def on_window(self, window_index, start_s, duration_s):
        self.windows.append((window_index, start_s, duration_s))

    def on_decoder_step(self, window_index, step, n_positions, n_sequences):
        self.steps.append((window_index, step, n_positions, n_sequences))

    def on_window_end(self, window_index, n_tokens):
        self.ends.append((window_index, n_tokens))

    def steps_of(self, window_index):
        return [s for s in self.steps if s[0] == window_index]


def _check_greedy_trace(rec: Recorder, out, prompt_len: int, max_new: int | None = None):
    assert len(rec.files) == 1
    assert [w[0] for w in rec.windows] == list(range(len(out.windows)))
    assert rec.ends == [(t.index, t.n_tokens) for t in out.windows]
    for trace in out.windows:
        steps = rec.steps_of(trace.index)
        hit_limit = max_new is not None and trace.n_tokens == max_new
        assert len(steps) == (trace.n_tokens if hit_limit else trace.n_tokens + 1)  # + the eot step
        assert [s[1] for s in steps] == list(range(len(steps)))
        assert steps[0][2] == prompt_len
        assert all(s[2] == 1 for s in steps[1:])
        assert all(s[3] == 1 for s in steps)
    assert sum(t.n_tokens for t in out.windows) == out.n_tokens == len(out.tokens)


# ---------------------------------------------------------------- greedy on the bundled samples


def test_greedy_wer_on_samples(tiny_greedy, samples):
    refs = [u.text for u in samples]
    hyps = [tiny_greedy[u.id].text for u in samples]
    assert _corpus_wer(refs, hyps) <= 0.15


def test_transcript_fields(tiny_model, tiny_greedy, sample_audio):
    for utt, audio in sample_audio:
        out = tiny_greedy[utt.id]
        assert out.audio_s == len(audio) / 16000
        assert len(out.windows) == 1
        w = out.windows[0]
        assert (w.index, w.start_s) == (0, 0.0)
        assert w.duration_s == pytest.approx((len(audio) // 160) * 0.01)
        assert all(t < tiny_model.tokens.eot for t in out.tokens)  # text tokens only
        text = tiny_model.tokenizer.decode(list(out.tokens), skip_special_tokens=True).strip()
        assert out.text == text


def _reference_greedy(model, audio: np.ndarray) -> list[int]:
    """A cache-free greedy decode of one window: faster-whisper's features zero-padded to 3000
    frames, the full token sequence re-run every step, suppression as in WHISPER_CT2.md."""
    from faster_whisper.feature_extractor import FeatureExtractor

    mel = FeatureExtractor(feature_size=80)(audio)[..., :-1]
    mel = np.pad(mel, ((0, 0), (0, 3000 - mel.shape[-1])))
    config = json.loads((Path(model.info.source) / "config.json").read_text())
    eot = 50256
    net = model.network
    with torch.inference_mode():
        enc = net.model.encoder(torch.from_numpy(mel)[None]).last_hidden_state
        seq = [50257, 50362]
        while len(seq) < 448:
            hidden = net.model.decoder(
                input_ids=torch.tensor([seq]), encoder_hidden_states=enc, use_cache=False
            ).last_hidden_state
            logits = hidden[0, -1] @ net.model.decoder.embed_tokens.weight.T
            logits[config["suppress_ids"]] = -np.inf
            logits[eot + 1 :] = -np.inf
            if len(seq) == 2:
                logits[config["suppress_ids_begin"]] = -np.inf
            token = int(logits.argmax())
            if token == eot:
                break
            seq.append(token)
    return seq[2:]


def test_greedy_tokens_match_a_cache_free_decode(tiny_model, tiny_greedy, sample_audio):
    for utt, audio in sample_audio[:2]:
        assert list(tiny_greedy[utt.id].tokens) == _reference_greedy(tiny_model, audio)


# ---------------------------------------------------------------- observer hooks


def test_observer_counts_greedy(tiny_model, tiny_greedy, sample_audio):
    for utt, audio in sample_audio:
        rec = Recorder()
        out = transcribe(tiny_model, audio, observer=rec, file_id=utt.id)
        assert out.tokens == tiny_greedy[utt.id].tokens  # deterministic; the observer is passive
        assert rec.files == [(utt.id, len(audio) / 16000)]
        assert rec.windows == [(0, 0.0, out.windows[0].duration_s)]
        _check_greedy_trace(rec, out, prompt_len=2)


def test_max_new_tokens(tiny_model, tiny_greedy, sample_audio):
    utt, audio = sample_audio[1]  # 12 tokens unrestricted
    full = tiny_greedy[utt.id].tokens
    assert len(full) > 3
    rec = Recorder()
    out = transcribe(tiny_model, audio, DecodingOptions(max_new_tokens=3), observer=rec)
    assert out.n_tokens == 3
    assert out.tokens == full[:3]  # greedy is a prefix of the unrestricted greedy decode
    assert len(rec.steps) == 3  # limit reached: no eot step
    _check_greedy_trace(rec, out, prompt_len=2, max_new=3)


def test_max_new_tokens_larger_than_needed(tiny_model, tiny_greedy, sample_audio):
    utt, audio = sample_audio[3]
    n = len(tiny_greedy[utt.id].tokens)
    rec = Recorder()
    out = transcribe(tiny_model, audio, DecodingOptions(max_new_tokens=n + 1), observer=rec)
    assert out.tokens == tiny_greedy[utt.id].tokens
    assert len(rec.steps) == n + 1


def test_without_kv_cache_same_tokens_all_positions(tiny_model, tiny_greedy, sample_audio):
    utt, audio = sample_audio[3]
    rec = Recorder()
    out = transcribe(tiny_model, audio, DecodingOptions(use_cache=False), observer=rec)
    assert out.tokens == tiny_greedy[utt.id].tokens
    # every call re-runs the prompt and all tokens so far
    assert [s[2] for s in rec.steps] == [2 + k for k in range(out.n_tokens + 1)]


@pytest.mark.parametrize("kwargs", [{"beam_size": 0}, {"max_new_tokens": 0}, {"beam_size": -2}])
def test_invalid_options(kwargs):
    with pytest.raises(ValueError):
        DecodingOptions(**kwargs)


# ---------------------------------------------------------------- long-form (more than one window)


@pytest.fixture(scope="module")
def long_form(shared_data_dir, tiny_model):
    """34 s of real speech: 4 LibriSpeech test-clean utterances then 4 ARCTIC ones."""
    from weightwise.audio import load_audio
    from weightwise.data import load_manifest

    parts = list(load_manifest(shared_data_dir / "speech" / "librispeech_test_clean_mini"))
    parts += list(load_manifest(shared_data_dir / "speech" / "arctic_kathleen").head(4))
    audio = np.concatenate([load_audio(u.audio_path) for u in parts])
    rec = Recorder()
    return parts, audio, rec, transcribe(tiny_model, audio, observer=rec, file_id="long")


def test_long_form_has_two_windows(long_form):
    parts, audio, rec, out = long_form
    assert len(audio) / 16000 > 30
    assert len(out.windows) == 2 == -(-(len(audio) // 160) // 3000)
    first, second = out.windows
    assert (first.start_s, first.duration_s) == pytest.approx((0.0, 30.0))
    assert second.start_s == pytest.approx(30.0)
    assert first.duration_s + second.duration_s == pytest.approx(len(audio) / 16000, abs=0.011)
    assert first.n_tokens > 0 and second.n_tokens > 0
    assert rec.files == [("long", len(audio) / 16000)]
    assert [w[0] for w in rec.windows] == [0, 1]
    _check_greedy_trace(rec, out, prompt_len=2)


def test_long_form_text_covers_both_halves(long_form):
    parts, _, _, out = long_form
    assert parts[0].text.startswith("HE HOPED THERE WOULD BE STEW")  # spoken in 0-10.4 s
    assert parts[-1].text.startswith("Lord, but I'm glad to see you")  # spoken in 31.7-34.1 s
    words = set(_norm(out.text).split())
    assert {"turnips", "carrots", "mutton"} <= words
    assert {"glad", "see", "again"} <= words


# ---------------------------------------------------------------- beam search


def test_beam_search(tiny_model, tiny_greedy, sample_audio, samples):
    options = DecodingOptions(beam_size=3)
    hyps = []
    for _utt, audio in sample_audio:
        rec = Recorder()
        out = transcribe(tiny_model, audio, options, observer=rec)
        hyps.append(out.text)
        assert rec.steps and all(s[3] == 3 for s in rec.steps)
        assert rec.steps[0][2] == 2 and all(s[2] == 1 for s in rec.steps[1:])
        assert len(rec.steps) >= out.n_tokens + 1  # the kept hypothesis ended with an eot step
        assert rec.ends == [(0, out.n_tokens)]
    refs = [u.text for u in samples]
    greedy_wer = _corpus_wer(refs, [tiny_greedy[u.id].text for u in samples])
    assert _corpus_wer(refs, hyps) <= greedy_wer + 0.1


def test_beam_size_one_is_greedy(tiny_model, tiny_greedy, sample_audio):
    utt, audio = sample_audio[2]
    out = transcribe(tiny_model, audio, dataclasses.replace(DecodingOptions(), beam_size=1))
    assert out.tokens == tiny_greedy[utt.id].tokens


# ---------------------------------------------------------------- very short audio


def test_audio_shorter_than_one_frame(tiny_model, sample_audio):
    audio = sample_audio[0][1][:100]  # 6 ms: no full 10 ms frame
    out = transcribe(tiny_model, audio)
    assert len(out.windows) == 1 and out.windows[0].duration_s == 0.0
    assert out.audio_s == 100 / 16000


def test_audio_of_a_few_samples(tiny_model, sample_audio):
    audio = sample_audio[0][1][:20]
    out = transcribe(tiny_model, audio)
    assert len(out.windows) == 1
