"""Energy per audio-second from a trace, a device profile and a placement.

    E = sum over tensors of  bytes_read x e_mem(level)  +  MACs x e_mac(dtype)
      + key/value-cache bytes read and written x e_mem(level)
      + activation bytes written and read back x e_mem(level)

with level = on-chip when the knapsack placed the weight tensor there, else DRAM; plus the MACs of
weight-free attention ops. Key/value caches and activations have their own on-chip budget
(`DeviceSpec.onchip_activation_bytes`): an activation tensor larger than it, or a cache that does
not fit in it, goes through DRAM. Rates are per second of real audio (the trace's `audio_s`).

Deployment options, device-independent: `kv_dtype` and `act_dtype` price the cache and the
activations (attention MACs too) at a storage precision other than the run's; `fused_attention`
keeps attention score matrices on-chip (not charged).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from weightwise.profile.device import DeviceSpec
from weightwise.profile.placement import knapsack
from weightwise.profile.trace import Trace
from weightwise.profile.traffic import KV_PARTS, check_act_dtype, check_kv_dtype, kv_nbytes

PJ = 1e-12  # joules per picojoule

# (regex on the tensor/module name, component, group). First match wins.
_COMPONENTS = (
    # the transducer family (weightwise.models.transducer): names start at the network's root
    (r"^encoder\.frontend", "encoder.frontend", "encoder"),
    (r"^encoder\.blocks\.\d+\.self_attn", "encoder.attention", "encoder"),
    (r"^encoder\.blocks\.\d+\.ffn", "encoder.ffn", "encoder"),
    (r"^encoder\.blocks\.\d+\.conv", "encoder.conv", "encoder"),
    (r"^encoder\.blocks\.\d+\.cell", "encoder.recurrence", "encoder"),
    (r"^predictor\.", "predictor", "predictor"),
    (r"^joiner\.", "joiner", "joiner"),
    # Whisper (transformers' names)
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

_UNFUSED = "every attention score matrix (attention unfused)"
_FUSED = (
    "no attention score matrix (attention fused, flash-style: scores are computed tile by tile on-chip "
    "and never written; their MACs are counted, their traffic is not; keys and values are read once "
    "per attention call)"
)

ASSUMPTIONS = (
    "schedule fetch-once-per-call: a weight used for T frames/positions in one call is read once per call",
    "resident (on-chip) weights are loaded once; that load is amortized and not counted",
    f"activations: every output of a weight-bearing module, every attention output and {_UNFUSED} "
    "is written once and read back once; bias, GELU and residual adds "
    "are fused; a tensor larger than the on-chip activation budget goes through DRAM, the rest stays "
    "on-chip; the log-mel input is not counted",
    "key/value cache: every decoder call reads each layer's whole cache (cross-attention: all encoder "
    "positions; self-attention: all positions so far) and writes the new positions' keys/values; the "
    "smaller of the two caches is on-chip when it fits the activation budget, the larger when both fit; "
    "int8 adds one fp32 scale per position and head; beam reordering copies are not counted",
    "writes cost what reads cost, per byte and level",
    "MAC energy by the weight's storage dtype (int8 dynamic: int8 MACs); attention MACs by activation dtype",
    "roofline: RTF >= max(off-chip bytes / DRAM bandwidth, MACs / peak MAC rate) per audio-second",
)


def assumptions(act_dtype: str | None = None, fused_attention: bool = False) -> tuple[str, ...]:
    """`ASSUMPTIONS` as the deployment options of one profile change them."""
    base = tuple(a.replace(_UNFUSED, _FUSED) for a in ASSUMPTIONS) if fused_attention else ASSUMPTIONS
    extra = []
    if act_dtype is not None:
        extra.append(
            f"activations stored at {act_dtype} whatever the run computed them in (attention MACs "
            f"at {act_dtype} too)"
            + (
                "; int8 adds one fp32 scale per row: per token for module "
                "outputs, per query and head for score matrices"
                if act_dtype == "int8"
                else ""
            )
        )
    return base + tuple(extra)


def component_of(name: str) -> tuple[str, str]:
    """(component, group) of a weight or module name, or of a `TrafficProfile.name`."""
    for group in ("kv_cache", "activations"):
        if name == group or name.startswith(group + "."):
            return name, group
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
        rows.append(
            TensorProfile(
                t.name,
                component_of(t.name)[0],
                t.shape,
                t.dtype,
                t.format,
                t.nbytes,
                t.calls / trace.audio_s,
                read,
                macs,
                "onchip" if onchip else "dram",
                dram_j,
                onchip_j,
                compute_j,
                dram_j + onchip_j + compute_j,
            )
        )
    return rows


def place(trace: Trace, device: DeviceSpec) -> set[int]:
    """Indices of `trace.tensors` kept on-chip (knapsack on bytes read x energy saved per byte)."""
    saving = device.dram_pj_per_byte - device.onchip_pj_per_byte
    values = [t.bytes_read / trace.audio_s * saving for t in trace.tensors]
    return set(knapsack([t.nbytes for t in trace.tensors], values, int(device.onchip_weight_bytes)))


def tensor_profiles(trace: Trace, device: DeviceSpec, resident: set[int] | None = None) -> list[TensorProfile]:
    """Per-tensor energy with the knapsack placement (or `resident`; empty set = streaming)."""
    return _tensor_rows(trace, device, place(trace, device) if resident is None else resident)


def op_energy_j_per_audio_s(trace: Trace, device: DeviceSpec, act_dtype: str | None = None) -> dict[str, float]:
    """Attention (weight-free) compute energy per module, at `act_dtype` (default: the run's)."""
    return {
        op.module: op.macs / trace.audio_s * device.pj_per_mac_for(act_dtype or op.mac_dtype) * PJ for op in trace.ops
    }


@dataclass(frozen=True)
class TrafficProfile:
    """Key/value-cache or activation traffic of one part of the model, per audio-second."""

    name: str  # "kv_cache.cross_attention", "activations.encoder.attention_scores", ...
    dtype: str
    bytes_per_audio_s: float  # written + read
    offchip_bytes_per_audio_s: float
    largest_nbytes: float  # the largest tensor (activations) or cache (key/value) that had to fit
    dram_j_per_audio_s: float
    onchip_j_per_audio_s: float
    energy_j_per_audio_s: float

    @property
    def component(self) -> str:
        return component_of(self.name)[1]


def _traffic_row(
    name: str, dtype: str, moved: list[tuple[float, float, bool]], audio_s: float, device: DeviceSpec
) -> TrafficProfile:
    """`moved`: (bytes moved, size that had to fit, fits on-chip) over the whole trace."""
    total = sum(b for b, _, _ in moved) / audio_s
    offchip = sum(b for b, _, fits in moved if not fits) / audio_s
    dram_j, onchip_j = offchip * device.dram_pj_per_byte * PJ, (total - offchip) * device.onchip_pj_per_byte * PJ
    return TrafficProfile(
        name, dtype, total, offchip, max((size for _, size, _ in moved), default=0), dram_j, onchip_j, dram_j + onchip_j
    )


def kv_cache_profiles(trace: Trace, device: DeviceSpec, kv_dtype: str | None = None) -> list[TrafficProfile]:
    """Cache reads and writes per attention kind; `kv_dtype` defaults to the run's cache dtype."""
    if not trace.kv_steps:
        return []
    kv_dtype = check_kv_dtype(kv_dtype or trace.kv_dtype)
    budget = device.onchip_activation_bytes
    moved: dict[str, list] = {part: [] for part in KV_PARTS}
    for step in trace.kv_steps:
        size = {part: kv_nbytes(step.read(part), step.head_dim, kv_dtype) for part in KV_PARTS}
        small, large = sorted(KV_PARTS, key=size.get)
        fits = {small: size[small] <= budget, large: size[small] + size[large] <= budget}
        for part in KV_PARTS:
            nbytes = kv_nbytes(step.read(part) + step.written(part), step.head_dim, kv_dtype) * step.calls
            moved[part].append((nbytes, size[part], fits[part]))
    return [_traffic_row(f"kv_cache.{part}", kv_dtype, rows, trace.audio_s, device) for part, rows in moved.items()]


def activation_profiles(
    trace: Trace, device: DeviceSpec, act_dtype: str | None = None, fused_attention: bool = False
) -> list[TrafficProfile]:
    """Activation writes + read-backs per part; a tensor over the activation budget goes to DRAM.

    `act_dtype`: their storage precision (default: the run's); `fused_attention`: no score matrices.
    """
    if act_dtype is not None:
        check_act_dtype(act_dtype)
    moved: dict[str, list] = {}
    dtypes: dict[str, set] = {}
    for a in trace.activations:
        if fused_attention and a.part.endswith(".attention_scores"):
            continue
        nbytes = a.stored_nbytes(act_dtype)
        moved.setdefault(a.part, []).append((2 * nbytes * a.count, nbytes, nbytes <= device.onchip_activation_bytes))
        dtypes.setdefault(a.part, set()).add(act_dtype or a.dtype)
    return [
        _traffic_row(f"activations.{part}", "/".join(sorted(dtypes[part])), rows, trace.audio_s, device)
        for part, rows in sorted(moved.items())
    ]


def traffic_profiles(
    trace: Trace,
    device: DeviceSpec,
    kv_dtype: str | None = None,
    act_dtype: str | None = None,
    fused_attention: bool = False,
) -> list[TrafficProfile]:
    """Key/value-cache rows, then activation rows."""
    return kv_cache_profiles(trace, device, kv_dtype) + activation_profiles(trace, device, act_dtype, fused_attention)
