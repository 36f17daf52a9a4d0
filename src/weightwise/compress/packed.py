"""Run plan-quantized Linear / Embedding layers on packed low-bit weights and torch's CPU kernels.

`QuantModule` keeps one code per byte and a float copy of its weight (simulation, for planning and
saving). `pack_(network)` replaces each `QuantModule` that a kernel can run by a `PackedQuantModule`
that holds only the packed codes and scales, so the weights in RAM are about their stored bytes:

- int4 (any bits <= 4) per group of 32/64/128/256 inputs, symmetric or not: torch's CPU
  "tinygemm" layout (`torch._convert_weight_to_int4pack_for_cpu`, two codes per byte) with bf16
  (scale, zero) pairs per group, run by `torch._weight_int4pack_mm_for_cpu`;
- int8 symmetric, per channel (or per tensor): int8 codes with one bf16 scale per output row, run
  by `torch._weight_int8pack_mm`.

Why these kernels (measured on the Zen 4 EPYC we time on, 2 threads; see
benchmarks/results/runtime/README.md): they ship inside torch 2.13 (no new dependency, no compile
step), they keep activations in float (the plan's simulated numerics: weight-only quantization),
and their bf16 paths are fast for the decoder's few rows per call. Their fp32 paths are naive
(10-300x slower than an fp32 GEMM), so activations go in as bf16. For many rows (the encoder's
1,500 frames per window) one GEMM over the weight dequantized for this call only is faster; the
float copy is freed when the call returns (transient, not resident).
Embeddings (including a table tied to the output projection) gather and unpack only the rows they
look up, from the same packed tensor the projection's kernel reads.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from weightwise.compress.modules import CompressedModule, replace_module
from weightwise.compress.quantize import QuantModule
from weightwise.models.int8 import DEQUANT_MIN_ROWS, int8_weight_only_linear
from weightwise.profile.storage import TensorStorage

#: the tinygemm layout packs rows in blocks of 64 (two 32-row halves share each byte)
_BLOCK_ROWS = 64
_INT4_GROUPS = (32, 64, 128, 256)


def packable(module: nn.Module) -> bool:
    """Whether `pack_` runs `module` on a packed kernel (else it stays simulated)."""
    if not isinstance(module, QuantModule) or module.op not in ("linear", "embedding"):
        return False
    config = module.config
    if config.bits <= 4:
        return config.granularity == "group" and config.group_size in _INT4_GROUPS
    return config.bits == 8 and config.symmetric and config.granularity in ("channel", "tensor")


class PackedQuantModule(CompressedModule):
    """A `QuantModule`'s Linear or Embedding on packed codes (see the module docstring).

    Buffers: ``packed`` (int4: uint8 (rows padded to 64, cols/2) in tinygemm layout; int8: int8
    (rows, cols)), ``scales`` (int4: bf16 (groups, padded rows, 2) scale and zero; int8: bf16
    (rows,)), ``bias`` fp32 or None. Tied modules share ``packed`` and ``scales``.
    """

    kind = "packed-quant"

    def __init__(self, source: QuantModule, packed: torch.Tensor, scales: torch.Tensor):
        super().__init__()
        self.op, self.rows, self.cols, self.tie = source.op, source.rows, source.cols, source.tie
        self.bits, self.group_size = source.config.bits, source.config.group_size
        self.register_buffer("packed", packed)
        self.register_buffer("scales", scales)
        bias = source.dense_bias()
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        storage = source.weightwise_storage()["weight"]
        self._storage = TensorStorage(storage.shape, storage.dtype, storage.nbytes, storage.format, id(packed))
        self.padding_idx = source.op_args.get("padding_idx")
        if self.op == "linear":
            self.out_features, self.in_features = self.rows, self.cols
        else:
            self.num_embeddings, self.embedding_dim = self.rows, self.cols

    def spec(self) -> dict[str, Any]:
        raise TypeError("a packed model runs only; save the model before pack_ (save_compressed)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op == "embedding":
            return self.rows_of(x.reshape(-1)).reshape(*x.shape, self.cols)
        if self.bits > 4:
            return int8_weight_only_linear(x, self.packed, self.scales, self.bias)
        flat = x.reshape(-1, self.cols)
        if flat.shape[0] >= DEQUANT_MIN_ROWS:  # the encoder's 1,500 frames per window (see int8)
            y = F.linear(flat.float(), self.dense_weight())
        else:  # the decoder's few tokens per call
            y = torch._weight_int4pack_mm_for_cpu(flat.bfloat16(), self.packed, self.group_size, self.scales)
        y = y[:, : self.rows].float()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.rows)

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
        """fp32 rows `index` (int8: all rows for None) of the weight, unpacked from the packed codes."""
        if self.bits > 4:
            codes = self.packed if index is None else self.packed[index]
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
        return out.numel() * self.cols if self.op == "linear" else 0

    def weightwise_bytes_read(self, name: str, storage: TensorStorage, inp: Any, out: torch.Tensor) -> int:
        if name == "weight" and self.op == "embedding":
            return round(out.numel() * storage.bytes_per_element)
        return storage.nbytes


def pack_int4(module: QuantModule) -> tuple[torch.Tensor, torch.Tensor]:
    """(tinygemm uint8 codes, bf16 (groups, padded rows, 2) scale and zero) of a <= 4-bit module."""
    codes, scales = module.codes.detach(), module.scales.detach().float()  # scales: (rows, groups)
    if module.zero_points is None:  # symmetric: w = c * s = (c + 8 - 8) * s, zero 0
        unsigned, zeros = codes.int() + 8, torch.zeros_like(scales)
    else:  # w = (c - z) * s = (c - 8) * s + (8 - z) * s
        unsigned, zeros = codes.int(), (8 - module.zero_points.float()) * scales
    padded = -(-module.rows // _BLOCK_ROWS) * _BLOCK_ROWS
    unsigned = F.pad(unsigned, (0, 0, 0, padded - module.rows), value=8)
    scale_zero = F.pad(torch.stack((scales, zeros), -1), (0, 0, 0, 0, 0, padded - module.rows))
    packed = torch._convert_weight_to_int4pack_for_cpu(unsigned.contiguous(), 1)
    return packed, scale_zero.transpose(0, 1).contiguous().bfloat16()


def pack_int8(module: QuantModule) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 codes, bf16 scale per row) of a symmetric int8 per-channel / per-tensor module."""
    return module.codes.detach().clone(), module.scales.detach().float().reshape(-1).expand(module.rows).bfloat16()


def pack_(network: nn.Module) -> int:
    """Replace every packable `QuantModule` in `network` (in place); tied modules share one packed
    table. Returns how many modules were replaced."""
    shared: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    count = 0
    for name, module in list(network.named_modules()):
        if not packable(module):
            continue
        key = id(module.codes)
        if key not in shared:
            shared[key] = pack_int4(module) if module.config.bits <= 4 else pack_int8(module)
        replace_module(network, name, PackedQuantModule(module, *shared[key]))
        count += 1
    return count
