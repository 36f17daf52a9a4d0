"""Frame-synchronous transducer search: both searchers consume encoder frames as chunks arrive, so
the same object serves offline decoding and a stream.

- `GreedySearch`: per frame, emit the joiner's best symbol until it is blank (at most
  `max_symbols_per_frame` per frame).
- `BeamSearch`: "modified beam search" (at most one symbol per frame per hypothesis; hypotheses
  with the same labels are merged by adding their probabilities), as in k2/icefall.

`observer` (any object with `on_decoder_step(window_index, step, n_positions, n_sequences)`, e.g. a
`weightwise.decode.DecodeObserver`) is told about every predictor call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from weightwise.models.transducer.network import TransducerNetwork


@dataclass(frozen=True)
class Emission:
    """One emitted label: its id and the encoder frame it was emitted at."""

    token: int
    frame: int


@dataclass
class _Hyp:
    emissions: tuple[Emission, ...]
    logp: float
    state: object
    pred: torch.Tensor  # (joiner_dim,) projected predictor output

    @property
    def tokens(self) -> tuple[int, ...]:
        return tuple(e.token for e in self.emissions)


class _Search:
    def __init__(self, network: TransducerNetwork, observer=None):
        self.network, self.observer = network, observer
        self.frame, self.chunk, self.steps = 0, 0, 0

    def _predict(self, tokens: torch.Tensor, state) -> tuple[torch.Tensor, object]:
        if self.observer is not None:
            self.observer.on_decoder_step(self.chunk, self.steps, 1, len(tokens))
        self.steps += 1
        out, state = self.network.predictor(tokens, state)
        return self.network.joiner.pred_proj(out), state

    def _start(self) -> _Hyp:
        predictor = self.network.predictor
        pred, state = self._predict(torch.tensor([self.network.config.blank]), predictor.initial_state(1))
        return _Hyp((), 0.0, state, pred[0])

    def accept(self, enc: torch.Tensor, chunk: int = 0) -> None:
        """Search over encoder frames (frames, d_model) of one chunk."""
        self.chunk = chunk
        projected = self.network.joiner.enc_proj(enc)  # once per chunk, all its frames
        for frame in projected:
            self._frame(frame)
            self.frame += 1

    def _frame(self, frame: torch.Tensor) -> None:
        raise NotImplementedError

    def best(self) -> tuple[Emission, ...]:
        raise NotImplementedError

    def stable(self) -> tuple[Emission, ...]:
        """Emissions no later frame can change."""
        raise NotImplementedError


class GreedySearch(_Search):
    def __init__(self, network: TransducerNetwork, observer=None):
        super().__init__(network, observer)
        self.hyp = self._start()

    def _frame(self, frame: torch.Tensor) -> None:
        blank, hyp = self.network.config.blank, self.hyp
        for _ in range(self.network.config.max_symbols_per_frame):
            token = int(self.network.joiner(frame, hyp.pred).argmax())
            if token == blank:
                break
            pred, state = self._predict(torch.tensor([token]), hyp.state)
            hyp = _Hyp(hyp.emissions + (Emission(token, self.frame),), 0.0, state, pred[0])
        self.hyp = hyp

    def best(self) -> tuple[Emission, ...]:
        return self.hyp.emissions

    def stable(self) -> tuple[Emission, ...]:
        return self.hyp.emissions  # greedy never revises an emission


class BeamSearch(_Search):
    def __init__(self, network: TransducerNetwork, beam_size: int, observer=None):
        super().__init__(network, observer)
        self.beam_size = beam_size
        self.hyps = [self._start()]

    def _frame(self, frame: torch.Tensor) -> None:
        blank = self.network.config.blank
        preds = torch.stack([h.pred for h in self.hyps])
        logp = torch.log_softmax(self.network.joiner(frame[None], preds), dim=-1)
        scores = torch.tensor([h.logp for h in self.hyps])[:, None] + logp
        top = scores.flatten().topk(min(self.beam_size, scores.numel()))
        merged: dict[tuple[int, ...], _Hyp] = {}
        extend = []
        for score, index in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            source, token = divmod(index, scores.shape[1])
            hyp = self.hyps[source]
            if token == blank:
                self._merge(merged, _Hyp(hyp.emissions, score, hyp.state, hyp.pred))
            else:
                extend.append((hyp, token, score))
        if extend:
            tokens = torch.tensor([token for _, token, _ in extend])
            states = _batch_states([hyp.state for hyp, _, _ in extend])
            preds, states = self._predict(tokens, states)
            for i, (hyp, token, score) in enumerate(extend):
                emissions = hyp.emissions + (Emission(token, self.frame),)
                self._merge(merged, _Hyp(emissions, score, _unbatch_state(states, i), preds[i]))
        self.hyps = sorted(merged.values(), key=lambda h: -h.logp)

    @staticmethod
    def _merge(merged: dict, hyp: _Hyp) -> None:
        old = merged.get(hyp.tokens)
        if old is None:
            merged[hyp.tokens] = hyp
        else:
            old.logp = float(torch.logaddexp(torch.tensor(old.logp), torch.tensor(hyp.logp)))

    def best(self) -> tuple[Emission, ...]:
        return self.hyps[0].emissions

    def stable(self) -> tuple[Emission, ...]:
        first = self.hyps[0].emissions
        n = len(first)
        for hyp in self.hyps[1:]:
            k = 0
            while k < min(n, len(hyp.emissions)) and first[k] == hyp.emissions[k]:
                k += 1
            n = k
        return first[:n]


def _batch_states(states: list):
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*states, strict=True))
    return torch.cat(states)


def _unbatch_state(state, i: int):
    if isinstance(state, tuple):
        return tuple(part[i : i + 1] for part in state)
    return state[i : i + 1]
