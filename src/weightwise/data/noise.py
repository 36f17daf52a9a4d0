"""Noise sources by name or path: generated noise, a named set in shared/data, an audio file, or a
manifest of clips (a .jsonl or its folder).

The mixing itself (seeded segments, exact SNR) is `weightwise.audio.noise`; this module only finds
the clips, which for a named set or a manifest means reading a manifest (the data layer's job).
"""

from __future__ import annotations

import os
from pathlib import Path

from weightwise.audio.noise import KINDS, NAMED_SETS, SYNTHETIC, NoiseSource, noise_label
from weightwise.data.sources import load_manifest
from weightwise.errors import InputError

__all__ = ["resolve_noise"]

# src/weightwise/data/noise.py -> parents[3] is the repository root; shared/ sits beside it.
_DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def resolve_noise(spec: str, shared_data: Path | None = None) -> NoiseSource:
    """Turn a user's noise name or path into a `NoiseSource`.

    Args:
        spec: "white", "pink", "babble", an audio file, a manifest.jsonl, or its folder.
        shared_data: the shared/data folder for named sets; defaults to $WEIGHTWISE_SHARED_DATA,
            else shared/data beside the repository.

    Raises:
        InputError: unknown name, missing file, no shared data folder, or a bad manifest.
    """
    if spec in SYNTHETIC:
        return NoiseSource(spec, "synthetic")
    if spec in NAMED_SETS:
        return _from_manifest(_shared_data_dir(spec, shared_data) / NAMED_SETS[spec], spec)
    path = Path(spec).expanduser()
    if path.is_dir() or path.suffix == ".jsonl":
        return _from_manifest(path, noise_label(spec))
    if path.is_file():
        return NoiseSource(noise_label(spec), "recorded", (path.resolve(),))
    if path.suffix or os.sep in spec:
        raise InputError(f"{path}: noise file not found")
    choices = ", ".join((*SYNTHETIC, *NAMED_SETS))
    raise InputError(f"unknown noise '{spec}' (choose {choices}, an audio file, or a manifest.jsonl/its folder)")


def _shared_data_dir(spec: str, shared_data: Path | None) -> Path:
    """The explicit folder, else $WEIGHTWISE_SHARED_DATA, else shared/data beside the repo."""
    if shared_data is not None:
        return Path(shared_data)
    if os.environ.get("WEIGHTWISE_SHARED_DATA"):
        return Path(os.environ["WEIGHTWISE_SHARED_DATA"])
    if _DEFAULT_SHARED_DATA.is_dir():
        return _DEFAULT_SHARED_DATA
    raise InputError(f"noise '{spec}' needs the shared data folder (set WEIGHTWISE_SHARED_DATA)")


def _from_manifest(path: Path, name: str) -> NoiseSource:
    """All clips of a manifest (a .jsonl or its folder); kind from its entries when they agree."""
    manifest = load_manifest(path)
    kinds = {str(u.extra.get("kind", "recorded")) for u in manifest}
    kind = kinds.pop() if len(kinds) == 1 and kinds <= set(KINDS) else "recorded"
    return NoiseSource(name, kind, tuple(u.audio_path for u in manifest))
