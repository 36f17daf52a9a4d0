"""What a run used and ran on: peak memory, threads, library versions."""

from __future__ import annotations

import platform
import resource
import sys
from importlib.metadata import PackageNotFoundError, version

import torch

_PACKAGES = ("weightwise", "torch", "transformers", "numpy", "jiwer", "whisper-normalizer",
             "soundfile", "soxr", "faster-whisper", "ctranslate2")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def threads() -> int:
    return torch.get_num_threads()


def set_threads(n: int | None) -> None:
    """Use `n` intra-op threads for torch (None: leave torch's default)."""
    if n is not None:
        if n < 1:
            raise ValueError(f"threads must be >= 1, got {n}")
        torch.set_num_threads(n)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
