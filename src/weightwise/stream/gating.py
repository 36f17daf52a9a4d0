"""What the VAD gate saves: one stream of audio with pauses, decoded with and without the gate.

Both runs decode with the profiler's `Tracer` as the observer and go through `analyze(trace, device)`
(as `weightwise profile`); the gated run adds the gate's own modeled energy (`vad.vad_energy_j`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from weightwise.evaluate.normalize import normalize
from weightwise.evaluate.wer import word_errors
from weightwise.models.whisper import WhisperASR
from weightwise.profile import DeviceSpec, Tracer, analyze
from weightwise.stream.evaluate import stream_utterance, word_latencies
from weightwise.stream.pauses import PausedAudio
from weightwise.stream.vad import vad_cost, vad_energy_j
from weightwise.stream.whisper import StreamOptions


def _run(model: WhisperASR, audio: PausedAudio, device: DeviceSpec, options: StreamOptions) -> dict[str, Any]:
    tracer = Tracer(model.network)
    with tracer:
        stream = stream_utterance(model, audio.samples, options, tracer, "paused")
    trace = tracer.result(model.info.name, model.info.precision)
    profile = analyze(trace, device)
    vad_calls = stream.gate.n_calls if stream.gate is not None else 0
    vad_j = vad_energy_j(vad_calls, device.dram_pj_per_byte, device.pj_per_mac_for("fp32"))
    hyp = stream.result.confirmed_text
    latencies = sorted(word_latencies(stream))
    return {
        "vad": options.vad,
        "hyp": hyp,
        "wer": word_errors([normalize(audio.text)], [normalize(hyp)]).wer,
        "scheduled_decodes": len(stream.steps),
        "decodes": trace.n_windows,
        "skipped_decodes": sum(s.skipped for s in stream.steps),
        "decoder_calls": trace.n_decoder_calls,
        "vad_calls": vad_calls,
        "whisper_energy_j_per_audio_s": profile.energy_j_per_audio_s,
        "vad_energy_j_per_audio_s": vad_j / audio.duration_s,
        "energy_j_per_audio_s": profile.energy_j_per_audio_s + vad_j / audio.duration_s,
        "cpu_s": sum(s.cpu_s for s in stream.steps),
        "latency_median_s": latencies[len(latencies) // 2] if latencies else None,
    }


def vad_savings(
    model: WhisperASR, audio: PausedAudio, device: DeviceSpec, options: StreamOptions = StreamOptions()
) -> dict[str, Any]:
    """Decodes, invocations and modeled energy per audio-second, with and without the VAD gate."""
    runs = [_run(model, audio, device, dataclasses.replace(options, vad=vad)) for vad in (False, True)]
    off, on = runs
    return {
        "model": model.info.name,
        "device": device.name,
        "chunk_ms": options.chunk_ms,
        "audio_s": audio.duration_s,
        "speech_fraction": audio.speech_fraction,
        "speech_s": audio.speech_s,
        "ref": audio.text,
        "no_vad": off,
        "vad": on,
        "energy_saved_fraction": 1 - on["energy_j_per_audio_s"] / off["energy_j_per_audio_s"],
        "decodes_saved": off["decodes"] - on["decodes"],
        "vad_cost": dataclasses.asdict(vad_cost()),
    }
