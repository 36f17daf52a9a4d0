"""Run plan-quantized Linear / Embedding / Conv1d layers on packed weights and torch's CPU kernels.

`QuantModule` keeps one code per byte and a float copy of its weight (simulation, for planning and
saving). A `PackedQuantModule` holds only the packed codes and scales, so the weights in RAM are
about their stored bytes:

- int4 (any bits <= 4) per group of 32/64/128/256 inputs, symmetric or not: torch's CPU
  "tinygemm" layout (`torch._convert_weight_to_int4pack_for_cpu`, two codes per byte) with bf16
  (scale, zero) pairs per group, run by `torch._weight_int4pack_mm_for_cpu`;
- int8 symmetric, per channel (or per tensor): int8 codes with one bf16 scale per output row, run
  by `torch._weight_int8pack_mm`;
- fp16 (bits 16): the fp16 table, run by torch's fp16 GEMM (fp32 accumulation) on fp16 inputs.

Built three ways, all ending in the same module: `pack_(network)` replaces the simulated modules of
a compressed network; `compress_(..., pack=True)` quantizes each layer straight into packed form
(`quantize_packed`, no simulated module and its float copy in between: a plan's model never holds
more than the float model it starts from); `load_compressed(..., pack=True)` packs the saved codes.
`pack_` also replaces a screened projection and its tied embedding (`compress.packed_screen`).

Why these kernels (measured on the Zen 4 EPYC we time on; benchmarks/results/runtime/README.md):
they ship inside torch 2.13 (no new dependency, no compile step), they keep activations in float
(the plan's simulated numerics: weight-only quantization), and their bf16 paths are fast for the
decoder's few rows per call. Their fp32 paths are naive (10-300x slower than an fp32 GEMM), so
activations go in as bf16. For many rows (the encoder's 1,500 frames per window) one fp32 GEMM over
the weight dequantized for this call only is faster; that copy is freed when the call returns
(transient, not resident). Convolutions (two per encoder window) always run that way.
Embeddings (including a table tied to the output projection) gather and unpack only the rows they
look up, from the same packed tensor the projection's kernel reads.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from weightwise.compress.configs import Quant
from weightwise.compress.modules import CompressedModule, replace_module
from weightwise.compress.quantize import QuantModule, quant_storage, quantize_weight
from weightwise.compress.weightop import flat_weight, op_of, replace_group, set_op_attributes, tied_groups
from weightwise.evaluate.runtime import release_freed_memory
from weightwise.models.int8 import DEQUANT_MIN_ROWS, int8_weight_only_linear
from weightwise.profile.storage import TensorStorage

#: the tinygemm layout packs rows in blocks of 64 (two 32-row halves share each byte)
_BLOCK_ROWS = 64
_INT4_GROUPS = (32, 64, 128, 256)
#: rows quantized and packed at a time (a multiple of 64): bounds the float and int32 temporaries
#: of the 51,864-row projection to a few MiB instead of several copies of the whole table
_CHUNK_ROWS = 4096


def packable_config(op: str, config: Quant, cols: int) -> bool:
    """Whether a layer of `op` with `cols` inputs quantized by `config` runs packed."""
    if op not in ("linear", "embedding", "conv1d"):
        return False
    if config.bits == 16:
        return True
    if config.bits <= 4:
        grouped = config.granularity == "group" and config.group_size in _INT4_GROUPS
        return op != "conv1d" and grouped and cols % config.group_size == 0
    return config.bits == 8 and config.symmetric and config.granularity in ("channel", "tensor")


def packable(module: nn.Module) -> bool:
    """Whether `pack_` runs `module` on a packed kernel (else it stays simulated)."""
    return isinstance(module, QuantModule) and packable_config(module.op, module.config, module.cols)


class PackedQuantModule(CompressedModule):
    """A quantized Linear, Embedding or Conv1d on packed codes (see the module docstring).

    Buffers: ``packed`` (int4: uint8 (rows padded to 64, cols/2) in tinygemm layout; int8: int8
    (rows, cols); fp16: fp16 (rows, cols)), ``scales`` (int4: bf16 (groups, padded rows, 2) scale
    and zero; int8: bf16 (rows,); fp16: None), ``bias`` fp32 or None. Tied modules share ``packed``
    and ``scales``.
    """

    kind = "packed-quant"

    def __init__(self, op, shape, op_args, tie, config: Quant, packed, scales, bias, storage: TensorStorage):
        super().__init__()
        self.op, self.shape, self.op_args, self.tie, self.config = op, tuple(shape), dict(op_args), tie, config
        set_op_attributes(self)
        self.bits, self.group_size = config.bits, config.group_size
        self.register_buffer("packed", packed)
        self.register_buffer("scales", scales)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self._storage = TensorStorage(storage.shape, storage.dtype, storage.nbytes, storage.format, id(packed))

    @classmethod
    def from_state(cls, op, shape, op_args, tie, config: Quant, state: tuple, bias) -> PackedQuantModule:
        """Pack (codes, scales, zero points) as `QuantModule` holds them (fp16: (table,))."""
        rows, cols = shape[0], math.prod(shape[1:])
        codes, scales, zeros = (*state, None, None)[:3]
        if config.bits <= 4:
            chunks = (
                (
                    codes[i : i + _CHUNK_ROWS],
                    scales[i : i + _CHUNK_ROWS],
                    None if zeros is None else zeros[i : i + _CHUNK_ROWS],
                )
                for i in range(0, rows, _CHUNK_ROWS)
            )
            return cls.from_int4_chunks(op, shape, op_args, tie, config, chunks, bias)
        storage = quant_storage(tuple(shape), config, 0 if scales is None else scales.numel(), 0)
        if config.bits == 16:
            packed, packed_scales = codes.detach().half().reshape(rows, cols), None
        else:
            packed = codes.detach().reshape(rows, cols)
            packed_scales = scales.detach().float().reshape(-1).expand(rows).bfloat16().contiguous()
        return cls(op, shape, op_args, tie, config, packed, packed_scales, bias, storage)

    @classmethod
    def from_int4_chunks(cls, op, shape, op_args, tie, config: Quant, chunks, bias) -> PackedQuantModule:
        """Pack <= 4-bit (codes, scales, zero points) given in chunks of `_CHUNK_ROWS` rows."""
        packed_parts, scale_parts = [], []
        for codes, scales, zeros in chunks:
            packed, scale_zero = _pack_int4(codes.detach(), scales.detach(), zeros)
            packed_parts.append(packed)
            scale_parts.append(scale_zero)
        n_scales = shape[0] * (math.prod(shape[1:]) // config.group_size)
        storage = quant_storage(tuple(shape), config, n_scales, 0)
        packed, scale_zero = torch.cat(packed_parts), torch.cat(scale_parts, dim=1)
        return cls(op, shape, op_args, tie, config, packed, scale_zero, bias, storage)

    @classmethod
    def from_float(cls, module: nn.Module, name: str, config: Quant) -> PackedQuantModule:
        """Quantize `module`'s weight straight into packed form, `_CHUNK_ROWS` rows at a time."""
        op, op_args = op_of(module, name)
        weight, shape, bias = flat_weight(module), list(module.weight.shape), getattr(module, "bias", None)
        chunks = (quantize_weight(weight[i : i + _CHUNK_ROWS], config) for i in range(0, len(weight), _CHUNK_ROWS))
        if config.bits <= 4:
            return cls.from_int4_chunks(op, shape, op_args, None, config, chunks, bias)
        if config.bits == 16:
            state = (weight.half(),)
        elif config.granularity == "tensor":
            state = quantize_weight(weight, config)
        else:
            state = tuple(None if p[0] is None else torch.cat(p) for p in zip(*chunks, strict=True))
        return cls.from_state(op, shape, op_args, None, config, state, bias)

    @classmethod
    def from_quant(cls, source: QuantModule) -> PackedQuantModule:
        state = (source.codes, getattr(source, "scales", None), getattr(source, "zero_points", None))
        return cls.from_state(source.op, source.shape, source.op_args, source.tie, source.config, state, source.bias)

    def tied(self, op: str, op_args: dict, bias: torch.Tensor | None, owner: str) -> PackedQuantModule:
        """A module of `op` tied to this one's weight (sharing its packed tensors), with its own bias."""
        return PackedQuantModule(
            op, self.shape, op_args, owner, self.config, self.packed, self.scales, bias, self._storage
        )

    def spec(self) -> dict[str, Any]:
        raise TypeError("a packed model runs only; save the simulated model (load it with pack=False)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op == "embedding":
            return self.rows_of(x.reshape(-1)).reshape(*x.shape, self.cols)
        if self.op == "conv1d":
            return F.conv1d(x, self.dense_weight().reshape(self.shape), self.bias, **self.op_args)
        if self.bits == 8:
            return int8_weight_only_linear(x, self.packed, self.scales, self.bias)
        flat = x.reshape(-1, self.cols)
        if flat.shape[0] >= DEQUANT_MIN_ROWS:  # the encoder's 1,500 frames per window (see int8)
            y = F.linear(flat.float(), self.dense_weight())
        elif self.bits == 16:  # the decoder's few tokens per call
            y = F.linear(flat.half(), self.packed)
        else:
            y = torch._weight_int4pack_mm_for_cpu(flat.bfloat16(), self.packed, self.group_size, self.scales)
        y = y[:, : self.rows].float()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.rows)

    @property
    def weight(self) -> torch.Tensor:
        """The fp32 weight in the replaced module's shape, unpacked on each access (not kept): for
        code that reads `.weight` (the encoder's positional table, `WhisperASR.dtype`)."""
        return self.dense_weight().reshape(self.shape)

    def dense_weight(self) -> torch.Tensor:
        """The fp32 (rows, cols) weight the codes stand for (a new tensor, not kept)."""
        if self.bits > 4:
            return self.rows_of(None)
        blocks = self.packed.view(-1, self.cols, _BLOCK_ROWS // 2)  # (row block, col, row in half)
        halves = torch.stack((blocks & 15, blocks >> 4), 1)  # (row block, half, col, row in half)
        codes = halves.transpose(2, 3).reshape(-1, self.cols)[: self.rows].float()
        scale_zero = self.scales[:, : self.rows].float().transpose(0, 1)  # (rows, groups, 2)
        scale, zero = scale_zero[..., :1], scale_zero[..., 1:]
        weight = torch.addcmul(zero - 8 * scale, codes.view(self.rows, -1, self.group_size), scale)
        return weight.reshape(self.rows, self.cols)

    def rows_of(self, index: torch.Tensor | None) -> torch.Tensor:
        """fp32 rows `index` (int8, fp16: all rows for None) of the weight, unpacked from the codes."""
        if self.bits > 4:
            codes = self.packed if index is None else self.packed[index]
            if self.bits == 16:
                return codes.float()
            scales = self.scales if index is None else self.scales[index]
            return codes.float() * scales.float()[:, None]
        blocks = self.packed.view(-1, self.cols, _BLOCK_ROWS // 2)  # (row block, col, row in half)
        within = index % _BLOCK_ROWS
        byte = blocks[index // _BLOCK_ROWS, :, within % (_BLOCK_ROWS // 2)]  # (n, cols)
        shift = (within // (_BLOCK_ROWS // 2) * 4).to(torch.uint8)[:, None]
        codes = ((byte >> shift) & 15).float().view(len(index), -1, self.group_size)
        scale_zero = self.scales[:, index].float().transpose(0, 1)  # (n, groups, 2)
        return ((codes - 8) * scale_zero[..., :1] + scale_zero[..., 1:]).reshape(len(index), self.cols)

    def weightwise_storage(self) -> dict[str, TensorStorage]:
        out = {"weight": self._storage}
        if self.bias is not None:
            out["bias"] = TensorStorage((self.rows,), "fp32", 4 * self.rows, key=id(self.bias))
        return out

    def weightwise_macs(self, inp: torch.Tensor | None, out: torch.Tensor) -> int:
        return 0 if self.op == "embedding" else out.numel() * self.cols

    def weightwise_bytes_read(self, name: str, storage: TensorStorage, inp: Any, out: torch.Tensor) -> int:
        if name == "weight" and self.op == "embedding":
            return round(out.numel() * storage.bytes_per_element)
        return storage.nbytes


def _pack_int4(codes: torch.Tensor, scales: torch.Tensor, zero_points: torch.Tensor | None):
    """(tinygemm uint8 codes, bf16 (groups, padded rows, 2) scale and zero) of <= 4-bit codes
    (rows, cols) with fp32 scales (rows, groups); rows are padded to a multiple of 64."""
    rows, scales = codes.shape[0], scales.float()
    if zero_points is None:  # symmetric: w = c * s = (c + 8 - 8) * s, zero 0
        unsigned, zeros = codes.int() + 8, torch.zeros_like(scales)
    else:  # w = (c - z) * s = (c - 8) * s + (8 - z) * s
        unsigned, zeros = codes.int(), (8 - zero_points.float()) * scales
    padded = -(-rows // _BLOCK_ROWS) * _BLOCK_ROWS
    unsigned = F.pad(unsigned, (0, 0, 0, padded - rows), value=8)
    scale_zero = F.pad(torch.stack((scales, zeros), -1), (0, 0, 0, 0, 0, padded - rows))
    packed = torch._convert_weight_to_int4pack_for_cpu(unsigned.contiguous(), 1)
    return packed, scale_zero.transpose(0, 1).contiguous().bfloat16()


def pack_(network: nn.Module) -> int:
    """Replace every packable `QuantModule` and every `ScreenModule` (`compress.packed_screen`) in
    `network` (in place); tied modules share one packed table. Returns how many were replaced."""
    from weightwise.compress.packed_screen import pack_screen
    from weightwise.compress.screen import ScreenModule

    shared: dict[int, PackedQuantModule] = {}
    screens: dict = {}
    count = 0
    for name, module in list(network.named_modules()):
        if isinstance(module, ScreenModule):
            replace_module(network, name, pack_screen(module, screens))
            count += 1
            continue
        if not packable(module):
            continue
        owner = shared.get(id(module.codes))
        if owner is None:
            new = shared[id(module.codes)] = PackedQuantModule.from_quant(module)
        else:
            new = owner.tied(module.op, module.op_args, module.bias, module.tie or "")
        replace_module(network, name, new)
        count += 1
    return count


def quantize_packed(network: nn.Module, names: list[str], config: Quant, context: Any = None) -> None:
    """The `Quant` handler for `compress_(..., pack=True)`: each named module (tied ones once) is
    quantized straight into a `PackedQuantModule`; layers no kernel runs become `QuantModule`s.
    The heap is trimmed after each layer, so its float weight and temporaries leave the RSS."""
    for group in tied_groups(network, names):
        _quantize_group(network, group, config)
        release_freed_memory()


def _quantize_group(network: nn.Module, group: list[str], config: Quant) -> None:
    modules = [network.get_submodule(name) for name in group]
    ops = [op_of(module, name) for module, name in zip(modules, group, strict=True)]
    cols = flat_weight(modules[0]).shape[1]
    if not all(packable_config(op, config, cols) for op, _args in ops):
        replace_group(network, group, lambda module, name: QuantModule.from_float(module, name, config))
        return
    owner = PackedQuantModule.from_float(modules[0], group[0], config)
    replace_module(network, group[0], owner)
    for module, name, (op, op_args) in zip(modules[1:], group[1:], ops[1:], strict=True):
        replace_module(network, name, owner.tied(op, op_args, getattr(module, "bias", None), group[0]))
