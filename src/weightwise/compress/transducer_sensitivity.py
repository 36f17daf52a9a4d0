"""Sensitivity for the transducer family: KL of the joiner's output along the float model's greedy alignment.

The reference pass runs the float model over each calibration utterance as its stream does (the
whole utterance's log-mel frames, normalized and stacked, then the encoder chunk by chunk with its
carried state, `Encoder.step`), greedy-searches the encoder output (`GreedySearch`, as deployed)
and keeps per utterance: the encoder's input chunks, its output, the emitted labels and the joiner
lattice points the greedy search visited. At frame t with u labels emitted so far, the joiner is
evaluated at (t, u), and again at (t, u + 1) after each emission, until it says blank or the
per-frame symbol limit ends the frame; every point has the symbol greedy took there (a label or
blank) and the float model's log-probabilities, teacher-forced.

A candidate's score is the mean over those points of KL(reference || candidate) of the joiner's
output distribution, with the candidate's encoder (re-run on the kept chunks, for an encoder group),
predictor (teacher-forced over the reference labels) and joiner; `nll_delta` is the mean drop in
log-probability of the symbol the reference took. The uncompressed model scores exactly 0 (the
reference log-probabilities come from the same teacher-forced computation).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from weightwise.data import Manifest, iter_audio
from weightwise.models.transducer.features import offline_log_mel
from weightwise.models.transducer.search import Emission, GreedySearch


@dataclass(frozen=True)
class TransducerWindow:
    """One calibration utterance as the float transducer saw it (the `CalibWindow` of this family)."""

    chunks: tuple[torch.Tensor, ...]  # encoder input per chunk, (1, frames, stack_frames * n_mels)
    encoder_out: torch.Tensor  # (frames, d_model), the float encoder's output
    tokens: torch.Tensor  # (U,) labels the float model emitted
    frames: torch.Tensor  # (P,) lattice point: encoder frame
    positions: torch.Tensor  # (P,) lattice point: labels emitted before it
    targets: torch.Tensor  # (P,) the symbol greedy took there (label id, or blank)
    logprobs: torch.Tensor  # (P, vocab) reference joiner log-probabilities


def input_chunks(network, samples) -> tuple[torch.Tensor, ...]:
    """The encoder input chunks a stream builds from `samples` (its `finish` tail included)."""
    config = network.config
    stacked = network.stack(network.normalize(offline_log_mel(samples, config))[None])
    return tuple(stacked.split(config.chunk_frames, dim=1)) if stacked.shape[1] else ()


def encode_chunks(network, chunks: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """(frames, d_model): the encoder run chunk by chunk, state carried, as a stream runs it."""
    states, outputs = None, []
    for chunk in chunks:
        enc, states = network.encoder.step(chunk, states)
        outputs.append(enc[0])
    return torch.cat(outputs)


def lattice_points(emissions: tuple[Emission, ...], n_frames: int, max_symbols: int, blank: int):
    """(frames, positions, targets) of the joiner evaluations greedy search made (see module doc)."""
    per_frame = Counter(e.frame for e in emissions)
    frames, positions, targets, u = [], [], [], 0
    for t in range(n_frames):
        emitted = per_frame.get(t, 0)
        for _ in range(emitted):
            frames.append(t)
            positions.append(u)
            targets.append(emissions[u].token)
            u += 1
        if emitted < max_symbols:  # the frame ended on blank, not on the symbol limit
            frames.append(t)
            positions.append(u)
            targets.append(blank)
    return torch.tensor(frames, dtype=torch.long), torch.tensor(positions, dtype=torch.long), torch.tensor(targets)


def joiner_logprobs(network, encoder_out: torch.Tensor, tokens: torch.Tensor, frames, positions) -> torch.Tensor:
    """(P, vocab) joiner log-probabilities at lattice points, the predictor teacher-forced on `tokens`."""
    pred = network.joiner.pred_proj(network.predict_all(tokens[None]))[0]  # (U + 1, joiner_dim)
    enc = network.joiner.enc_proj(encoder_out)  # (frames, joiner_dim)
    return torch.log_softmax(network.joiner(enc[frames], pred[positions]).float(), -1)


@torch.inference_mode()
def reference_pass(model, manifest: Manifest, progress=None):
    """(windows, transcripts): every calibration utterance decoded greedily by the float model."""
    network, config = model.network, model.config
    items = iter_audio(manifest)
    if progress is not None:
        items = progress(items, "reference decode (float transducer, calibration audio)")
    windows, transcripts = [], []
    for utt, samples in items:
        chunks = input_chunks(network, samples)
        search, states, outputs = GreedySearch(network), None, []
        for i, chunk in enumerate(chunks):
            enc, states = network.encoder.step(chunk, states)
            search.accept(enc[0], i)
            outputs.append(enc[0])
        emissions = search.best()
        transcripts.append((utt.id, model.decode_text([e.token for e in emissions])))
        if not outputs:
            continue  # shorter than one feature frame: nothing to score
        encoder_out = torch.cat(outputs)
        tokens = torch.tensor([e.token for e in emissions], dtype=torch.long)
        frames, positions, targets = lattice_points(
            emissions, len(encoder_out), config.max_symbols_per_frame, config.blank
        )
        logprobs = joiner_logprobs(network, encoder_out, tokens, frames, positions)
        windows.append(TransducerWindow(chunks, encoder_out, tokens, frames, positions, targets, logprobs))
    return tuple(windows), tuple(transcripts)


@torch.inference_mode()
def score(model, reference, group) -> dict[str, float]:
    """Mean KL(reference || current model) over the lattice points, and the mean log-prob drop of
    the reference's symbols; the encoder is re-run only for an encoder group."""
    network = model.network
    kl = drop = 0.0
    points = 0
    for w in reference.windows:
        encoder_out = encode_chunks(network, w.chunks) if group.component == "encoder" else w.encoder_out
        logprobs = joiner_logprobs(network, encoder_out, w.tokens, w.frames, w.positions)
        kl += float((w.logprobs.exp() * (w.logprobs - logprobs)).sum())
        picked = torch.arange(len(w.targets))
        drop += float((w.logprobs[picked, w.targets] - logprobs[picked, w.targets]).sum())
        points += len(w.targets)
    return {"kl": kl / max(points, 1), "nll_delta": drop / max(points, 1), "n_positions": points}
