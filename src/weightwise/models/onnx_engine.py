"""Run a Whisper export (`weightwise export --format onnx`) on ONNX Runtime, inside our own decode.

An export folder holds ``encoder.onnx``, ``decoder.onnx``, ``tokenizer.json`` and the manifest
``weightwise-export.json`` (`MANIFEST_NAME`): the model's name and provenance, what decoding needs
(n_mels, special tokens and suppression lists, decoder positions), the precision every weight tensor
kept, and the sha256 of every file. `load_onnx_export` checks every file against the manifest before
a session opens, so a missing, truncated, altered or corrupt file is a one-line `InputError` naming it.

`OnnxWhisperASR` offers what `weightwise.decode` needs from a model (tokens, `decode_text`,
`n_mels`, ...) plus `encode(features)` (the cross-attention keys/values of a window, computed once)
and `decoder_state(cross, batch)` (one step = new tokens in, last-position logits out, the
self-attention cache kept between steps as ONNX Runtime values). Features, search, repetition guard
and normalizer stay ours: only the network runs elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from weightwise.audio import SAMPLE_RATE
from weightwise.errors import InputError
from weightwise.models.registry import file_sha256
from weightwise.models.whisper import ModelInfo, WhisperTokens

MANIFEST_NAME = "weightwise-export.json"
FORMAT = "weightwise-onnx"
FORMAT_VERSION = 1
FILES = ("encoder.onnx", "decoder.onnx", "tokenizer.json")
ENGINES = ("torch", "onnxruntime")


def is_onnx_export(path: str | Path) -> bool:
    return (Path(path) / MANIFEST_NAME).is_file()


def read_manifest(folder: Path) -> dict[str, Any]:
    """The export manifest, its files checked (present, sha256 as recorded)."""
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise InputError(f"--model {folder}: not an ONNX export folder (write one with `weightwise export`)")
    if not path.is_file():
        raise InputError(f"--model {folder}: not an ONNX export folder (no {MANIFEST_NAME})")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not a weightwise ONNX export manifest (format {FORMAT!r} expected)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{path}: format_version {manifest.get('format_version')!r}, this weightwise reads {FORMAT_VERSION}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or set(FILES) - set(files):
        raise InputError(f"{path}: 'files' must give the sha256 of {', '.join(FILES)}")
    for name, digest in files.items():
        file = folder / name
        if Path(name).name != name:
            raise InputError(f"{path}: file entry {name!r} is not a plain file name")
        if not file.is_file():
            raise InputError(f"{file}: missing (listed in {MANIFEST_NAME})")
        if file_sha256(file) != digest:
            raise InputError(
                f"{file}: sha256 does not match {MANIFEST_NAME} (altered, truncated or from another export)"
            )
    return manifest


def source_model(model: str, engine: str) -> str:
    """The model name a peer runs beside `model`: for an export folder, the model it was made from."""
    if engine != "onnxruntime":
        return model
    return str(read_manifest(Path(model))["source"]["model"])


def _session(file: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{file}: ONNX Runtime cannot load it ({first[:200]})") from None


@dataclass(frozen=True)
class CrossKV:
    """One window's cross-attention keys and values, per decoder layer (batch 1)."""

    keys: list[np.ndarray]
    values: list[np.ndarray]


class OnnxDecoderState:
    """One window's decoder: `step(new_tokens)` -> (batch, vocab) logits; the cache lives here."""

    def __init__(self, model: OnnxWhisperASR, cross: CrossKV, batch: int):
        self.session, self.n_layers = model.decoder, model.n_layers
        self.feed: dict[str, np.ndarray] = {}
        for i in range(self.n_layers):
            for label, arrays in (("key", cross.keys), ("value", cross.values)):
                self.feed[f"cross_{label}.{i}"] = np.ascontiguousarray(np.repeat(arrays[i], batch, 0))
                empty = (batch, model.n_heads, 0, model.head_dim)
                self.feed[f"past_{label}.{i}"] = np.zeros(empty, np.float32)
        self.outputs = ["logits"] + [f"present_{k}.{i}" for i in range(self.n_layers) for k in ("key", "value")]

    def step(self, new_tokens: torch.Tensor) -> torch.Tensor:
        self.feed["input_ids"] = new_tokens.numpy().astype(np.int64)
        logits, *present = self.session.run(self.outputs, self.feed)
        for j, array in enumerate(present):
            i, label = divmod(j, 2)
            self.feed[f"past_{('key', 'value')[label]}.{i}"] = array
        return torch.from_numpy(logits)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the beams `index` (into the current batch), in that order."""
        rows = index.numpy()
        for name in list(self.feed):
            if name.startswith("past_"):
                self.feed[name] = self.feed[name][rows]


class OnnxWhisperASR:
    """An exported Whisper (encoder + cached decoder) on ONNX Runtime; decoded by `weightwise.decode`."""

    sample_rate = SAMPLE_RATE  # Hz
    dtype = torch.float32  # features in
    engine = "onnxruntime"

    def __init__(self, folder: Path, manifest: dict[str, Any], encoder, decoder, tokenizer, threads: int):
        config = manifest["config"]
        self.folder, self.manifest, self.encoder, self.decoder = folder, manifest, encoder, decoder
        self.tokenizer, self.threads = tokenizer, threads
        self.n_mels, self.max_target_positions = int(config["n_mels"]), int(config["max_target_positions"])
        self.vocab_size, self.n_layers = int(config["vocab_size"]), int(config["decoder_layers"])
        self.n_heads, self.head_dim = (
            int(config["decoder_heads"]),
            int(config["d_model"]) // int(config["decoder_heads"]),
        )
        t = manifest["tokens"]
        self.tokens = WhisperTokens(
            t["eot"], t["sot"], t["no_timestamps"], tuple(t["prompt"]), tuple(t["suppress"]),
            tuple(t["suppress_begin"]), bool(t["english_only"]),
        )  # fmt: skip
        digest = file_sha256(*(folder / name for name in FILES[:2]))
        source = manifest["source"]
        self.info = ModelInfo(
            source["model"], str(folder), digest, "fp32", int(source["n_params"]), plan=source.get("plan")
        )
        self.runtime, self.plan = None, None  # no torch runtime hooks: the export is what runs

    def decode_text(self, ids: list[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i < self.tokens.eot], skip_special_tokens=True).strip()

    def encode(self, features: torch.Tensor) -> CrossKV:
        """Cross-attention keys/values of one window's (1, n_mels, frames) features."""
        arrays = self.encoder.run(None, {"input_features": features.float().numpy()})
        return CrossKV(arrays[0::2], arrays[1::2])

    def decoder_state(self, cross: CrossKV, batch: int = 1) -> OnnxDecoderState:
        return OnnxDecoderState(self, cross, batch)

    def __repr__(self) -> str:
        return f"OnnxWhisperASR({self.info.name!r}, folder={str(self.folder)!r})"


def load_onnx_export(folder: str | Path, threads: int | None = None) -> OnnxWhisperASR:
    """Open an export folder on ONNX Runtime's CPU provider with `threads` intra-op threads
    (default: torch's current setting, so `--threads` means the same for both engines).

    Raises:
        InputError: not an export folder, a file missing or not matching its sha256 in the
            manifest, a file ONNX Runtime cannot load, or onnxruntime not installed.
    """
    from tokenizers import Tokenizer

    path = Path(folder)
    manifest = read_manifest(path)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise InputError("--engine onnxruntime needs onnxruntime (pip install 'weightwise[onnx]')") from None
    n = threads or torch.get_num_threads()
    encoder, decoder = _session(path / "encoder.onnx", n), _session(path / "decoder.onnx", n)
    try:
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as err:  # tokenizers raises a bare Exception on a bad file
        raise InputError(f"{path / 'tokenizer.json'}: not a tokenizer file ({str(err)[:120]})") from None
    try:
        model = OnnxWhisperASR(path, manifest, encoder, decoder, tokenizer, n)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path / MANIFEST_NAME}: incomplete manifest ({type(err).__name__}: {err})") from None
    for file, session, expected in zip(FILES[:2], (encoder, decoder), _interfaces(model), strict=True):
        _check_interface(path / file, session, expected)
    return model


def _interfaces(model: OnnxWhisperASR) -> tuple[dict, dict]:
    """{input or output name: its fixed dimensions} the manifest's config implies for encoder.onnx and
    decoder.onnx (`weightwise.export.graph`'s contract; None = a free dimension)."""
    cache = {f"{kind}.{i}": (None, model.n_heads, None, model.head_dim) for i in range(model.n_layers)
             for kind in ("cross_key", "cross_value")}  # fmt: skip
    past = {f"past_{kind}.{i}": cache[f"cross_{kind}.{i}"] for i in range(model.n_layers) for kind in ("key", "value")}
    present = {name.replace("past_", "present_"): dims for name, dims in past.items()}
    encoder = {"input_features": (None, model.n_mels, None), **cache}
    decoder = {"input_ids": (None, None), **past, **cache, "logits": (None, model.vocab_size), **present}
    return encoder, decoder


def _check_interface(file: Path, session, expected: dict[str, tuple]) -> None:
    """A loadable file from another model or export, or the encoder and decoder swapped: one line
    naming the file, before any audio is decoded (not an ONNX Runtime error mid-run)."""
    found = {arg.name: arg.shape for arg in (*session.get_inputs(), *session.get_outputs())}
    if set(found) != set(expected):
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        raise InputError(
            f"{file}: its inputs/outputs do not match {MANIFEST_NAME} (missing {missing[:3]}, unexpected {extra[:3]}; "
            "from another export, or encoder and decoder swapped?)"
        )
    for name, dims in expected.items():
        shape = found[name]
        fixed = [d if isinstance(d, int) else None for d in shape]
        if len(fixed) != len(dims) or any(want not in (None, got) for want, got in zip(dims, fixed, strict=True)):
            raise InputError(
                f"{file}: {name} has shape {list(shape)}, {MANIFEST_NAME}'s config implies "
                f"{['*' if d is None else d for d in dims]} (from another model's export?)"
            )
