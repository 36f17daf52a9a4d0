"""Voice activity gating with silero-vad (its PyPI package ships the model; no download).

Install it without its dependencies (`pip install --no-deps silero-vad`, as `make setup` does): its
extras pull torchaudio, which would replace our pinned torch. Only the TorchScript model is used
(`load_silero_vad()`), never its audio I/O (the part that needs torchaudio).

`VadGate` runs the model on consecutive 512-sample frames (32 ms at 16 kHz, the frame size the
model takes) at fixed stream positions, so its decisions do not depend on how the audio was split.
A frame is speech when the model's probability is >= `THRESHOLD` (silero's default, 0.5).

Energy of the gate (`vad_energy_j`): silero is TorchScript, which module hooks cannot trace, so its
cost is counted analytically from the weights it ships (`silero_vad_16k.safetensors`): every call
reads all its weights from DRAM (assumed not resident: the on-chip budget goes to the recognizer)
and does the MACs of its layers on one 512-sample frame + 64 samples of context (4 STFT frames of
hop 128, halved twice by the stride-2 convolutions, then one LSTM step), at fp32.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from weightwise.errors import InputError

FRAME_SAMPLES = 512  # silero-vad's frame at 16 kHz
THRESHOLD = 0.5  # silero-vad's default speech probability threshold
# per-call output frames of each layer (silero_vad/tinygrad_model.py: 576 input samples, reflect-pad 64,
# STFT conv kernel 256 stride 128 -> 4 frames; conv2, conv3 stride 2 -> 2, 1; then one LSTM step)
_FRAMES_PER_CALL = {"stft_conv": 4, "conv1": 4, "conv2": 2, "conv3": 1, "conv4": 1, "final_conv": 1, "lstm_cell": 1}


def _load_silero():
    """The TorchScript model (a fresh copy: it keeps its recurrent state inside)."""
    threads = torch.get_num_threads()  # importing silero_vad sets torch's threads to 1
    try:
        from silero_vad import load_silero_vad
    except ImportError as err:
        raise InputError(f"VAD needs silero-vad (pip install --no-deps silero-vad): {err}") from None
    finally:
        torch.set_num_threads(threads)
    with warnings.catch_warnings():  # its importlib.resources.path and torch.jit.load deprecations
        warnings.simplefilter("ignore", DeprecationWarning)
        model = load_silero_vad()
    torch.set_num_threads(threads)
    return model


@dataclass(frozen=True)
class VadCost:
    """silero-vad's weights and per-call work (see the module docstring for what is assumed)."""

    n_params: int
    weight_bytes: int
    macs_per_call: int


@functools.lru_cache(maxsize=1)
def vad_cost() -> VadCost:
    """Parameters, stored bytes and MACs per call, read from the weights silero-vad ships."""
    import importlib.resources

    from safetensors import safe_open

    path = importlib.resources.files("silero_vad.data").joinpath("silero_vad_16k.safetensors")
    n_params = weight_bytes = macs = 0
    with safe_open(str(path), "pt") as tensors:
        for name in tensors.keys():  # noqa: SIM118 (safe_open is not a mapping)
            t = tensors.get_tensor(name)
            n_params += t.numel()
            weight_bytes += t.numel() * t.element_size()
            if name.endswith("weight") or name.endswith(("weight_ih", "weight_hh")):
                macs += t.numel() * _FRAMES_PER_CALL[name.split(".")[0]]
    return VadCost(n_params, weight_bytes, macs)


def vad_energy_j(n_calls: int, dram_pj_per_byte: float, pj_per_mac_fp32: float) -> float:
    """Modeled energy of `n_calls` gate calls (weights read from DRAM every call, fp32 MACs)."""
    cost = vad_cost()
    return n_calls * (cost.weight_bytes * dram_pj_per_byte + cost.macs_per_call * pj_per_mac_fp32) * 1e-12


class VadGate:
    """Speech/silence decisions per 512-sample frame of a stream."""

    def __init__(self, sample_rate: int):
        if sample_rate != 16000:
            raise InputError(f"the VAD gate runs at 16000 Hz, got {sample_rate} Hz")
        self.sample_rate, self.model = sample_rate, _load_silero()
        self.pending = np.zeros(0, np.float32)
        self.speech: list[bool] = []  # one flag per complete frame
        self.n_calls = 0

    @torch.inference_mode()
    def accept(self, samples: np.ndarray) -> None:
        self.pending = np.concatenate([self.pending, samples])
        n = len(self.pending) // FRAME_SAMPLES
        for i in range(n):
            frame = torch.from_numpy(self.pending[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES].copy())
            self.speech.append(float(self.model(frame, self.sample_rate)) >= THRESHOLD)
        self.n_calls += n
        self.pending = self.pending[n * FRAME_SAMPLES :]

    def has_speech(self, start: int, end: int) -> bool:
        """Any speech frame ending in (start, end] (stream sample indices)."""
        first = start // FRAME_SAMPLES  # the frame that ends after `start`
        last = end // FRAME_SAMPLES  # frames ending at or before `end`
        return any(self.speech[first:last])
