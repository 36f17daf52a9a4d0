"""int8 Linear with per-token (per-row) activation scales, on fbgemm's dynamic int8 kernel.

torch's dynamic quantization quantizes each Linear input with one scale per call (and only 7 bits,
``reduce_range=True``), so one loud frame in noisy audio coarsens every other frame's codes.
CTranslate2 (faster-whisper int8) quantizes each row (token / frame) with its own scale. We get
the same per-row scales out of fbgemm's fast per-tensor kernel with an exact identity: a Linear
acts row by row, so ``W x = s * W (x / s)`` for each row's absolute maximum ``s``; after dividing
each row by its ``s`` every row spans [-1, 1], the per-call scale fbgemm picks is the same for all
rows, and multiplying the output rows by ``s`` restores them. Full 8-bit activations
(``reduce_range=False``) are safe here: fbgemm's AVX-512 VNNI kernels accumulate u8 x s8 products
in int32 without the AVX2 int16 saturation that 7 bits guard against (the CPUs we time are Zen 4).
Weights: int8, symmetric, one scale per output channel, as before.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable

import torch
from torch.ao.nn.quantized import dynamic as nnqd

from weightwise.errors import InputError

#: rows whose absolute maximum is below this are treated as all-zero (avoids 0/0)
_TINY = 1e-12


class RowwiseInt8Linear(nnqd.Linear):
    """Dynamic int8 Linear: int8 per-channel weights, int8 activations with one scale per row."""

    def __init__(self, in_features: int, out_features: int, bias_: bool = True, dtype: torch.dtype = torch.qint8):
        super().__init__(in_features, out_features, bias_, dtype=dtype)
        self.float_bias: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.abs().amax(-1, keepdim=True).clamp_min(_TINY)
        y = torch.ops.quantized.linear_dynamic(x / scale, self._packed_params._packed_params, reduce_range=False)
        if self.float_bias is None:
            return y * scale
        return torch.addcmul(self.float_bias, y, scale)

    def _get_name(self) -> str:
        return "RowwiseInt8Linear"

    @classmethod
    def from_float(cls, mod: torch.nn.Module, use_precomputed_fake_quant: bool = False) -> RowwiseInt8Linear:
        """int8 per-channel symmetric copy of a float `nn.Linear` (bias kept in float32)."""
        weight = mod.weight.detach().float()
        scales = (weight.abs().amax(1) / 127).clamp_min(_TINY).double()
        zeros = torch.zeros(weight.shape[0], dtype=torch.long)
        with warnings.catch_warnings():  # torch 2.13 marks quantized tensors deprecated
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
        new = cls(mod.in_features, mod.out_features, mod.bias is not None)
        new.set_weight_bias(qweight, None)
        if mod.bias is not None:
            new.float_bias = mod.bias.detach().float().clone()
        return new


#: rows per call from which one GEMM over the weight's codes beats `torch._weight_int8pack_mm` (bf16;
#: its fp32 path is naive): at <= 64 rows the kernels win, at >= 256 the GEMM
#: (benchmarks/results/runtime/kernels.json). Whisper calls with <= 5 rows or 1,500.
DEQUANT_MIN_ROWS = 128
#: how weight-only int8 layers multiply many rows: "amx-bf16" (bf16 GEMM on the codes, on a CPU with a
#: bf16 matrix unit: Intel AMX) or "fp32" (fp32 GEMM on the dequantized weight); "auto" picks by CPU.
INT8_GEMM_ENV = "WEIGHTWISE_INT8_GEMM"


@functools.cache
def bf16_matrix_unit() -> bool:
    """Whether this CPU multiplies bf16 matrices in a matrix unit (Intel AMX-BF16, Sapphire Rapids
    and later). There, at 1,500 rows, a bf16 GEMM on int8 codes takes 2.4 ms vs fp32's 6.6 for
    tiny.en's 1536 -> 384 (on par at 384 -> 1536, where the pass over the fp32 output dominates),
    and the encoder with bf16 attention 102 ms per window vs 183 on fbgemm's int8
    (benchmarks/results/runtime/README.md, "AMX"). `WEIGHTWISE_INT8_GEMM=amx-bf16|fp32` overrides
    the detection."""
    choice = os.environ.get(INT8_GEMM_ENV, "auto")
    if choice not in ("auto", "amx-bf16", "fp32"):
        raise InputError(f"environment variable {INT8_GEMM_ENV}={choice!r}: choose auto, amx-bf16 or fp32")
    if choice != "auto":
        return choice == "amx-bf16"
    return bool(torch.cpu.get_capabilities().get("amx_bf16", False))


def int8_weight_only_linear(
    x: torch.Tensor,
    codes: torch.Tensor,
    scales: torch.Tensor,
    bias: torch.Tensor | None,
    scales_bf16: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x @ (codes * scales[:, None]).T + bias`` for int8 `codes` (out, in) and `scales` (out,).

    Few rows (decoding, one token per call): torch's int8 weight-only kernel on bf16 activations.
    Many rows on a CPU with a bf16 matrix unit (`bf16_matrix_unit`): a bf16 GEMM on the codes (exact
    in bf16) with fp32 accumulation, the scales applied to its fp32 output, so the weights are
    exactly the int8 ones; the activations are rounded to bf16 (8 significant bits, vs int8's one
    step per row maximum / 127). Many rows elsewhere: one fp32 GEMM over the weight dequantized for
    this call only (freed on return). `scales_bf16`: `scales` already in bf16 (saves a copy per call).
    """
    flat = x.reshape(-1, codes.shape[1])
    if flat.shape[0] < DEQUANT_MIN_ROWS:
        bf16 = scales.bfloat16() if scales_bf16 is None else scales_bf16
        y = torch._weight_int8pack_mm(flat.bfloat16(), codes, bf16).float()
    elif bf16_matrix_unit():
        y = torch.nn.functional.linear(flat.bfloat16(), codes.bfloat16()).float()
        y = y * scales if bias is None else torch.addcmul(bias, y, scales)  # one pass over the output
        bias = None  # added in that pass
    else:
        y = torch.nn.functional.linear(flat.float(), codes.float() * scales.float()[:, None])
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], codes.shape[0])


def _codes_and_scales(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes of `weight` with one scale per row (fp32 values exact in bf16)."""
    scales = (weight.abs().amax(1) / 127).clamp_min(_TINY).bfloat16().float()
    return torch.clamp(torch.round(weight / scales[:, None]), -127, 127).to(torch.int8), scales


def input_equalization(weight: torch.Tensor) -> torch.Tensor:
    """Per input channel factors ``t`` (in,), mean 1, for ``W x = (W / t) (x * t)``: ``t_c`` =
    column c's absolute maximum, so every input column of ``W / t`` has the same range.

    Cross-layer range equalization (Nagel et al. 2019, "Data-Free Quantization Through Weight
    Equalization and Bias Correction", ICCV) with the factor moved into the float activations. Where
    a few input columns hold every row's largest weight, they set each row's int8 step; divided
    down, they stop coarsening the row's other codes. ``x * t`` is exact up to float rounding, and
    free in principle (it folds into a preceding LayerNorm). Which layers get it: see
    `weightwise.models.precision.EQUALIZED_INT8_LAYERS`.
    """
    t = weight.abs().amax(0).clamp_min(_TINY)
    return t / t.mean()


class WeightOnlyInt8Linear(torch.nn.Module):
    """int8 weights (symmetric, one fp32 scale per output channel), float activations.

    Buffers: ``codes`` int8 (out, in), ``scales`` fp32 (out,), ``bias`` fp32 (out,) or None,
    ``input_scale`` fp32 (in,) or None: the input-channel equalization ``t`` (``input_equalization``),
    the layer computing ``(codes * scales) (x * t)``.
    """

    def __init__(
        self,
        codes: torch.Tensor,
        scales: torch.Tensor,
        bias: torch.Tensor | None,
        input_scale: torch.Tensor | None = None,
    ):
        super().__init__()
        self.out_features, self.in_features = codes.shape
        self.register_buffer("codes", codes)
        self.register_buffer("scales", scales)
        self.register_buffer("bias", bias)
        self.register_buffer("input_scale", input_scale)
        self._bf16: tuple[tuple[int, int], torch.Tensor] | None = None  # (scales' identity, bf16 copy)

    @classmethod
    def from_float(cls, mod: torch.nn.Linear, equalize: bool = False) -> WeightOnlyInt8Linear:
        weight = mod.weight.detach().float()
        t = input_equalization(weight) if equalize else None
        # fp32 scales rounded to bf16 values, so the bf16 kernel applies them exactly
        codes, scales = _codes_and_scales(weight if t is None else weight / t)
        return cls(codes, scales, None if mod.bias is None else mod.bias.detach().float().clone(), t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_scale is not None:
            x = x * self.input_scale
        return int8_weight_only_linear(x, self.codes, self.scales, self.bias, self._scales_bf16())

    def _scales_bf16(self) -> torch.Tensor:
        """`scales` in bf16, as the few-row kernel takes them: copied once, again only when `scales`
        is replaced or written in place (its storage or version counter changes)."""
        key = (self.scales.data_ptr(), self.scales._version)
        if self._bf16 is None or self._bf16[0] != key:
            self._bf16 = (key, self.scales.bfloat16())
        return self._bf16[1]


class TiedInt8Embedding(torch.nn.Module):
    """A token embedding tied to an int8 output projection: looks its rows up in the projection's
    codes and scales (``codes[id] * scales[id]``, times the equalization ``t`` where the projection
    has one), so the float table is not kept beside them (whisper-tiny.en: 79.7 MB of fp32).

    The projection is held as a plain attribute, not a child module: its buffers stay where they are
    (one copy in `state_dict` and in the weight count); `weightwise.profile.storage` gives it the
    projection's storage key (one tensor, read row by row here)."""

    op = "embedding"  # for `weightwise.models.runtime` (a weight module)

    def __init__(self, projection: WeightOnlyInt8Linear, padding_idx: int | None = None):
        super().__init__()
        self.__dict__["projection"] = projection  # not registered: see the class doc
        self.num_embeddings, self.embedding_dim = projection.codes.shape
        self.padding_idx = padding_idx

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        p = self.projection
        rows = p.codes[ids].float() * p.scales[ids].unsqueeze(-1)
        return rows if p.input_scale is None else rows * p.input_scale

    def weightwise_bytes_read(self, pname: str, storage, inp, out) -> int:
        """One row (its codes and scale) per token looked up."""
        return round(out.numel() / self.embedding_dim * (self.embedding_dim + 4))


def quantize_int8(
    network: torch.nn.Module,
    rowwise: Callable[[str], bool],
    equalize: Callable[[str], bool] = lambda _name: False,
    select: Callable[[str], bool] = lambda _name: True,
) -> torch.nn.Module:
    """Replace every `nn.Linear` of `network` for which `select(its name)` (in place) by a
    `RowwiseInt8Linear` where `rowwise(its name)`, else by a `WeightOnlyInt8Linear` (input-equalized
    where `equalize(its name)`, see `input_equalization`); returns `network`."""
    for name, child in list(network.named_modules()):
        if type(child) is torch.nn.Linear and select(name):
            parent, _, attr = name.rpartition(".")
            if rowwise(name):
                new = RowwiseInt8Linear.from_float(child)
            else:
                new = WeightOnlyInt8Linear.from_float(child, equalize=equalize(name))
            setattr(network.get_submodule(parent) if parent else network, attr, new)
    return network
