"""Log-mel features and 30 s windows, following faster-whisper's padding convention.

Convention (documented because it changes transcripts): the log-mel spectrogram is computed once over
the whole utterance (plus 160 zero samples, as faster-whisper does), normalized with the utterance's
global maximum, and each 30 s window of 3000 frames is then **zero-padded in the feature domain**.
openai-whisper and transformers instead pad the *audio* to 30 s before computing the features.
We follow faster-whisper so that our transcripts are comparable with our peer on the same weights.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from weightwise.audio import SAMPLE_RATE  # Hz; defined once, in weightwise.audio

N_FFT = 400  # 25 ms STFT window at 16 kHz
HOP_LENGTH = 160  # 10 ms hop: 100 frames per second
N_FRAMES = 3000  # frames in one 30 s window (the encoder's fixed input)
FRAME_S = HOP_LENGTH / SAMPLE_RATE  # 0.01 s per frame


@functools.lru_cache(maxsize=4)
def mel_filters(n_mels: int) -> torch.Tensor:
    """Slaney-style mel filterbank (n_mels, 201), as in openai-whisper and librosa."""
    from transformers.audio_utils import mel_filter_bank  # lazy: transformers takes seconds to import

    bank = mel_filter_bank(
        num_frequency_bins=1 + N_FFT // 2,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=SAMPLE_RATE / 2,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(bank.T.astype(np.float32))


def log_mel_spectrogram(audio: np.ndarray, n_mels: int = 80) -> torch.Tensor:
    """(n_mels, content_frames) float32 log-mel features of 16 kHz mono `audio`."""
    audio = np.asarray(audio, dtype=np.float32)
    # + one hop of zeros (faster-whisper); very short clips get more, as the STFT's reflect
    # padding (N_FFT // 2 samples each side) needs a longer input
    pad = max(HOP_LENGTH, N_FFT // 2 + 1 - len(audio))
    samples = torch.from_numpy(np.pad(audio, (0, pad)))
    stft = torch.stft(samples, N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT), return_complex=True)
    power = stft[..., :-1].abs() ** 2
    log_spec = torch.clamp(mel_filters(n_mels) @ power, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    # faster-whisper drops the last frame (the one made of the 160 padding samples)
    return ((log_spec + 4.0) / 4.0)[:, :-1]


@dataclass(frozen=True)
class Window:
    """One 30 s encoder input cut from an utterance's features."""

    index: int
    start_frame: int
    n_frames: int  # frames of real content; the rest of the 3000 are zero padding
    features: torch.Tensor  # (n_mels, 3000)

    @property
    def start_s(self) -> float:
        return self.start_frame * FRAME_S

    @property
    def duration_s(self) -> float:
        return self.n_frames * FRAME_S


def split_windows(mel: torch.Tensor) -> list[Window]:
    """Consecutive, non-overlapping 3000-frame windows, the last one zero-padded."""
    total = mel.shape[-1]
    windows = []
    for index, start in enumerate(range(0, max(total, 1), N_FRAMES)):
        chunk = mel[:, start : start + N_FRAMES]
        padded = torch.nn.functional.pad(chunk, (0, N_FRAMES - chunk.shape[-1]))
        windows.append(Window(index, start, chunk.shape[-1], padded))
    return windows
