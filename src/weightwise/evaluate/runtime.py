"""What a run used and ran on: peak memory, threads, library versions."""

from __future__ import annotations

import os
import platform
import re
import resource
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from weightwise.models.int8 import WeightOnlyInt8Linear

_PACKAGES = (
    "weightwise",
    "torch",
    "transformers",
    "numpy",
    "jiwer",
    "whisper-normalizer",
    "soundfile",
    "soxr",
    "faster-whisper",
    "ctranslate2",
)


_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (Linux), MiB; None where there is none."""
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) / 1024 if found else None


def rss_mb() -> float | None:
    """Resident set size of this process now, MiB (Linux; None elsewhere)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MiB: since the last `reset_peak_rss()` where Linux
    keeps VmHWM, else since the process started (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def reset_peak_rss() -> bool:
    """Restart the peak-RSS count at the current RSS (Linux: write 5 to /proc/self/clear_refs).

    Returns False where that is not possible; `peak_rss_mb` then keeps counting from process start.
    """
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def release_freed_memory() -> bool:
    """Hand the heap's free pages back to the system (glibc's `malloc_trim(0)`), so memory freed
    after replacing a model's float weights leaves the resident set. False where there is no glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0)) if name else False
    except (OSError, AttributeError):
        return False


def weight_bytes_resident(network: torch.nn.Module) -> int:
    """Bytes of RAM the network's tensors hold: parameters and buffers (caches such as a
    compressed module's float copy included), each storage counted once (tied and shared weights,
    views), plus the int8 weights inside torch's packed quantized Linear objects."""
    seen: dict[int, int] = {}
    for tensor in [*network.parameters(), *network.buffers()]:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    packed = 0
    for module in network.modules():
        params = getattr(module, "_packed_params", None)
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear) and params is not None:
            weight, bias = params._weight_bias()  # an unpacked copy: count its size, not its pointer
            # fbgemm keeps per row an fp32 scale, an int32 zero point and an int32 column offset
            packed += weight.numel() * weight.element_size() + 12 * weight.shape[0]
            packed += 0 if bias is None else bias.numel() * bias.element_size()
    return sum(seen.values()) + packed


#: compressed-module kinds computed from a float copy of their weight (simulation): quantized codes
#: dequantized once (`quant`), pruned weights multiplied dense with their zeros (`sparse`)
SIMULATED_KINDS = ("quant", "sparse")


def weight_kernels(network: torch.nn.Module) -> str:
    """What the network's weights run on: "simulated" (some compressed layer computes from a float
    copy of its weight: storage and speed are not what a deployment gets), else "int8" (torch's int8
    Linear kernels, `--precision int8`), "packed" (plan-quantized layers on packed low-bit kernels,
    screened projections on theirs), or "float" (float weights, dense or factored: the stored
    tensors themselves)."""
    kinds = {getattr(m, "kind", None) for m in network.modules()}
    if kinds & set(SIMULATED_KINDS):
        return "simulated"
    int8 = (torch.ao.nn.quantized.dynamic.Linear, WeightOnlyInt8Linear)
    if any(isinstance(m, int8) for m in network.modules()):
        return "int8"
    return "packed" if kinds & {"packed-quant", "packed-screen"} else "float"


def threads() -> int:
    return torch.get_num_threads()


def set_threads(n: int | None) -> None:
    """Use `n` intra-op threads for torch (None: leave torch's default)."""
    if n is not None:
        if n < 1:
            raise ValueError(f"threads must be >= 1, got {n}")
        torch.set_num_threads(n)


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux) with its widest SIMD, e.g. 'AMD EPYC (avx512)'."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    flag_line = re.search(r"^(flags|Features)\s*:\s*(.+)$", info, re.MULTILINE)  # x86 | ARM
    flags = set(flag_line.group(2).split()) if flag_line else set()
    simd = next((f for f in ("avx512f", "avx2", "avx", "neon", "asimd") if f in flags), None)
    text = name.group(1).strip() if name else platform.machine()
    return f"{text} ({simd.removesuffix('f')})" if simd else text


def host() -> dict[str, Any]:
    """Where a timing was taken: CPU, its logical cores and torch's threads."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": threads()}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "cpu": cpu_name()}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
