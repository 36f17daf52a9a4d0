"""The text normalizer every WER in weightwise is computed after.

openai-whisper's `EnglishTextNormalizer` (spelling map, numbers, contractions), taken from the
`whisper-normalizer` package, which ships it without openai-whisper's numba/triton dependencies.
Its name and version go into every result so WERs stay comparable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.metadata import version


@functools.lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer  # lazy: only runs that score need it

    return EnglishTextNormalizer()


def normalizer_name() -> str:
    return f"whisper_normalizer.english.EnglishTextNormalizer=={version('whisper-normalizer')}"


def normalize(text: str | None) -> str:
    """Lower-cased, punctuation-free, spelling- and number-normalized text."""
    return " ".join(_normalizer()(text or "").split())


def vocabulary_words(text: str | None) -> str:
    """Lower-cased words split on whitespace, nothing else: a closed-vocabulary model's own words."""
    return " ".join((text or "").lower().split())


def normalizer_for(model) -> Callable[[str | None], str]:
    """What `model`'s WERs are computed after: `normalize`, except for the transducer family, whose
    vocabulary words are scored as they are (Whisper's normalizer joins the spoken digits
    "one two three" into the one word "123", which would make a digit-string WER a string error rate)."""
    return vocabulary_words if getattr(getattr(model, "info", None), "family", "") == "transducer" else normalize
