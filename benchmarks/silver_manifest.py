"""Silver transcripts: an untranscribed manifest transcribed by a larger model, as more tuning words
for `weightwise optimize --tune` (whose closed loop measures each plan's WER increase over the float
model; on 3,561 arctic words that increase has a standard error of 0.24-0.37 points, too coarse for a
0.5-point budget, see benchmarks/results/optimize/README.md).

The reference is a model's output, not a human's: a plan's measured increase is against it, so its
errors count only where the plan's output moves away from the silver text. Every record keeps its
audio and metadata and says where its text came from (`text_source`). Resumable: utterances already
in `--out` are kept and skipped; the file is rewritten atomically after every utterance.

    python benchmarks/silver_manifest.py --model whisper-base \
        --data ../shared/data/speech/librispeech_train_clean_100_untranscribed \
        --out benchmarks/calib/librispeech_train_clean_100_silver_base.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from rich.progress import track

from weightwise import __version__
from weightwise.data import Manifest, iter_audio, load_manifest
from weightwise.decode import DecodingOptions, transcribe
from weightwise.evaluate.runtime import set_threads
from weightwise.models import load_model
from weightwise.outputs import write_text_atomic


def done_records(out: Path) -> dict[str, dict]:
    """id -> record of the utterances a previous run already wrote to `out`."""
    if not out.is_file():
        return {}
    return {r["id"]: r for r in (json.loads(line) for line in out.read_text().splitlines() if line.strip())}


def write(out: Path, records: list[dict]) -> None:
    write_text_atomic(out, "".join(json.dumps(r) + "\n" for r in records))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the untranscribed manifest (.jsonl or folder)")
    parser.add_argument("--model", default="whisper-base")
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="first N utterances")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    set_threads(args.threads)
    out = Path(args.out)
    manifest = load_manifest(args.data)
    manifest = manifest.head(args.limit) if args.limit else manifest
    done = done_records(out)
    todo = Manifest(tuple(u for u in manifest if u.id not in done), manifest.source)
    model = load_model(args.model)
    source = f"silver: {args.model} fp32, beam {args.beam_size}, weightwise {__version__}"
    for utt, samples in track(iter_audio(todo), total=len(todo), description="silver"):
        text = transcribe(model, samples, DecodingOptions(beam_size=args.beam_size)).text
        done[utt.id] = {**_record(utt, out.parent), "text": text, "text_source": source}
        write(out, [done[u.id] for u in manifest if u.id in done])
    words = sum(len((r["text"] or "").split()) for r in done.values())
    print(f"{out}: {len(done)} utterances, {words} silver words ({source})")


def _record(utt, folder: Path) -> dict:
    """The manifest record of `utt`, its audio path relative to `folder` (as the repo's other
    calibration manifests: the file names its audio wherever the checkout sits beside ../shared)."""
    record = {"id": utt.id, "audio": os.path.relpath(utt.audio_path, folder.resolve()), "text": None}
    record |= {k: v for k, v in (("speaker", utt.speaker), ("duration", utt.duration_s)) if v is not None}
    return record | dict(utt.extra)


if __name__ == "__main__":
    main()
