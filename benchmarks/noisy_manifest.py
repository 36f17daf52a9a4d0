"""Write a noisy copy of a manifest: every utterance mixed with seeded noise at one SNR.

    python benchmarks/noisy_manifest.py --data benchmarks/calib/arctic_kathleen_tune200.jsonl \
        --noise babble --snr-db 10 --join 2 --out /tmp/tune-babble10

`--join N` first joins every N consecutive utterances into one (JOIN_GAP_S of silence between them,
the transcripts joined with a space): arctic's sentences are 3.0 s (9 words) at the median, the
evaluation audio's (test-other mini) 6.6 s (17 words); the decoder then carries each sentence's
context into the next, as it does on longer audio.

The optimizer's closed loop (`optimize --tune`) measures plans on transcribed audio; clean read
speech (arctic) barely moves when the decoder is quantized, while noisy, varied speech
(test-other) does, so a tuning set as hard as the audio the plan will meet is mixed here. The noise
segment of each utterance comes from `cell_seed(id, noise, snr)` as in `bench`, so a rerun writes
the same samples; files already written are kept (resumable) and the manifest is written last,
atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from weightwise.audio.io import SAMPLE_RATE
from weightwise.audio.noise import add_noise, cell_seed, noise_label
from weightwise.data import Manifest, iter_audio, load_manifest, resolve_noise
from weightwise.errors import InputError

JOIN_GAP_S = 0.3  # silence between joined sentences (a sentence pause in read speech)


def joined(manifest: Manifest, n: int):
    """(utterance, samples) for every `n` consecutive utterances joined into one (a shorter rest kept)."""
    group: list = []
    for item in iter_audio(manifest):
        group.append(item)
        if len(group) == n:
            yield _join(group)
            group = []
    if group:
        yield _join(group)


def _join(group):
    if len(group) == 1:
        return group[0]
    gap = np.zeros(int(JOIN_GAP_S * SAMPLE_RATE), dtype=np.float32)
    parts = [p for _, samples in group for p in (samples.astype(np.float32), gap)][:-1]
    first = group[0][0]
    utt = dataclasses.replace(
        first,
        id="+".join(u.id for u, _ in group),
        text=" ".join(u.text or "" for u, _ in group).strip(),
        duration_s=sum(len(p) for p in parts) / SAMPLE_RATE,
        extra={**first.extra, "joined": [u.id for u, _ in group]},
    )
    return utt, np.concatenate(parts)


def noisy_copy(manifest: Manifest, noise: str, snr_db: float, out: Path, join: int = 1) -> Manifest:
    source = resolve_noise(noise)
    audio = out / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    utterances = []
    for utt, samples in joined(manifest, join):
        path = audio / f"{utt.id}.flac"
        if not path.exists():
            mixed = add_noise(samples, source, snr_db, cell_seed(utt.id, noise_label(noise), snr_db))
            tmp = path.with_suffix(".tmp.flac")
            sf.write(tmp, mixed, SAMPLE_RATE, subtype="PCM_16")
            tmp.replace(path)
        extra = {**utt.extra, "noise": noise_label(noise), "snr_db": snr_db}
        utterances.append(dataclasses.replace(utt, audio_path=path.resolve(), extra=extra))
    noisy = Manifest(tuple(utterances), source=str(out / "manifest.jsonl"))
    noisy.to_jsonl(out / "manifest.jsonl")
    return noisy


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="manifest to copy")
    p.add_argument("--noise", default="babble", help="white, pink, babble, an audio file or a noise manifest")
    p.add_argument("--snr-db", type=float, required=True)
    p.add_argument("--join", type=int, default=1, help="join every N consecutive utterances into one first")
    p.add_argument("--out", required=True, help="folder: audio/ and manifest.jsonl")
    args = p.parse_args(argv)
    if args.join < 1:
        print(f"noisy_manifest: error: --join must be >= 1, got {args.join}", file=sys.stderr)
        return 2
    try:
        noisy = noisy_copy(load_manifest(args.data), args.noise, args.snr_db, Path(args.out), args.join)
    except InputError as err:
        print(f"noisy_manifest: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {noisy.source}: {len(noisy)} utterances, {args.noise} at {args.snr_db:g} dB SNR")
    return 0


if __name__ == "__main__":
    sys.exit(main())
