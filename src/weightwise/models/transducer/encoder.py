"""Streaming encoders: a chunked Conformer and a memory-efficient recurrent encoder (paper 3).

Both take stacked feature frames (early time reduction: `stack_frames` feature frames per encoder
frame) and have two ways to run that give the same numbers:

- `forward(x, lengths)`: a whole (padded) batch at once, as in training; the Conformer masks each
  frame's attention to its own chunk and `left_chunks` earlier chunks;
- `step(x, state)`: one chunk of a stream, carrying the state (attention key/value cache,
  convolution cache, recurrent cell) from the previous chunk.

Sharing (paper 4) is a matter of which module instances the virtual layers use: `n_layers`
virtual layers reuse `n_unique_layers` blocks in turn, `shared_modules` are one instance for all
blocks, low-rank feed-forward factors may be shared across layers.
"""

from __future__ import annotations

import torch
from torch import nn

from weightwise.models.transducer.config import TransducerConfig
from weightwise.models.transducer.layers import CausalConv, ChunkAttention, FeedForward


def chunk_mask(n_frames: int, chunk: int, left_chunks: int, lengths: torch.Tensor) -> torch.Tensor:
    """(batch, 1, n_frames, n_frames) bool: query i sees key j when j's chunk is i's chunk or one of
    the `left_chunks` before it, and j is not padding."""
    index = torch.arange(n_frames) // chunk
    allowed = (index[None, :] <= index[:, None]) & (index[None, :] >= index[:, None] - left_chunks)
    valid = torch.arange(n_frames)[None, :] < lengths[:, None]
    return (allowed[None] & valid[:, None, :])[:, None]


class ConformerBlock(nn.Module):
    def __init__(self, config: TransducerConfig, shared: dict, index: int):
        super().__init__()
        d, rank, share = config.d_model, config.lowrank_rank, config.shared_factor

        def module(kind: str, make):
            return shared.setdefault(kind, make()) if kind.rstrip("12") in config.shared_modules else make()

        self.ffn1 = module("ffn1", lambda: FeedForward(d, config.ffn_dim, rank, shared, "ffn1", share))
        self.self_attn = module("attention", lambda: ChunkAttention(d, config.n_heads))
        self.conv = module("conv", lambda: CausalConv(d, config.conv_kernel))
        self.ffn2 = module("ffn2", lambda: FeedForward(d, config.ffn_dim, rank, shared, "ffn2", share))
        self.final_norm = nn.LayerNorm(d)

    def forward(self, x, mask):
        x = x + 0.5 * self.ffn1(x)
        x = x + self.self_attn(x, mask)
        x = x + self.conv(x)[0]
        return self.final_norm(x + 0.5 * self.ffn2(x))

    def step(self, x, state, keep: int):
        kv, conv = state if state is not None else (None, None)
        x = x + 0.5 * self.ffn1(x)
        attended, kv = self.self_attn(x, cache=kv, keep=keep)
        x = x + attended
        convolved, conv = self.conv(x, conv)
        x = x + convolved
        return self.final_norm(x + 0.5 * self.ffn2(x)), (kv, conv)


class RecurrentCell(nn.Module):
    """SRU-style recurrence (Lei et al. 2018): every matrix product is batched over the chunk's
    frames (`proj`, one weight fetch per chunk); the recurrence across frames is element-wise
    (`recurrent` holds 2 x d weights), so no weight matrix is read per time step (paper 3)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.proj = nn.Linear(d_model, 3 * d_model)
        self.recurrent = nn.Parameter(torch.zeros(2, d_model))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        z, f, r = self.proj(self.norm(x)).chunk(3, dim=-1)
        c = x.new_zeros(x.shape[0], x.shape[2]) if c is None else c
        outputs = []
        for t in range(x.shape[1]):
            forget = torch.sigmoid(f[:, t] + self.recurrent[0] * c)
            c = forget * c + (1 - forget) * z[:, t]
            reset = torch.sigmoid(r[:, t] + self.recurrent[1] * c)
            outputs.append(reset * c + (1 - reset) * x[:, t])
        return torch.stack(outputs, dim=1) if outputs else x, c


class RecurrentBlock(nn.Module):
    def __init__(self, config: TransducerConfig, shared: dict, index: int):
        super().__init__()
        d, rank, share = config.d_model, config.lowrank_rank, config.shared_factor
        self.cell = RecurrentCell(d)
        make_ffn = lambda: FeedForward(d, config.ffn_dim, rank, shared, "ffn", share)  # noqa: E731
        self.ffn = shared.setdefault("ffn", make_ffn()) if "ffn" in config.shared_modules else make_ffn()

    def forward(self, x, mask):
        return self.step(x, None, 0)[0]

    def step(self, x, state, keep: int):
        h, c = self.cell(x, state)
        return h + self.ffn(h), c


class Encoder(nn.Module):
    """Front end (stacked frames -> d_model) and the virtual layers over the unique blocks."""

    def __init__(self, config: TransducerConfig):
        super().__init__()
        self.config = config
        self.frontend = nn.Linear(config.stack_frames * config.n_mels, config.d_model)
        shared: dict[str, nn.Module] = {}
        block = ConformerBlock if config.encoder == "conformer" else RecurrentBlock
        self.blocks = nn.ModuleList(block(config, shared, i) for i in range(config.unique_layers))

    def layers(self):
        return [self.blocks[i % len(self.blocks)] for i in range(self.config.n_layers)]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (batch, frames, stack_frames * n_mels) -> (batch, frames, d_model)."""
        mask = chunk_mask(x.shape[1], self.config.chunk_frames, self.config.left_chunks, lengths)
        x = self.frontend(x)
        for layer in self.layers():
            x = layer(x, mask)
        return x

    def step(self, x: torch.Tensor, states: list | None) -> tuple[torch.Tensor, list]:
        """One chunk (1, frames <= chunk_frames, ...) of a stream; `states` from the previous chunk."""
        keep = self.config.chunk_frames * self.config.left_chunks
        states = states or [None] * self.config.n_layers
        x, new_states = self.frontend(x), []
        for layer, state in zip(self.layers(), states, strict=True):
            x, state = layer.step(x, state, keep)
            new_states.append(state)
        return x, new_states
