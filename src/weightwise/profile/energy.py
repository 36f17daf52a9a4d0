"""Energy per audio-second from a trace, a device profile and a placement.

    E = sum over tensors of  bytes_read x e_mem(level)  +  MACs x e_mac(dtype)

with level = on-chip when the knapsack placed the tensor there, else DRAM; plus the MACs of
weight-free attention ops. Activations are assumed to stay on-chip and are reported, not charged.
Rates are per second of real audio (the trace's `audio_s`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from weightwise.profile.device import DeviceSpec
from weightwise.profile.placement import knapsack
from weightwise.profile.trace import Trace

PJ = 1e-12  # joules per picojoule

# (regex on the tensor/module name, component, group). First match wins.
_COMPONENTS = (
    (r"(embed_tokens|proj_out)", "token_embedding_projection", "token_embedding_projection"),
    (r"encoder\.conv", "encoder.conv", "encoder"),
    (r"encoder\.layers\.\d+\.(self_attn|encoder_attn)", "encoder.attention", "encoder"),
    (r"encoder\.layers\.\d+\.(fc\d|final_layer_norm)", "encoder.ffn", "encoder"),
    (r"encoder\.", "encoder.other", "encoder"),
    (r"decoder\.layers\.\d+\.self_attn", "decoder.self_attention", "decoder"),
    (r"decoder\.layers\.\d+\.encoder_attn", "decoder.cross_attention", "decoder"),
    (r"decoder\.layers\.\d+\.(fc\d|final_layer_norm)", "decoder.ffn", "decoder"),
    (r"decoder\.", "decoder.other", "decoder"),
)

ASSUMPTIONS = (
    "schedule fetch-once-per-call: a weight used for T frames/positions in one call is read once per call",
    "resident (on-chip) weights are loaded once; that load is amortized and not counted",
    "activations stay on-chip; their bytes are reported but not charged",
    "MAC energy by the weight's storage dtype (int8 dynamic: int8 MACs); attention MACs by activation dtype",
    "roofline: RTF >= max(off-chip bytes / DRAM bandwidth, MACs / peak MAC rate) per audio-second",
)


def component_of(name: str) -> tuple[str, str]:
    """(component, group) of a weight or module name."""
    for pattern, component, group in _COMPONENTS:
        if re.search(pattern, name):
            return component, group
    return "other", "other"


@dataclass(frozen=True)
class TensorProfile:
    name: str
    component: str
    shape: tuple[int, ...]
    dtype: str
    format: str
    nbytes: int
    invocations_per_audio_s: float
    bytes_read_per_audio_s: float
    macs_per_audio_s: float
    placement: str  # "onchip" | "dram"
    dram_j_per_audio_s: float
    onchip_j_per_audio_s: float
    compute_j_per_audio_s: float
    energy_j_per_audio_s: float


def _tensor_rows(trace: Trace, device: DeviceSpec, resident: set[int]) -> list[TensorProfile]:
    rows = []
    for i, t in enumerate(trace.tensors):
        read = t.bytes_read / trace.audio_s
        macs = t.macs / trace.audio_s
        onchip = i in resident
        dram_j = 0.0 if onchip else read * device.dram_pj_per_byte * PJ
        onchip_j = read * device.onchip_pj_per_byte * PJ if onchip else 0.0
        compute_j = macs * device.pj_per_mac_for(t.mac_dtype) * PJ
        rows.append(TensorProfile(
            t.name, component_of(t.name)[0], t.shape, t.dtype, t.format, t.nbytes, t.calls / trace.audio_s,
            read, macs, "onchip" if onchip else "dram", dram_j, onchip_j, compute_j,
            dram_j + onchip_j + compute_j))
    return rows


def place(trace: Trace, device: DeviceSpec) -> set[int]:
    """Indices of `trace.tensors` kept on-chip (knapsack on bytes read x energy saved per byte)."""
    saving = device.dram_pj_per_byte - device.onchip_pj_per_byte
    values = [t.bytes_read / trace.audio_s * saving for t in trace.tensors]
    return set(knapsack([t.nbytes for t in trace.tensors], values, int(device.onchip_weight_bytes)))


def tensor_profiles(trace: Trace, device: DeviceSpec, resident: set[int] | None = None
                    ) -> list[TensorProfile]:
    """Per-tensor energy with the knapsack placement (or `resident`; empty set = streaming)."""
    return _tensor_rows(trace, device, place(trace, device) if resident is None else resident)


def op_energy_j_per_audio_s(trace: Trace, device: DeviceSpec) -> dict[str, float]:
    """Attention (weight-free) compute energy per module."""
    return {op.module: op.macs / trace.audio_s * device.pj_per_mac_for(op.mac_dtype) * PJ
            for op in trace.ops}


def as_dicts(rows: list[TensorProfile]) -> list[dict]:
    return [asdict(r) for r in rows]
