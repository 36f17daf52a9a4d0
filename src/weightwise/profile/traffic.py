"""Key/value-cache and activation traffic of a real decode: the bytes that are not weights.

`Tracer` counts them from the tensors the run produces (hooks on the weight-bearing modules and
on the attention modules' `k_proj`/`v_proj`, and the torch-function mode that sees every
scaled-dot-product attention); `energy.traffic_profiles` prices them on a device.

Key/value cache (decoder calls with the cache on): at every decoder call each attention reads the
whole cache of its layer, keys and values (cross-attention: every encoder position, 1,500 for a
30 s window; self-attention: every position so far, the new ones included), and writes the keys
and values its `k_proj`/`v_proj` produce for the new positions (cross-attention: once per window).
Counted in elements, so the cache's precision is a profile option (`kv_dtype`), not fixed by the run.

Activations: every tensor a weight-bearing module outputs, every attention output, and every
attention score matrix (batch x heads x queries x keys: materialized unless the profile assumes
fused attention, `fused_attention`), each written once and read back once. Counted in the dtype
the run computed it in, with its row length, so their precision is a profile option too
(`act_dtype`). Key/value projection outputs that go into the cache are cache traffic, not activations.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass

import torch

from weightwise.errors import InputError
from weightwise.profile.storage import dtype_name

#: Bytes per cached key/value element by storage precision.
KV_BYTES_PER_VALUE = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
#: An int8 cache stores one fp32 scale per (position, head) vector of `head_dim` elements.
#: assumption: symmetric per-token, per-head quantization (per-token is the granularity KIVI, Liu
#: et al., ICML 2024, uses for the value cache); fp32 scales, as for the int8 weights in `storage.py`.
KV_INT8_SCALE_BYTES = 4
KV_PARTS = ("cross_attention", "self_attention")
#: Bytes per activation element by storage precision (the same choices as the cache's).
ACT_BYTES_PER_VALUE = KV_BYTES_PER_VALUE
#: An int8 activation stores one fp32 scale per row: per token for module outputs (a row = one
#: position's features) and per query and head for score matrices (a row = one query's scores).
#: assumption: symmetric dynamic per-token quantization (the granularity of LLM.int8(), Dettmers et
#: al., NeurIPS 2022, and SmoothQuant's per-token setting, Xiao et al., ICML 2023); fp32 scales,
#: as for the int8 weights in `storage.py` and the int8 cache above.
ACT_INT8_SCALE_BYTES = 4
#: Bytes per element of the dtypes a run computes activations in (to count a traced tensor's elements).
_RUN_BYTES_PER_VALUE = {**KV_BYTES_PER_VALUE, "fp64": 8, "uint8": 1}


@dataclass(frozen=True)
class KVStep:
    """Decoder calls that read and wrote the same numbers of cache elements; `calls` of them.

    Elements are keys + values over all layers (and beams) of one call. What a call reads is the
    whole cache at that call: it is what must fit on-chip for the reads to stay there.
    """

    cross_read: int
    self_read: int
    cross_written: int
    self_written: int
    head_dim: int  # elements per (position, head) vector
    calls: float  # fractional only in a scaled trace

    def read(self, part: str) -> int:
        return self.cross_read if part == "cross_attention" else self.self_read

    def written(self, part: str) -> int:
        return self.cross_written if part == "cross_attention" else self.self_written


@dataclass(frozen=True)
class ActivationTrace:
    """Activation tensors of one size written by one part of the model (each read back once)."""

    part: str  # "encoder" | "decoder", with ".attention_scores" for score matrices
    dtype: str
    nbytes: int  # one tensor, in the dtype the run computed it in
    count: float  # tensors of this size over the whole trace (fractional only when scaled)
    row_elements: int = 0  # elements per row (one int8 scale each); 0: unknown, the tensor is one row

    def stored_nbytes(self, act_dtype: str | None = None) -> float:
        """Bytes of one tensor stored at `act_dtype` (int8 with its row scales); default: as run."""
        if act_dtype is None:
            return self.nbytes
        numel = self.nbytes / _RUN_BYTES_PER_VALUE[self.dtype]
        nbytes = numel * ACT_BYTES_PER_VALUE[act_dtype]
        if act_dtype == "int8":
            nbytes += (numel / self.row_elements if self.row_elements else 1) * ACT_INT8_SCALE_BYTES
        return nbytes


def kv_nbytes(values: float, head_dim: int, kv_dtype: str) -> float:
    """Storage bytes of `values` cached elements at `kv_dtype` (int8 with its scales)."""
    nbytes = values * KV_BYTES_PER_VALUE[kv_dtype]
    if kv_dtype == "int8":
        nbytes += values / max(head_dim, 1) * KV_INT8_SCALE_BYTES
    return nbytes


def check_kv_dtype(kv_dtype: str) -> str:
    """`kv_dtype` if the energy model prices it, else a one-line `InputError`."""
    if kv_dtype not in KV_BYTES_PER_VALUE:
        raise InputError(f"--kv-precision {kv_dtype!r}: choose one of {', '.join(KV_BYTES_PER_VALUE)}")
    return kv_dtype


def check_act_dtype(act_dtype: str) -> str:
    """`act_dtype` if the energy model prices it, else a one-line `InputError`."""
    if act_dtype not in ACT_BYTES_PER_VALUE:
        raise InputError(f"--activation-precision {act_dtype!r}: choose one of {', '.join(ACT_BYTES_PER_VALUE)}")
    return act_dtype


class TrafficCounter:
    """Accumulates one decode's cache and activation traffic (used by `Tracer`)."""

    def __init__(self):
        self.steps: dict[tuple[int, ...], float] = defaultdict(float)
        self.activations: dict[tuple[str, str, int, int], float] = defaultdict(float)
        self.kv_dtype = ""
        self._call: list[int] | None = None  # cross_read, self_read, cross_written, self_written, head_dim

    def begin_call(self) -> None:
        self.end_call()
        self._call = [0, 0, 0, 0, 0]

    def end_call(self) -> None:
        if self._call is not None and any(self._call[:4]):
            self.steps[tuple(self._call)] += 1
        self._call = None

    def _current(self) -> list[int]:
        if self._call is None:
            self.begin_call()
        return self._call

    def kv_read(self, cross: bool, key: torch.Tensor, value: torch.Tensor) -> None:
        call = self._current()
        call[0 if cross else 1] += key.numel() + value.numel()
        call[4] = key.shape[-1]
        self.kv_dtype = dtype_name(key.dtype)

    def kv_write(self, cross: bool, tensor: torch.Tensor) -> None:
        self._current()[2 if cross else 3] += tensor.numel()

    def activation(self, part: str, tensor: torch.Tensor, numel: int | None = None, row: int | None = None) -> None:
        """One activation tensor written: `numel` elements of `tensor`'s dtype (default its own),
        in rows of `row` elements (default its last dimension)."""
        numel = tensor.numel() if numel is None else numel
        row = (tensor.shape[-1] if tensor.dim() else 1) if row is None else row
        self.activations[(part, dtype_name(tensor.dtype), numel * tensor.element_size(), row)] += 1

    def result(self) -> tuple[tuple[KVStep, ...], tuple[ActivationTrace, ...]]:
        self.end_call()
        steps = tuple(KVStep(*key, calls=calls) for key, calls in sorted(self.steps.items()))
        acts = tuple(
            ActivationTrace(part, dtype, nbytes, count, row)
            for (part, dtype, nbytes, row), count in sorted(self.activations.items())
        )
        return steps, acts


def scale_traffic(
    steps: tuple[KVStep, ...],
    activations: tuple[ActivationTrace, ...],
    window_factor: float,
    later_call_factor: float,
    call_factor: float,
) -> tuple[tuple[KVStep, ...], tuple[ActivationTrace, ...]]:
    """Traffic of another decode of the same model: first decoder calls of a window (the ones that
    write the cross-attention cache) and encoder activations scale with windows, later decoder
    calls with the later calls, decoder activations with all decoder calls. Approximate where the
    position mix differs (self-attention reads grow with the position)."""
    steps = tuple(
        dataclasses.replace(s, calls=s.calls * (window_factor if s.cross_written else later_call_factor)) for s in steps
    )
    acts = tuple(
        dataclasses.replace(a, count=a.count * (window_factor if a.part.startswith("encoder") else call_factor))
        for a in activations
    )
    return steps, acts
