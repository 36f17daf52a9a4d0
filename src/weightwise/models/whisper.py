"""`WhisperASR`: a transformers Whisper network plus the tokenizer and special ids to decode it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from weightwise.audio import SAMPLE_RATE
from weightwise.errors import InputError
from weightwise.models.precision import PRECISIONS, apply_precision


@dataclass(frozen=True)
class WhisperTokens:
    """Special token ids and the suppression lists used by greedy/beam decoding.

    English-only (.en) and multilingual vocabularies differ by one id (51864 vs 51865 entries);
    the ids are looked up in the tokenizer rather than hard-coded.
    """

    eot: int
    sot: int
    no_timestamps: int
    prompt: tuple[int, ...]  # .en: [sot, notimestamps]; multilingual: [sot, <|en|>, <|transcribe|>, notimestamps]
    suppress: tuple[int, ...]  # never emitted (non-speech symbols from the model's config)
    suppress_begin: tuple[int, ...]  # not emitted as the first token (blank, eot)
    english_only: bool

    @classmethod
    def from_tokenizer(
        cls, tokenizer: Tokenizer, vocab_size: int, suppress: list[int], suppress_begin: list[int]
    ) -> WhisperTokens:
        ids = {
            t: tokenizer.token_to_id(t)
            for t in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "<|en|>", "<|transcribe|>")
        }
        if None in (ids["<|endoftext|>"], ids["<|startoftranscript|>"], ids["<|notimestamps|>"]):
            raise InputError("tokenizer lacks Whisper's special tokens (<|startoftranscript|> ...)")
        english_only = vocab_size == 51864
        sot, nots = ids["<|startoftranscript|>"], ids["<|notimestamps|>"]
        prompt = (sot, nots) if english_only else (sot, ids["<|en|>"], ids["<|transcribe|>"], nots)
        return cls(ids["<|endoftext|>"], sot, nots, prompt, tuple(suppress), tuple(suppress_begin), english_only)


@dataclass(frozen=True)
class ModelInfo:
    """What produced a result: which weights, from where, at which precision."""

    name: str
    source: str  # package directory, checkpoint path or hub id
    weights_sha256: str  # of the source weight file(s), before any conversion
    precision: str
    n_params: int
    family: str = "whisper"
    plan: str | None = None  # name of the compression plan applied, if any


class WhisperASR:
    """A Whisper model ready to decode.

    Attributes:
        network: transformers' `WhisperForConditionalGeneration` (eval mode, no grad needed).
        tokenizer: a `tokenizers.Tokenizer` read from the model's `tokenizer.json`.
        tokens: special ids and suppression lists.
        info: provenance (`ModelInfo`).
    """

    sample_rate = SAMPLE_RATE  # Hz

    def __init__(self, network, tokenizer: Tokenizer, tokens: WhisperTokens, info: ModelInfo):
        self.network, self.tokenizer, self.tokens, self.info = network.eval(), tokenizer, tokens, info
        self.plan = None  # the compression Plan applied by compress_, if any
        self.runtime = None  # RuntimeSettings applied (weightwise.models.runtime), if any

    @property
    def dtype(self) -> torch.dtype:
        """Dtype the log-mel features must have (int8 dynamic models take float32)."""
        return self.network.model.encoder.conv1.weight.dtype

    @property
    def n_mels(self) -> int:
        return self.network.config.num_mel_bins

    @property
    def max_target_positions(self) -> int:
        return self.network.config.max_target_positions

    def decode_text(self, ids: list[int]) -> str:
        """Text of the generated ids (special tokens dropped)."""
        return self.tokenizer.decode([i for i in ids if i < self.tokens.eot], skip_special_tokens=True).strip()

    def create_stream(self, **options: Any):
        """A streaming state object the caller drives (`weightwise.stream`): `accept_waveform`,
        `result`, `finish`. `options` go to the registered factory (e.g. `chunk_ms`, `vad`).

        Raises:
            InputError: no streaming implementation is registered for this model's family.
        """
        factory = _STREAM_FACTORIES.get(self.info.family)
        if factory is None:
            raise InputError(f"model {self.info.name}: no streaming decoder for family {self.info.family!r}")
        return factory(self, **options)

    def __repr__(self) -> str:
        return f"WhisperASR({self.info.name!r}, precision={self.info.precision!r})"


# family -> factory(model, **options) -> stream; filled by packages above `models` (weightwise.stream)
_STREAM_FACTORIES: dict[str, Callable[..., Any]] = {}


def register_stream(family: str, factory: Callable[..., Any]) -> None:
    """Let `model.create_stream(...)` build streams for models of `family` (as `register_loader`
    lets `load_model` read new folders), so `models` never imports the streaming package."""
    _STREAM_FACTORIES[family] = factory


def read_suppress_lists(model_dir: Path) -> tuple[list[int], list[int]]:
    """Suppression ids from a CT2 `config.json` or an HF `generation_config.json`."""
    ct2_config, gen_config = model_dir / "config.json", model_dir / "generation_config.json"
    if gen_config.is_file():
        data = json.loads(gen_config.read_text())
        return list(data.get("suppress_tokens") or []), list(data.get("begin_suppress_tokens") or [])
    if ct2_config.is_file():
        data = json.loads(ct2_config.read_text())
        if "suppress_ids" in data:
            return list(data["suppress_ids"]), list(data.get("suppress_ids_begin") or [])
    raise InputError(f"{model_dir}: no suppress-token list (config.json or generation_config.json)")


def build_whisper(
    network,
    tokenizer_file: Path,
    suppress: tuple[list[int], list[int]],
    name: str,
    source: str,
    sha256: str,
    precision: str,
) -> WhisperASR:
    """Wrap a float32 transformers network and apply the requested precision."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if not tokenizer_file.is_file():
        raise InputError(f"{tokenizer_file}: tokenizer file not found")
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    vocab = network.config.vocab_size
    tokens = WhisperTokens.from_tokenizer(tokenizer, vocab, *suppress)
    n_params = sum(p.numel() for p in network.parameters())
    network = apply_precision(network.eval(), precision)
    return WhisperASR(network, tokenizer, tokens, ModelInfo(name, source, sha256, precision, n_params))
