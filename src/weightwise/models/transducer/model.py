"""`TransducerASR`: a trained `TransducerNetwork` with its vocabulary, ready to stream or transcribe.

A model folder holds `config.json` (a `TransducerConfig`) and `model.safetensors` (shared modules
stored once, safetensors' `save_model`). `load_transducer_dir` reads one; the registry ships
`transducer-fsdd` inside the package (weights/fsdd, with the recipe that trained it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from weightwise.errors import InputError
from weightwise.models.transducer.config import TransducerConfig
from weightwise.models.transducer.network import TransducerNetwork
from weightwise.models.transducer.stream import TransducerResult, TransducerStream
from weightwise.models.whisper import ModelInfo

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


@dataclass(frozen=True)
class TransducerOutput:
    """One utterance decoded through the streaming path."""

    text: str
    tokens: tuple[int, ...]
    audio_s: float
    n_chunks: int
    result: TransducerResult


class TransducerASR:
    """Encoder / predictor / joiner network + vocabulary + provenance (`info.family == "transducer"`)."""

    def __init__(self, network: TransducerNetwork, info: ModelInfo):
        self.network, self.info, self.config = network.eval(), info, network.config
        self.plan = None

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def dtype(self) -> torch.dtype:
        return self.network.joiner.out.weight.dtype

    def word(self, token: int) -> str:
        return self.config.vocab[token - 1] if token > 0 else ""

    def decode_text(self, ids) -> str:
        return " ".join(self.word(i) for i in ids if i > 0)

    def encode_text(self, text: str, where: str = "text") -> list[int]:
        """Label ids of a transcript (lower-cased words of the vocabulary)."""
        index = {w: i + 1 for i, w in enumerate(self.config.vocab)}
        words = text.lower().split()
        unknown = sorted({w for w in words if w not in index})
        if unknown:
            raise InputError(f"{where}: words outside the model's vocabulary: {unknown[:5]}")
        return [index[w] for w in words]

    def create_stream(self, beam_size: int = 1, observer=None) -> TransducerStream:
        """A new stream (the caller drives it with `accept_waveform` and `finish`)."""
        return TransducerStream(self, beam_size, observer)

    def decode_audio(self, audio: np.ndarray, beam_size: int = 1, observer=None) -> TransducerOutput:
        """Decode a whole utterance through the streaming path (chunk by chunk, as deployed)."""
        stream = self.create_stream(beam_size, observer)
        stream.accept_waveform(audio)
        result = stream.finish()
        return TransducerOutput(result.text, result.tokens, result.audio_s, result.n_chunks, result)

    def __repr__(self) -> str:
        return f"TransducerASR({self.info.name!r}, encoder={self.config.encoder!r})"


def count_params(network: torch.nn.Module) -> int:
    """Unique parameters (a shared module counts once)."""
    return sum(p.numel() for p in network.parameters())


def save_transducer(network: TransducerNetwork, folder: str | Path, extra: dict | None = None) -> None:
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(network.config.to_dict(), indent=1) + "\n")
    save_model(network, str(folder / WEIGHTS_FILE), metadata={k: str(v) for k, v in (extra or {}).items()})


def is_transducer_dir(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file() and _is_config(path)


def _is_config(path: Path) -> bool:
    try:
        return "stack_frames" in json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False


def load_transducer_dir(path: str | Path, precision: str = "fp32", name: str | None = None) -> TransducerASR:
    from safetensors.torch import load_model

    from weightwise.models.registry import file_sha256

    path = Path(path)
    if precision != "fp32":
        raise InputError(f"{path}: transducer models run in fp32 only, got precision {precision!r}")
    try:
        config = TransducerConfig.from_dict(json.loads((path / CONFIG_FILE).read_text()), str(path / CONFIG_FILE))
    except (OSError, ValueError) as err:
        raise InputError(f"{path / CONFIG_FILE}: not a readable transducer config ({err})") from None
    network = TransducerNetwork(config)
    missing, unexpected = load_model(network, str(path / WEIGHTS_FILE), strict=False)
    if missing or unexpected:
        raise InputError(f"{path / WEIGHTS_FILE}: weights do not match config.json (missing {sorted(missing)[:3]})")
    sha = file_sha256(path / WEIGHTS_FILE)
    info = ModelInfo(name or path.name, str(path), sha, "fp32", count_params(network), family="transducer")
    return TransducerASR(network, info)
