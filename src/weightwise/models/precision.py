"""Run a float32 network at fp32, fp16, bf16 or int8 (dynamic) precision on this CPU."""

from __future__ import annotations

import warnings

import torch

from weightwise.errors import InputError

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

    int8 is torch's dynamic quantization of every `nn.Linear` (weights int8 per output channel,
    activations quantized per batch at run time); convolutions and embeddings stay float32.
    """
    check_precision(precision)
    if precision in _FLOAT_DTYPES:
        return network.to(_FLOAT_DTYPES[precision])
    # torch 2.13 marks torch.ao.quantization (and quantized tensors) deprecated and points to torchao's
    # `quantize_(model, Int8DynamicActivationInt8WeightConfig())`. torch itself has no replacement, and
    # torchao's kernels quantize activations differently (per token, not fbgemm's per-tensor scale per
    # call), so its int8 results would differ from every committed int8 number. Kept until torch drops
    # it; the import sits here so its deprecation warning is silenced with the call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(network.float(), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
