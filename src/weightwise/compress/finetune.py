"""Compressed-sensing pruning (CSP), fine-tuning form, after Zhen et al. 2021 (arXiv 2102.04932).

The paper induces sparsity *inside training*: every optimizer step is followed by the proximal
step of an L1 penalty (iterative soft thresholding, as in compressed-sensing reconstruction)
while the training loss keeps the compression error small, and the target sparsity is ramped up
gradually. Here, on a `WhisperASR`:

1. Train the float weights of the named Linear modules (every other parameter frozen; the network
   stays in eval mode, so no dropout and runs are deterministic) with Adam on teacher-forced
   cross-entropy: one transcribed utterance per step (seeded shuffle), its first 30 s window;
   decoder input prompt + text tokens, targets text tokens + eot (loss on those positions only).
2. After every optimizer step t = 1..steps, per output row: soft-threshold at the row's k-th
   smallest |w|, k = floor(s_t in) with s_t = `csp.ramp` (cubic, 0 -> s over 70 % of the steps):
   w <- sign(w) max(|w| - tau_row, 0). That is the L1 proximal operator with lambda set per row
   so exactly s_t of the row is zero (an adaptive lambda instead of a tuned one).
3. After the last step, hard-mask to exactly floor(s in) zeros per row (the smallest |w|).

Only ``pattern == "unstructured"`` is supported; `prune.prune_handler` then stores the result as
a `SparseModule`. Utterances longer than 30 s or with empty text are skipped.

Caution, measured on whisper-tiny.en (decoder layers 0 and 1 fc1 at 50 %, trained on 2 bundled
samples, scored on them and on the 2 others; dense 1.397 / 0.101 nats per token, magnitude
pruning 1.380 / 0.090): the soft threshold shrinks every survivor by the row's final threshold
(about the median |w|, 0.017, here), which a few small steps cannot undo: 6 steps at lr 1e-5
gave 3.65 / 0.200, at 1e-4 2.27 / 0.219, at 1e-3 0.31 / 0.274 (fits the training pair only);
``THRESHOLD = "hard"`` gave 1.29 / 0.090 at 1e-5 and 0.76 / 0.101 at 1e-4.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from weightwise.audio import load_audio
from weightwise.compress import csp
from weightwise.compress.configs import Prune
from weightwise.compress.masks import topk_mask
from weightwise.data import Manifest, Utterance
from weightwise.decode.features import SAMPLE_RATE, log_mel_spectrogram, split_windows
from weightwise.errors import InputError

MAX_AUDIO_S = 30.0  # one encoder window; longer utterances would need per-window transcripts
REPORTED_LOSSES = 5  # first and last losses kept in the stats
# "hard" (iterative hard thresholding, the L0 form of compressed-sensing recovery) by default: the
# measurements above show the paper's soft (L1) step shrinking survivors more than a few fine-tuning
# steps recover; "soft" stays available.
THRESHOLD = "hard"


@dataclass(frozen=True)
class Example:
    """One teacher-forced training example: features (1, n_mels, 3000), ids (1, T), targets (T',)."""

    features: torch.Tensor
    decoder_ids: torch.Tensor  # prompt + text tokens
    targets: torch.Tensor  # text tokens + eot, predicted from the last prompt position on


def check_finetune(config: Prune, train: Manifest, where: str) -> None:
    """InputError unless `config` is unstructured and every utterance of `train` has a transcript."""
    if config.pattern != "unstructured":
        raise InputError(
            f"{where}: csp fine-tuning supports pattern unstructured only, "
            f"got {config.pattern!r} (drop --finetune-steps for the post-training form)"
        )
    if not train.has_text:
        missing = next(u for u in train if u.text is None)
        raise InputError(f"{train.source}: fine-tuning needs transcribed audio, utterance {missing.id} has no text")


def make_example(model, utt: Utterance, source: str = "") -> Example | None:
    """The training example of `utt`, or None when it is over 30 s or has no text."""
    text = (utt.text or "").strip()
    if not text or (utt.duration_s is not None and utt.duration_s > MAX_AUDIO_S):
        return None
    try:
        audio = load_audio(utt.audio_path)
    except InputError as err:
        where = f"{source}:{utt.line}: " if source and utt.line else ""
        raise InputError(f"{where}{err}") from None
    if len(audio) / SAMPLE_RATE > MAX_AUDIO_S:
        return None
    features = split_windows(log_mel_spectrogram(audio, model.n_mels))[0].features
    prompt, eot = list(model.tokens.prompt), model.tokens.eot
    labels = model.tokenizer.encode(" " + text, add_special_tokens=False).ids
    labels = labels[: model.max_target_positions - len(prompt)]
    return Example(features[None].to(model.dtype), torch.tensor([prompt + labels]), torch.tensor(labels + [eot]))


def example_loss(model, example: Example) -> torch.Tensor:
    """Mean cross-entropy (nats per token) of the example's targets under teacher forcing."""
    logits = model.network(
        input_features=example.features, decoder_input_ids=example.decoder_ids, use_cache=False
    ).logits[0]
    # position i predicts token i + 1: the last len(targets) positions predict labels + eot
    return nn.functional.cross_entropy(logits[-len(example.targets) :].float(), example.targets)


def mean_loss(model, manifest: Manifest) -> float:
    """Mean teacher-forced loss (nats per token, averaged over utterances) on `manifest`."""
    examples = [e for e in (make_example(model, u, manifest.source) for u in manifest) if e is not None]
    if not examples:
        raise InputError(f"{manifest.source}: no transcribed utterance of {MAX_AUDIO_S:g} s or less")
    with torch.no_grad():
        return sum(float(example_loss(model, e)) for e in examples) / len(examples)


def _schedule(manifest: Manifest, seed: int) -> Iterator[Utterance]:
    """Utterances forever: a fresh seeded shuffle of the manifest for every pass."""
    rng = random.Random(seed)
    order = list(manifest)
    while True:
        rng.shuffle(order)
        yield from order


def _examples(model, manifest: Manifest, seed: int) -> Iterator[Example]:
    """Training examples in seeded-shuffle order, skipping utterances `make_example` rejects."""
    rejected: set[str] = set()  # ids are unique within a manifest
    for utt in _schedule(manifest, seed):
        example = None if utt.id in rejected else make_example(model, utt, manifest.source)
        if example is not None:
            yield example
            continue
        rejected.add(utt.id)
        if len(rejected) == len(manifest):
            raise InputError(f"{manifest.source}: no transcribed utterance of {MAX_AUDIO_S:g} s or less")


@torch.no_grad()
def prox_step(weights: list[nn.Parameter], sparsity: float, threshold: str = THRESHOLD) -> None:
    """Threshold every row of each weight at its floor(sparsity * in)-th smallest |w|."""
    for weight in weights:
        weight.copy_(csp.threshold_rows(weight, math.floor(sparsity * weight.shape[1]), threshold))


@torch.no_grad()
def hard_mask(weights: list[nn.Parameter], sparsity: float) -> None:
    """Zero exactly floor(sparsity * in) weights of smallest |w| in every row."""
    for weight in weights:
        keep = weight.shape[1] - math.floor(sparsity * weight.shape[1])
        weight.mul_(topk_mask(weight.abs(), keep))


def csp_finetune_(
    model, names: list[str], config: Prune, train: Manifest, steps: int, lr: float, seed: int = 0
) -> dict:
    """Fine-tune and sparsify the Linear modules `names` of `model` in place (see module doc).

    Args:
        model: a float32 `WhisperASR`; only the weights of `names` change.
        names: Linear module names in `model.network`.
        config: the unstructured `Prune` config (target sparsity).
        train: transcribed training audio (utterances of 30 s or less are used).
        steps: optimizer steps (one utterance each).
        lr: Adam learning rate.
        seed: seeds the utterance order.

    Returns:
        {"steps", "seconds", "first_losses", "last_losses"} (losses in nats per token).
    """
    check_finetune(config, train, names[0] if names else "csp")
    if steps < 1 or not lr > 0:
        raise InputError(f"csp fine-tuning needs steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    network = model.network
    modules = [network.get_submodule(n) for n in names]
    for name, module in zip(names, modules, strict=False):
        if not isinstance(module, nn.Linear):
            raise InputError(f"{name}: csp fine-tuning applies to Linear layers only")
    weights = [m.weight for m in modules]
    saved = {id(p): p.requires_grad for p in network.parameters()}
    network.requires_grad_(False)
    for weight in weights:
        weight.requires_grad_(True)
    optimizer = torch.optim.Adam(weights, lr=lr)
    losses, start = [], time.perf_counter()
    try:
        with torch.enable_grad():
            for step, example in zip(range(1, steps + 1), _examples(model, train, seed), strict=False):
                loss = example_loss(model, example)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                prox_step(weights, csp.ramp(step - 1, steps, config.sparsity))
                losses.append(float(loss.detach()))
        hard_mask(weights, config.sparsity)
    finally:
        for p in network.parameters():
            p.requires_grad_(saved[id(p)])
        for weight in weights:
            weight.grad = None
    return {
        "steps": len(losses),
        "seconds": time.perf_counter() - start,
        "first_losses": losses[:REPORTED_LOSSES],
        "last_losses": losses[-REPORTED_LOSSES:],
    }
