"""What a user names as data, opened: a manifest file, its folder, a LibriSpeech folder, or
`samples` (the bundled set). Every command and the bench open `--data`/`--calib` here, so the
special value `samples` has one meaning everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from weightwise.data.librispeech import read_librispeech_dir
from weightwise.data.manifest import Manifest
from weightwise.data.samples import sample_manifest
from weightwise.errors import InputError

__all__ = ["SAMPLES", "load_manifest", "open_manifest"]

SAMPLES = "samples"  # the name that means the bundled sample set (`sample_manifest()`)


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Open whatever the user pointed at: a .jsonl, a folder with manifest.jsonl, or LibriSpeech.

    Raises:
        InputError: the path is missing or is none of those.
    """
    target = Path(path)
    if target.is_file() and target.suffix == ".jsonl":
        return Manifest.from_jsonl(target)
    if target.is_dir() and (target / "manifest.jsonl").is_file():
        return Manifest.from_jsonl(target / "manifest.jsonl")
    if target.is_dir() and next(target.rglob("*.trans.txt"), None) is not None:
        return read_librispeech_dir(target)
    if not target.exists():
        raise InputError(f"{target}: manifest not found")
    raise InputError(
        f"{target}: not a manifest (expected a .jsonl file, a folder with manifest.jsonl, "
        "or a LibriSpeech folder with *.trans.txt)"
    )


def open_manifest(data: str | os.PathLike, limit: int | None = None) -> Manifest:
    """`load_manifest(data)`, or the bundled samples when `data` is "samples", cut to its first
    `limit` utterances (None: all of them).

    Raises:
        InputError: as `load_manifest`.
    """
    manifest = sample_manifest() if str(data) == SAMPLES else load_manifest(data)
    return manifest.head(limit) if limit else manifest
