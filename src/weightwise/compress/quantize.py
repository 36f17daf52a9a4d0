"""Weight quantization (`Quant`): int8 / int4 codes with fp32 scales, or fp16, simulated in float.

Modules derive from `weightwise.compress.weightop.WeightOpModule` (shared with pruning); tied
weights are compressed once (see that module).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from weightwise.compress.configs import Quant
from weightwise.compress.modules import register_handler, register_module
from weightwise.compress.weightop import WeightOpModule, flat_weight, frozen, op_of, replace_group, tied_groups
from weightwise.errors import InputError
from weightwise.profile.storage import TensorStorage


def _blocks(w: torch.Tensor, granularity: str, group_size: int) -> torch.Tensor:
    """(scale rows, scale columns, elements per scale) view of a 2-D weight."""
    rows, cols = w.shape
    if granularity == "tensor":
        return w.reshape(1, 1, rows * cols)
    if granularity == "channel":
        return w.reshape(rows, 1, cols)
    return w.reshape(rows, cols // group_size, group_size)


def quantize_weight(w: torch.Tensor, config: Quant) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(codes, fp32 scales, uint8 zero points or None) of a 2-D float weight (rows, cols).

    Symmetric: scale = absmax / qmax, codes = clamp(round(w / scale), -qmax, qmax) as int8.
    Asymmetric: the range [min(w, 0), max(w, 0)] (zero stays exact) over 2^bits - 1 steps,
    zero point = round(-min / scale), codes in [0, 2^bits - 1] as uint8. All-zero blocks get
    scale 1 (codes 0), so nothing divides by zero. Error <= scale / 2 elementwise.
    """
    blocks = _blocks(w.float(), config.granularity, config.group_size)
    if config.symmetric:
        qmax = 2 ** (config.bits - 1) - 1
        scales = blocks.abs().amax(-1) / qmax
        scales = torch.where(scales > 0, scales, torch.ones_like(scales))
        codes = torch.clamp(torch.round(blocks / scales[..., None]), -qmax, qmax).to(torch.int8)
        return codes.reshape(w.shape), scales, None
    levels = 2**config.bits - 1
    low, high = blocks.amin(-1).clamp(max=0), blocks.amax(-1).clamp(min=0)
    scales = (high - low) / levels
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    zeros = torch.clamp(torch.round(-low / scales), 0, levels)
    codes = torch.clamp(torch.round(blocks / scales[..., None]) + zeros[..., None], 0, levels)
    return codes.to(torch.uint8).reshape(w.shape), scales, zeros.to(torch.uint8)


def dequantize_weight(
    codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, config: Quant
) -> torch.Tensor:
    """Float (rows, cols) weight the codes stand for: (code - zero point) * scale."""
    blocks = _blocks(codes.float(), config.granularity, config.group_size)
    if zeros is not None:
        blocks = blocks - zeros.float()[..., None]
    return (blocks * scales[..., None]).reshape(codes.shape)


@register_module
class QuantModule(WeightOpModule):
    """A Linear / Conv1d / Embedding whose weight is stored quantized (see `Quant`).

    State: ``codes`` (fp16 for 16 bits; int8, or uint8 when asymmetric, one code per byte even at
    4 bits), ``scales`` fp32 (scale rows x scale columns), ``zero_points`` uint8 (asymmetric
    only), ``bias`` fp32 (kept in float, as int8 deployments do).
    """

    kind = "quant"

    def __init__(
        self,
        op: str,
        shape: list[int],
        op_args: dict[str, Any] | None = None,
        tie: str | None = None,
        bias: bool = False,
        bits: int = 8,
        granularity: str = "channel",
        group_size: int = 128,
        symmetric: bool = True,
    ):
        super().__init__(op, shape, op_args, tie)
        self.config = Quant(bits, granularity, group_size, symmetric)
        if bits == 16:
            self.codes = frozen(torch.zeros(self.rows, self.cols, dtype=torch.float16))
        else:
            code_dtype = torch.int8 if symmetric else torch.uint8
            self.codes = frozen(torch.zeros(self.rows, self.cols, dtype=code_dtype))
            n_rows, n_cols = _blocks(self.codes, granularity, group_size).shape[:2]
            self.scales = frozen(torch.ones(n_rows, n_cols))
            self.zero_points = None if symmetric else frozen(torch.zeros(n_rows, n_cols, dtype=torch.uint8))
        self.bias = frozen(torch.zeros(self.rows)) if bias else None

    def spec(self) -> dict[str, Any]:
        return self.config_spec()

    @classmethod
    def from_float(cls, module: nn.Module, name: str, config: Quant) -> QuantModule:
        """Quantize `module`'s weight; InputError when `group_size` does not divide its inputs."""
        op_of(module, name)  # an unsupported module is refused first
        weight = flat_weight(module)
        if config.bits != 16 and config.granularity == "group" and weight.shape[1] % config.group_size:
            raise InputError(
                f"{name}: quant group_size {config.group_size} does not divide its {weight.shape[1]} input elements"
            )
        state = (weight.half(),) if config.bits == 16 else quantize_weight(weight, config)
        return cls.from_state(module, name, config, state)

    @classmethod
    def from_state(cls, module: nn.Module, name: str, config: Quant, state: tuple) -> QuantModule:
        """A `QuantModule` for `module` holding the given (codes, scales, zero points), e.g. GPTQ's."""
        op, op_args = op_of(module, name)
        new = cls(
            op,
            list(module.weight.shape),
            op_args,
            None,
            getattr(module, "bias", None) is not None,
            config.bits,
            config.granularity,
            config.group_size,
            config.symmetric,
        )
        params = (new.codes, getattr(new, "scales", None), getattr(new, "zero_points", None))
        for param, value in zip(params, state, strict=False):
            if value is not None:
                param.copy_(value)
        new.load_bias(getattr(module, "bias", None))
        new.refresh()
        return new

    def dense_weight(self) -> torch.Tensor:
        if self.config.bits == 16:
            return self.codes.float()
        return dequantize_weight(self.codes, self.scales, self.zero_points, self.config)

    def weightwise_storage(self) -> dict[str, TensorStorage]:
        n_scales = 0 if self.config.bits == 16 else self.scales.numel()
        weight = quant_storage(self.shape, self.config, n_scales, id(self.codes))
        return {"weight": weight, **self.bias_storage()}


def quant_storage(shape: tuple[int, ...], config: Quant, n_scales: int, key: int) -> TensorStorage:
    """A quantized weight's storage: codes at `bits` per element (ceil to bytes) + 4 B per scale
    (+ zero points, asymmetric); fp16 at 2 B per element."""
    numel = math.prod(shape)
    if config.bits == 16:
        nbytes, fmt = 2 * numel, "fp16"
    else:
        nbytes = math.ceil(numel * config.bits / 8) + 4 * n_scales
        if not config.symmetric:
            nbytes += math.ceil(n_scales * config.bits / 8)
        group = config.granularity + (str(config.group_size) if config.granularity == "group" else "")
        fmt = f"int{config.bits}-{group}-{'sym' if config.symmetric else 'asym'}"
    # 3-bit codes are unpacked to int4 lanes for the MACs (the device profiles price no int3)
    dtype = "fp16" if config.bits == 16 else f"int{max(config.bits, 4)}"
    return TensorStorage(tuple(shape), dtype, nbytes, fmt, key)


@register_handler(Quant)
def quantize_handler(network: nn.Module, names: list[str], config: Quant, context: Any) -> None:
    """Replace every named module by a `QuantModule` (tied modules share one quantized table)."""
    for group in tied_groups(network, names):
        replace_group(network, group, lambda module, name: QuantModule.from_float(module, name, config))
