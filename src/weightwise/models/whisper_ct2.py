"""Map a CTranslate2 Whisper (`WhisperSpec`) onto transformers' `WhisperForConditionalGeneration`.

The name mapping, the fused QKV split, the all-zero key biases that are dropped and the tied output
projection are described (and were verified) in ../shared/docs/WHISPER_CT2.md, section 3.
The network itself is transformers' definition; this module only moves tensors.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from weightwise.errors import InputError
from weightwise.models.ct2 import CT2Model

# Whisper architecture facts the CT2 file does not store (openai/whisper model.py).
N_MELS = 80  # log-mel bins of the v1/v2 models (tiny..large-v2)
MAX_TEXT_POSITIONS = 448  # decoder context, tokens
AUDIO_POSITIONS = 1500  # encoder frames per 30 s window after the stride-2 conv


def _weight(ct2: CT2Model, name: str) -> np.ndarray:
    """Float weight; int8/int16 CT2 weights are dequantized with their per-row `_scale`."""
    value = ct2.get(name)
    if value.dtype in (np.int8, np.int16):
        base = ct2.aliases.get(name, name)  # aliases are not propagated to `_scale`
        scale = ct2.variables[base + "_scale"].astype(np.float32)
        flat = value.reshape(value.shape[0], -1).astype(np.float32) / scale.reshape(-1, 1)
        return flat.reshape(value.shape)
    return value


def _layer_count(ct2: CT2Model, side: str) -> int:
    pattern = re.compile(rf"^{side}/layer_(\d+)/")
    return 1 + max(int(m.group(1)) for n in ct2.variables if (m := pattern.match(n)))


def whisper_config(ct2: CT2Model):
    """Build a `transformers.WhisperConfig` from the shapes and scalars in the CT2 file."""
    from transformers import WhisperConfig  # lazy: transformers takes seconds to import

    if ct2.spec_name != "WhisperSpec":
        raise InputError(f"CTranslate2 spec {ct2.spec_name!r} is not a Whisper model")
    vocab, d_model = ct2.get("decoder/embeddings/weight").shape
    english_only = vocab == 51864  # .en models have one token fewer (no <|en|> row shift)
    eot = 50256 if english_only else 50257
    return WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=ct2.get("encoder/conv1/weight").shape[1],
        d_model=d_model,
        encoder_layers=_layer_count(ct2, "encoder"),
        decoder_layers=_layer_count(ct2, "decoder"),
        encoder_attention_heads=int(ct2.scalar("encoder/num_heads")),
        decoder_attention_heads=int(ct2.scalar("decoder/num_heads")),
        encoder_ffn_dim=ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=ct2.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=ct2.get("decoder/position_encodings/encodings").shape[0],
        activation_function="gelu",
        scale_embedding=bool(ct2.scalar("decoder/scale_embeddings")),
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=eot + 1,
        tie_word_embeddings=True,
    )


def _linear(out: dict, ct2: CT2Model, src: str, dst: str, bias: bool = True) -> None:
    out[f"{dst}.weight"] = _weight(ct2, f"{src}/weight")
    if bias:
        out[f"{dst}.bias"] = ct2.get(f"{src}/bias")


def _fused(out: dict, ct2: CT2Model, src: str, dsts: list[str | None], d: int) -> None:
    """Split a fused projection along its output rows; the key bias (all zeros) is dropped."""
    weight, bias = _weight(ct2, f"{src}/weight"), ct2.get(f"{src}/bias")
    for i, dst in enumerate(dsts):
        out[f"{dst}.weight"] = weight[i * d : (i + 1) * d]
        if not dst.endswith("k_proj"):
            out[f"{dst}.bias"] = bias[i * d : (i + 1) * d]


def _norm(out: dict, ct2: CT2Model, src: str, dst: str) -> None:
    out[f"{dst}.weight"] = ct2.get(f"{src}/gamma")
    out[f"{dst}.bias"] = ct2.get(f"{src}/beta")


def _layer(out: dict, ct2: CT2Model, side: str, i: int, d: int) -> None:
    src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
    qkv = [f"{dst}.self_attn.{p}_proj" for p in "qkv"]
    _fused(out, ct2, f"{src}/self_attention/linear_0", qkv, d)
    _linear(out, ct2, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
    _norm(out, ct2, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
    if side == "decoder":
        _linear(out, ct2, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
        kv = [f"{dst}.encoder_attn.k_proj", f"{dst}.encoder_attn.v_proj"]
        _fused(out, ct2, f"{src}/attention/linear_1", kv, d)
        _linear(out, ct2, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
        _norm(out, ct2, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
    _linear(out, ct2, f"{src}/ffn/linear_0", f"{dst}.fc1")
    _linear(out, ct2, f"{src}/ffn/linear_1", f"{dst}.fc2")
    _norm(out, ct2, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")  # the FFN's pre-norm


def hf_state_dict(ct2: CT2Model, config) -> dict[str, torch.Tensor]:
    """HF `WhisperForConditionalGeneration` state dict (without the tied `proj_out`)."""
    out: dict[str, np.ndarray] = {}
    d = config.d_model
    for conv in ("conv1", "conv2"):
        _linear(out, ct2, f"encoder/{conv}", f"model.encoder.{conv}")
    out["model.encoder.embed_positions.weight"] = ct2.get("encoder/position_encodings/encodings")
    out["model.decoder.embed_positions.weight"] = ct2.get("decoder/position_encodings/encodings")
    out["model.decoder.embed_tokens.weight"] = _weight(ct2, "decoder/embeddings/weight")
    _norm(out, ct2, "encoder/layer_norm", "model.encoder.layer_norm")
    _norm(out, ct2, "decoder/layer_norm", "model.decoder.layer_norm")
    for side, n_layers in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        for i in range(n_layers):
            _layer(out, ct2, side, i, d)
    return {k: torch.from_numpy(np.array(v, order="C")) for k, v in out.items()}  # copy: file views are read-only
