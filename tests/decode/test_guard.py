"""weightwise.decode.guard: the repetition guard stops runaway windows and leaves clean ones alone.

Real models only: tiny.en on real speech (transcripts must not change), and tiny.en broken on
purpose by 50% magnitude pruning (it loops until the token limit without the guard).
"""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper.transcribe import get_compression_ratio

from weightwise.decode import DecodeCounter, DecodingOptions, transcribe
from weightwise.decode.guard import RepetitionGuard, compression_ratio, keep_one_copy, loop_period, repeated_tail
from weightwise.errors import InputError

LIMIT = 80  # tokens per window in the runaway tests (the decoder's own limit is 446)


def _repeats(tokens, period: int) -> int:
    """How many times the last `period` tokens repeat back to back at the end of `tokens`."""
    repeats = 1
    while (repeats + 1) * period <= len(tokens) and tokens[
        len(tokens) - (repeats + 1) * period : len(tokens) - repeats * period
    ] == tokens[-period:]:
        repeats += 1
    return repeats


def _rule_holds(tokens, min_repeats: int = 4, min_tokens: int = 32) -> bool:
    """The n-gram stop rule by brute force: some period repeats >= max(min_repeats,
    ceil(min_tokens / period)) times at the end."""
    return any(_repeats(tokens, p) >= max(min_repeats, -(-min_tokens // p)) for p in range(1, len(tokens) + 1))


# ---------------------------------------------------------------- the two measures


@pytest.mark.parametrize(
    "tokens, repeats, min_tokens, expected",
    [
        ([7] * 32, 4, 32, True),  # "the the the ...": period 1, 32 tokens
        ([7] * 31, 4, 32, False),  # not yet 32 tokens
        ([9] + [1, 2, 3, 4] * 8, 4, 32, True),  # "I'm not, " x 8 after one other token
        ([9] + [1, 2, 3, 4] * 6 + [1, 2, 3], 4, 28, False),  # 27 periodic tokens, 28 needed
        ([9] + [1, 2, 3, 4] * 6 + [1, 2, 3], 4, 24, True),  # any phase: (4, 1, 2, 3) x 6 ends it
        (list(range(12)) * 3, 4, 32, False),  # a 12-token sentence 3 times: fewer than 4 repeats
        (list(range(12)) * 4, 4, 32, True),  # ... 4 times
        ([1, 2] * 3 + [3], 2, 2, False),  # the last token breaks the loop
        ([5], 2, 1, False),
    ],
)
def test_repeated_tail_by_hand(tokens, repeats, min_tokens, expected):
    assert repeated_tail(tokens, repeats, min_tokens) is expected


def test_repeated_tail_agrees_with_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(300):
        tokens = [int(t) for t in rng.integers(0, 3, size=int(rng.integers(2, 40)))]
        for min_repeats, min_tokens in ((2, 1), (3, 6), (4, 8)):
            expected = _rule_holds(tokens, min_repeats, min_tokens)
            assert repeated_tail(tokens, min_repeats, min_tokens) is expected, (tokens, min_repeats, min_tokens)


def test_loop_period_is_the_shortest_that_fires():
    rng = np.random.default_rng(1)
    for _ in range(300):
        tokens = [int(t) for t in rng.integers(0, 3, size=int(rng.integers(2, 40)))]
        period = loop_period(tokens, 3, 6)
        fires = [p for p in range(1, len(tokens) + 1) if _repeats(tokens, p) >= max(3, -(-6 // p))]
        assert period == (min(fires) if fires else None), tokens


@pytest.mark.parametrize(
    "tokens, period, expected",
    [
        ([5, 1, 2, 1, 2, 1, 2], 2, [5, 1, 2]),
        ([7] * 32, 1, [7]),
        ([9, 1, 2, 3, 1, 2, 3, 1, 2], 3, [9, 1, 2, 3, 1, 2]),  # a partial copy at the end is no copy
        ([1, 2, 3], 2, [1, 2, 3]),
        ([4, 4], 0, [4, 4]),
    ],
)
def test_keep_one_copy_by_hand(tokens, period, expected):
    assert keep_one_copy(tokens, period) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "He could wait no longer.",
        "I'm not, " * 30,
        "Stuff it into you, his belly counselled him. " * 2,
        "naïve café " * 5,
    ],
)
def test_compression_ratio_is_the_peers(text):
    assert compression_ratio(text) == pytest.approx(get_compression_ratio(text) if text else 0.0)


@pytest.mark.parametrize(
    "kwargs", [{"repetition_stop_repeats": 1}, {"compression_ratio_threshold": 1.0}, {"repetition_min_tokens": 0}]
)
def test_invalid_guard_options(kwargs):
    with pytest.raises(ValueError):
        DecodingOptions(**kwargs)


# ---------------------------------------------------------------- clean speech is untouched


def test_clean_transcripts_do_not_change(tiny_model, tiny_greedy, sample_audio):
    assert DecodingOptions().repetition_stop_repeats and DecodingOptions().compression_ratio_threshold
    for utt, audio in sample_audio:
        off = transcribe(tiny_model, audio, DecodingOptions().without_guard())
        assert off.tokens == tiny_greedy[utt.id].tokens  # tiny_greedy ran with the default guard on
        assert [w.stop_reason for w in tiny_greedy[utt.id].windows] == ["eot"]


@pytest.mark.slow
def test_clean_beam_search_does_not_change(tiny_model, sample_audio):
    beam = DecodingOptions(beam_size=3)
    for _, audio in sample_audio[:2]:
        on, off = transcribe(tiny_model, audio, beam), transcribe(tiny_model, audio, beam.without_guard())
        assert on.tokens == off.tokens and on.windows == off.windows


# ---------------------------------------------------------------- runaway windows are stopped


@pytest.mark.slow
def test_greedy_loop_is_stopped_and_only_cut_short(broken_tiny, looping_audio):
    _, audio = looping_audio
    off = transcribe(broken_tiny, audio, DecodingOptions(max_new_tokens=LIMIT).without_guard())
    assert [(w.n_tokens, w.stop_reason) for w in off.windows] == [(LIMIT, "max_new_tokens")]  # runaway
    assert off.n_windows_limit_stopped == 1 and off.n_windows_repetition_stopped == 0
    on = transcribe(broken_tiny, audio, DecodingOptions(max_new_tokens=LIMIT))
    assert [w.stop_reason for w in on.windows] == ["repetition"]
    assert on.n_windows_repetition_stopped == 1 and on.n_windows_limit_stopped == 0
    stop = next(k for k in range(1, LIMIT + 1) if _rule_holds(list(off.tokens[:k])))  # where the rule fires
    assert 32 <= stop < LIMIT // 2
    stopped = list(off.tokens[:stop])
    period = min(p for p in range(1, stop) if _repeats(stopped, p) >= max(4, -(-32 // p)))
    # greedy: the guard decides where the window ends, then keeps one copy of the looping n-gram
    n = on.n_tokens
    assert on.tokens == off.tokens[:n] and n == stop - (_repeats(stopped, period) - 1) * period
    assert n < stop and _repeats(list(on.tokens), period) == 1


def test_compression_ratio_alone_stops_the_loop(broken_tiny, looping_audio):
    _, audio = looping_audio
    options = DecodingOptions(max_new_tokens=LIMIT, repetition_stop_repeats=None, repetition_min_tokens=8)
    out = transcribe(broken_tiny, audio, options)
    assert [w.stop_reason for w in out.windows] == ["repetition"]
    off = list(transcribe(broken_tiny, audio, options.without_guard()).tokens)
    # where the peer's own measure first says "too repetitive" (no check below 8 tokens)
    stop = next(k for k in range(9, LIMIT + 1) if get_compression_ratio(broken_tiny.decode_text(off[:k])) > 2.4)
    stopped = off[:stop]
    looping = [p for p in range(1, stop // 4 + 1) if _repeats(stopped, p) >= 4]
    expected = stopped[: stop - (_repeats(stopped, looping[0]) - 1) * looping[0]] if looping else stopped
    assert list(out.tokens) == expected  # the stopped window, its loop (if exact) cut to one copy


def test_trim_after_a_compression_stop_and_not_a_drifting_loop():
    guard = RepetitionGuard(DecodingOptions(), lambda tokens: "")
    # 14 copies of a 2-token n-gram: fewer than the n-gram rule's 16 (32 tokens), a compression stop
    assert guard.trimmed([9, 5] + [1, 2] * 14) == [9, 5, 1, 2]
    assert guard.trimmed([9, 5] + [1, 2] * 3) == [9, 5, 1, 2, 1, 2, 1, 2]  # 3 copies: not a loop to cut
    drifting = [9] + [1, 2, 3, 1, 2, 1, 2, 3, 1, 2, 3] * 3 + [1, 2, 1, 2, 3]  # a loop that drifts
    assert not any(_repeats(drifting, p) >= 4 for p in range(1, len(drifting)))  # no exact period 4 times
    assert guard.trimmed(drifting) == drifting
    assert guard.trimmed([9] + [1, 2, 3, 4] * 8) == [9, 1, 2, 3, 4]  # the n-gram rule's own loop


@pytest.mark.slow
def test_beam_search_drops_looping_hypotheses(broken_tiny, looping_audio):
    _, audio = looping_audio
    options = DecodingOptions(beam_size=2, max_new_tokens=LIMIT)
    on_counter, off_counter = DecodeCounter(), DecodeCounter()
    on = transcribe(broken_tiny, audio, options, observer=on_counter)
    transcribe(broken_tiny, audio, options.without_guard(), observer=off_counter)
    assert off_counter.n_decoder_calls == LIMIT  # without the guard a looping beam runs to the limit
    assert on_counter.n_decoder_calls < LIMIT // 2
    assert [w.stop_reason for w in on.windows] in (["eot"], ["repetition"])
    assert not _rule_holds(list(on.tokens)[:-1])  # no looping hypothesis went on after the rule held


# ---------------------------------------------------------------- limits and junk input


def test_a_token_limit_beyond_the_decoder_is_an_input_error(tiny_model, sample_audio):
    audio = sample_audio[0][1]
    room = tiny_model.max_target_positions - len(tiny_model.tokens.prompt)
    assert transcribe(tiny_model, audio[:1600], DecodingOptions(max_new_tokens=room)).windows
    with pytest.raises(InputError) as err:
        transcribe(tiny_model, audio, DecodingOptions(max_new_tokens=room + 1))
    assert f"max_new_tokens {room + 1}" in str(err.value) and f"({room} = 448" in str(err.value)


@pytest.mark.parametrize("value", [1e30, np.nan, np.inf])
def test_audio_with_non_finite_features_is_an_input_error(tiny_model, sample_audio, value):
    audio = sample_audio[0][1].copy()
    audio[1000:1100] = value
    with pytest.raises(InputError) as err:
        transcribe(tiny_model, audio, file_id="clip")
    assert str(err.value).startswith("clip: log-mel features are not finite")
