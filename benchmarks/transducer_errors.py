"""Where a transducer's errors on FSDD test-split digit strings are: substitutions / deletions /
insertions, repeated digits dropped, the string's first digit, and word errors per speaker of the
clip, for greedy and beam search on the same strings.

    python benchmarks/transducer_errors.py --model transducer-fsdd --strings 300 --beam-sizes 1 4 \
        --out benchmarks/results/transducer/errors_transducer-fsdd.json

Strings are those of `transducer_fsdd.py` (seed 1, `DigitStrings()` defaults), decoded offline
(`decode_audio`: equal to the 320 ms stream, tested), so no timing is involved.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import jiwer
import numpy as np
import torch
from transducer_fsdd import FSDD, STRING_SEED, word_errors

from weightwise.data import iter_audio, load_manifest
from weightwise.models import load_model
from weightwise.outputs import write_json_atomic
from weightwise.train.digits import DigitStrings, make_timed_digit_string


def clip_indices(n_clips: int, spec: DigitStrings, seed: int) -> list[int]:
    """Which clips `make_timed_digit_string` joins for `seed` (its draws, replayed; no repeats, no noise)."""
    rng = np.random.default_rng(seed)
    picked = []
    for i in range(int(rng.integers(spec.min_digits, spec.max_digits + 1))):
        picked.append(int(rng.integers(n_clips)))
        if i:
            rng.uniform(spec.min_gap_ms, spec.max_gap_ms)
    return picked


def analyse(model, clips, speakers, n: int, beam_size: int) -> dict:
    spec, refs, hyps = DigitStrings(), [], []
    per_speaker, words_per_speaker, kinds = Counter(), Counter(), Counter()
    for i in range(n):
        seed = STRING_SEED * 1_000_003 + i
        text, audio, _ = make_timed_digit_string(clips, spec, seed)
        picked = clip_indices(len(clips), spec, seed)
        if " ".join(clips[j][0] for j in picked) != text:
            raise RuntimeError("clip replay out of step with make_timed_digit_string")
        hyp = model.decode_audio(audio, beam_size).text
        refs.append(text)
        hyps.append(hyp)
        ref_words = text.split()
        words_per_speaker.update(speakers[j] for j in picked)
        for chunk in jiwer.process_words(text, hyp or "<empty>").alignments[0]:
            if chunk.type == "equal":
                continue
            for k in range(chunk.ref_start_idx, max(chunk.ref_end_idx, chunk.ref_start_idx + 1)):
                if k < len(ref_words):
                    per_speaker[speakers[picked[k]]] += 1
            first = chunk.ref_start_idx
            if chunk.type == "delete" and any(
                ref_words[k] in ref_words[max(k - 1, 0) : k] + ref_words[k + 1 : k + 2]
                for k in range(first, chunk.ref_end_idx)
            ):
                kinds["deleted_repeated_digit"] += 1
            if first == 0:
                kinds["at_first_digit"] += 1
    return {
        "beam_size": beam_size,
        "n": n,
        "wer": jiwer.wer(refs, [h or "<empty>" for h in hyps]),
        **word_errors(refs, hyps),
        "string_error_rate": float(np.mean([r != h for r, h in zip(refs, hyps, strict=True)])),
        "error_spans": dict(kinds),
        "per_speaker": {
            s: {"errors": per_speaker[s], "words": words_per_speaker[s]} for s in sorted(words_per_speaker)
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="transducer-fsdd")
    parser.add_argument("--data", default=str(FSDD))
    parser.add_argument("--strings", type=int, default=300)
    parser.add_argument("--beam-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(args.model)
    test = [(u, s) for u, s in iter_audio(load_manifest(args.data)) if u.extra.get("split") == "test"]
    clips, speakers = [(u.text, s) for u, s in test], [u.speaker for u, _ in test]
    row = {
        "model": args.model,
        "command": " ".join(["python", *sys.argv]),
        "searches": [analyse(model, clips, speakers, args.strings, b) for b in args.beam_sizes],
    }
    write_json_atomic(Path(args.out), row)
    print(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
