"""`TransducerConfig`: every size and option of a transducer, frozen and JSON-serializable."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from weightwise.errors import InputError

ENCODERS = ("conformer", "recurrent")
PREDICTORS = ("lstm", "stateless")
SHARED_MODULES = ("ffn", "conv", "attention")  # paper 4, level 2: one module shared by every layer
SHARED_FACTORS = ("none", "in", "out")  # paper 4, level 4: share W = U V's input (V) or output (U) factor


@dataclass(frozen=True)
class TransducerConfig:
    """A streaming transducer: log-mel front end, chunked encoder, predictor, joiner.

    Frame rates: features every `hop_length` samples (10 ms at 16 kHz); the encoder stacks
    `stack_frames` of them into one frame (early time reduction: 40 ms for 4) and runs on chunks of
    `chunk_frames` encoder frames, each attending to itself and `left_chunks` earlier chunks.
    Sharing (paper 4): `n_layers` virtual layers reuse `n_unique_layers` blocks in turn; modules in
    `shared_modules` are one instance for all layers; `lowrank_rank` > 0 factorizes feed-forward
    weights as U V with `shared_factor` shared across layers.
    """

    vocab: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    sample_rate: int = 16000  # Hz of the waveform the features are computed from
    n_fft: int = 400  # 25 ms window
    hop_length: int = 160  # 10 ms hop
    n_mels: int = 40
    f_max_hz: float = 4000.0  # FSDD is 8 kHz audio: nothing above 4 kHz
    encoder: str = "conformer"
    stack_frames: int = 4  # feature frames per encoder frame
    d_model: int = 96
    n_layers: int = 2  # virtual depth
    n_unique_layers: int = 0  # 0 = n_layers (no repetition)
    n_heads: int = 4
    ffn_dim: int = 192
    conv_kernel: int = 7  # causal depthwise convolution, in encoder frames
    chunk_frames: int = 8  # encoder frames per chunk (8 x 40 ms = 320 ms)
    left_chunks: int = 4  # attention context to the left, in chunks
    shared_modules: tuple[str, ...] = ()
    lowrank_rank: int = 0
    shared_factor: str = "none"
    predictor: str = "lstm"
    pred_dim: int = 64
    context_size: int = 2  # stateless predictor: tokens of left context
    joiner_dim: int = 64
    max_symbols_per_frame: int = 4

    def __post_init__(self):
        object.__setattr__(self, "vocab", tuple(self.vocab))
        object.__setattr__(self, "shared_modules", tuple(self.shared_modules))
        checks = (
            (self.encoder in ENCODERS, f"encoder must be one of {ENCODERS}, got {self.encoder!r}"),
            (self.predictor in PREDICTORS, f"predictor must be one of {PREDICTORS}, got {self.predictor!r}"),
            (set(self.shared_modules) <= set(SHARED_MODULES), f"shared_modules must be from {SHARED_MODULES}"),
            (self.shared_factor in SHARED_FACTORS, f"shared_factor must be one of {SHARED_FACTORS}"),
            (self.n_layers >= 1 and 0 <= self.n_unique_layers <= self.n_layers, "need 0 <= n_unique <= n_layers"),
            (self.d_model % self.n_heads == 0, "d_model must be a multiple of n_heads"),
            (min(self.stack_frames, self.chunk_frames, self.conv_kernel, self.d_model) >= 1, "sizes must be >= 1"),
            (self.left_chunks >= 0 and self.lowrank_rank >= 0, "left_chunks and lowrank_rank must be >= 0"),
            (len(self.vocab) >= 1 and "" not in self.vocab, "vocab must be non-empty words"),
        )
        for ok, message in checks:
            if not ok:
                raise InputError(f"transducer config: {message}")

    @property
    def blank(self) -> int:
        return 0  # id 0 is blank; word i of `vocab` is id i + 1

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + 1

    @property
    def unique_layers(self) -> int:
        return self.n_unique_layers or self.n_layers

    @property
    def frame_s(self) -> float:
        """Seconds per encoder frame."""
        return self.stack_frames * self.hop_length / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> TransducerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{where}: unknown transducer config fields {unknown}")
        return cls(**data)
