"""Whisper's decoder one call at a time, with key/value caches we own.

transformers' `WhisperDecoder.forward` rebuilds its cache bookkeeping, causal mask and output records
at every call, and with beams it projects the encoder output to keys/values once per beam. Measured
on whisper-tiny.en `--precision int8`, 2 threads, alternating utterance by utterance: transcribing
20 test-other utterances takes 0.93x transformers' time greedy, 0.48x with 5 beams
(benchmarks/runtime_decoder_steps.py; benchmarks/results/runtime/README.md, "AMX").

`DecoderSteps` runs the same modules in the same order and calls every Linear, LayerNorm and
embedding as the module the network holds, so a plan's compressed modules, the forward hooks of
`weightwise.models.runtime` (cached key/value and activation precision) and the profiler's trace
all see the calls they saw before. What it does differently:

- the cross-attention keys/values are computed once per window, from one copy of the encoder output,
  and shared by all beams (cross-attention has no mask, so the beams fold into the query length);
- the self-attention keys/values go into one buffer per layer that grows by doubling, not a new
  tensor per call;
- attention is `scaled_dot_product_attention` with transformers' Whisper conventions (the query
  scaled by head_dim^-0.5 before the product, causal only within a call that starts the sequence).
"""

from __future__ import annotations

import torch
from torch.nn.functional import scaled_dot_product_attention

#: positions the self-attention buffer starts with (it doubles up to the decoder's positions)
_FIRST_CAPACITY = 32
_ATTENTION_PARTS = ("q_proj", "k_proj", "v_proj", "out_proj")
_LAYER_PARTS = ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm", "fc1", "fc2")


def supports(decoder: torch.nn.Module) -> bool:
    """Whether `decoder` has transformers' Whisper decoder layout (a plan may replace Linear layers,
    not the attention blocks) and is in eval mode; otherwise decode with transformers' forward."""
    if decoder.training or not hasattr(decoder, "layers") or not hasattr(decoder, "embed_positions"):
        return False
    for layer in decoder.layers:
        if not all(hasattr(layer, part) for part in (*_LAYER_PARTS, "activation_fn", "self_attn", "encoder_attn")):
            return False
        for attention in (layer.self_attn, layer.encoder_attn):
            if not all(hasattr(attention, part) for part in (*_ATTENTION_PARTS, "scaling", "num_heads", "head_dim")):
                return False
    return True


class DecoderSteps:
    """The decoder of one window: `step(new_tokens)` -> last hidden states; `reorder(beams)`.

    Args:
        decoder: transformers' `WhisperDecoder` (`network.model.decoder`).
        encoder_out: the window's encoder output, (1, positions, d_model).
        batch: sequences decoded together (beams) against that one window.
    """

    def __init__(self, decoder: torch.nn.Module, encoder_out: torch.Tensor, batch: int = 1):
        self.decoder, self.batch, self.length = decoder, batch, 0
        self.cross = [
            (_heads(layer.encoder_attn, layer.encoder_attn.k_proj(encoder_out)),
             _heads(layer.encoder_attn, layer.encoder_attn.v_proj(encoder_out)))
            for layer in decoder.layers
        ]  # fmt: skip
        self.keys: list[torch.Tensor] = []  # per layer (batch, heads, capacity, head_dim)
        self.values: list[torch.Tensor] = []

    def step(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states after the final LayerNorm for `new_tokens` (batch, n): (batch, n, d_model)."""
        decoder, start, n = self.decoder, self.length, new_tokens.shape[1]
        positions = decoder.embed_positions(new_tokens, past_key_values_length=start)
        hidden = decoder.embed_tokens(new_tokens)
        hidden = hidden + positions.to(hidden.dtype)
        self._grow(start + n, hidden)
        mask = _causal_mask(start, n, hidden.device) if start and n > 1 else None
        for index, layer in enumerate(decoder.layers):
            hidden = hidden + self._self_attention(index, layer, layer.self_attn_layer_norm(hidden), mask)
            hidden = hidden + self._cross_attention(index, layer, layer.encoder_attn_layer_norm(hidden))
            hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(hidden))))
        self.length = start + n
        return decoder.layer_norm(hidden)

    def reorder(self, sources: torch.Tensor) -> None:
        """Keep the sequences `sources` (indices into the batch), in that order."""
        for cache in (self.keys, self.values):
            for buffer in cache:
                buffer[:, :, : self.length] = buffer[sources, :, : self.length]

    def _self_attention(self, index: int, layer, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attention, start, n = layer.self_attn, self.length, x.shape[1]
        query = _heads(attention, attention.q_proj(x) * attention.scaling)
        keys, values = self.keys[index], self.values[index]
        keys[:, :, start : start + n] = _heads(attention, attention.k_proj(x))
        values[:, :, start : start + n] = _heads(attention, attention.v_proj(x))
        out = scaled_dot_product_attention(
            query,
            keys[:, :, : start + n],
            values[:, :, : start + n],
            attn_mask=mask,
            is_causal=mask is None and n > 1,
            scale=1.0,
        )
        return attention.out_proj(_merge(out))

    def _cross_attention(self, index: int, layer, x: torch.Tensor) -> torch.Tensor:
        attention, (keys, values) = layer.encoder_attn, self.cross[index]
        batch, n = x.shape[:2]
        query = _heads(attention, attention.q_proj(x) * attention.scaling)  # (batch, heads, n, head_dim)
        if batch > 1:  # one copy of the window's keys/values: the beams' queries side by side
            query = query.transpose(0, 1).reshape(1, attention.num_heads, batch * n, attention.head_dim)
        out = scaled_dot_product_attention(query, keys, values, scale=1.0)
        if batch > 1:
            out = out.reshape(attention.num_heads, batch, n, attention.head_dim).transpose(0, 1)
        return attention.out_proj(_merge(out))

    def _grow(self, needed: int, like: torch.Tensor) -> None:
        """Make every layer's self-attention buffer hold `needed` positions (doubling)."""
        capacity = self.keys[0].shape[2] if self.keys else 0
        if needed <= capacity:
            return
        limit = self.decoder.embed_positions.weight.shape[0]
        new_capacity = min(max(_FIRST_CAPACITY, 2 * capacity, needed), max(limit, needed))
        for cache in (self.keys, self.values):
            for index in range(len(self.decoder.layers)):
                attention = self.decoder.layers[index].self_attn
                shape = (self.batch, attention.num_heads, new_capacity, attention.head_dim)
                buffer = like.new_zeros(shape)
                if index < len(cache):
                    buffer[:, :, :capacity] = cache[index]
                    cache[index] = buffer
                else:
                    cache.append(buffer)


def _heads(attention, x: torch.Tensor) -> torch.Tensor:
    """(batch, n, d_model) -> (batch, heads, n, head_dim)."""
    return x.reshape(x.shape[0], x.shape[1], attention.num_heads, attention.head_dim).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(batch, heads, n, head_dim) -> (batch, n, d_model)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)


def _causal_mask(start: int, n: int, device: torch.device) -> torch.Tensor:
    """Boolean (n, start + n): new token i sees the cached positions and new tokens up to itself."""
    return torch.ones(n, start + n, dtype=torch.bool, device=device).tril(diagonal=start)


__all__ = ["DecoderSteps", "supports"]
