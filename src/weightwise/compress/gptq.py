"""GPTQ (`Gptq`): integer codes chosen on calibration activations, errors compensated column by column.

Frantar, Ashkboos, Hoefler & Alistarh, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers", ICLR 2023 (arXiv 2210.17323), Algorithm 1. Per Linear layer with
weight W (out x in) and calibration inputs X (rows x in), it greedily minimises

    ||X W^T - X Q^T||_F^2 = sum_i (w_i - q_i)^T H (w_i - q_i),   H = X^T X / rows  (in x in)

one input column at a time: column j is rounded to the grid, and its error, divided by the j-th
diagonal of U = chol(H^-1) (upper), is spread on the columns not yet quantized along U's row j
(the optimal compensation, Optimal Brain Surgeon style). Columns run in blocks of `block_size`:
inside a block the compensation is applied column by column, to the rest of the matrix once per
block (the paper's lazy batch update). H gets ``damp x mean(diag H)`` on its diagonal; inputs
never seen (diag 0) are dropped (their weights set to zero, as in the paper).

Choices here (the paper leaves them open or to its code):
- Storage is the `Quant` format unchanged (`QuantModule`, kind ``quant``): per contiguous group of
  `group_size` inputs (or per output channel) one fp32 scale and, asymmetric, one uint8 zero
  point over the range [min(w, 0), max(w, 0)]. GPTQ only chooses the codes.
- A group's scale and zero point are fixed when its first column is about to be quantized, from
  the group's *current* (already compensated) values, lazily pending updates included.
- act_order: columns run in order of decreasing diag H (the most active inputs first, while
  every other column can still absorb their error); groups stay contiguous in the original input
  order, so act_order needs no index table.
- clip_search: for each group and row, the shrink s in `CLIP_SHRINKS` of the range that minimises
  sum_j (w_j - q_j)^2 / U_jj^2 over the group's columns (the loss GPTQ charges each column),
  a weighted form of the range search in the paper's code.
- Calibration (`weightwise.compress.calib.collect_hessians`) folds every input row into X^T X:
  all 1500 frames of each encoder call, one row per decoder token. Decoder layers therefore see
  few rows (~40 per utterance) against 384 or 1536 inputs, which is why the default damping is
  0.03 rather than 0.01 (see `Gptq`). A tied table (Whisper's token embedding = output projection)
  is calibrated on the projection's inputs only; its embedding role wants a small plain weight
  error ||W - Q||^2, which is what a larger damping favours (damp -> large makes GPTQ round to
  nearest): on tiny.en, damp 0.3 gave both a lower held-out projection error than 0.03 and a
  weight error within 15 % of RTN's (0.03: +54 %), yet test-other WER was worse (17.19 % vs
  14.83 %, one utterance cut short by an early end of text): layer errors do not rank these
  close variants, so the default stays one damping for all (benchmarks/gptq_rows.py).

No library was used: torchao's GPTQ (prototype) runs on CUDA only, GPTQModel and llm-compressor
pull CUDA toolkits or pin other transformers versions, and HQQ / optimum-quanto have no GPTQ.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import torch
from torch import nn

from weightwise.compress.calib import collect_hessians
from weightwise.compress.configs import Gptq, Quant
from weightwise.compress.modules import register_handler
from weightwise.compress.quantize import QuantModule
from weightwise.compress.weightop import flat_weight, op_of, replace_group, tied_groups
from weightwise.errors import InputError

CLIP_SHRINKS = tuple(1.0 - 0.02 * i for i in range(26))  # 1.00, 0.98, ..., 0.50 of the range
DAMP_RETRIES = 4  # each retry multiplies the damping by 10 (Cholesky failed: H not numerically PD)


def code_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """(lowest, highest) integer code: symmetric [-qmax, qmax] with qmax = 2^(b-1) - 1, else [0, 2^b - 1]."""
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        return -qmax, qmax
    return 0, 2**bits - 1


def range_params(
    values: torch.Tensor, bits: int, symmetric: bool, shrink: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero point) per row of `values` (rows, n), as `quantize.quantize_weight` sets them
    (shrink 1); the range is scaled by `shrink`. Symmetric zero points are 0; empty ranges get scale 1."""
    _, high_code = code_range(bits, symmetric)
    if symmetric:
        scale = shrink * values.abs().amax(1) / high_code
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return scale, torch.zeros_like(scale)
    low = shrink * values.amin(1).clamp(max=0)
    scale = (shrink * values.amax(1).clamp(min=0) - low) / high_code
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale, torch.clamp(torch.round(-low / scale), 0, high_code)


def to_codes(values: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    """Integer codes (as floats) of `values` (rows,) or (rows, n) on the grid of per-row scale/zero."""
    if values.dim() == 2:
        scale, zero = scale[:, None], zero[:, None]
    low_code, high_code = code_range(bits, symmetric)
    return torch.clamp(torch.round(values / scale) + zero, low_code, high_code)


def group_params(
    values: torch.Tensor, col_weights: torch.Tensor, bits: int, symmetric: bool, clip_search: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero) per row for a group's values (rows, n): full range, or with `clip_search` the
    shrink minimising sum_j col_weights_j (w_j - q_j)^2 per row."""
    best_scale, best_zero = range_params(values, bits, symmetric)
    if not clip_search:
        return best_scale, best_zero
    best_err = torch.full_like(best_scale, float("inf"))
    for shrink in CLIP_SHRINKS:
        scale, zero = range_params(values, bits, symmetric, shrink)
        rebuilt = (to_codes(values, scale, zero, bits, symmetric) - zero[:, None]) * scale[:, None]
        err = ((rebuilt - values) ** 2 * col_weights).sum(1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
        best_zero = torch.where(better, zero, best_zero)
    return best_scale, best_zero


def inverse_factor(h: torch.Tensor, damp: float, name: str) -> torch.Tensor:
    """U upper-triangular with U^T U = (H + damp mean(diag H) I)^-1, in float64."""
    eye = torch.eye(h.shape[0], dtype=torch.float64)
    level = damp * float(h.diagonal().mean())
    for _ in range(DAMP_RETRIES):
        lower, info = torch.linalg.cholesky_ex(h + level * eye)
        if int(info) == 0:
            upper, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(lower), upper=True)
            if int(info) == 0:
                return upper
        level *= 10.0
    raise InputError(
        f"{name}: calibration Hessian is not positive definite even with damping "
        f"{level / 10.0:.3g} (non-finite activations?)"
    )


def gptq_quantize(
    weight: torch.Tensor, hessian: torch.Tensor, config: Gptq, name: str = "weight"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(codes, fp32 scales, uint8 zero points or None) of `weight` (rows, cols) in `config.quant()`'s
    format, chosen by GPTQ for inputs with second moment `hessian` (cols, cols).

    Runs in float64 when `weight` is float64 (the tests' exact comparisons), else float32.
    """
    cols = weight.shape[1]
    group = config.group_size if config.granularity == "group" else cols
    if cols % group:
        raise InputError(f"{name}: gptq group_size {group} does not divide its {cols} input elements")
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    h = hessian.detach().to(torch.float64).clone()
    w = weight.detach().to(dtype).clone()
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    order = torch.argsort(h.diagonal(), descending=True, stable=True) if config.act_order else torch.arange(cols)
    w, h = w[:, order], h[order][:, order]
    u = inverse_factor(h, config.damp, name).to(dtype)
    codes, scales, zeros = _columns(w, u, order // group, config)
    out = torch.empty_like(codes)
    out[:, order] = codes
    if config.symmetric:
        return out.to(torch.int8), scales.float(), None
    return out.to(torch.uint8), scales.float(), zeros.to(torch.uint8)


def _columns(
    w: torch.Tensor, u: torch.Tensor, group_of: torch.Tensor, config: Gptq
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The GPTQ loop over (permuted) columns; `group_of[j]`: the scale group of position j."""
    rows, cols = w.shape
    n_groups = int(group_of.max()) + 1
    scales, zeros = torch.ones(rows, n_groups, dtype=w.dtype), torch.zeros(rows, n_groups, dtype=w.dtype)
    members = [torch.nonzero(group_of == g).flatten() for g in range(n_groups)]
    ready = [False] * n_groups
    col_weights = 1.0 / u.diagonal() ** 2
    codes = torch.zeros(rows, cols, dtype=w.dtype)
    for start in range(0, cols, config.block_size):
        end = min(start + config.block_size, cols)
        block, errors = w[:, start:end].clone(), torch.zeros(rows, end - start, dtype=w.dtype)
        for k in range(end - start):
            j, g = start + k, int(group_of[start + k])
            if not ready[g]:
                values = _pending(w, block, errors, u, members[g], start, k)
                scales[:, g], zeros[:, g] = group_params(
                    values, col_weights[members[g]], config.bits, config.symmetric, config.clip_search
                )
                ready[g] = True
            column = block[:, k]
            codes[:, j] = to_codes(column, scales[:, g], zeros[:, g], config.bits, config.symmetric)
            error = (column - (codes[:, j] - zeros[:, g]) * scales[:, g]) / u[j, j]
            block[:, k:] -= error[:, None] * u[j, j:end][None, :]
            errors[:, k] = error
        w[:, end:] -= errors @ u[start:end, end:]
    return codes, scales, zeros


def _pending(
    w: torch.Tensor,
    block: torch.Tensor,
    errors: torch.Tensor,
    u: torch.Tensor,
    positions: torch.Tensor,
    start: int,
    k: int,
) -> torch.Tensor:
    """Current values (rows, len(positions)) of not-yet-quantized columns at `positions`: inside the
    block they are up to date; beyond it the block's first `k` errors are still to be applied."""
    end = start + block.shape[1]
    values = torch.empty(w.shape[0], positions.numel(), dtype=w.dtype)
    inside = positions < end
    values[:, inside] = block[:, positions[inside] - start]
    beyond = positions[~inside]
    if beyond.numel():
        values[:, ~inside] = w[:, beyond] - errors[:, :k] @ u[start : start + k][:, beyond]
    return values


def quant_module(
    module: nn.Module, name: str, config: Quant, state: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
) -> QuantModule:
    """A `QuantModule` for `module` holding the given (codes, scales, zero points)."""
    return QuantModule.from_state(module, name, config, state)


def stage_of(name: str) -> str:
    """The transformer block a module belongs to (``...layers.<i>``), else the module itself."""
    found = re.match(r"(.*\.layers\.\d+)\.", name)
    return found.group(1) if found else name


def calibration_name(network: nn.Module, group: list[str]) -> str | None:
    """The Linear of a tied group whose inputs calibrate it (Whisper's tied embedding: `proj_out`)."""
    return next((n for n in group if isinstance(network.get_submodule(n), nn.Linear)), None)


@register_handler(Gptq)
def gptq_handler(network: nn.Module, names: list[str], config: Gptq, context: Any) -> None:
    """Replace every named module by a `QuantModule` whose codes GPTQ chose on `context.calib`.

    Tied modules are quantized once, calibrated on their Linear member's inputs. A group without a
    Linear (a Conv1d, an untied embedding) is rounded to nearest, with a warning. `sequential`:
    one calibration pass per transformer block, in network order, each seeing the blocks before it
    already quantized; otherwise one pass on the network as the rule found it.
    """
    groups = tied_groups(network, names)
    for group in groups:
        op_of(network.get_submodule(group[0]), group[0])
        cols = flat_weight(network.get_submodule(group[0])).shape[1]
        if config.granularity == "group" and cols % config.group_size:
            raise InputError(
                f"{group[0]}: gptq group_size {config.group_size} does not divide its {cols} input elements"
            )
    calibrated = {calibration_name(network, g): g for g in groups if calibration_name(network, g)}
    for group in groups:
        if calibration_name(network, group) is None:
            warnings.warn(f"gptq applies to Linear layers: {', '.join(group)} rounded to nearest", stacklevel=3)
            replace_group(network, group, lambda m, n: QuantModule.from_float(m, n, config.quant()))
    if not calibrated:
        return
    if getattr(context, "calib", None) is None:
        raise InputError("this plan needs calibration audio (--calib MANIFEST) for gptq")
    order = {name: i for i, (name, _) in enumerate(network.named_modules())}
    stages: dict[str, list[str]] = {}
    for name in sorted(calibrated, key=order.__getitem__):
        stages.setdefault(stage_of(name) if config.sequential else "all", []).append(name)
    for stage in stages.values():
        hessians = (
            context.hessians(stage)
            if hasattr(context, "hessians")
            else collect_hessians(context.model, context.calib, stage)
        )
        for name in stage:
            if name not in hessians:
                raise InputError(f"{name}: saw no input on the calibration audio ({context.calib.source})")
            h = hessians[name].hessian()
            replace_group(
                network,
                calibrated[name],
                lambda m, n, h=h, cname=name: quant_module(
                    m, n, config.quant(), gptq_quantize(flat_weight(m), h, config, cname)
                ),
            )
