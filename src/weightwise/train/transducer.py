"""`train_transducer`: the recipe that trains a streaming transducer on a manifest, on CPU.

Each step draws a batch (seeded by (seed, step), so a resumed run sees the batches an unbroken run
would): isolated clips of the train split and digit strings joined from train-split clips, with
random gain and (optionally) background noise. The loss is the RNN-T loss over the chunk-masked
encoder, i.e. the encoder exactly as it streams. A checkpoint (weights, optimizer, step) is written
atomically every `checkpoint_every` steps; rerunning the same command continues from it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from weightwise.data import load_manifest
from weightwise.errors import InputError
from weightwise.models.transducer import TransducerConfig, TransducerNetwork, count_params, rnnt_loss, save_transducer
from weightwise.models.transducer.features import offline_log_mel
from weightwise.outputs import atomic_writer
from weightwise.train.digits import Clip, DigitStrings, clips_by_split, load_noise_clips, make_digit_string

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    data: str  # manifest with `split` fields
    out: str
    model: TransducerConfig = TransducerConfig()
    strings: DigitStrings = DigitStrings(noise_prob=0.5)
    train_split: str = "train"
    steps: int = 2000
    batch_size: int = 16
    string_share: float = 0.7  # share of each batch that is digit strings (the rest isolated clips)
    lr: float = 2e-3
    warmup_steps: int = 150
    weight_decay: float = 1e-2
    max_gain_db: float = 6.0
    freq_mask_bins: int = 6  # SpecAugment-style: one band of up to this many mel bins zeroed
    time_masks: int = 0  # SpecAugment-style: this many spans of up to `time_mask_frames` 10 ms frames
    time_mask_frames: int = 8
    speed_perturb: float = 0.0  # s > 0: each utterance at speed 1-s, 1 or 1+s (Kaldi's 3-way perturbation)
    noise: str | None = None  # folder of noise audio (e.g. ../shared/data/noise), None = no noise
    checkpoint_every: int = 100
    seed: int = 0
    init: str | None = None  # a model folder to start from (fine-tuning); its config must be `model`

    def __post_init__(self):
        if self.time_masks < 0 or self.time_mask_frames < 0:
            raise InputError("training: time masks and their width must be >= 0")
        if not 0.0 <= self.speed_perturb < 0.5:
            raise InputError(f"training: speed perturbation must be in [0, 0.5), got {self.speed_perturb}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainSummary:
    out: str
    steps: int
    resumed_from: int
    n_params: int
    final_loss: float
    train_s: float
    history: list = field(default_factory=list)


# added after the first shipped runs: left out of the resume check while at their defaults, so
# checkpoints written before they existed still continue
_OPTIONAL = {"time_masks": 0, "time_mask_frames": 8, "speed_perturb": 0.0}


SPEED_BASE_RATE = 16000  # any rate works: only the ratio speed : 1 matters to the resampler


def _speed(audio: np.ndarray, speed: float) -> np.ndarray:
    """`audio` played `speed` times faster (resampled, so pitch moves too, as in Kaldi's recipe)."""
    if speed == 1.0:
        return audio
    import soxr

    # read as if recorded at speed x the rate, resampled back: len / speed samples
    return soxr.resample(audio.astype(np.float32), SPEED_BASE_RATE * speed, SPEED_BASE_RATE).astype(np.float32)


def _lr(config: TrainConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def _batch(config: TrainConfig, clips: list[Clip], noise: list, step: int) -> list[Clip]:
    rng = np.random.default_rng([config.seed, step])
    speeds = np.random.default_rng([config.seed, step, 2])  # own stream: the same clips with or without it
    batch = []
    for i in range(config.batch_size):
        if rng.random() < config.string_share:
            text, audio = make_digit_string(clips, config.strings, int(rng.integers(2**31)) + i, noise)
        else:
            text, audio = clips[int(rng.integers(len(clips)))]
        gain = 10 ** (rng.uniform(-config.max_gain_db, config.max_gain_db) / 20)
        if config.speed_perturb:
            audio = _speed(audio, 1.0 + config.speed_perturb * int(speeds.integers(-1, 2)))
        batch.append((text, audio * gain))
    return batch


def _tensors(network: TransducerNetwork, batch: list[Clip], config: TrainConfig, step: int):
    vocab = {w: i + 1 for i, w in enumerate(network.config.vocab)}
    feats = [offline_log_mel(audio, network.config) for _, audio in batch]
    rng = np.random.default_rng([config.seed, step, 1])
    for f in feats:
        width = int(rng.integers(config.freq_mask_bins + 1))
        start = int(rng.integers(f.shape[1] - width + 1))
        f[:, start : start + width] = network.feature_mean[start : start + width]  # normalizes to 0
        for _ in range(config.time_masks):
            span = min(int(rng.integers(config.time_mask_frames + 1)), len(f))
            begin = int(rng.integers(len(f) - span + 1))
            f[begin : begin + span] = network.feature_mean
    lengths = torch.tensor([len(f) for f in feats])
    features = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    labels = [torch.tensor([vocab[w] for w in text.split()]) for text, _ in batch]
    return (
        features,
        lengths,
        torch.nn.utils.rnn.pad_sequence(labels, batch_first=True),
        torch.tensor([len(y) for y in labels]),
    )


def _feature_stats(network: TransducerNetwork, clips: list[Clip]) -> None:
    feats = torch.cat([offline_log_mel(audio, network.config) for _, audio in clips])
    network.feature_mean.copy_(feats.mean(0))
    network.feature_std.copy_(feats.std(0).clamp_min(1e-3))


def _save_checkpoint(out: Path, network, optimizer, step: int, history: list, config: TrainConfig) -> None:
    state = {
        "network": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "history": history,
        "config": _resumable(config),
    }
    with atomic_writer(out / CHECKPOINT, "wb") as handle:
        torch.save(state, handle)


def _resumable(config: TrainConfig) -> dict:
    """What must match for a checkpoint to be continued (everything but the output folder)."""
    return {k: v for k, v in config.to_dict().items() if k != "out" and _OPTIONAL.get(k, ...) != v}


def _resume(out: Path, network, optimizer, config: TrainConfig) -> tuple[int, list]:
    try:
        state = torch.load(out / CHECKPOINT, weights_only=False)
    except Exception as err:  # truncated or foreign file: one line, not a traceback
        raise InputError(f"{out / CHECKPOINT}: not a readable checkpoint ({type(err).__name__}); remove it") from None
    if state.get("config") != _resumable(config):
        raise InputError(f"{out / CHECKPOINT}: written by a run with other settings; use another --out or remove it")
    network.load_state_dict(state["network"])
    optimizer.load_state_dict(state["optimizer"])
    return state["step"], state["history"]


def _initialize(network: TransducerNetwork, config: TrainConfig) -> None:
    """Weights and feature statistics of the model folder `config.init`."""
    from weightwise.models.transducer import load_transducer_dir

    start = load_transducer_dir(config.init)
    if start.config != config.model:
        raise InputError(f"{config.init}: its config.json differs from the model being trained")
    network.load_state_dict(start.network.state_dict())


def _check_vocab(config: TrainConfig, clips: list[Clip]) -> None:
    words = {w for text, _ in clips for w in text.split()}
    unknown = sorted(words - set(config.model.vocab))
    if unknown:
        raise InputError(f"{config.data}: words outside the model vocabulary: {unknown[:5]}")


def train_transducer(config: TrainConfig, progress: Callable | None = None) -> TrainSummary:
    """Train (or continue training) a transducer; writes `out/checkpoint.pt` and, at the end,
    the model folder `out/model` (config.json + model.safetensors) and `out/train_config.json`."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = clips_by_split(load_manifest(config.data))
    clips = splits.get(config.train_split)
    if not clips:
        raise InputError(f"{config.data}: no utterances with split {config.train_split!r} (have {sorted(splits)})")
    clips = [(text.lower(), audio) for text, audio in clips]
    _check_vocab(config, clips)
    noise = load_noise_clips(config.noise)
    torch.manual_seed(config.seed)
    network = TransducerNetwork(config.model)
    _feature_stats(network, clips)
    if config.init is not None:
        _initialize(network, config)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start, history = 0, []
    if (out / CHECKPOINT).is_file():
        start, history = _resume(out, network, optimizer, config)
    (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=1) + "\n")
    began, steps = time.perf_counter(), range(start, config.steps)
    network.train()
    for step in progress(steps, "training transducer") if progress else steps:
        features, lengths, labels, label_lengths = _tensors(network, _batch(config, clips, noise, step), config, step)
        enc, enc_lengths = network.encode(features, lengths)
        loss = (rnnt_loss(network.lattice_logits(enc, labels), labels, enc_lengths, label_lengths)).mean()
        for group in optimizer.param_groups:
            group["lr"] = _lr(config, step)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
        optimizer.step()
        history.append(round(loss.item(), 4))
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            _save_checkpoint(out, network, optimizer, step + 1, history, config)
    network.eval()
    save_transducer(network, out / "model", {"steps": config.steps, "seed": config.seed})
    tail = history[-50:] or [float("nan")]
    return TrainSummary(
        str(out), config.steps, start, count_params(network), float(np.mean(tail)), time.perf_counter() - began, history
    )
