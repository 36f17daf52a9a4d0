"""Digit strings: isolated FSDD clips of ONE split joined with short gaps, optionally over noise.

Single digits last under a second, so streaming means nothing on them; strings of 3-8 digits with
50-400 ms gaps do. Every string is a pure function of (seed, index): the same call gives the same
audio in any process. Train strings use only train-split clips, test strings only test-split clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from weightwise.audio import SAMPLE_RATE, load_audio, mix_at_snr
from weightwise.data import Manifest, iter_audio
from weightwise.errors import InputError
from weightwise.outputs import atomic_writer


@dataclass(frozen=True)
class DigitStrings:
    """How digit strings are drawn (all ranges inclusive)."""

    min_digits: int = 3
    max_digits: int = 8
    min_gap_ms: float = 50.0
    max_gap_ms: float = 400.0
    edge_ms: float = 100.0  # silence before the first and after the last digit
    repeat_prob: float = 0.0  # chance that a digit repeats the one before (another clip of it)
    noise_prob: float = 0.0  # share of strings mixed with background noise
    min_snr_db: float = 10.0
    max_snr_db: float = 30.0

    def __post_init__(self):
        if not 1 <= self.min_digits <= self.max_digits or not 0 <= self.min_gap_ms <= self.max_gap_ms:
            raise InputError("digit strings: need 1 <= min_digits <= max_digits and 0 <= min_gap_ms <= max_gap_ms")
        for name in ("noise_prob", "repeat_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"digit strings: {name} must be in [0, 1], got {getattr(self, name)}")


Clip = tuple[str, np.ndarray]  # (text, samples at SAMPLE_RATE)


def clips_by_split(manifest: Manifest) -> dict[str, list[Clip]]:
    """All clips of a manifest in memory, grouped by their `split` field ("" when absent)."""
    out: dict[str, list[Clip]] = {}
    for utt, samples in iter_audio(manifest):
        if not utt.text:
            raise InputError(f"{manifest.source}: utterance {utt.id} has no text")
        out.setdefault(str(utt.extra.get("split", "")), []).append((utt.text, samples))
    return out


def load_noise_clips(folder: str | Path | None) -> list[np.ndarray]:
    """Every audio file under `folder` (recursively), or none for None."""
    if folder is None:
        return []
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix in (".flac", ".wav"))
    if not files:
        raise InputError(f"{folder}: no .flac or .wav noise files")
    return [load_audio(f) for f in files]


def make_digit_string(clips: list[Clip], spec: DigitStrings, seed: int, noise: list[np.ndarray] = ()) -> Clip:
    """One string: `n` clips drawn with replacement, joined by gaps, noise mixed in (seeded)."""
    text, audio, _ = make_timed_digit_string(clips, spec, seed, noise)
    return text, audio


def make_timed_digit_string(
    clips: list[Clip], spec: DigitStrings, seed: int, noise: list[np.ndarray] = ()
) -> tuple[str, np.ndarray, tuple[float, ...]]:
    """`make_digit_string` plus the end time (s) of every digit's clip in the string."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(spec.min_digits, spec.max_digits + 1))
    edge = np.zeros(int(spec.edge_ms * SAMPLE_RATE / 1000), dtype=np.float32)
    parts, words, ends, length = [edge], [], [], len(edge)
    for i in range(n):
        if i and spec.repeat_prob and rng.random() < spec.repeat_prob:  # no draw at all when 0: same strings
            same = [clip for clip in clips if clip[0] == words[-1]]
            text, samples = same[int(rng.integers(len(same)))]
        else:
            text, samples = clips[int(rng.integers(len(clips)))]
        if i:
            gap_s = rng.uniform(spec.min_gap_ms, spec.max_gap_ms) / 1000
            parts.append(np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.float32))
            length += len(parts[-1])
        parts.append(samples)
        words.append(text)
        length += len(samples)
        ends.append(length / SAMPLE_RATE)
    parts.append(edge)
    audio = np.concatenate(parts)
    if len(noise) and rng.random() < spec.noise_prob:
        clip = noise[int(rng.integers(len(noise)))]
        start = int(rng.integers(max(len(clip) - len(audio), 1)))
        segment = np.resize(clip[start:], len(audio))
        if np.any(segment):
            audio = mix_at_snr(audio, segment, float(rng.uniform(spec.min_snr_db, spec.max_snr_db)))
    return " ".join(words), audio, tuple(ends)


def write_digit_strings(
    clips: list[Clip],
    spec: DigitStrings,
    n: int,
    seed: int,
    out: str | Path,
    noise: list[np.ndarray] = (),
    id_prefix: str = "string",
) -> Path:
    """`n` strings as FLAC files + a manifest.jsonl in `out` (ids `{id_prefix}_0000`, ...); returns
    the manifest path."""
    import json

    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        text, audio = make_digit_string(clips, spec, seed * 1_000_003 + i, noise)
        name = f"audio/string_{i:04d}.flac"
        sf.write(out / name, np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16")
        record = {"id": f"{id_prefix}_{i:04d}", "audio": name, "text": text, "duration": len(audio) / SAMPLE_RATE}
        lines.append(json.dumps(record) + "\n")
    with atomic_writer(out / "manifest.jsonl", "w") as handle:
        handle.writelines(lines)
    return out / "manifest.jsonl"
