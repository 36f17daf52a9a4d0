"""Sensitivity: what compressing ONE group with ONE candidate costs, in accuracy and in traffic.

Accuracy needs no transcripts. The reference pass decodes the calibration audio greedily with the
float32 model (the model every plan starts from) and keeps, per 30 s window, the encoder input,
each encoder layer's input and the encoder output, the model's own tokens and its next-token
log-probabilities under teacher forcing. A candidate's score is the mean per-token
KL(reference || candidate) over those positions with only that group compressed: one
teacher-forced decoder pass per window; the encoder is re-run only for an encoder group, from that
group's layer on. The log-likelihood drop of the reference tokens is kept beside it. The baseline
candidate ("keep", fp16 storage) scores 0 by definition: budgets are relative to it.
A transducer (`model.info.family == "transducer"`) has its own reference and score: per utterance,
the KL of the joiner's output along the float model's greedy alignment, teacher-forced
(`weightwise.compress.transducer_sensitivity`); `encoder_windows` does not apply to it.

The energy side is the profiler's counts for the compressed group (`weightwise.compress.costs`):
the same weights at the deployment's runtime precision (fp16: activations, norms and biases in
fp16, as the dense baseline) decode the calibration audio once under the profiler's `Tracer`; each
candidate's module is then replayed over the recorded calls. Counts are device-independent;
`skip(group, keep_tensors, tensors)` lets the caller spare the accuracy pass of candidates no plan
would choose on its device (no fewer bytes and no less energy than keep).

Entries are appended to a JSON-lines cache as they are computed (keyed by the model weights'
hash, the calibration audio, the decoding options, the runtime precision, the group and the
candidate's config), so a killed sweep resumes where it stopped; a torn last line is dropped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from weightwise.compress.candidates import Candidate, CandidateSpace, Group, applied
from weightwise.compress.costs import replay, trace_calls, trace_from_dict, trace_to_dict
from weightwise.compress.lowrank import LowRankWarning
from weightwise.data import Manifest, iter_audio
from weightwise.decode import DecodingOptions, transcribe
from weightwise.errors import InputError
from weightwise.profile.trace import TensorTrace, Trace

SCORE_VERSION = 1  # bump when the score's definition changes (invalidates caches)
Progress = Callable[[Iterable, str], Iterable]
Skip = Callable[[Group, tuple[TensorTrace, ...], tuple[TensorTrace, ...]], bool]


@dataclass(frozen=True)
class CalibWindow:
    """One 30 s window of calibration audio as the reference model saw it."""

    features: torch.Tensor  # (1, n_mels, 3000) encoder input
    layer_inputs: tuple[torch.Tensor, ...]  # input of each encoder layer (to re-run from a layer on)
    encoder_out: torch.Tensor  # (1, frames, d_model)
    ids: torch.Tensor  # (1, prompt + n) decoder input: prompt and the model's own tokens
    logprobs: torch.Tensor  # (n + 1, vocab) reference next-token log-probs (tokens, then end-of-text)


@dataclass(frozen=True)
class Reference:
    """The float model's own behaviour on the calibration audio (no transcripts needed), and the
    runtime model's trace of the same audio (what the energy side counts)."""

    trace: Trace  # the runtime-precision model's decode of the calibration audio
    calls: dict  # module name -> Counter of input shapes (`costs.CallRecorder`)
    runtime_dtype: torch.dtype  # float dtype of the deployment the energy side models
    windows: tuple  # CalibWindow per 30 s window; a transducer's: TransducerWindow per utterance
    transcripts: tuple[tuple[str, str], ...]  # (utterance id, the float model's text)
    key: str  # hash of weights, calibration audio, decoding options, runtime precision, encoder_windows
    encoder_windows: int | None = None  # encoder groups are scored on the first N windows (None: all)


def _key(model, manifest: Manifest, options: DecodingOptions, runtime: str, encoder_windows: int | None) -> str:
    fields = [f.name for f in dataclasses.fields(TensorTrace)]
    text = json.dumps(
        {
            "weights": model.info.weights_sha256,
            "version": SCORE_VERSION,
            "trace_fields": fields,
            "options": dataclasses.asdict(options),
            "runtime": runtime,
            "encoder_windows": encoder_windows,
            "calib": [[u.id, str(u.audio_path), u.duration_s] for u in manifest],
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def teacher_forced(model, ids: torch.Tensor, encoder_out: torch.Tensor, n_scored: int) -> torch.Tensor:
    """(n_scored, vocab) next-token log-probs at the last `n_scored` positions of `ids`."""
    net = model.network
    hidden = net.model.decoder(input_ids=ids, encoder_hidden_states=encoder_out, use_cache=False).last_hidden_state
    return torch.log_softmax(net.proj_out(hidden[0, -n_scored:]).float(), -1)


@torch.inference_mode()
def encoder_from(model, layer: int, hidden: torch.Tensor) -> torch.Tensor:
    """The encoder's output from the input of layer `layer` on (as WhisperEncoder.forward runs them)."""
    encoder = model.network.model.encoder
    for module in encoder.layers[layer:]:
        out = module(hidden, None)
        hidden = out[0] if isinstance(out, tuple) else out
    return encoder.layer_norm(hidden)


@torch.inference_mode()
def reference_pass(
    model, manifest: Manifest, options: DecodingOptions = DecodingOptions(), progress: Progress | None = None
) -> tuple[tuple[CalibWindow, ...], tuple[tuple[str, str], ...]]:
    """Decode `manifest` with the float model; keep every window's inputs, outputs and log-probs."""
    net, prompt = model.network, list(model.tokens.prompt)
    encoder = net.model.encoder
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    layer_inputs: list[torch.Tensor] = []
    hooks = [encoder.register_forward_hook(lambda m, args, out: seen.append((args[0], out.last_hidden_state)))]
    hooks += [layer.register_forward_pre_hook(lambda m, args: layer_inputs.append(args[0])) for layer in encoder.layers]
    items = iter_audio(manifest)
    if progress is not None:
        items = progress(items, "reference decode (float model, calibration audio)")
    windows, transcripts = [], []
    try:
        for utt, samples in items:
            seen.clear()
            layer_inputs.clear()
            out = transcribe(model, samples, options, file_id=utt.id)
            transcripts.append((utt.id, out.text))
            start, per_window = 0, len(encoder.layers)
            for i, ((features, encoder_out), window) in enumerate(zip(seen, out.windows, strict=False)):
                text = list(out.tokens[start : start + window.n_tokens])
                start += window.n_tokens
                ids = torch.tensor([prompt + text])
                layers = tuple(layer_inputs[i * per_window : (i + 1) * per_window])
                windows.append(
                    CalibWindow(
                        features, layers, encoder_out, ids, teacher_forced(model, ids, encoder_out, len(text) + 1)
                    )
                )
    finally:
        for hook in hooks:
            hook.remove()
    return tuple(windows), tuple(transcripts)


def build_reference(
    model,
    runtime_model,
    manifest: Manifest,
    names: list[str],
    options: DecodingOptions = DecodingOptions(),
    progress: Progress | None = None,
    encoder_windows: int | None = None,
) -> Reference:
    """Reference of `model` (float32, the one every plan compresses) on `manifest`, with the trace
    and call shapes of `runtime_model` (the same weights at the deployment's precision, e.g. fp16).

    `encoder_windows`: score encoder groups on the first N windows only (each needs an encoder
    re-run, about 10x a teacher-forced decoder pass); decoder groups always use every window."""
    trace, calls = trace_calls(runtime_model, manifest, names, options, progress)
    if _is_transducer(model):  # windows are utterances, scored along the greedy alignment
        from weightwise.compress.transducer_sensitivity import reference_pass as transducer_pass

        windows, transcripts = transducer_pass(model, manifest, progress)
    else:
        windows, transcripts = reference_pass(model, manifest, options, progress)
    runtime = runtime_model.info.precision
    key = _key(model, manifest, options, runtime, encoder_windows)
    return Reference(trace, calls, runtime_model.dtype, windows, transcripts, key, encoder_windows)


def _is_transducer(model) -> bool:
    return model.info.family == "transducer"


def _layer_of(group: Group) -> int | None:
    """Encoder layer index of a group inside an encoder layer, else None."""
    found = re.search(r"encoder\.layers\.(\d+)\.", group.name)
    return int(found.group(1)) if found else None


@torch.inference_mode()
def score(model, reference: Reference, group: Group) -> dict[str, float]:
    """Mean per-token KL(reference || current model) and log-likelihood drop of the reference tokens.

    The encoder is re-run only for encoder groups, from the group's layer on when it has one.
    A transducer's score is the joiner's (`weightwise.compress.transducer_sensitivity`)."""
    if _is_transducer(model):
        from weightwise.compress.transducer_sensitivity import score as transducer_score

        return transducer_score(model, reference, group)
    kl = drop = 0.0
    positions = 0
    in_encoder, layer = group.component == "encoder", _layer_of(group)
    windows = reference.windows[: reference.encoder_windows] if in_encoder else reference.windows
    for w in windows:
        if not in_encoder:
            encoder_out = w.encoder_out
        elif layer is not None:
            encoder_out = encoder_from(model, layer, w.layer_inputs[layer])
        else:
            encoder_out = model.network.model.encoder(w.features).last_hidden_state
        logprobs = teacher_forced(model, w.ids, encoder_out, w.logprobs.shape[0])
        kl += float((w.logprobs.exp() * (w.logprobs - logprobs)).sum())
        targets = torch.cat([w.ids[0, w.ids.shape[1] - w.logprobs.shape[0] + 1 :], torch.tensor([model.tokens.eot])])
        picked = torch.arange(len(targets))
        drop += float((w.logprobs[picked, targets] - logprobs[picked, targets]).sum())
        positions += len(targets)
    return {"kl": kl / max(positions, 1), "nll_delta": drop / max(positions, 1), "n_positions": positions}


@dataclass(frozen=True)
class Entry:
    """One (group, candidate): its stored tensors' counts and, unless skipped, its accuracy cost."""

    group: str
    candidate: str  # `Candidate.key`
    label: str
    applicable: bool
    tensors: tuple[TensorTrace, ...] = ()
    kl: float | None = None
    nll_delta: float | None = None
    reason: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "tensors": [trace_to_dict(t) for t in self.tensors]}

    @classmethod
    def from_dict(cls, data: dict) -> Entry:
        return cls(**{**data, "tensors": tuple(trace_from_dict(t) for t in data["tensors"])})


class SensitivityCache:
    """Append-only JSON lines of `Entry`; the last entry for a (group, candidate) wins."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self.entries: dict[tuple[str, str], Entry] = {}
        if self.path is None or not self.path.exists():
            return
        text = self.path.read_text()
        if text and not text.endswith("\n"):  # killed mid-write: drop the torn line
            text = text[: text.rfind("\n") + 1]
            self.path.write_text(text)
        for lineno, line in enumerate(text.splitlines(), 1):
            try:
                entry = Entry.from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError, KeyError) as err:
                raise InputError(
                    f"{self.path}:{lineno}: unreadable sensitivity cache line ({err}); delete the file to recompute"
                ) from None
            self.entries[(entry.group, entry.candidate)] = entry

    def put(self, entry: Entry) -> None:
        self.entries[(entry.group, entry.candidate)] = entry
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps(entry.to_dict()) + "\n")
                f.flush()


def cache_file(cache_dir: str | Path, model, reference: Reference) -> Path:
    return Path(cache_dir) / "sensitivity" / f"{model.info.name}-{reference.key[:16]}.jsonl"


def _compute(
    model,
    reference: Reference,
    group: Group,
    candidate: Candidate,
    is_keep: bool,
    keep: Entry | None,
    skip: Skip | None,
    context,
) -> Entry:
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LowRankWarning)  # ranks above break-even: its energy says so
            with applied(model.network, group, candidate.config, context) as modules:
                tensors = replay(modules, {n: reference.calls[n] for n in group.modules}, reference.runtime_dtype)
                if is_keep:
                    found = {"kl": 0.0, "nll_delta": 0.0}
                elif keep is not None and skip is not None and skip(group, keep.tensors, tensors):
                    found = {"reason": "dominated by keep: more energy and more bytes"}
                else:
                    found = score(model, reference, group)
                    found.pop("n_positions")
    except InputError as err:
        return Entry(group.name, candidate.key, candidate.label, False, reason=str(err))
    return Entry(
        group.name, candidate.key, candidate.label, True, tensors, seconds=time.perf_counter() - start, **found
    )


def sensitivity(
    model,
    reference: Reference,
    groups: list[Group],
    space: CandidateSpace,
    cache: SensitivityCache | None = None,
    skip: Skip | None = None,
    progress: Progress | None = None,
    context=None,
    executor=None,
) -> dict[tuple[str, str], Entry]:
    """Entry per (group name, candidate key) for keep and every candidate tried on the group
    (`CandidateSpace.candidates_for`); cached entries are reused.

    Pending work is what the cache lacks (or an entry skipped before that `skip` now wants).
    `executor` (`weightwise.executors`; default: this process) runs each pending entry as one task.
    """
    cache = cache or SensitivityCache(None)

    def done(group: Group, candidate: Candidate) -> bool:
        entry = cache.entries.get((group.name, candidate.key))
        if entry is None or not entry.applicable or entry.kl is not None:
            return entry is not None
        keep = cache.entries.get((group.name, space.keep.key))
        return keep is not None and skip is not None and skip(group, keep.tensors, entry.tensors)

    wanted = [(g, c) for g in groups for c in space.candidates_for(g)]
    pending = [(g, c) for g, c in wanted if not done(g, c)]
    if executor is not None and executor.name != "local":
        from weightwise.compress.sweep import sweep_on

        sweep_on(executor, model, reference, pending, space, cache, skip, progress, context)
        return {(g.name, c.key): cache.entries[(g.name, c.key)] for g, c in wanted}
    jobs = progress(pending, "sensitivity") if progress is not None else pending
    for group, candidate in jobs:
        keep = cache.entries.get((group.name, space.keep.key))
        cache.put(_compute(model, reference, group, candidate, candidate.key == space.keep.key, keep, skip, context))
    return {(g.name, c.key): cache.entries[(g.name, c.key)] for g, c in wanted}
