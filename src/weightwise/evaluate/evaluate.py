"""`evaluate`: transcribe a manifest and score it (WER, RTF, peak RSS), optionally beside a peer.

What is timed: for each utterance, `transcribe()` from the in-memory 16 kHz samples to text
(log-mel features, encoder, search, detokenization). File reading and resampling happen before the
timer starts. One untimed warm-up transcription of the first utterance runs first.
RTF = sum of timed seconds / sum of audio seconds.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weightwise.data import Manifest, Utterance, iter_audio
from weightwise.decode import DecodingOptions, Transcript, transcribe
from weightwise.evaluate.normalize import normalize, normalizer_for, normalizer_name
from weightwise.evaluate.runtime import peak_rss_mb, threads, versions, weight_bytes_resident, weight_kernels
from weightwise.evaluate.timing import warm_up_and_time
from weightwise.evaluate.wer import WerCounts, word_errors
from weightwise.models.onnx_engine import OnnxWhisperASR
from weightwise.models.whisper import WhisperASR
from weightwise.outputs import write_json_atomic


@dataclass(frozen=True)
class UtteranceResult:
    """One utterance: reference, hypothesis (raw text) and what decoding it cost."""

    id: str
    ref: str | None
    hyp: str
    audio_s: float
    compute_s: float
    n_tokens: int | None = None
    n_windows: int | None = None
    n_windows_repetition_stopped: int | None = None  # windows the repetition guard cut short
    n_windows_limit_stopped: int | None = None  # windows that hit max_new_tokens


@dataclass(frozen=True)
class PeerResult:
    """The peer system's scores on the same audio (e.g. faster-whisper on the same weights)."""

    name: str
    compute_type: str
    wer: float | None
    rtf: float
    compute_s: float
    substitutions: int | None
    deletions: int | None
    insertions: int | None
    same_normalized_fraction: float | None  # utterances whose normalized hyp equals ours
    rtf_ratio: float  # our RTF / peer RTF (< 1: we are faster)
    utterances: list[UtteranceResult]
    versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalResult:
    """Scores of one model on one manifest, with everything needed to reproduce them."""

    model: str
    precision: str
    plan: str | None  # compression plan applied (None: the model as loaded)
    data: str
    n_utterances: int
    audio_s: float
    wer: float | None  # fraction; None when the manifest has no transcripts
    substitutions: int | None
    deletions: int | None
    insertions: int | None
    n_ref_words: int | None
    rtf: float
    compute_s: float
    peak_rss_mb: float
    threads: int
    normalizer: str
    decoding: dict[str, Any]
    model_source: str
    weights_sha256: str
    n_params: int
    versions: dict[str, str]
    utterances: list[UtteranceResult]
    peer: PeerResult | None = None
    n_windows_repetition_stopped: int | None = None  # over all utterances (None: not recorded)
    n_windows_limit_stopped: int | None = None
    weight_bytes_resident: int | None = None  # RAM held by the model's tensors (None: not recorded)
    kernels: str | None = None  # what the weights ran on (`weight_kernels`; None: not recorded)
    engine: str = "torch"  # what ran the network: "torch" (ours) or "onnxruntime" (an ONNX export)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (a temp file in the same folder, then rename)."""
        write_json_atomic(path, self.to_dict())


def score(utterances: list[UtteranceResult], norm: Callable[[str | None], str] = normalize) -> WerCounts | None:
    """Corpus WER after normalization (`norm`: `normalize`, or `normalizer_for(model)`); None when
    any reference is missing."""
    if any(u.ref is None for u in utterances):
        return None
    return word_errors([norm(u.ref) for u in utterances], [norm(u.hyp) for u in utterances])


def score_fields(
    utterances: list[UtteranceResult], norm: Callable[[str | None], str] = normalize
) -> dict[str, float | int | None]:
    """wer, substitutions, deletions, insertions, n_ref_words (all None without references)."""
    counts = score(utterances, norm)
    names = ("wer", "substitutions", "deletions", "insertions", "n_ref_words")
    return {n: getattr(counts, n) if counts else None for n in names}


def timed_run(
    manifest: Manifest,
    run_one: Callable[[np.ndarray, str], Transcript | tuple[str, int | None, int | None]],
    progress: Callable[[Iterable, str], Iterable] | None = None,
    label: str = "",
) -> list[UtteranceResult]:
    """Run `run_one(samples, id)` on every utterance, timing each call (`warm_up_and_time`); it
    returns our `Transcript` or, for a peer, `(text, n_tokens, n_windows)`."""
    items = iter_audio(manifest)
    if progress is not None:
        items = progress(items, label)
    return [
        utterance_result(t.utterance, t.output, t.audio_s, t.compute_s)
        for t in warm_up_and_time({label: run_one}, items)
    ]


def utterance_result(
    utt: Utterance, out: Transcript | tuple[str, int | None, int | None], audio_s: float, compute_s: float
) -> UtteranceResult:
    """One utterance's result from our `Transcript` or a peer's `(text, n_tokens, n_windows)`."""
    if isinstance(out, Transcript):
        return UtteranceResult(
            utt.id,
            utt.text,
            out.text,
            audio_s,
            compute_s,
            out.n_tokens,
            len(out.windows),
            out.n_windows_repetition_stopped,
            out.n_windows_limit_stopped,
        )
    text, n_tokens, n_windows = out
    return UtteranceResult(utt.id, utt.text, text, audio_s, compute_s, n_tokens, n_windows)


def stop_counts(utterances: list[UtteranceResult]) -> dict[str, int | None]:
    """n_windows_repetition_stopped and n_windows_limit_stopped summed (None if any is unknown)."""
    names = ("n_windows_repetition_stopped", "n_windows_limit_stopped")
    return {
        n: None if any(getattr(u, n) is None for u in utterances) else sum(getattr(u, n) for u in utterances)
        for n in names
    }


def evaluate(
    model: WhisperASR | OnnxWhisperASR,
    manifest: Manifest,
    options: DecodingOptions = DecodingOptions(),
    progress: Callable[[Iterable, str], Iterable] | None = None,
) -> EvalResult:
    """Transcribe every utterance of `manifest` and score it.

    Args:
        model: from `load_model`, or an ONNX export from `load_onnx_export` (same features,
            search and scoring; its network runs on ONNX Runtime).
        manifest: utterances (with `text` for WER; without, WER is None).
        options: decoding settings.
        progress: optional wrapper `progress(iterable, label)` (e.g. a rich progress bar).

    Example:
        >>> result = evaluate(load_model("whisper-tiny.en"), sample_manifest())  # doctest: +SKIP
        >>> round(result.wer, 3), result.rtf < 1  # doctest: +SKIP
    """

    def run_one(samples: np.ndarray, file_id: str) -> Transcript:
        return transcribe(model, samples, options, file_id=file_id)

    utterances = timed_run(manifest, run_one, progress, f"{model.info.name} {model.info.precision}")
    audio_s = sum(u.audio_s for u in utterances)
    compute_s = sum(u.compute_s for u in utterances)
    info = model.info
    return EvalResult(
        model=info.name,
        precision=info.precision,
        plan=info.plan,
        data=manifest.source,
        n_utterances=len(utterances),
        audio_s=audio_s,
        **score_fields(utterances, normalizer_for(model)),
        rtf=compute_s / audio_s,
        compute_s=compute_s,
        peak_rss_mb=peak_rss_mb(),
        threads=threads(),
        normalizer=normalizer_name() if normalizer_for(model) is normalize else "vocabulary words (lower-cased)",
        decoding=dataclasses.asdict(options),
        model_source=info.source,
        weights_sha256=info.weights_sha256,
        n_params=info.n_params,
        versions=versions(),
        utterances=utterances,
        **stop_counts(utterances),
        # ONNX Runtime's arena is not torch's: its weight bytes and kernels are not measured (None)
        weight_bytes_resident=weight_bytes_resident(model.network) if hasattr(model, "network") else None,
        kernels=weight_kernels(model.network) if hasattr(model, "network") else None,
        engine=getattr(model, "engine", "torch"),
    )
