"""LocalAgreement-2 on hand-made hypotheses (a pure algorithm: no model needed)."""

from __future__ import annotations

from weightwise.stream.agreement import HypothesisBuffer, word_key
from weightwise.stream.protocol import Word


def _words(text: str, start_s: float = 0.0, step_s: float = 0.5) -> list[Word]:
    return [Word(t, start_s + i * step_s, start_s + (i + 1) * step_s) for i, t in enumerate(text.split())]


def test_two_agreeing_hypotheses_confirm_their_common_prefix():
    buf = HypothesisBuffer()
    assert buf.insert(_words("the cat sat")) == []  # one hypothesis confirms nothing
    confirmed = buf.insert(_words("The cat, sat on"))
    assert [w.text for w in confirmed] == ["The", "cat,", "sat"]  # case and punctuation do not matter
    assert [w.text for w in buf.latest] == ["on"]


def test_a_disagreement_stops_confirmation():
    buf = HypothesisBuffer()
    buf.insert(_words("a b c d"))
    assert [w.text for w in buf.insert(_words("a b x d"))] == ["a", "b"]
    assert [w.text for w in buf.confirmed] == ["a", "b"]


def test_repeated_tail_of_the_confirmed_text_is_dropped():
    buf = HypothesisBuffer()
    buf.insert(_words("one two three"))
    buf.insert(_words("one two three four"))  # confirms one two three (ends at 1.5 s)
    # the next decode starts later in the audio but repeats "three" at the confirmed end
    again = [Word("three", 1.45, 1.6), Word("four", 1.6, 2.0), Word("five", 2.0, 2.4)]
    assert buf.insert(again) == [Word("four", 1.6, 2.0)]


def test_confirm_all_keeps_times_monotonic():
    buf = HypothesisBuffer()
    buf.insert([Word("a", 0.0, 0.6)])
    buf.insert([Word("a", 0.0, 0.6), Word("b", 0.58, 0.9)])
    rest = buf.confirm_all()
    assert rest == [Word("b", 0.6, 0.9)]  # starts where the confirmed "a" ends
    assert word_key("Don't!") == "don't"
