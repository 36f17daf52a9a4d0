"""`profile`: trace a model on real audio, place its weights on a device, and model the energy.

    trace_manifest(model, manifest) -> Trace (device-independent counts) + transcripts
    analyze(trace, device)          -> ModelProfile (placement, energy, roofline, components)

Components: the weights' groups (encoder, decoder, token_embedding_projection) plus the traffic
that is not weights, `kv_cache` and `activations` (see `weightwise.profile.traffic`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from weightwise.data import Manifest, iter_audio
from weightwise.decode import DecodingOptions, transcribe
from weightwise.evaluate.evaluate import UtteranceResult, score, stop_counts, utterance_result
from weightwise.evaluate.normalize import normalizer_for
from weightwise.evaluate.runtime import versions
from weightwise.models.whisper import WhisperASR
from weightwise.outputs import write_json_atomic
from weightwise.profile.device import DeviceSpec
from weightwise.profile.energy import (
    ASSUMPTIONS,
    TensorProfile,
    TrafficProfile,
    assumptions,
    component_of,
    op_energy_j_per_audio_s,
    place,
    tensor_profiles,
    traffic_profiles,
)
from weightwise.profile.meters import Meter, MeterWindow
from weightwise.profile.trace import Trace, Tracer
from weightwise.profile.traffic import check_act_dtype, check_kv_dtype


@dataclass(frozen=True)
class ModelProfile:
    """Where a model's energy goes on one device, per audio-second of real speech."""

    model: str
    precision: str
    device: str
    data: str
    audio_s: float
    energy_j_per_audio_s: float
    dram_j_per_audio_s: float
    onchip_j_per_audio_s: float
    compute_j_per_audio_s: float
    offchip_bytes_per_audio_s: float
    baseline_offchip_bytes_per_audio_s: float  # streaming: nothing resident
    baseline_energy_j_per_audio_s: float
    onchip_bytes_used: int
    onchip_weight_bytes: int
    model_bytes: int  # unique stored weight bytes
    macs_per_audio_s: float
    activation_bytes_per_audio_s: float  # inputs + outputs of weight-bearing modules (not what is charged)
    roofline: dict[str, Any]
    components: dict[str, float]  # encoder / decoder / token_embedding_projection / kv_cache / activations -> share
    component_details: dict[str, float]  # finer components -> energy share
    decode: dict[str, Any]  # windows, decoder calls, tokens, cache, schedule
    tensors: list[TensorProfile]
    attention_ops: list[dict[str, Any]]
    onchip_activation_bytes: int = 0  # the device's budget for activations and the key/value cache
    kv_dtype: str = ""  # precision the key/value cache is charged at
    act_dtype: str = ""  # precision activations (and attention MACs) are charged at
    fused_attention: bool = False  # attention score matrices assumed kept on-chip (not charged)
    component_energy_j_per_audio_s: dict[str, float] = field(default_factory=dict)
    component_offchip_bytes_per_audio_s: dict[str, float] = field(default_factory=dict)
    # per weight group, its most-invoked tensor's calls per audio-second: a transducer's encoder
    # (chunks), predictor (label steps) and joiner (frame x hypothesis x symbol) rates
    component_invocations_per_audio_s: dict[str, float] = field(default_factory=dict)
    traffic: list[TrafficProfile] = field(default_factory=list)  # key/value cache and activations, per part
    wer: float | None = None
    plan: str | None = None  # compression plan applied to the model, if any
    measured: dict[str, Any] | None = None  # meter window over the whole trace, or why none (kept as it was)
    meter: str | None = None  # the meter's name ("rapl", "nvml", "jetson", "null"); None: no meter given
    meter_reason: str | None = None  # why that meter measured nothing (None when it measured)
    measured_energy_j: float | None = None  # the meter's whole-run energy on this host, not the modeled device
    device_spec: dict[str, Any] = field(default_factory=dict)
    assumptions: tuple[str, ...] = ASSUMPTIONS
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (a temp file in the same folder, then rename)."""
        write_json_atomic(path, self.to_dict())


def trace_manifest(
    model: WhisperASR,
    manifest: Manifest,
    options: DecodingOptions = DecodingOptions(),
    progress: Callable[[Iterable, str], Iterable] | None = None,
    meter: Meter | None = None,
) -> tuple[Trace, list[UtteranceResult], dict | None]:
    """Transcribe `manifest` with hooks on; return counts, transcripts and the meter reading."""
    items = iter_audio(manifest)
    if progress is not None:
        items = progress(items, f"profiling {model.info.name} {model.info.precision}")
    tracer, results = Tracer(model.network, use_cache=options.use_cache), []
    window = meter.window("profile") if meter is not None else None
    with window or contextlib.nullcontext(), tracer:
        for utt, samples in items:
            out = transcribe(model, samples, options, observer=tracer, file_id=utt.id)
            results.append(utterance_result(utt, out, out.audio_s, 0.0))
    measured = _measured(meter, window)
    return tracer.result(model.info.name, model.info.precision, options.use_cache), results, measured


def _measured(meter: Meter | None, window: MeterWindow | None) -> dict | None:
    if meter is None or window is None:
        return None
    m = window.measurement
    if m is None:
        return {"meter": meter.name, "energy_j": None, "reason": meter.reason}
    return {
        "meter": m.meter,
        "energy_j": m.energy_j,
        "duration_s": m.duration_s,
        "domains_j": dict(m.domains_j),
        "note": "whole-run window on this host, not the modeled device",
    }


def meter_fields(meter: Meter | None, measured: dict | None) -> dict[str, Any]:
    """`meter` (name), `meter_reason` and `measured_energy_j` of a run measured by `meter`."""
    if meter is None:
        return {"meter": None, "meter_reason": None, "measured_energy_j": None}
    energy_j = (measured or {}).get("energy_j")
    return {
        "meter": meter.name,
        "meter_reason": None if energy_j is not None else meter.reason or None,
        "measured_energy_j": energy_j,
    }


def _shares(energy: dict[str, float]) -> dict[str, float]:
    total = sum(energy.values()) or 1.0
    return {k: v / total for k, v in sorted(energy.items(), key=lambda kv: -kv[1])}


def _components(rows: list[TensorProfile], ops: dict[str, float], traffic: list[TrafficProfile]):
    """Energy by fine component and by group; off-chip bytes by group."""
    fine, coarse, offchip = defaultdict(float), defaultdict(float), defaultdict(float)
    energies = (
        [(r.name, r.energy_j_per_audio_s) for r in rows]
        + list(ops.items())
        + [(t.name, t.energy_j_per_audio_s) for t in traffic]
    )
    for name, energy in energies:
        component, group = component_of(name)
        fine[component] += energy
        coarse[group] += energy
    for name, nbytes in [(r.name, r.bytes_read_per_audio_s) for r in rows if r.placement == "dram"] + [
        (t.name, t.offchip_bytes_per_audio_s) for t in traffic
    ]:
        offchip[component_of(name)[1]] += nbytes
    offchip = {group: offchip.get(group, 0.0) for group in coarse}
    return fine, coarse, offchip


def _invocations(rows: list[TensorProfile]) -> dict[str, float]:
    """Group -> the largest invocations per audio-second among its tensors."""
    rates: dict[str, float] = defaultdict(float)
    for row in rows:
        group = component_of(row.name)[1]
        rates[group] = max(rates[group], row.invocations_per_audio_s)
    return dict(rates)


def analyze(
    trace: Trace,
    device: DeviceSpec,
    data: str = "",
    wer: float | None = None,
    measured: dict | None = None,
    kv_dtype: str | None = None,
    act_dtype: str | None = None,
    fused_attention: bool = False,
) -> ModelProfile:
    """Placement (knapsack vs streaming), energy split, roofline and component shares.

    `kv_dtype` (fp32/fp16/bf16/int8): the key/value cache's storage precision; default: the run's.
    `act_dtype` (the same choices): the activations' storage precision, which attention MACs use
    too; default: the run's. `fused_attention`: score matrices stay on-chip and are not charged.
    """
    if act_dtype is not None:
        check_act_dtype(act_dtype)
    resident = place(trace, device)
    rows = tensor_profiles(trace, device, resident)
    streaming = tensor_profiles(trace, device, set())
    ops = op_energy_j_per_audio_s(trace, device, act_dtype)
    traffic = traffic_profiles(trace, device, kv_dtype, act_dtype, fused_attention)
    fine, coarse, offchip_by_group = _components(rows, ops, traffic)
    traffic_offchip = sum(t.offchip_bytes_per_audio_s for t in traffic)
    traffic_dram_j = sum(t.dram_j_per_audio_s for t in traffic)
    traffic_j = sum(t.energy_j_per_audio_s for t in traffic)
    offchip = sum(r.bytes_read_per_audio_s for r in rows if r.placement == "dram") + traffic_offchip
    macs = sum(r.macs_per_audio_s for r in rows) + sum(op.macs for op in trace.ops) / trace.audio_s
    memory_s, compute_s = offchip / device.dram_bandwidth_bytes_per_s, macs / device.peak_macs_per_s
    compute_j = sum(r.compute_j_per_audio_s for r in rows) + sum(ops.values())
    return ModelProfile(
        model=trace.model,
        precision=trace.precision,
        device=device.name,
        data=data,
        audio_s=trace.audio_s,
        energy_j_per_audio_s=sum(r.dram_j_per_audio_s + r.onchip_j_per_audio_s for r in rows) + compute_j + traffic_j,
        dram_j_per_audio_s=sum(r.dram_j_per_audio_s for r in rows) + traffic_dram_j,
        onchip_j_per_audio_s=sum(r.onchip_j_per_audio_s for r in rows) + traffic_j - traffic_dram_j,
        compute_j_per_audio_s=compute_j,
        offchip_bytes_per_audio_s=offchip,
        baseline_offchip_bytes_per_audio_s=sum(r.bytes_read_per_audio_s for r in streaming) + traffic_offchip,
        baseline_energy_j_per_audio_s=sum(r.energy_j_per_audio_s for r in streaming) + sum(ops.values()) + traffic_j,
        onchip_bytes_used=sum(r.nbytes for r in rows if r.placement == "onchip"),
        onchip_weight_bytes=int(device.onchip_weight_bytes),
        model_bytes=sum(r.nbytes for r in rows),
        macs_per_audio_s=macs,
        activation_bytes_per_audio_s=trace.activation_bytes / trace.audio_s,
        roofline={
            "memory_s_per_audio_s": memory_s,
            "compute_s_per_audio_s": compute_s,
            "rtf_lower_bound": max(memory_s, compute_s),
            "bound": "memory" if memory_s >= compute_s else "compute",
        },
        components=_shares(coarse),
        component_details=_shares(fine),
        decode={
            "n_files": trace.n_files,
            "n_windows": trace.n_windows,
            "n_tokens": trace.n_tokens,
            "n_decoder_calls": trace.n_decoder_calls,
            "use_cache": trace.use_cache,
            "schedule": trace.schedule,
            "tokens_per_audio_s": trace.n_tokens / trace.audio_s,
            "windows_per_file": trace.n_windows / max(trace.n_files, 1),
        },
        tensors=sorted(rows, key=lambda r: -r.energy_j_per_audio_s),
        attention_ops=[
            {
                "module": op.module,
                "component": component_of(op.module)[0],
                "macs_per_audio_s": op.macs / trace.audio_s,
                "mac_dtype": act_dtype or op.mac_dtype,
                "energy_j_per_audio_s": ops[op.module],
            }
            for op in trace.ops
        ],
        onchip_activation_bytes=int(device.onchip_activation_bytes),
        kv_dtype=next((t.dtype for t in traffic if t.component == "kv_cache"), ""),
        act_dtype=act_dtype or "/".join(sorted({a.dtype for a in trace.activations})),
        fused_attention=fused_attention,
        assumptions=assumptions(act_dtype, fused_attention),
        component_energy_j_per_audio_s=dict(sorted(coarse.items(), key=lambda kv: -kv[1])),
        component_offchip_bytes_per_audio_s=offchip_by_group,
        component_invocations_per_audio_s=_invocations(rows),
        traffic=traffic,
        wer=wer,
        measured=measured,
        device_spec=device.to_dict(),
        versions=versions(),
    )


def profile(
    model: WhisperASR,
    manifest: Manifest,
    device: DeviceSpec,
    options: DecodingOptions = DecodingOptions(),
    progress: Callable[[Iterable, str], Iterable] | None = None,
    meter: Meter | None = None,
    kv_dtype: str | None = None,
    act_dtype: str | None = None,
    fused_attention: bool = False,
) -> ModelProfile:
    """Trace `model` on `manifest` and model its energy on `device`.

    Example:
        >>> device = load_device("jetson-orin-nano")  # doctest: +SKIP
        >>> p = profile(load_model("whisper-tiny.en"), sample_manifest(), device)  # doctest: +SKIP
        >>> p.components  # doctest: +SKIP
        {'decoder': 0.5, 'token_embedding_projection': 0.3, 'encoder': 0.2}
    """
    runtime = getattr(model, "runtime", None)  # a plan's runtime settings, simulated in the decode
    if runtime:  # the energy model follows them unless told otherwise
        kv_dtype = kv_dtype or runtime.kv_precision
        act_dtype = act_dtype or runtime.activation_precision
        fused_attention = fused_attention or bool(runtime.fused_attention)
    if kv_dtype is not None:
        check_kv_dtype(kv_dtype)  # before the decode, not after it
    if act_dtype is not None:
        check_act_dtype(act_dtype)
    trace, results, measured = trace_manifest(model, manifest, options, progress, meter)
    counts = score(results, normalizer_for(model))
    result = analyze(
        trace, device, manifest.source, counts.wer if counts else None, measured, kv_dtype, act_dtype, fused_attention
    )
    return dataclasses.replace(
        result, plan=model.info.plan, decode={**result.decode, **stop_counts(results)}, **meter_fields(meter, measured)
    )
