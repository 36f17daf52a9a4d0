"""`evaluate_stream`: streaming vs offline on one manifest: WER, confirmed-word latency, RTF, energy.

Pacing is simulated, not slept: chunk k (k = 1, 2, ...) becomes available at k * chunk_s, and a
decode starts when its chunk is available and the previous decode is done:

    done_k = max(done_{k-1}, audio_end_k) + compute_k

compute_k is the decode's CPU time in this process (`time.process_time`): at --threads 1 that is
the wall time the decode takes on an idle core, whatever else shares the host (the shared hosts this
runs on are often oversubscribed; their wall times are reported beside, as `wall_latency_*`).
`algorithmic_latency_*` sets compute_k = 0: the delay of the policy itself (chunking + agreement).
A confirmed word's latency is done_k of the decode that confirmed it minus the word's end in the
audio (its DTW end time); words confirmed by `finish()` count too, with the stream's end as the
time their last chunk was available. Both runs decode with the profiler's `Tracer` as the
observer (its hooks cost wall time in both, so `rtf` and `offline_rtf` compare like with like), and
both traces go through the same `analyze(trace, device)` as `weightwise profile`: the streaming
energy per audio-second counts every re-decode. With the VAD gate, its modeled energy is added.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weightwise.data import Manifest, iter_audio
from weightwise.decode import DecodingOptions, transcribe
from weightwise.errors import InputError
from weightwise.evaluate.evaluate import UtteranceResult, score, utterance_result
from weightwise.evaluate.runtime import threads, versions
from weightwise.models.whisper import WhisperASR
from weightwise.outputs import write_json_atomic
from weightwise.profile import DeviceSpec, Tracer, analyze
from weightwise.stream.vad import vad_cost, vad_energy_j
from weightwise.stream.whisper import StreamOptions, WhisperStream

LATENCY_DEFINITION = (
    "time the decode that confirmed a word ended minus the word's end in the audio; pacing simulated: "
    "chunk k available at k * chunk_s, a decode starts when its chunk is available and the previous decode is done, "
    "and lasts its CPU time in this process (wall_latency_*: its wall time on this host; algorithmic_latency_*: 0)"
)


@dataclass(frozen=True)
class StreamEvaluation:
    """Streaming scores next to offline decoding of the same audio by the same model."""

    model: str
    precision: str
    data: str
    device: str
    chunk_ms: int
    vad: bool
    n_utterances: int
    audio_s: float
    wer: float | None
    offline_wer: float | None
    latency_median_s: float | None
    latency_p90_s: float | None
    latency_mean_s: float | None
    wall_latency_median_s: float | None
    wall_latency_p90_s: float | None
    algorithmic_latency_median_s: float | None
    algorithmic_latency_p90_s: float | None
    n_words_timed: int
    rtf: float  # CPU seconds / audio seconds (at --threads 1: the wall RTF on an idle core)
    offline_rtf: float
    wall_rtf: float  # wall seconds on this host / audio seconds
    offline_wall_rtf: float
    energy_j_per_audio_s: float
    offline_energy_j_per_audio_s: float
    decodes_per_audio_s: float  # encoder windows (re-decodes) per audio-second
    offline_windows_per_audio_s: float
    decoder_calls_per_audio_s: float
    offline_decoder_calls_per_audio_s: float
    skipped_decodes: int  # scheduled decodes the VAD found silent
    vad_calls_per_audio_s: float
    vad_energy_j_per_audio_s: float
    threads: int
    ids: list[str]
    options: dict[str, Any]
    latency_definition: str = LATENCY_DEFINITION
    utterances: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_dict())


CLOCKS = ("cpu", "wall", "none")


def word_latencies(stream: WhisperStream, clock: str = "cpu") -> list[float]:
    """Latency of every confirmed word of a finished stream under simulated real-time pacing; a
    decode lasts its CPU time (`cpu`), its wall time (`wall`) or nothing (`none`)."""
    done, finished_at = 0.0, []
    for step in stream.steps:
        done = max(done, step.audio_end_s) + {"cpu": step.cpu_s, "wall": step.compute_s, "none": 0.0}[clock]
        finished_at.append(done)
    return [finished_at[c.step] - c.word.end_s for c in stream.confirmations]


def stream_utterance(
    model: WhisperASR, samples: np.ndarray, options: StreamOptions, tracer: Tracer | None, file_id: str = ""
) -> WhisperStream:
    """Feed `samples` to a new stream in chunks of `options.chunk_ms` (unpaced) and finish it."""
    stream = WhisperStream(model, options, tracer, file_id)
    for start in range(0, len(samples), stream.chunk_samples):
        stream.accept_waveform(samples[start : start + stream.chunk_samples])
    stream.finish()
    return stream


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _run_offline(model, items, options):
    tracer, results, cpu_s = Tracer(model.network, use_cache=options.use_cache), [], 0.0
    with tracer:
        for utt, samples in items:
            began, began_cpu = time.perf_counter(), time.process_time()
            out = transcribe(model, samples, options, observer=tracer, file_id=utt.id)
            results.append(utterance_result(utt, out, out.audio_s, time.perf_counter() - began))
            cpu_s += time.process_time() - began_cpu
    return tracer, results, cpu_s


def _run_streaming(model, items, options: StreamOptions, progress):
    tracer, results, per_utt, skipped, vad_calls, cpu_s = Tracer(model.network), [], [], 0, 0, 0.0
    latencies: dict[str, list[float]] = {clock: [] for clock in CLOCKS}
    with tracer:
        for utt, samples in progress(items, f"streaming {model.info.name} {options.chunk_ms} ms"):
            stream = stream_utterance(model, samples, options, tracer, utt.id)
            for clock in CLOCKS:
                latencies[clock] += word_latencies(stream, clock)
            lat = word_latencies(stream)
            audio_s, compute_s = len(samples) / model.sample_rate, sum(s.compute_s for s in stream.steps)
            results.append(UtteranceResult(utt.id, utt.text, stream.result.confirmed_text, audio_s, compute_s))
            cpu_s += sum(s.cpu_s for s in stream.steps)
            skipped += sum(s.skipped for s in stream.steps)
            vad_calls += stream.gate.n_calls if stream.gate is not None else 0
            n_decodes = sum(not s.skipped for s in stream.steps)
            row = {"id": utt.id, "ref": utt.text, "hyp": results[-1].hyp, "offline_hyp": None, "audio_s": audio_s}
            per_utt.append({**row, "n_decodes": n_decodes, "latency_median_s": _percentile(lat, 50)})
    return tracer, results, latencies, per_utt, skipped, vad_calls, cpu_s


def evaluate_stream(
    model: WhisperASR,
    manifest: Manifest,
    device: DeviceSpec,
    options: StreamOptions = StreamOptions(),
    progress: Callable[[Iterable, str], Iterable] | None = None,
) -> StreamEvaluation:
    """Stream every utterance of `manifest` (simulated pacing) and decode it offline; compare."""
    progress = progress or (lambda items, label: items)
    if not isinstance(model, WhisperASR):
        raise InputError(
            f"stream --data evaluates Whisper models; {model.info.name} is scored by benchmarks/transducer_fsdd.py"
        )
    items = list(iter_audio(manifest))
    if not items:
        raise InputError(f"{manifest.source}: no utterances to stream")
    transcribe(model, items[0][1][: 2 * model.sample_rate], DecodingOptions())  # warm-up, untimed
    offline_tracer, offline, offline_cpu_s = _run_offline(model, items, options.decoding)
    tracer, streamed, latencies, per_utt, skipped, vad_calls, cpu_s = _run_streaming(model, items, options, progress)
    cpu, wall, none = latencies["cpu"], latencies["wall"], latencies["none"]
    for row, off in zip(per_utt, offline, strict=True):
        row["offline_hyp"] = off.hyp
    info, audio_s = model.info, sum(u.audio_s for u in streamed)
    trace = tracer.result(info.name, info.precision)
    offline_trace = offline_tracer.result(info.name, info.precision)
    counts, offline_counts = score(streamed), score(offline)
    vad_j = vad_energy_j(vad_calls, device.dram_pj_per_byte, device.pj_per_mac_for("fp32")) / max(audio_s, 1e-9)
    return StreamEvaluation(
        model=info.name,
        precision=info.precision,
        data=manifest.source,
        device=device.name,
        chunk_ms=options.chunk_ms,
        vad=options.vad,
        n_utterances=len(items),
        audio_s=audio_s,
        wer=counts.wer if counts else None,
        offline_wer=offline_counts.wer if offline_counts else None,
        latency_median_s=_percentile(cpu, 50),
        latency_p90_s=_percentile(cpu, 90),
        latency_mean_s=float(np.mean(cpu)) if cpu else None,
        wall_latency_median_s=_percentile(wall, 50),
        wall_latency_p90_s=_percentile(wall, 90),
        algorithmic_latency_median_s=_percentile(none, 50),
        algorithmic_latency_p90_s=_percentile(none, 90),
        n_words_timed=len(cpu),
        rtf=cpu_s / audio_s,
        offline_rtf=offline_cpu_s / audio_s,
        wall_rtf=sum(u.compute_s for u in streamed) / audio_s,
        offline_wall_rtf=sum(u.compute_s for u in offline) / audio_s,
        energy_j_per_audio_s=analyze(trace, device).energy_j_per_audio_s + vad_j,
        offline_energy_j_per_audio_s=analyze(offline_trace, device).energy_j_per_audio_s,
        decodes_per_audio_s=trace.n_windows / audio_s,
        offline_windows_per_audio_s=offline_trace.n_windows / audio_s,
        decoder_calls_per_audio_s=trace.n_decoder_calls / audio_s,
        offline_decoder_calls_per_audio_s=offline_trace.n_decoder_calls / audio_s,
        skipped_decodes=skipped,
        vad_calls_per_audio_s=vad_calls / audio_s,
        vad_energy_j_per_audio_s=vad_j,
        threads=threads(),
        ids=[utt.id for utt, _ in items],
        options={**dataclasses.asdict(options), "vad_cost": dataclasses.asdict(vad_cost()) if options.vad else None},
        utterances=per_utt,
        versions=versions(),
    )
