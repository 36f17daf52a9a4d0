"""The runaway-decoding guard: stop a window whose text has started to repeat itself.

A broken model (heavily pruned, mis-quantized) or junk audio can make the decoder loop ("I'm not,
I'm not, I'm not, ...") until the token limit, in every window: hundreds of decoder calls that
produce nothing but insertions. openai-whisper and faster-whisper flag such output with the gzip
compression ratio of a window's text (above 2.4: "too repetitive") and retry at a higher
temperature; faster-whisper can also ban repeated n-grams (`no_repeat_ngram_size`). We have no
temperature fallback (our settings mirror the peer's temperature-0 runs), so the guard *stops*
the window instead and says so (`stop_reason == "repetition"`), keeping the tokens up to that
point with the loop cut to one copy of its repeated n-gram (`RepetitionGuard.trimmed`). Two tests,
checked after every new token once the window holds `DecodingOptions.repetition_min_tokens` tokens:

- the last n-gram repeated `repetition_stop_repeats` times in a row, the repeats covering at
  least `repetition_min_tokens` tokens (any n: "the the the ..." and a looping sentence alike);
- the window's text so far compresses (zlib) by more than `compression_ratio_threshold`, which
  also catches loops that drift ("I'm not, I'm, I'm not, I'm, ...").

Defaults are conservative: on 160 clean utterances (LibriSpeech test-other, ARCTIC, FSDD) no
tiny.en transcript repeats an n-gram more than twice in a row, and no prefix of one compresses
by more than 1.61.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

from weightwise.decode.options import DecodingOptions

STOP_REASONS = ("eot", "max_new_tokens", "repetition")
#: Back-to-back copies that make a stopped window's tail a loop to trim when the n-gram rule is off.
LOOP_COPIES = 4


def compression_ratio(text: str) -> float:
    """UTF-8 length over zlib-compressed length (openai-whisper's and faster-whisper's measure)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def loop_period(tokens: Sequence[int], min_repeats: int, min_tokens: int) -> int | None:
    """The period of the n-gram `tokens` ends with, repeated >= `min_repeats` times in a row and
    covering >= `min_tokens` tokens (the shortest such n); None when there is none.

    Example:
        >>> loop_period([5, 1, 2, 1, 2, 1, 2], min_repeats=3, min_tokens=6)
        2
        >>> loop_period([5, 1, 2, 1, 2, 1, 2], min_repeats=4, min_tokens=6) is None
        True
    """
    n = len(tokens)
    if n < 2:
        return None
    for period in range(1, n // min_repeats + 1):
        if tokens[n - 1 - period] != tokens[n - 1]:  # cheap reject: most periods fail here
            continue
        repeats = max(min_repeats, -(-min_tokens // period))
        span = repeats * period
        if span > n:
            continue
        tail = list(tokens[n - span :])
        if tail[period:] == tail[:-period]:  # periodic with this period over the whole span
            return period
    return None


def repeated_tail(tokens: Sequence[int], min_repeats: int, min_tokens: int) -> bool:
    """True when `tokens` ends with one n-gram repeated >= `min_repeats` times in a row, the
    repeats covering >= `min_tokens` tokens (`loop_period` finds one).

    Example:
        >>> repeated_tail([5, 1, 2, 1, 2, 1, 2], min_repeats=3, min_tokens=6)
        True
    """
    return loop_period(tokens, min_repeats, min_tokens) is not None


def keep_one_copy(tokens: Sequence[int], period: int) -> list[int]:
    """`tokens` with the back-to-back copies of its last `period` tokens cut to one.

    Example:
        >>> keep_one_copy([5, 1, 2, 1, 2, 1, 2], 2)
        [5, 1, 2]
    """
    out = list(tokens)
    while period >= 1 and len(out) >= 2 * period and out[-period:] == out[-2 * period : -period]:
        del out[-period:]
    return out


class RepetitionGuard:
    """`stop(tokens)` -> True when the window should stop on repetition (see the module doc)."""

    def __init__(self, options: DecodingOptions, decode_text: Callable[[list[int]], str]):
        self.repeats = options.repetition_stop_repeats
        self.ratio = options.compression_ratio_threshold
        self.min_tokens = options.repetition_min_tokens
        self.decode_text = decode_text

    @property
    def enabled(self) -> bool:
        return self.repeats is not None or self.ratio is not None

    def stop(self, tokens: list[int]) -> bool:
        if len(tokens) < self.min_tokens:
            return False
        if self.repeats is not None and repeated_tail(tokens, self.repeats, self.min_tokens):
            return True
        return self.ratio is not None and compression_ratio(self.decode_text(tokens)) > self.ratio

    def trimmed(self, tokens: list[int]) -> list[int]:
        """A stopped window's tokens with its loop cut to one copy of the repeated n-gram: the other
        copies are insertions only (a base babble 5 dB utterance: "... of art of art of art ...",
        28 errors where faster-whisper, which retries at a higher temperature, makes 12).

        The n-gram is the one the n-gram rule found; after a stop by the compression ratio (which
        fires earlier on short loops: 14 copies of "of art" there), the shortest n-gram ending the
        window as many times in a row as the n-gram rule asks (`repetition_stop_repeats`, 4 by
        default; `LOOP_COPIES` when that rule is off). A window stopped without an exact period (a
        loop that drifts) is kept as it is."""
        period = None if self.repeats is None else loop_period(tokens, self.repeats, self.min_tokens)
        if period is None:
            period = loop_period(tokens, self.repeats or LOOP_COPIES, 1)
        return tokens if period is None else keep_one_copy(tokens, period)
