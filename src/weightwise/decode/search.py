"""Greedy and beam search over one 30 s window, with a key/value cache.

The loop is ours (explicit, no hidden logits processors) and calls `DecodeObserver` hooks before
every decoder call so that per-token weight invocations can be traced.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from weightwise.decode.guard import RepetitionGuard
from weightwise.decode.options import DecodeObserver, DecodingOptions
from weightwise.errors import InputError
from weightwise.models.onnx_engine import OnnxWhisperASR
from weightwise.models.whisper import WhisperASR, WhisperTokens
from weightwise.models.whisper_step import DecoderSteps, supports


class SearchResult(NamedTuple):
    """The text tokens of one window (eot excluded) and why decoding stopped (`guard.STOP_REASONS`)."""

    tokens: list[int]
    stop_reason: str


def suppression_masks(tokens: WhisperTokens, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(every step, first step) boolean masks over the vocabulary of the tokens search never emits."""
    mask = torch.zeros(vocab, dtype=torch.bool)
    mask[list(tokens.suppress)] = True
    mask[tokens.eot + 1 :] = True  # specials and timestamps: never text (no timestamps mode)
    begin_mask = mask.clone()
    begin_mask[list(tokens.suppress_begin)] = True
    return mask, begin_mask


class _Decoder:
    """One decoder call = new tokens in, last-position logits out; the cache lives here.

    `batch` > 1: that many sequences (beams) decode against the one window's encoder output. With
    the key/value cache, a Whisper network's decoder runs step by step in `DecoderSteps` (the same
    modules without transformers' per-call bookkeeping); without it, for a decoder of another layout,
    or for an observer that hooks the modules (the profiler's `Tracer`), through transformers'
    forward. An `OnnxWhisperASR` runs its exported decoder instead (always with its key/value cache)."""

    def __init__(
        self,
        model: WhisperASR | OnnxWhisperASR,
        encoder_out,
        observer: DecodeObserver,
        window_index: int,
        use_cache: bool = True,
        batch: int = 1,
    ):
        self.model, self.observer, self.window_index, self.cache, self.calls = model, observer, window_index, None, 0
        self.use_cache, self.history = use_cache, None  # history: all tokens so far, without cache
        self.steps: DecoderSteps | None = None
        if isinstance(model, OnnxWhisperASR):
            if not use_cache:
                raise InputError(f"{model.info.name}: an ONNX export always decodes with its key/value cache")
            self.net, self.onnx, vocab = None, model.decoder_state(encoder_out, batch), model.vocab_size
        else:
            self.net, self.onnx, vocab = model.network, None, model.network.config.vocab_size
            self.encoder_out = encoder_out.expand(batch, -1, -1) if batch > 1 else encoder_out
            decoder = self.net.model.decoder
            if use_cache and supports(decoder) and not observer.hooks_modules:
                self.steps = DecoderSteps(decoder, encoder_out, batch)
        self.mask, self.begin_mask = suppression_masks(model.tokens, vocab)

    def logits(self, new_tokens: torch.Tensor, first: bool, suppress_blank: bool) -> torch.Tensor:
        if not self.use_cache:  # recompute every position: same weight fetches, more MACs
            self.history = new_tokens if self.history is None else torch.cat([self.history, new_tokens], 1)
            new_tokens = self.history
        self.observer.on_decoder_step(self.window_index, self.calls, new_tokens.shape[1], new_tokens.shape[0])
        self.calls += 1
        mask = self.begin_mask if first and suppress_blank else self.mask
        return self._logits(new_tokens).float().masked_fill(mask, float("-inf"))

    def _logits(self, new_tokens: torch.Tensor) -> torch.Tensor:
        if self.onnx is not None:
            return self.onnx.step(new_tokens)
        if self.steps is not None:
            return self.net.proj_out(self.steps.step(new_tokens)[:, -1])
        out = self.net.model.decoder(
            input_ids=new_tokens,
            encoder_hidden_states=self.encoder_out,
            past_key_values=self.cache,
            use_cache=self.use_cache,
        )
        self.cache = out.past_key_values if self.use_cache else None
        return self.net.proj_out(out.last_hidden_state[:, -1])

    def reorder(self, sources: list[int]) -> None:
        """Keep the beams `sources` (indices into the current batch), in that order."""
        index = torch.tensor(sources)
        if self.onnx is not None:
            self.onnx.reorder(index)
        if self.steps is not None:
            self.steps.reorder(index)
        if self.cache is not None:
            self.cache.reorder_cache(index)
        if self.history is not None:
            self.history = self.history[index]


def max_new_tokens(model: WhisperASR, options: DecodingOptions, n_prefix: int = 0) -> int:
    """Tokens one window may generate: `options.max_new_tokens`, or all the decoder has room for
    (after `n_prefix` previous-text tokens placed before the prompt).

    Raises:
        InputError: `options.max_new_tokens` is more than the decoder's room.
    """
    room = model.max_target_positions - len(model.tokens.prompt) - n_prefix
    if options.max_new_tokens is not None and options.max_new_tokens > room:
        raise InputError(
            f"max_new_tokens {options.max_new_tokens} is more than a window can hold for "
            f"{model.info.name} ({room} = {model.max_target_positions} decoder positions - "
            f"{len(model.tokens.prompt)} prompt tokens)"
        )
    return options.max_new_tokens or room


@torch.inference_mode()
def greedy_search(
    model: WhisperASR,
    encoder_out: torch.Tensor,
    options: DecodingOptions,
    observer: DecodeObserver,
    window_index: int = 0,
    prefix: tuple[int, ...] = (),
) -> SearchResult:
    """Most likely next token at every step until end-of-text, the token limit or the repetition
    guard; returns the text tokens and which of the three stopped it.

    `prefix`: tokens decoded before the prompt (`<|startofprev|>` + previous text, as
    openai-whisper's `condition_on_previous_text`); empty = the bare prompt."""
    decoder = _Decoder(model, encoder_out, observer, window_index, options.use_cache)
    guard = RepetitionGuard(options, model.decode_text)
    new = torch.tensor([tuple(prefix) + model.tokens.prompt])
    tokens: list[int] = []
    for step in range(max_new_tokens(model, options, len(prefix))):
        next_id = int(decoder.logits(new, step == 0, options.suppress_blank).argmax(-1))
        if next_id == model.tokens.eot:
            return SearchResult(tokens, "eot")
        tokens.append(next_id)
        if guard.stop(tokens):
            return SearchResult(guard.trimmed(tokens), "repetition")
        new = torch.tensor([[next_id]])
    return SearchResult(tokens, "max_new_tokens")


def _score(logprob: float, length: int, length_penalty: float | None) -> float:
    penalty = length if length_penalty is None else ((5 + length) / 6) ** length_penalty
    return logprob / max(penalty, 1)


@torch.inference_mode()
def beam_search(
    model: WhisperASR,
    encoder_out: torch.Tensor,
    options: DecodingOptions,
    observer: DecodeObserver,
    window_index: int = 0,
) -> SearchResult:
    """openai-whisper style beam search (patience 1): stop once `beam_size` hypotheses ended.

    A hypothesis the repetition guard stops leaves the beam (its slot goes to the next candidate)
    and is returned only when none ended at eot; ranked beside eot endings, a loop's high
    per-token log-probability would win."""
    n_beams, eot = options.beam_size, model.tokens.eot
    decoder = _Decoder(model, encoder_out, observer, window_index, options.use_cache, batch=n_beams)
    guard = RepetitionGuard(options, model.decode_text)
    beams: list[tuple[list[int], float]] = [([], 0.0)] * n_beams
    new = torch.tensor([model.tokens.prompt] * n_beams)
    finished: list[tuple[list[int], float]] = []
    looped: list[tuple[list[int], float]] = []  # stopped by the repetition guard
    for step in range(max_new_tokens(model, options)):
        logprobs = torch.log_softmax(decoder.logits(new, step == 0, options.suppress_blank), -1)
        candidates = []
        for b, (seq, score) in enumerate(beams[: 1 if step == 0 else n_beams]):
            top = logprobs[b].topk(n_beams + 1)
            candidates += [(score + float(v), seq, int(t), b) for v, t in zip(top.values, top.indices, strict=True)]
        candidates.sort(key=lambda c: -c[0])
        beams, sources = [], []
        for total, seq, token, source in candidates:  # eot below the kept beams is not an ending
            if token == eot:
                finished.append((seq, total))
            elif guard.stop(seq + [token]):
                looped.append((seq + [token], total))
            else:
                beams.append((seq + [token], total))
                sources.append(source)
            if len(beams) == n_beams:
                break
        if len(finished) >= n_beams or len(beams) < n_beams:  # too few live beams: mostly loops
            break
        decoder.reorder(sources)
        new = torch.tensor([[seq[-1]] for seq, _ in beams])
    ended, reason = next((h, r) for h, r in ((finished, "eot"), (looped, "repetition"), (beams, "max_new_tokens")) if h)
    best = max(ended, key=lambda f: _score(f[1], len(f[0]), options.length_penalty))
    return SearchResult(guard.trimmed(best[0]) if reason == "repetition" else best[0], reason)
