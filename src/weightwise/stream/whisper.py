"""`WhisperStream`: LocalAgreement-2 re-decoding of a growing audio buffer (whisper_streaming's policy).

Every `chunk_ms` of received audio (at fixed stream positions, whatever the `accept_waveform` call
sizes) the whole buffer is decoded again, as one zero-padded 30 s window, conditioned on the
confirmed text that already left the buffer (`<|startofprev|>` + its last `prompt_chars`
characters). Words two consecutive hypotheses agree on are confirmed (`agreement.HypothesisBuffer`),
optionally except a hypothesis' last words (`hold_words`), which the buffer's end may cut: they wait
for the next pair of decodes. Word times come from cross-attention DTW (`alignment`). Once the
buffer is longer than `trim_s`, it is cut after the last confirmed sentence inside it: we decode
without timestamp tokens, so a
confirmed sentence end (. ? !) stands in for whisper_streaming's segment end; past `max_buffer_s`
it is cut after the last confirmed word, whatever it is. The cut lies where the newest decode starts
the word that follows (the DTW end of a word that ended its own decode stretches to that decode's
end, into the next word). With `encoder_context="auto"` (the default, as a plan runtime's) each
re-decode runs the encoder on the buffer plus a 3 s margin (at least 500 positions) instead of all
1,500 positions of the zero-padded window: on the first 50 utterances of test-other mini with
tiny.en that cut the median confirmed-word latency by 0.3 s and 13 word errors of 181
(benchmarks/results/stream/README.md).

With a VAD gate (`vad.VadGate`), a chunk without speech is not decoded; the first silent chunk
after speech finalizes the buffer (one decode, everything confirmed) and the buffer restarts after
the pause, so silence never enters a decode. Every decode reports to the `DecodeObserver` (one
encoder window + its decoder calls), so the profiler's `Tracer` counts the re-decodes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from weightwise.decode import DecodeObserver, DecodingOptions
from weightwise.decode.features import log_mel_spectrogram, split_windows
from weightwise.decode.search import greedy_search
from weightwise.errors import InputError
from weightwise.models.runtime import MAX_POSITIONS, RuntimeSettings, encoder_positions, run_short_encoder
from weightwise.models.whisper import WhisperASR
from weightwise.stream.agreement import HypothesisBuffer
from weightwise.stream.alignment import AttentionRecorder, timed_words
from weightwise.stream.protocol import ConfirmedWord, DecodeStep, StreamResult, Word, checked_chunk

MAX_PROMPT_TOKENS = 223  # openai-whisper: previous text keeps at most n_text_ctx // 2 - 1 tokens
SENTENCE_ENDS = (".", "?", "!")
VAD_KEEP_S = 0.3  # audio kept before the first speech after a pause (speech onsets precede detection)


@dataclass(frozen=True)
class StreamOptions:
    """How a Whisper stream decodes. Fold overrides in with `dataclasses.replace`."""

    chunk_ms: int = 1000  # decode every this much received audio
    trim_s: float = 15.0  # buffer length above which it is cut at a confirmed sentence end
    max_buffer_s: float = 25.0  # buffer length above which it is cut at the last confirmed word
    prompt_chars: int = 200  # confirmed text (outside the buffer) given as previous text
    vad: bool = False  # gate decodes with silero-vad (weightwise.stream.vad)
    # encoder positions per decode, as a plan runtime's `encoder_context` ("auto": the buffer plus
    # a margin, weightwise.models.runtime); None: the model's runtime setting, else all 1,500
    encoder_context: str | int | None = "auto"
    hold_words: int = 0  # a hypothesis' last words are no votes for agreement (`agreement.HypothesisBuffer`)
    decoding: DecodingOptions = field(default_factory=DecodingOptions)

    def __post_init__(self):
        if not 10 <= self.chunk_ms <= 10_000:
            raise InputError(f"--chunk-ms must be in 10..10000, got {self.chunk_ms}")
        if not 0 < self.trim_s <= self.max_buffer_s < 30:
            raise InputError(f"need 0 < trim_s <= max_buffer_s < 30 s, got {self.trim_s} and {self.max_buffer_s}")
        if self.decoding.beam_size != 1:
            raise InputError(f"streaming decodes greedily (beam size 1), got beam size {self.decoding.beam_size}")
        context = self.encoder_context
        if context is not None and context != "auto":
            if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= MAX_POSITIONS:
                raise InputError(f"--encoder-context {context!r}: 'auto' or a number of positions 1..{MAX_POSITIONS}")
        if isinstance(self.hold_words, bool) or not isinstance(self.hold_words, int) or not 0 <= self.hold_words <= 5:
            raise InputError(f"hold_words must be an integer in 0..5, got {self.hold_words!r}")
        if self.prompt_chars < 0:
            raise InputError(f"prompt_chars must be >= 0, got {self.prompt_chars}")


class WhisperStream:
    """One audio stream; the caller drives it (see `weightwise.stream.protocol`)."""

    def __init__(
        self,
        model: WhisperASR,
        options: StreamOptions = StreamOptions(),
        observer: DecodeObserver | None = None,
        file_id: str = "",
    ):
        self.model, self.options, self.file_id = model, options, file_id
        self.observer = observer or DecodeObserver()
        self.sample_rate = model.sample_rate
        self.chunk_samples = options.chunk_ms * self.sample_rate // 1000
        self.buffer = np.zeros(0, np.float32)
        self.buffer_start = 0  # stream sample index of buffer[0]
        self.received = 0  # samples received
        self.next_decode = self.chunk_samples  # stream position of the next scheduled decode
        self.last_decode_end = 0
        self.agreement = HypothesisBuffer(options.hold_words)
        self.confirmations: list[ConfirmedWord] = []
        self.steps: list[DecodeStep] = []
        self.finished = False
        self.gate = None
        if options.vad:
            from weightwise.stream.vad import VadGate

            self.gate = VadGate(self.sample_rate)
        self.buffer_has_speech = False
        self._startofprev = model.tokenizer.token_to_id("<|startofprev|>")

    # -- the caller's API ------------------------------------------------------------------------
    def accept_waveform(self, samples, sample_rate: int | None = None) -> StreamResult:
        """Add float32 mono samples at the model's rate; decode at every chunk boundary they pass.

        Raises:
            InputError: another sample rate, NaN/inf or integer samples, several channels, or a
                finished stream. The chunk is dropped and the stream stays usable.
        """
        if self.finished:
            raise InputError("accept_waveform: the stream is finished (create a new one)")
        chunk = checked_chunk(samples, sample_rate, self.sample_rate)
        before = len(self.agreement.confirmed)
        if chunk.size:
            self.buffer = np.concatenate([self.buffer, chunk])
            self.received += chunk.size
            if self.gate is not None:
                self.gate.accept(chunk)
            while self.received >= self.next_decode:
                self._step(self.next_decode)
                self.next_decode += self.chunk_samples
        return self._result(before)

    @property
    def result(self) -> StreamResult:
        return self._result(len(self.agreement.confirmed), self.finished)

    def finish(self) -> StreamResult:
        """Decode what is left, confirm the last hypothesis and return the final result."""
        if self.finished:
            return self.result
        before = len(self.agreement.confirmed)
        if self.received and (self.received > self.last_decode_end or not self.steps):
            self._step(self.received, final=True)
        else:
            self._confirm(self.agreement.confirm_all(), len(self.steps) - 1, self.received)
        self.finished = True
        self.observer.on_file(self.file_id, self.received / self.sample_rate)
        return self._result(before, final=True)

    # -- decoding --------------------------------------------------------------------------------
    def _step(self, end: int, final: bool = False) -> None:
        """One scheduled decode of the buffer up to stream sample `end` (or a skip, with the VAD)."""
        began, began_cpu = time.perf_counter(), time.process_time()
        start_of_new, self.last_decode_end = self.last_decode_end, end
        speech = self.gate is None or self.gate.has_speech(start_of_new, end)
        index = len(self.steps)
        if self.gate is not None and not speech and not self.buffer_has_speech:
            self.agreement.cut(len(self.agreement.confirmed))
            self._drop_until(max(self.buffer_start, end - int(VAD_KEEP_S * self.sample_rate)))
            cpu_s = time.process_time() - began_cpu
            self.steps.append(DecodeStep(end / self.sample_rate, 0.0, time.perf_counter() - began, 0, True, cpu_s))
            if final:
                self._confirm(self.agreement.confirm_all(), index, end)
            return
        self.buffer_has_speech = self.buffer_has_speech or speech
        buffer_s = (end - self.buffer_start) / self.sample_rate
        confirmed = self.agreement.insert(self._decode(end))
        pause = self.gate is not None and not speech  # speech then a silent chunk: the utterance ended
        if final or pause:
            confirmed += self.agreement.confirm_all()
        self._confirm(confirmed, index, end)
        if pause:
            self.agreement.cut(len(self.agreement.confirmed))
            self._drop_until(end)
            self.buffer_has_speech = False
        else:
            self._trim(end)
        wall_s, cpu_s = time.perf_counter() - began, time.process_time() - began_cpu
        self.steps.append(DecodeStep(end / self.sample_rate, buffer_s, wall_s, len(confirmed), False, cpu_s))

    @torch.inference_mode()
    def _decode(self, end: int) -> list[Word]:
        """Words of the buffer up to `end`, with times in the stream; one encoder + search run."""
        audio = self.buffer[: end - self.buffer_start]
        model, index = self.model, len(self.steps)
        window = split_windows(log_mel_spectrogram(audio, model.n_mels))[0]  # the buffer stays under 30 s
        offset_s = self.buffer_start / self.sample_rate
        self.observer.on_window(index, offset_s, window.duration_s)
        encoder_out = self._encode(window.features.unsqueeze(0).to(model.dtype), window.duration_s)
        prefix = self._prompt()
        with AttentionRecorder(model) as recorder:
            tokens, _ = greedy_search(model, encoder_out, self.options.decoding, self.observer, index, prefix)
        self.observer.on_window_end(index, len(tokens))
        frames = recorder.token_frames(len(prefix) + len(model.tokens.prompt), len(tokens), window.n_frames // 2)
        return timed_words(model, tokens, frames, offset_s, len(audio) / self.sample_rate)

    def _encode(self, features: torch.Tensor, duration_s: float) -> torch.Tensor:
        """The encoder on the buffer's window: on its first `encoder_positions` positions when a
        context is set (the options', else the model's runtime setting), as `transcribe` does."""
        context = self.options.encoder_context
        settings = RuntimeSettings(encoder_context=context) if context is not None else self.model.runtime
        positions = encoder_positions(settings, duration_s)
        encoder = self.model.network.model.encoder
        if positions >= MAX_POSITIONS:
            return encoder(features).last_hidden_state
        return run_short_encoder(encoder, features[..., : features.shape[-1] * positions // MAX_POSITIONS])

    def _prompt(self) -> tuple[int, ...]:
        """`<|startofprev|>` + the confirmed text that left the buffer (its last `prompt_chars`)."""
        done = self.agreement.confirmed[: self.agreement.buffer_index]
        text = " ".join(w.text for w in done)[-self.options.prompt_chars :]
        if not text.strip() or self._startofprev is None or not self.options.prompt_chars:
            return ()
        ids = self.model.tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids
        return (self._startofprev, *ids[-MAX_PROMPT_TOKENS:])

    # -- buffer ----------------------------------------------------------------------------------
    def _trim(self, end: int) -> None:
        """Cut the buffer after the last confirmed sentence end once it is longer than `trim_s`
        (after the last confirmed word past `max_buffer_s`), where the newest decode puts the start
        of the word that follows it."""
        rate, buffer_s = self.sample_rate, (end - self.buffer_start) / self.sample_rate
        if buffer_s <= self.options.trim_s:
            return
        confirmed, cuts = self.agreement.confirmed, self.agreement.cut_points()
        sentence_ends = [i for i in cuts if confirmed[i].text.endswith(SENTENCE_ENDS)]
        index = max(sentence_ends, default=None)
        if index is None and buffer_s > self.options.max_buffer_s:
            if len(confirmed) == self.agreement.buffer_index:  # nothing confirmed for max_buffer_s (noise, music)
                self._confirm(self.agreement.confirm_all(), len(self.steps), end)
                self.agreement.cut(len(confirmed))
                self._drop_until(end)
                return
            index = max(cuts, default=None)
            if index is None:  # no confirmed word is followed by another: cut after the last one
                self.agreement.cut(len(confirmed))
                self._drop_until(round(confirmed[-1].end_s * rate))
                return
        if index is not None:
            self.agreement.cut(index + 1)
            self._drop_until(round(cuts[index] * rate))

    def _drop_until(self, sample: int) -> None:
        sample = min(max(sample, self.buffer_start), self.received)
        self.buffer = self.buffer[sample - self.buffer_start :]
        self.buffer_start = sample

    def _confirm(self, words: list[Word], step: int, end: int) -> None:
        self.confirmations += [ConfirmedWord(w, end / self.sample_rate, step) for w in words]

    def _result(self, before: int, final: bool = False) -> StreamResult:
        confirmed = tuple(self.agreement.confirmed)
        partial = " ".join(w.text for w in self.agreement.latest)
        return StreamResult(confirmed, partial, self.received / self.sample_rate, final, confirmed[before:])
