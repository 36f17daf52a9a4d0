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

import warnings

import torch
from torch.ao.nn.quantized import dynamic as nnqd

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


def quantize_rowwise_int8(network: torch.nn.Module) -> torch.nn.Module:
    """Replace every `nn.Linear` in `network` (in place) by a `RowwiseInt8Linear`; returns it."""
    for name, child in list(network.named_children()):
        if type(child) is torch.nn.Linear:
            setattr(network, name, RowwiseInt8Linear.from_float(child))
        else:
            quantize_rowwise_int8(child)
    return network
