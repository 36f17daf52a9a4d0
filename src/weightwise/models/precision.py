"""Run a float32 network at fp32, fp16, bf16 or int8 (dynamic) precision on this CPU."""

from __future__ import annotations

import warnings

import torch

from weightwise.errors import InputError
from weightwise.models.int8 import quantize_int8

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
_FLOAT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(precision: str) -> None:
    """Raise `InputError` (one line) when this CPU/torch build cannot run `precision`."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if precision == "int8":
        engines = set(torch.backends.quantized.supported_engines) - {"none"}
        if not engines & {"x86", "fbgemm", "qnnpack", "onednn"}:
            raise InputError("precision int8 is not supported here: torch has no quantized engine")
        return
    dtype = _FLOAT_DTYPES[precision]
    try:  # the ops Whisper needs: a matmul, a conv and layer norm in this dtype
        x = torch.ones(1, 4, 8, dtype=dtype)
        torch.nn.functional.conv1d(x, torch.ones(4, 4, 3, dtype=dtype), padding=1)
        torch.nn.functional.layer_norm(x @ torch.ones(8, 8, dtype=dtype), (8,))
    except (RuntimeError, NotImplementedError) as err:
        reason = str(err).splitlines()[0]
        raise InputError(f"precision {precision} is not supported on this CPU ({reason})") from None


def apply_precision(network: torch.nn.Module, precision: str) -> torch.nn.Module:
    """Return `network` (float32) cast or dynamically quantized to `precision`.

    int8 quantizes every `nn.Linear` dynamically: weights int8 per output channel, activations int8
    with one scale per row (token / frame) at run time, see `weightwise.models.int8`; convolutions
    and embeddings stay float32.
    """
    check_precision(precision)
    if precision in _FLOAT_DTYPES:
        return network.to(_FLOAT_DTYPES[precision])
    with warnings.catch_warnings():  # torch 2.13 marks torch.ao quantized tensors deprecated
        warnings.simplefilter("ignore")
        return quantize_int8(network.float(), rowwise=lambda name: True)
