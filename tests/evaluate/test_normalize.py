"""Which normalizer a model's WER is computed after: Whisper's joins spoken digits into a number,
so a transducer's digit strings are scored on its own vocabulary words."""

from __future__ import annotations

from weightwise.evaluate.evaluate import UtteranceResult, score
from weightwise.evaluate.normalize import normalize, normalizer_for
from weightwise.models import load_model


def _utterance(ref: str, hyp: str) -> UtteranceResult:
    return UtteranceResult(id="u", ref=ref, hyp=hyp, audio_s=1.0, compute_s=0.1, n_tokens=1, n_windows=1)


def test_transducer_words_are_scored_one_by_one():
    transducer = load_model("transducer-fsdd")
    norm = normalizer_for(transducer)
    assert normalize("one two three") == "123"  # why the transducer needs its own
    assert norm(" One  two three ") == "one two three"
    pair = [_utterance("one two three four", "one two tree four")]
    assert score(pair, norm).wer == 0.25
    assert score(pair).n_ref_words == 1  # Whisper's normalizer: the four digits are one "number"


def test_whisper_keeps_its_normalizer(tiny_model):
    assert normalizer_for(tiny_model) is normalize
