"""Audio with pauses: utterances joined by silences and noise gaps (seeded), to show what VAD saves.

A gap is either digital silence or low-level noise (pink by default, or any `NoiseSource`) at
`noise_dbfs` RMS; gap lengths are drawn uniformly from `gap_s`. The result keeps where every
utterance lies, so a test or a benchmark knows which seconds hold speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from weightwise.audio import SAMPLE_RATE, NoiseSource, noise_for
from weightwise.errors import InputError


@dataclass(frozen=True)
class PausedAudio:
    """Joined audio, the reference text and each utterance's (start_s, end_s)."""

    samples: np.ndarray
    text: str
    speech_s: tuple[tuple[float, float], ...]

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def speech_fraction(self) -> float:
        return sum(end - start for start, end in self.speech_s) / max(self.duration_s, 1e-9)


def make_paused_audio(
    clips: list[tuple[str, np.ndarray]],
    seed: int = 0,
    gap_s: tuple[float, float] = (2.0, 4.0),
    noise: NoiseSource | None = None,
    noise_gap_fraction: float = 0.5,
    noise_dbfs: float = -50.0,
) -> PausedAudio:
    """Join `(text, samples)` clips (16 kHz) with a gap before, between and after them.

    Each gap is noise with probability `noise_gap_fraction` (`noise`, default pink, scaled to
    `noise_dbfs` RMS), else digital silence.
    """
    if not clips:
        raise InputError("make_paused_audio: no clips to join")
    if not 0 <= gap_s[0] <= gap_s[1]:
        raise InputError(f"make_paused_audio: gap_s must be (low, high) with 0 <= low <= high, got {gap_s}")
    rng = np.random.default_rng(seed)
    noise = noise or NoiseSource("pink", "synthetic")
    parts, spans, at = [], [], 0

    def gap() -> np.ndarray:
        n = int(rng.uniform(*gap_s) * SAMPLE_RATE)
        if n == 0 or rng.random() >= noise_gap_fraction:
            return np.zeros(n, np.float32)
        segment = noise_for(noise, n, int(rng.integers(2**31)))
        rms = float(np.sqrt(np.mean(segment.astype(np.float64) ** 2))) or 1.0
        return (segment * (10 ** (noise_dbfs / 20) / rms)).astype(np.float32)

    for _, samples in clips:
        before = gap()
        parts += [before, np.asarray(samples, np.float32)]
        at += len(before)
        spans.append((at / SAMPLE_RATE, (at + len(samples)) / SAMPLE_RATE))
        at += len(samples)
    parts.append(gap())
    text = " ".join(t for t, _ in clips)
    return PausedAudio(np.concatenate(parts), text, tuple(spans))
