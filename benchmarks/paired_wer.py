"""Paired WER increase of one `weightwise eval` output over another on the same utterances.

    python benchmarks/paired_wer.py BASE.json OTHER.json [--confidence 0.9]

Prints both corpus WERs and OTHER's increase over BASE in points, with the standard error and the
one-sided upper bound that `weightwise optimize`'s closed loop gates plans on
(`weightwise.optimize.calibrate.paired_delta`: a ratio estimator over utterances, so an utterance
both get wrong the same way adds nothing). The hypotheses are scored again here with the project's
normalizer; utterances without reference words are skipped, as the closed loop skips them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from weightwise.errors import InputError
from weightwise.evaluate.normalize import normalize
from weightwise.evaluate.wer import word_errors
from weightwise.optimize.calibrate import paired_delta, z_of


def _hyps(path: Path) -> dict[str, tuple[str, str]]:
    try:
        rows = json.loads(path.read_text())["utterances"]
        return {u["id"]: (normalize(u["ref"]), normalize(u["hyp"])) for u in rows}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path}: not a weightwise eval output with utterances ({err})") from None


def _errors(ref: str, hyp: str) -> int:
    counts = word_errors([ref], [hyp])
    return counts.substitutions + counts.deletions + counts.insertions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("other", type=Path)
    parser.add_argument("--confidence", type=float, default=0.9)
    args = parser.parse_args(argv)
    try:
        base, other = _hyps(args.base), _hyps(args.other)
        if set(base) != set(other):
            raise InputError(f"{args.other}: not the same utterances as {args.base}")
        ids = [i for i in base if base[i][0].strip()]
        if len(ids) < 2:
            raise InputError(f"{args.base}: fewer than 2 utterances with reference words")
    except InputError as err:
        print(f"paired_wer: error: {err}", file=sys.stderr)
        return 2
    float_errors = [_errors(*base[i]) for i in ids]
    errors = [_errors(base[i][0], other[i][1]) for i in ids]
    words = [len(base[i][0].split()) for i in ids]
    delta = paired_delta(errors, float_errors, words, z_of(args.confidence))
    print(
        f"{len(ids)} utterances, {sum(words)} words: WER {100 * sum(float_errors) / sum(words):.2f}% -> "
        f"{100 * sum(errors) / sum(words):.2f}%, increase {delta.points:+.2f} points "
        f"(standard error {delta.se_points:.2f}, upper bound at {args.confidence:g}: {delta.upper_points:+.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
