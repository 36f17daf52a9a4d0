"""Building blocks shared by both encoders: feed-forward (full or low-rank), chunk attention and
the causal convolution module, each with the streaming cache it needs."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LowRankLinear(nn.Module):
    """W = U V as two Linear layers: `down` (V, in -> rank) then `up` (U, rank -> out).

    Either factor may be a module shared with other layers (paper 4's shared low-rank factors).
    """

    def __init__(self, down: nn.Linear, up: nn.Linear):
        super().__init__()
        self.down, self.up = down, up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


def linear(d_in: int, d_out: int, rank: int, shared: dict[str, nn.Module], key: str, share: str) -> nn.Module:
    """A full Linear, or a low-rank one whose `share` factor ("in" = V, "out" = U) is the one
    instance in `shared[key]` for every layer."""
    if rank <= 0 or rank * (d_in + d_out) >= d_in * d_out:
        return nn.Linear(d_in, d_out)
    make_down = lambda: nn.Linear(d_in, rank, bias=False)  # noqa: E731
    make_up = lambda: nn.Linear(rank, d_out)  # noqa: E731
    down = shared.setdefault(f"{key}.down", make_down()) if share == "in" else make_down()
    up = shared.setdefault(f"{key}.up", make_up()) if share == "out" else make_up()
    return LowRankLinear(down, up)


class FeedForward(nn.Module):
    def __init__(self, d_model: int, ffn_dim: int, rank: int, shared: dict, key: str, share: str):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.fc1 = linear(d_model, ffn_dim, rank, shared, f"{key}.fc1", share)
        self.fc2 = linear(ffn_dim, d_model, rank, shared, f"{key}.fc2", share)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(self.norm(x))))


class ChunkAttention(nn.Module):
    """Multi-head self-attention; offline under a chunk mask, streaming with a key/value cache."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch, frames, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        return tuple(t.reshape(batch, frames, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        batch, _, frames, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(batch, frames, -1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache=None, keep: int | None = None):
        """Offline (`keep` None): attend under `mask` (batch or 1, 1, frames, frames; True = may
        attend); returns the output. Streaming: one chunk attends to itself and `cache` (keys and
        values of earlier frames); returns the output and the new cache (the last `keep` frames).
        Both go through `__call__`, so the profiler's hooks see every call."""
        q, k, v = self._heads(x)
        if keep is None:
            return self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v)
        kept = torch.stack([k, v])[:, :, :, max(k.shape[2] - keep, 0) :] if keep else None
        return self._merge(y), kept


class CausalConv(nn.Module):
    """Conformer convolution module with a causal depthwise convolution (LayerNorm, not BatchNorm,
    so that a chunk's output never depends on other utterances or on later frames)."""

    def __init__(self, d_model: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Linear(d_model, 2 * d_model)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, groups=d_model)
        self.depthwise_norm = nn.LayerNorm(d_model)
        self.pointwise_out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (batch, frames, d); cache (batch, d, kernel - 1) of earlier inputs (zeros at the start)."""
        h = F.glu(self.pointwise_in(self.norm(x)), dim=-1).transpose(1, 2)
        if cache is None:
            cache = h.new_zeros(h.shape[0], h.shape[1], self.kernel - 1)
        h = torch.cat([cache, h], dim=2)
        new_cache = h[:, :, h.shape[2] - (self.kernel - 1) :]
        h = self.depthwise(h).transpose(1, 2)
        return self.pointwise_out(F.silu(self.depthwise_norm(h))), new_cache
