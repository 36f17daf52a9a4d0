"""One frozen config per compression technique (the values a plan rule carries).

JSON method names: ``quant`` -> `Quant`, ``gptq`` -> `Gptq`, ``prune`` -> `Prune`,
``lowrank`` -> `LowRank`, ``share`` -> `Share`, ``screen`` -> `Screen`. Every invalid value is an
`InputError` naming the field.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from weightwise.errors import InputError


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def _is_int(value: Any) -> bool:
    """An integer, and not a bool (JSON ``true`` is a Python int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Quant:
    """Weight quantization (simulated for accuracy; storage counted at `bits`).

    bits 16 = fp16 storage; 8, 4 and 3 = integer codes with fp32 scales (and zero points when not
    symmetric) per tensor, per output channel, or per group of `group_size` input elements.
    """

    bits: int = 8
    granularity: str = "channel"  # tensor | channel | group
    group_size: int = 128  # input elements per scale when granularity == "group"
    symmetric: bool = True

    def __post_init__(self):
        _check(
            _is_int(self.bits) and self.bits in (16, 8, 4, 3), f"quant.bits must be 16, 8, 4 or 3, got {self.bits!r}"
        )
        _check(
            self.granularity in ("tensor", "channel", "group"),
            f"quant.granularity must be tensor, channel or group, got {self.granularity!r}",
        )
        _check(
            _is_int(self.group_size) and self.group_size >= 1,
            f"quant.group_size must be a positive integer, got {self.group_size!r}",
        )
        _check(isinstance(self.symmetric, bool), f"quant.symmetric must be true or false, got {self.symmetric!r}")


@dataclass(frozen=True)
class Gptq:
    """GPTQ (Frantar et al., ICLR 2023, arXiv 2210.17323): integer codes chosen column by column
    on calibration activations, each column's rounding error compensated on the columns not yet
    quantized (`weightwise.compress.gptq`). Stored exactly as `Quant` with the same bits,
    granularity, group_size and symmetric (a ``quant`` module): GPTQ only picks better codes.

    damp: fraction of mean(diag H) added to H's diagonal (0.03, not the paper's 0.01: decoder
    layers see one row per token, and on tiny.en calibrated on 64 utterances 0.03 gave the lowest
    held-out output error over all layers, see benchmarks/gptq_layer_error.py); act_order: quantize
    inputs in order of decreasing diag H (scales still per contiguous group); clip_search: per group,
    the range shrink (1 to 0.5) that minimises the group's error weighted as GPTQ weighs it;
    sequential: calibrate each transformer block on the output of the blocks already quantized
    (one calibration pass per block, as the paper does) instead of all on the network as the rule
    finds it (one pass); block_size: columns per lazy batch update.
    """

    bits: int = 4
    granularity: str = "group"  # channel | group
    group_size: int = 64
    symmetric: bool = False
    damp: float = 0.03
    act_order: bool = True
    clip_search: bool = True
    sequential: bool = False
    block_size: int = 128

    def __post_init__(self):
        _check(self.bits in (8, 4, 3), f"gptq.bits must be 8, 4 or 3, got {self.bits!r}")
        _check(
            self.granularity in ("channel", "group"),
            f"gptq.granularity must be channel or group, got {self.granularity!r}",
        )
        for field in ("group_size", "block_size"):
            value = getattr(self, field)
            _check(type(value) is int and value >= 1, f"gptq.{field} must be a positive integer, got {value!r}")
        _check(
            type(self.damp) in (int, float) and 0.0 < self.damp <= 1.0,
            f"gptq.damp must be in (0, 1], got {self.damp!r}",
        )
        for field in ("symmetric", "act_order", "clip_search", "sequential"):
            value = getattr(self, field)
            _check(isinstance(value, bool), f"gptq.{field} must be true or false, got {value!r}")

    def quant(self) -> Quant:
        """The storage format the codes are written in."""
        return Quant(self.bits, self.granularity, self.group_size, self.symmetric)


@dataclass(frozen=True)
class Prune:
    """Weight pruning: `sparsity` = fraction of weights set to zero (N:M patterns fix it at 1 - N/M).

    method ``magnitude`` keeps the largest |w|; ``csp`` (compressed-sensing pruning) solves
    min ||W X - W' X||^2 + lambda ||W'||_1 on calibration activations X with iterative
    soft-thresholding while ramping the sparsity, then hard-masks.
    """

    sparsity: float = 0.5
    pattern: str = "unstructured"  # unstructured | channel | "N:M" (e.g. "2:4")
    method: str = "magnitude"  # magnitude | csp

    def __post_init__(self):
        _check(
            _is_number(self.sparsity) and 0.0 <= self.sparsity < 1.0,
            f"prune.sparsity must be in [0, 1), got {self.sparsity!r}",
        )
        _check(
            self.pattern in ("unstructured", "channel") or self.nm is not None,
            f"prune.pattern must be unstructured, channel or N:M like 2:4, got {self.pattern!r}",
        )
        _check(self.method in ("magnitude", "csp"), f"prune.method must be magnitude or csp, got {self.method!r}")

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) for an N:M pattern (N nonzeros kept in every M consecutive inputs), else None."""
        found = re.fullmatch(r"(\d+):(\d+)", str(self.pattern))
        if not found:
            return None
        n, m = int(found.group(1)), int(found.group(2))
        return (n, m) if 0 < n < m else None


@dataclass(frozen=True)
class LowRank:
    """W (out x in) ~= U (out x r) @ V (r x in) by truncated SVD; give `rank` or `energy_fraction`."""

    rank: int | None = None
    energy_fraction: float | None = None  # keep the smallest r whose squared singular values reach it

    def __post_init__(self):
        _check(
            (self.rank is None) != (self.energy_fraction is None),
            "lowrank needs exactly one of rank or energy_fraction",
        )
        _check(
            self.rank is None or (_is_int(self.rank) and self.rank >= 1),
            f"lowrank.rank must be a positive integer, got {self.rank!r}",
        )
        fraction = self.energy_fraction
        _check(
            fraction is None or (_is_number(fraction) and 0.0 < fraction <= 1.0),
            f"lowrank.energy_fraction must be in (0, 1], got {self.energy_fraction!r}",
        )


@dataclass(frozen=True)
class Share:
    """All modules a rule matches share weights (paper 4, MISSION.md §4).

    ``full``: one weight (the group's mean) for every module; ``lowrank_u``: W_i ~= U V_i with U
    shared (left singular vectors of [W_1 ... W_k]); ``lowrank_v``: W_i ~= U_i V with V shared.
    """

    what: str = "full"  # full | lowrank_u | lowrank_v
    rank: int | None = None  # required for lowrank_u / lowrank_v

    def __post_init__(self):
        _check(
            self.what in ("full", "lowrank_u", "lowrank_v"),
            f"share.what must be full, lowrank_u or lowrank_v, got {self.what!r}",
        )
        _check(
            self.what == "full" or (_is_int(self.rank) and self.rank >= 1),
            f"share.what={self.what} needs a positive integer rank, got {self.rank!r}",
        )


@dataclass(frozen=True)
class Screen:
    """Screened output projection (SVD-softmax, Shim et al., NeurIPS 2017): a rank-`rank` preview of
    every logit picks the `top_k` candidates, whose exact logits come from their full rows; the
    other tokens keep their preview logit (so the softmax still sees every token). The table stays
    fp16 (the embedding lookup and the exact rows read it); the preview factors are extra storage,
    the preview matrix (vocab x rank) at `preview_bits` with one fp32 scale per row.

    whiten: the preview is the best rank-`rank` approximation of the LOGITS on calibration inputs
    (the SVD of W C^1/2, C the inputs' second moment, as data-aware low-rank methods such as
    SVD-LLM, Wang et al., ICLR 2025, do) instead of the plain SVD of W; needs calibration audio.
    damp: fraction of mean(diag C) added to C's diagonal.
    tail: what the unscreened tokens get: ``preview`` their preview logit, capped just below the
    best exact logit (so the argmax is always a screened token); ``floor`` capped at the lowest
    exact logit. On tiny.en (int4 preview, top 512, held-out calibration positions) the mean KL to
    the exact distribution is 0.006 with ``preview`` and 0.013 with ``floor``: a rank-128 preview
    errs by ~1 nat either way, and capping thousands of tail tokens at the floor inflates them.
    """

    rank: int = 128
    top_k: int = 64
    preview_bits: int = 8
    whiten: bool = True
    damp: float = 0.01
    tail: str = "preview"

    def __post_init__(self):
        _check(self.tail in ("preview", "floor"), f"screen.tail must be preview or floor, got {self.tail!r}")
        for field in ("rank", "top_k"):
            value = getattr(self, field)
            _check(_is_int(value) and value >= 1, f"screen.{field} must be a positive integer, got {value!r}")
        _check(
            _is_int(self.preview_bits) and self.preview_bits in (16, 8, 4),
            f"screen.preview_bits must be 16, 8 or 4, got {self.preview_bits!r}",
        )
        _check(isinstance(self.whiten, bool), f"screen.whiten must be true or false, got {self.whiten!r}")
        _check(_is_number(self.damp) and 0.0 <= self.damp <= 1.0, f"screen.damp must be in [0, 1], got {self.damp!r}")


METHODS = {"quant": Quant, "gptq": Gptq, "prune": Prune, "lowrank": LowRank, "share": Share, "screen": Screen}
CompressionConfig = Quant | Gptq | Prune | LowRank | Share | Screen


def config_from_dict(method: str, params: Any, where: str = "") -> CompressionConfig:
    """Build a config from a plan rule's ``"<method>": {params}``."""
    prefix = f"{where}: " if where else ""
    if method not in METHODS:
        raise InputError(f"{prefix}unknown method {method!r} (choose from {', '.join(METHODS)})")
    if not isinstance(params, dict):
        raise InputError(f"{prefix}{method} parameters must be an object, got {type(params).__name__}")
    cls = METHODS[method]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise InputError(
            f"{prefix}unknown {method} parameter(s) {', '.join(unknown)} (allowed: {', '.join(sorted(names))})"
        )
    try:
        return cls(**params)
    except InputError as err:
        raise InputError(f"{prefix}{err}") from None


def config_to_dict(config: CompressionConfig) -> tuple[str, dict[str, Any]]:
    method = next(k for k, v in METHODS.items() if isinstance(config, v))
    return method, dataclasses.asdict(config)
