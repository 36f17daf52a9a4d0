"""Write a noisy copy of a manifest: every utterance mixed with seeded noise at one SNR.

    python benchmarks/noisy_manifest.py --data benchmarks/calib/arctic_kathleen_tune200.jsonl \
        --noise babble --snr-db 10 --out /tmp/tune-babble10

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

import soundfile as sf

from weightwise.audio.io import SAMPLE_RATE
from weightwise.audio.noise import add_noise, cell_seed, noise_label
from weightwise.data import Manifest, iter_audio, load_manifest, resolve_noise
from weightwise.errors import InputError


def noisy_copy(manifest: Manifest, noise: str, snr_db: float, out: Path) -> Manifest:
    source = resolve_noise(noise)
    audio = out / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    utterances = []
    for utt, samples in iter_audio(manifest):
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
    p.add_argument("--out", required=True, help="folder: audio/ and manifest.jsonl")
    args = p.parse_args(argv)
    try:
        noisy = noisy_copy(load_manifest(args.data), args.noise, args.snr_db, Path(args.out))
    except InputError as err:
        print(f"noisy_manifest: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {noisy.source}: {len(noisy)} utterances, {args.noise} at {args.snr_db:g} dB SNR")
    return 0


if __name__ == "__main__":
    sys.exit(main())
