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


def test_repeated_tail_of_the_confirmed_text_is_dropped_after_a_cut():
    buf = HypothesisBuffer()
    buf.insert(_words("one two three"))
    buf.insert(_words("one two three four"))  # confirms one two three (ends at 1.5 s)
    buf.cut(3)  # the buffer now starts after "three": the decode gets it as previous text
    # the next decode starts later in the audio but repeats "three" (its prompt's end)
    again = [Word("three", 1.45, 1.6), Word("four", 1.6, 2.0), Word("five", 2.0, 2.4)]
    assert buf.insert(again) == [Word("four", 1.6, 2.0)]


def test_a_word_timed_inside_the_stretched_last_confirmed_word_is_kept():
    """The last word of a buffer cut mid-speech ends at the cut ("see" 1.0-1.8 s); the next decode
    puts the following word at 1.5 s. It is new: the words are matched by text, not by time."""
    buf = HypothesisBuffer()
    buf.insert([Word("Let", 0.0, 0.7), Word("me", 0.7, 0.9), Word("see.", 0.9, 1.0)])
    buf.insert([Word("Let", 0.0, 0.7), Word("me", 0.7, 1.0), Word("see", 1.0, 1.8), Word("how", 1.8, 2.0)])
    third = [Word("Let", 0.0, 0.7), Word("me", 0.7, 1.0), Word("see", 1.0, 1.5), Word("how", 1.5, 2.0)]
    assert [w.text for w in buf.insert([*third, Word("can", 2.0, 2.2)])] == ["how"]
    assert buf.confirmed[-1] == Word("how", 1.8, 2.0)  # times stay monotonic


def test_a_genuine_repeat_is_not_taken_for_overlap():
    buf = HypothesisBuffer()
    buf.insert(_words("tear down the fence"))
    buf.insert(_words("tear down the fence tear"))  # confirms the first four words
    confirmed = buf.insert(_words("tear down the fence tear down the fence"))
    assert [w.text for w in confirmed] == ["tear"]
    assert [w.text for w in buf.confirm_all()] == ["down", "the", "fence"]


def test_a_substituted_or_missing_confirmed_word_does_not_eat_new_words():
    buf = HypothesisBuffer()
    buf.insert(_words("a b c"))
    buf.insert(_words("a b c d"))  # confirms a b c
    assert [w.text for w in buf.insert(_words("a b x d e"))] == ["d"]  # x re-decodes c
    assert [w.text for w in buf.insert(_words("a c d e f"))] == ["e"]  # b missing: still aligned


def test_cut_points_come_from_words_the_newest_decode_follows_with_another():
    buf = HypothesisBuffer()
    buf.insert([Word("Stop.", 0.0, 1.0)])
    buf.insert([Word("Stop.", 0.0, 2.0)])  # confirmed as the last word of its decode: no cut point
    assert buf.cut_points() == {}
    buf.insert([Word("Stop.", 0.0, 0.6), Word("Go", 0.6, 2.5)])
    assert buf.cut_points() == {0: 0.6}  # where the following word starts, not the stretched 2.0
    buf.cut(1)
    assert buf.cut_points() == {} and buf.buffer_index == 1


def test_confirm_all_keeps_times_monotonic():
    buf = HypothesisBuffer()
    buf.insert([Word("a", 0.0, 0.6)])
    buf.insert([Word("a", 0.0, 0.6), Word("b", 0.58, 0.9)])
    rest = buf.confirm_all()
    assert rest == [Word("b", 0.6, 0.9)]  # starts where the confirmed "a" ends
    assert word_key("Don't!") == "don't"


def test_the_last_words_of_the_previous_hypothesis_are_no_votes():
    """The buffer's end cuts its last word ("said" heard as "set"): with `hold_words=1` a word is
    confirmed only once a decode that followed it with another word agrees with the next one."""
    eager, held = HypothesisBuffer(), HypothesisBuffer(hold_words=1)
    for buf in (eager, held):
        buf.insert(_words("then set"))
    assert [w.text for w in eager.insert(_words("then set the unit"))] == ["then", "set"]
    assert [w.text for w in held.insert(_words("then set the unit"))] == ["then"]
    assert [w.text for w in held.insert(_words("then said the unit was"))] == []  # "set" never agreed on
    assert [w.text for w in held.insert(_words("then said the eunuch was here"))] == ["said", "the"]
    assert [w.text for w in held.confirm_all()] == ["eunuch", "was", "here"]  # the end of the stream is final
