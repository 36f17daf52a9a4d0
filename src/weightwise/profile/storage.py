"""How each weight tensor is stored: dtype, element count, and bytes including quantization metadata.

Bytes are what a deployment would fetch: fp32 = 4 B, fp16/bf16 = 2 B, int8 = 1 B per element, plus
for int8 one fp32 scale per output channel (and one int8 zero point per channel only when some
zero point is nonzero; symmetric quantization stores none). A module may describe its own storage
(compressed modules do) by defining ``weightwise_storage() -> dict[str, TensorStorage]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from weightwise.models.int8 import TiedInt8Embedding, WeightOnlyInt8Linear

_FLOAT_NAMES = {
    torch.float32: "fp32",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.float64: "fp64",
    torch.int8: "int8",
    torch.qint8: "int8",
    torch.quint8: "uint8",
}


@dataclass(frozen=True)
class TensorStorage:
    """One stored weight tensor.

    Attributes:
        shape: logical shape.
        dtype: storage dtype name (fp32, fp16, bf16, int8, int4, ...).
        nbytes: bytes stored, metadata (scales, zero points, indices, factors) included.
        format: ``dense``, ``int8-per-channel``, ... (compressed formats add their own).
        key: identity of the storage; tensors that share storage (tied or shared weights) share it.
    """

    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    format: str = "dense"
    key: int = 0

    @property
    def numel(self) -> int:
        n = 1
        for dim in self.shape:
            n *= dim
        return n

    @property
    def bytes_per_element(self) -> float:
        return self.nbytes / max(self.numel, 1)


def dense_storage(tensor: torch.Tensor) -> TensorStorage:
    return TensorStorage(
        tuple(tensor.shape), dtype_name(tensor.dtype), tensor.numel() * tensor.element_size(), key=id(tensor)
    )


def _quantized_storage(weight: torch.Tensor, key: int) -> TensorStorage:
    rows = weight.shape[0]
    if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        zero_points = weight.q_per_channel_zero_points()
        meta = rows * 4 + (rows if bool((zero_points != 0).any()) else 0)  # fp32 scales (+ int8 zp)
        fmt = "int8-per-channel"
    else:
        meta = 4 + (1 if weight.q_zero_point() != 0 else 0)
        fmt = "int8-per-tensor"
    return TensorStorage(tuple(weight.shape), "int8", weight.numel() + meta, fmt, key)


def module_storage(module: torch.nn.Module) -> dict[str, TensorStorage]:
    """Storage of the weights a module owns directly (not its children's), by parameter name."""
    custom = getattr(module, "weightwise_storage", None)
    if callable(custom):
        return dict(custom())
    if isinstance(module, TiedInt8Embedding):  # --precision int8's token embedding: the projection's codes
        rows, width = module.projection.codes.shape
        fmt, key = "int8-per-channel", id(module.projection.codes)
        return {"weight": TensorStorage((rows, width), "int8", rows * (width + 4), fmt, key)}
    if isinstance(module, WeightOnlyInt8Linear):  # --precision int8's decoder layers
        rows, key = module.codes.shape[0], id(module.codes)
        out = {
            "weight": TensorStorage(
                tuple(module.codes.shape), "int8", module.codes.numel() + 4 * rows, "int8-per-channel", key
            )
        }
        if module.bias is not None:
            out["bias"] = dense_storage(module.bias)
        if module.input_scale is not None:  # the output projection's input equalization
            out["input_scale"] = dense_storage(module.input_scale)
        return out
    if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
        weight, bias = module._packed_params._weight_bias()
        bias = getattr(module, "float_bias", None) if bias is None else bias  # models.int8 keeps it apart
        out = {"weight": _quantized_storage(weight, id(module._packed_params))}
        if bias is not None:
            out["bias"] = dataclasses.replace(dense_storage(bias), key=id(module._packed_params) + 1)
        return out
    return {name: dense_storage(p) for name, p in module.named_parameters(recurse=False)}


def dtype_name(dtype: torch.dtype) -> str:
    """fp32/fp16/bf16/int8 names used in device profiles (pJ per MAC per dtype)."""
    return _FLOAT_NAMES.get(dtype, str(dtype).removeprefix("torch."))
