"""faster-whisper (CTranslate2) as a peer, on the same weights, audio and decoding settings.

Settings mirror ours: greedy (beam_size 1, best_of 1), temperature 0 only (no fallback), no
timestamps, no previous-text conditioning, no VAD, no no-speech skipping, English. faster-whisper
zero-pads the log-mel features of each 30 s window, the convention our features follow too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from weightwise.data import Manifest
from weightwise.decode import DecodingOptions
from weightwise.errors import InputError
from weightwise.evaluate.evaluate import EvalResult, PeerResult, score_fields, timed_run
from weightwise.evaluate.normalize import normalize
from weightwise.evaluate.runtime import versions

PEERS = ("faster-whisper",)
# our precision -> CTranslate2 compute type. CTranslate2 on CPU has no float16/bfloat16 kernels
# (ctranslate2.get_supported_compute_types("cpu") = float32, int8, int8_float32, int16 here).
DEFAULT_COMPUTE_TYPE = {"fp32": "float32", "int8": "int8", "fp16": "float32", "bf16": "float32"}


def check_peer(compute_type: str, model_dir: Path | None = None) -> None:
    """faster-whisper is installed, runs `compute_type` on this CPU, and `model_dir` (if given)
    is a CTranslate2 model directory; else a one-line `InputError`."""
    try:
        import ctranslate2  # lazy: the optional `peer` extra
        import faster_whisper  # noqa: F401
    except ImportError:
        raise InputError("peer faster-whisper is not installed (pip install 'weightwise[peer]')") from None
    supported = ctranslate2.get_supported_compute_types("cpu")
    if compute_type not in supported:
        raise InputError(
            f"peer compute type {compute_type!r} is not supported on this CPU "
            f"(supported: {', '.join(sorted(supported))})"
        )
    if model_dir is not None and not (model_dir / "model.bin").is_file():
        raise InputError(f"peer faster-whisper needs a CTranslate2 model directory, got {model_dir}")


def _faster_whisper_model(model_dir: Path, compute_type: str, cpu_threads: int):
    check_peer(compute_type, model_dir)
    from faster_whisper import WhisperModel  # lazy: the optional `peer` extra

    return WhisperModel(str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads)


def faster_whisper_runner(
    model_dir: Path, compute_type: str, cpu_threads: int, options: DecodingOptions = DecodingOptions()
) -> Callable[[np.ndarray], str]:
    """A function samples -> text running faster-whisper with settings matching ours."""
    fw = _faster_whisper_model(model_dir, compute_type, cpu_threads)
    settings = dict(
        language="en",
        beam_size=options.beam_size,
        best_of=1,
        temperature=0.0,
        without_timestamps=True,
        condition_on_previous_text=False,
        vad_filter=False,
        no_speech_threshold=None,
        suppress_blank=options.suppress_blank,
        max_new_tokens=options.max_new_tokens,
        log_progress=False,
    )

    def run(samples: np.ndarray) -> str:
        segments, _info = fw.transcribe(samples, **settings)
        # the generator does the work: consume it inside the caller's timer
        return "".join(s.text for s in segments).strip()

    return run


def run_faster_whisper(
    ours: EvalResult,
    manifest: Manifest,
    compute_type: str | None = None,
    options: DecodingOptions = DecodingOptions(),
    progress: Callable[[Iterable, str], Iterable] | None = None,
) -> EvalResult:
    """Evaluate faster-whisper on `ours`' weights and manifest; return `ours` with `peer` filled in."""
    compute_type = compute_type or DEFAULT_COMPUTE_TYPE[ours.precision]
    run = faster_whisper_runner(Path(ours.model_source), compute_type, ours.threads, options)
    utterances = timed_run(
        manifest, lambda samples, _id: (run(samples), None, None), progress, f"faster-whisper {compute_type}"
    )
    compute_s = sum(u.compute_s for u in utterances)
    rtf = compute_s / sum(u.audio_s for u in utterances)
    same = sum(normalize(a.hyp) == normalize(b.hyp) for a, b in zip(ours.utterances, utterances, strict=True))
    peer = PeerResult(
        name="faster-whisper",
        compute_type=compute_type,
        rtf=rtf,
        compute_s=compute_s,
        **{k: v for k, v in score_fields(utterances).items() if k != "n_ref_words"},
        same_normalized_fraction=same / len(utterances),
        rtf_ratio=ours.rtf / rtf,
        utterances=utterances,
        versions=versions(),
    )
    return dataclasses.replace(ours, peer=peer)
