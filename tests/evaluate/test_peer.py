"""weightwise.evaluate.peer: faster-whisper on the same CTranslate2 weights as a peer."""

from __future__ import annotations

import dataclasses
import json

import jiwer
import pytest
from whisper_normalizer.english import EnglishTextNormalizer

from weightwise.errors import InputError
from weightwise.evaluate import run_faster_whisper

_norm = EnglishTextNormalizer()


@pytest.fixture(scope="module")
def with_peer(tiny_eval, samples):
    return run_faster_whisper(tiny_eval[0], samples, "float32")


def test_peer_scores(with_peer, samples):
    peer = with_peer.peer
    assert peer.name == "faster-whisper" and peer.compute_type == "float32"
    assert [u.id for u in peer.utterances] == [u.id for u in samples]
    refs = [_norm(u.text) for u in samples]
    hyps = [_norm(u.hyp) for u in peer.utterances]
    assert peer.wer == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    assert peer.wer <= 0.15  # same weights: as good as ours
    audio_s = sum(u.audio_s for u in peer.utterances)
    assert peer.compute_s == pytest.approx(sum(u.compute_s for u in peer.utterances), rel=1e-12)
    assert peer.rtf == pytest.approx(peer.compute_s / audio_s, rel=1e-12)
    assert peer.versions["ctranslate2"]


def test_peer_comparison_fields(with_peer, tiny_eval):
    ours, peer = tiny_eval[0], with_peer.peer
    same = [_norm(a.hyp) == _norm(b.hyp) for a, b in zip(ours.utterances, peer.utterances, strict=True)]
    assert peer.same_normalized_fraction == pytest.approx(sum(same) / len(same))
    assert peer.same_normalized_fraction >= 0.5  # same weights, same decoding settings
    assert peer.rtf_ratio == pytest.approx(ours.rtf / peer.rtf, rel=1e-12)
    assert dataclasses.replace(with_peer, peer=None) == ours  # our own fields are untouched


def test_peer_in_json(with_peer, tmp_path):
    path = tmp_path / "r.json"
    with_peer.save(path)
    peer = json.loads(path.read_text())["peer"]
    assert {"name", "wer", "rtf", "utterances"} <= peer.keys()
    assert peer["name"] == "faster-whisper" and peer["wer"] == with_peer.peer.wer
    assert [u["id"] for u in peer["utterances"]] == [u.id for u in with_peer.peer.utterances]


@pytest.mark.parametrize("compute_type", ["float16", "bfloat16", "no-such-type"])
def test_unsupported_compute_type(tiny_eval, samples, compute_type):
    import ctranslate2

    assert compute_type not in ctranslate2.get_supported_compute_types("cpu")
    with pytest.raises(InputError, match=compute_type):
        run_faster_whisper(tiny_eval[0], samples.head(1), compute_type)


def test_peer_needs_a_ct2_directory(tiny_eval, samples, tmp_path):
    not_ct2 = dataclasses.replace(tiny_eval[0], model_source=str(tmp_path))
    with pytest.raises(InputError, match="CTranslate2"):
        run_faster_whisper(not_ct2, samples.head(1), "float32")
