"""Word error rate over normalized texts (jiwer's alignment)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer


@dataclass(frozen=True)
class WerCounts:
    """Corpus-level word errors: wer = (S + D + I) / N, N = reference words."""

    wer: float
    substitutions: int
    deletions: int
    insertions: int
    n_ref_words: int


def word_errors(refs: Sequence[str], hyps: Sequence[str]) -> WerCounts:
    """Corpus WER of already-normalized `refs` vs `hyps` (same length, aligned by position)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("no utterances to score")
    out = jiwer.process_words(list(refs), list(hyps))
    n_ref = out.substitutions + out.deletions + out.hits
    errors = out.substitutions + out.deletions + out.insertions
    return WerCounts(
        errors / n_ref if n_ref else float(errors > 0), out.substitutions, out.deletions, out.insertions, n_ref
    )
