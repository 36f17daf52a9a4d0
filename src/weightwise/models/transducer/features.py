"""Streaming log-mel features: each frame depends only on its own samples, so a stream that gets
audio in pieces computes exactly the frames the whole utterance gives.

Frame i covers samples [i * hop, i * hop + n_fft) (no centring, no look-ahead); the tail that does
not fill a frame waits for more audio, and `finish` pads it with zeros up to the next whole frame.
Values are log(mel power + 1e-6), normalized by a per-bin mean and standard deviation measured on
the training data (stored with the weights).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from weightwise.models.transducer.config import TransducerConfig

LOG_FLOOR = 1e-6  # added to mel power before the log: about -60 dB below a full-scale tone


@functools.lru_cache(maxsize=4)
def mel_filters(n_fft: int, n_mels: int, sample_rate: int, f_max_hz: float) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) HTK-style triangular mel filterbank (transformers' implementation)."""
    from transformers.audio_utils import mel_filter_bank  # lazy: transformers takes seconds to import

    bank = mel_filter_bank(
        num_frequency_bins=1 + n_fft // 2,
        num_mel_filters=n_mels,
        min_frequency=20.0,
        max_frequency=f_max_hz,
        sampling_rate=sample_rate,
        mel_scale="htk",
    )
    return torch.from_numpy(bank.astype(np.float32))


@functools.lru_cache(maxsize=4)
def _window(n_fft: int) -> torch.Tensor:
    return torch.hann_window(n_fft, periodic=True)


def n_frames(n_samples: int, config: TransducerConfig) -> int:
    """Whole frames in `n_samples` samples."""
    return 0 if n_samples < config.n_fft else 1 + (n_samples - config.n_fft) // config.hop_length


def log_mel(samples: np.ndarray | torch.Tensor, config: TransducerConfig) -> torch.Tensor:
    """(frames, n_mels) un-normalized log-mel features of the whole frames in `samples`."""
    wave = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    count = n_frames(len(wave), config)
    if count == 0:
        return torch.zeros(0, config.n_mels)
    frames = wave[: config.n_fft + (count - 1) * config.hop_length].unfold(0, config.n_fft, config.hop_length)
    spectrum = torch.fft.rfft(frames * _window(config.n_fft), dim=-1)
    power = spectrum.real**2 + spectrum.imag**2
    filters = mel_filters(config.n_fft, config.n_mels, config.sample_rate, config.f_max_hz)
    return torch.log(power @ filters + LOG_FLOOR)


def tail_padding(n_samples: int, config: TransducerConfig) -> int:
    """Zeros `finish` appends: enough for ceil(n_samples / hop) frames, one per hop of audio."""
    if n_samples == 0:
        return 0
    wanted = -(-n_samples // config.hop_length)
    return max(0, config.n_fft + (wanted - 1) * config.hop_length - n_samples)


def offline_log_mel(samples: np.ndarray, config: TransducerConfig) -> torch.Tensor:
    """Features of a whole utterance: the frames a stream computes, including `finish`'s tail."""
    samples = np.asarray(samples, dtype=np.float32)
    return log_mel(np.pad(samples, (0, tail_padding(len(samples), config))), config)


class FeatureStream:
    """Samples in, whole log-mel frames out; `finish` flushes the tail."""

    def __init__(self, config: TransducerConfig):
        self.config = config
        self.buffer = np.zeros(0, dtype=np.float32)
        self.n_samples = 0  # samples accepted so far

    def accept(self, samples: np.ndarray) -> torch.Tensor:
        self.buffer = np.concatenate([self.buffer, samples.astype(np.float32, copy=False)])
        self.n_samples += len(samples)
        return self._drain()

    def finish(self) -> torch.Tensor:
        pad = tail_padding(self.n_samples, self.config)
        self.buffer = np.concatenate([self.buffer, np.zeros(pad, dtype=np.float32)])
        return self._drain()

    def _drain(self) -> torch.Tensor:
        features = log_mel(self.buffer, self.config)
        self.buffer = self.buffer[len(features) * self.config.hop_length :]
        return features
