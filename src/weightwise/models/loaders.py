"""`load_model`: a registered name, a CTranslate2 / Hugging Face / openai-whisper checkpoint, or a hub id.

CTranslate2 files are converted once to a transformers state dict and cached as safetensors under
`<cache>/hf/<name>-<sha256[:16]>/` with a `SHA256SUMS` of the files, so later loads skip the
conversion; a cached conversion that is missing, truncated or altered is rebuilt from the source.

Packages above `models` teach `load_model` new kinds of checkpoint folders with `register_loader`
(`weightwise.compress` registers the folders `weightwise compress` writes), so `models` never
imports them. transformers, safetensors and huggingface_hub are imported inside the functions that
use them (transformers alone takes seconds), so a command with a bad input fails before that cost.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import torch

from weightwise.errors import InputError
from weightwise.models import openai_ckpt
from weightwise.models.ct2 import read_ct2_model
from weightwise.models.registry import (
    available_models,
    bundled_side_files,
    ct2_model_dir,
    default_cache_dir,
    file_sha256,
    resolve_name,
    transducer_weights_dir,
)
from weightwise.models.transducer import TransducerASR, is_transducer_dir, load_transducer_dir
from weightwise.models.whisper import WhisperASR, build_whisper, read_suppress_lists
from weightwise.models.whisper_ct2 import hf_state_dict, whisper_config

# load_fn(path, precision, cache_dir) -> model, for the paths whose predicate(path) is true
PathLoader = Callable[[Path, str, Path], WhisperASR]
_LOADERS: list[tuple[Callable[[Path], bool], PathLoader]] = []
SUMS_FILE = "SHA256SUMS"  # `sha256sum -c` format: "<hex>  <file name>" per line


def register_loader(predicate: Callable[[Path], bool], load_fn: PathLoader) -> None:
    """Let `load_model` read another kind of checkpoint path: the first registered `predicate(path)`
    that is true picks `load_fn(path, precision, cache_dir)`. Registering a pair again is a no-op.

    Example (what `weightwise.compress` does when imported):
        >>> register_loader(is_compressed_dir, load_compressed)  # doctest: +SKIP
    """
    if (predicate, load_fn) not in _LOADERS:
        _LOADERS.append((predicate, load_fn))


def load_model(
    name_or_path: str, precision: str = "fp32", cache_dir: str | Path | None = None
) -> WhisperASR | TransducerASR:
    """Load a Whisper model (or one of our streaming transducers) for CPU inference.

    Args:
        name_or_path: a registered name (`available_models()`), a transducer folder
            (config.json + model.safetensors from `weightwise train-transducer`), a directory written by
            `weightwise compress`, a CTranslate2 model directory,
            a Hugging Face model directory, an openai-whisper `.pt` checkpoint, or a hub id
            such as ``openai/whisper-tiny.en`` (needs network access).
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8`` (dynamic quantization of Linear layers).
        cache_dir: where converted weights are kept (default `default_cache_dir()`).

    Example:
        >>> model = load_model("whisper-tiny.en")  # doctest: +SKIP
        >>> model.info.n_params  # doctest: +SKIP
        37760640
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    _check_cache_dir(cache)
    packaged = transducer_weights_dir(name_or_path)
    if packaged is not None:
        return load_transducer_dir(packaged, precision, name_or_path)
    spec = resolve_name(name_or_path)
    if spec is not None:
        return load_ct2_dir(ct2_model_dir(spec, cache), spec.name, precision, cache)
    path = Path(name_or_path).expanduser()
    for predicate, load_fn in _LOADERS:
        if predicate(path):
            return load_fn(path, precision, cache)
    if is_transducer_dir(path):
        return load_transducer_dir(path, precision)
    if path.is_dir() and (path / "model.bin").is_file():
        return load_ct2_dir(path, path.name, precision, cache)
    if path.is_dir() and (path / "config.json").is_file():
        return load_hf_dir(path, precision, cache_dir=cache)
    if path.is_file() and path.suffix in (".pt", ".pth"):
        return openai_ckpt.load_openai_checkpoint(path, precision, cache)
    if path.exists():
        raise InputError(f"{path}: not a CTranslate2, Hugging Face or openai-whisper checkpoint")
    if "/" in name_or_path and not name_or_path.startswith((".", "/", "~")):
        return load_hub_model(name_or_path, precision)
    raise InputError(
        f"unknown model {name_or_path!r}: not one of {', '.join(available_models())}, "
        "an existing checkpoint path, or a hub id like openai/whisper-tiny.en"
    )


def load_ct2_dir(model_dir: Path, name: str, precision: str, cache: Path) -> WhisperASR:
    """Convert (or reuse the cached conversion of) a CTranslate2 Whisper directory."""
    sha = file_sha256(model_dir / "model.bin")
    converted = cache / "hf" / f"{name}-{sha[:16]}"
    if not _conversion_intact(converted):  # missing, truncated, altered, or from before SHA256SUMS
        _convert_ct2(model_dir, converted)
    network = _network_from_safetensors(converted)
    return build_whisper(
        network, model_dir / "tokenizer.json", read_suppress_lists(model_dir), name, str(model_dir), sha, precision
    )


def _check_cache_dir(cache: Path) -> None:
    """The weights cache is a folder, or can become one: a file in its place is a one-line error."""
    existing = next((p for p in (cache, *cache.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "is a file" if existing == cache else f"lies under the file {existing}"
        raise InputError(f"weights cache {cache}: {where}, not a folder (set --cache-dir or WEIGHTWISE_CACHE)")


def _convert_ct2(model_dir: Path, out: Path) -> None:
    from safetensors.torch import save_file

    ct2 = read_ct2_model(model_dir / "model.bin")
    config = whisper_config(ct2)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    aside = out.with_name(f"{tmp.name}.old")
    try:
        tmp.mkdir(parents=True)
    except OSError as err:
        raise InputError(
            f"weights cache {out.parent}: cannot write the converted weights "
            f"({err.strerror or err}); set --cache-dir or WEIGHTWISE_CACHE"
        ) from None
    try:
        save_file(hf_state_dict(ct2, config), tmp / "model.safetensors", metadata={"source": str(model_dir)})
        (tmp / "config.json").write_text(config.to_json_string())
        sums = [f"{file_sha256(tmp / name)}  {name}" for name in ("model.safetensors", "config.json")]
        (tmp / SUMS_FILE).write_text("\n".join(sums) + "\n")
        if out.exists():
            os.replace(out, aside)  # a damaged or older conversion: set aside, removed below
        os.replace(tmp, out)  # atomic: readers see a whole conversion or none
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(aside, ignore_errors=True)


def _conversion_intact(converted: Path) -> bool:
    """True when every file `SHA256SUMS` lists is there with its recorded sha256."""
    try:
        lines = (converted / SUMS_FILE).read_text().splitlines()
    except OSError:
        return False
    expected = {name: digest for digest, _, name in (line.partition("  ") for line in lines)}
    try:
        return set(expected) == {"model.safetensors", "config.json"} and all(
            file_sha256(converted / name) == digest for name, digest in expected.items()
        )
    except OSError:
        return False


def _network_from_safetensors(converted: Path):
    """Build the transformers network on `meta` and assign the stored tensors (no double alloc)."""
    from safetensors.torch import load_file
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig.from_json_file(converted / "config.json")
    with torch.device("meta"):
        network = WhisperForConditionalGeneration(config)
    state = {k: v.float() for k, v in load_file(converted / "model.safetensors").items()}
    missing, unexpected = network.load_state_dict(state, strict=False, assign=True)
    if set(missing) - {"proj_out.weight"} or unexpected:
        raise InputError(
            f"{converted}: cached weights do not match the network "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    network.tie_weights()  # proj_out shares the token embedding
    return network


def load_hf_dir(path: Path, precision: str, source: str | None = None, cache_dir: Path | None = None) -> WhisperASR:
    """A local Hugging Face Whisper directory (`config.json`, safetensors or .bin, tokenizer.json)."""
    from transformers import WhisperForConditionalGeneration

    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") != "whisper":
        raise InputError(f"{path}: config.json model_type is {config.get('model_type')!r}, not whisper")
    weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
    if not weights:
        raise InputError(f"{path}: no model.safetensors or pytorch_model.bin")
    network = WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
    suppress = _suppress_lists(path, network.config.vocab_size, cache_dir)
    return build_whisper(
        network, path / "tokenizer.json", suppress, path.name, source or str(path), file_sha256(*weights), precision
    )


def _suppress_lists(path: Path, vocab_size: int, cache_dir: Path | None) -> tuple[list[int], list[int]]:
    """The folder's lists; `save_pretrained` output often has no `suppress_tokens`: borrow the
    bundled model's (the same non-speech tokens for the same vocabulary)."""
    try:
        suppress, begin = read_suppress_lists(path)
    except InputError:
        suppress, begin = [], []
    if not suppress:
        bundled = bundled_side_files(vocab_size, cache_dir)
        if bundled is None:
            raise InputError(f"{path}: generation_config.json has no suppress_tokens") from None
        suppress, bundled_begin = read_suppress_lists(bundled)
        begin = begin or bundled_begin
    return suppress, begin


def load_hub_model(repo_id: str, precision: str) -> WhisperASR:
    """Download a Whisper repo from the Hugging Face hub (online only), then load it as a directory."""
    from huggingface_hub import snapshot_download

    patterns = ["config.json", "generation_config.json", "tokenizer.json", "*.safetensors"]
    try:
        local = snapshot_download(repo_id, allow_patterns=patterns)
    except Exception as err:  # offline, unknown repo, auth: one line, not a traceback
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"unknown model {repo_id!r}: hub download failed ({reason})") from None
    return load_hf_dir(Path(local), precision, source=f"hub:{repo_id}")
