"""Run a float32 network at fp32, fp16, bf16 or int8 (dynamic) precision on this CPU."""

from __future__ import annotations

import copy
import warnings

import torch

from weightwise.errors import InputError
from weightwise.models.int8 import TiedInt8Embedding, WeightOnlyInt8Linear, bf16_matrix_unit, quantize_int8

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: int8 layers whose name starts with this quantize activations (per row); the others are weight-only.
#: Measured (benchmarks/results/runtime/README.md): on tiny.en, babble 10 dB, 25 test-other
#: utterances, per-row everywhere 42.2% WER and weight-only everywhere 42.6% (both loop on one
#: utterance), this split 35.9%, fp32 35.4%, faster-whisper int8 36.3%; the encoder's 1,500-frame
#: GEMMs are where int8 activations pay (fbgemm), the decoder's one-token calls are memory-bound.
#: On a CPU with a bf16 matrix unit (`models.int8.bf16_matrix_unit`: Intel AMX) every layer is
#: weight-only: the encoder's GEMMs then run on the int8 codes in bf16, faster than fbgemm's int8
#: and with finer activations (benchmarks/results/runtime/README.md, "AMX").
ROWWISE_INT8_PREFIX = "model.encoder."
#: weight-only int8 layers whose input channels are equalized first (`models.int8.input_equalization`):
#: the output projection, tied to the token embedding, where one embedding dimension holds most rows'
#: largest weight (row max / row rms 13.4 there, 3-6 in every other tiny.en layer). Measured on the
#: decoder's real inputs (4 test-other mini utterances, 103 token rows): the projection's relative
#: output error 1.64% -> 0.35%; the same rule on the 40 other decoder layers raised their error
#: (geometric mean 0.64% -> 0.75%), so only the projection gets it. See
#: benchmarks/results/runtime/README.md ("int8 accuracy: the tied projection").
EQUALIZED_INT8_LAYERS = ("proj_out",)
_FLOAT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: the attention implementation int8 encoders use on a CPU with a bf16 matrix unit (registered below)
BF16_ATTENTION = "weightwise_sdpa_bf16"


def _sdpa_bf16(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention with queries, keys and values in bf16 (fp32 accumulation in
    torch's CPU flash kernel), the output back in the caller's dtype: 17.5 -> 7.3 ms per whisper-tiny.en
    encoder layer on an AMX CPU, 2 threads (benchmarks/results/runtime/README.md, "AMX")."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    half = [t.bfloat16() for t in (query, key, value)]
    out, weights = sdpa_attention_forward(module, *half, attention_mask, **kwargs)
    return out.to(query.dtype), weights


def _bf16_encoder_attention(network: torch.nn.Module) -> None:
    """Run the encoder's self-attention (1,500 x 1,500 scores per head) in bf16: each encoder
    attention module gets its own copy of the config naming `BF16_ATTENTION` (the decoder keeps fp32)."""
    from transformers import AttentionInterface

    AttentionInterface.register(BF16_ATTENTION, _sdpa_bf16)
    for layer in network.model.encoder.layers:
        layer.self_attn.config = copy.copy(layer.self_attn.config)
        layer.self_attn.config._attn_implementation = BF16_ATTENTION


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


def apply_precision(network: torch.nn.Module, precision: str, int8_only: str = "") -> torch.nn.Module:
    """Return `network` (float32) cast or dynamically quantized to `precision`.

    int8 stores every `nn.Linear`'s weight as int8 with one scale per output channel. Encoder layers
    also quantize their inputs, to int8 with one scale per frame (fbgemm's fast int8 GEMM), except on
    a CPU with a bf16 matrix unit, where they multiply their codes in bf16 (`int8_weight_only_linear`)
    and their attention runs in bf16 (`BF16_ATTENTION`); decoder
    layers and the output projection keep float activations (weight-only int8 kernel); the output
    projection's input channels are equalized before its weights are quantized. See
    `weightwise.models.int8`; convolutions and positional embeddings stay float32, and the token
    embedding, tied to the projection, reads its rows from the projection's int8 codes (`TiedInt8Embedding`).

    `int8_only`: int8 only, to study one part: just the Linear layers whose name starts with it
    (e.g. "model.decoder.", "proj_out") are quantized, by the rules above; the rest stay float32.
    """
    check_precision(precision)
    if precision in _FLOAT_DTYPES:
        return network.to(_FLOAT_DTYPES[precision])
    tied = _tied_embedding(network)
    with warnings.catch_warnings():  # torch 2.13 marks torch.ao quantized tensors deprecated
        warnings.simplefilter("ignore")
        network = quantize_int8(
            network.float(),
            rowwise=lambda name: name.startswith(ROWWISE_INT8_PREFIX) and not bf16_matrix_unit(),
            equalize=lambda name: name in EQUALIZED_INT8_LAYERS,
            select=lambda name: name.startswith(int8_only),
        )
    if tied is not None and isinstance(network.get_output_embeddings(), WeightOnlyInt8Linear):
        network.set_input_embeddings(TiedInt8Embedding(network.get_output_embeddings(), tied.padding_idx))
    if bf16_matrix_unit() and hasattr(network, "model") and hasattr(network.model, "encoder"):
        _bf16_encoder_attention(network)
    return network


def _tied_embedding(network: torch.nn.Module) -> torch.nn.Embedding | None:
    """The input embedding when it shares its table with the output projection (Whisper's), else None."""
    get_in, get_out = getattr(network, "get_input_embeddings", None), getattr(network, "get_output_embeddings", None)
    if not (callable(get_in) and callable(get_out)):
        return None
    embedding, projection = get_in(), get_out()
    if not isinstance(embedding, torch.nn.Embedding) or not isinstance(projection, torch.nn.Linear):
        return None
    return embedding if embedding.weight.data_ptr() == projection.weight.data_ptr() else None
