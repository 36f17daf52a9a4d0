"""`TransducerNetwork`: feature normalization + encoder, predictor and joiner (one nn.Module).

Component names are what the profiler groups by: `encoder.*`, `predictor.*`, `joiner.*`.
The joiner's encoder projection runs once per encoder chunk on all its frames; its predictor
projection once per predictor step; its output layer once per (frame, hypothesis, symbol).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from weightwise.models.transducer.config import TransducerConfig
from weightwise.models.transducer.encoder import Encoder


class LSTMPredictor(nn.Module):
    """Embedding + one LSTM layer whose four gates are one Linear over [input, hidden]."""

    def __init__(self, config: TransducerConfig):
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.pred_dim)
        self.gates = nn.Linear(2 * config.pred_dim, 4 * config.pred_dim)

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = self.embed.weight.new_zeros(batch, self.embed.embedding_dim)
        return zeros, zeros.clone()

    def forward(self, tokens: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
        """tokens (batch,) -> output (batch, pred_dim), next state."""
        h, c = state
        i, f, g, o = self.gates(torch.cat([self.embed(tokens), h], dim=-1)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class StatelessPredictor(nn.Module):
    """Ghodsi et al. 2020: the last `context_size` tokens' embeddings, concatenated and projected."""

    def __init__(self, config: TransducerConfig):
        super().__init__()
        self.context_size = config.context_size
        self.embed = nn.Embedding(config.vocab_size, config.pred_dim)
        self.proj = nn.Linear(config.context_size * config.pred_dim, config.pred_dim)

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.context_size, dtype=torch.long)  # blank = start of sequence

    def forward(self, tokens: torch.Tensor, state) -> tuple[torch.Tensor, torch.Tensor]:
        context = torch.cat([state[:, 1:], tokens[:, None]], dim=1)
        return torch.relu(self.proj(self.embed(context).flatten(1))), context


class Joiner(nn.Module):
    def __init__(self, config: TransducerConfig):
        super().__init__()
        self.enc_proj = nn.Linear(config.d_model, config.joiner_dim)
        self.pred_proj = nn.Linear(config.pred_dim, config.joiner_dim)
        self.out = nn.Linear(config.joiner_dim, config.vocab_size)

    def forward(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Projected encoder and predictor outputs (broadcastable) -> logits over the vocabulary."""
        return self.out(torch.tanh(enc + pred))


class TransducerNetwork(nn.Module):
    def __init__(self, config: TransducerConfig):
        super().__init__()
        self.config = config
        self.register_buffer("feature_mean", torch.zeros(config.n_mels))
        self.register_buffer("feature_std", torch.ones(config.n_mels))
        self.encoder = Encoder(config)
        self.predictor = (LSTMPredictor if config.predictor == "lstm" else StatelessPredictor)(config)
        self.joiner = Joiner(config)

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.feature_mean) / self.feature_std

    def stack(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, feature frames, n_mels) normalized -> (batch, ceil(frames / stack), stack * n_mels),
        the last group padded with zeros (the mean)."""
        k = self.config.stack_frames
        pad = -features.shape[1] % k
        features = F.pad(features, (0, 0, 0, pad))
        return features.reshape(features.shape[0], features.shape[1] // k, k * features.shape[2])

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Offline (masked) encoder over raw log-mel (batch, frames, n_mels) with feature-frame lengths."""
        stacked = self.stack(self.normalize(features))
        enc_lengths = (lengths + self.config.stack_frames - 1) // self.config.stack_frames
        return self.encoder(stacked, enc_lengths), enc_lengths

    def predict_all(self, targets: torch.Tensor) -> torch.Tensor:
        """Predictor outputs for [blank, targets...] (batch, U + 1, pred_dim), teacher-forced."""
        tokens = F.pad(targets, (1, 0), value=self.config.blank)
        state, outputs = self.predictor.initial_state(tokens.shape[0]), []
        for u in range(tokens.shape[1]):
            out, state = self.predictor(tokens[:, u], state)
            outputs.append(out)
        return torch.stack(outputs, dim=1)

    def lattice_logits(self, enc: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(batch, T, U + 1, vocab) joiner logits over the whole alignment lattice."""
        pred = self.joiner.pred_proj(self.predict_all(targets))
        return self.joiner(self.joiner.enc_proj(enc)[:, :, None], pred[:, None])
