"""RNN-T loss (Graves 2012) in plain PyTorch: a log-space forward pass over the (T, U + 1) lattice.

No maintained package installs beside torch 2.13 on CPU without torchaudio: torchaudio pins its own
torch; `warp-rnnt` does not build without CUDA; `warprnnt_numba` (last release 2022) needs numba;
k2 / fast_rnnt / optimized_transducer build against a specific torch. The recursion per time step
is vectorized over the label axis with a cumulative log-sum-exp:

    alpha[t, u] = S[u] + logcumsumexp_{u' <= u}(alpha[t-1, u'] + blank[t-1, u'] - S[u'])

with S[u] the sum of label log-probabilities label[t, 0..u-1] of row t. Tested against a
brute-force sum over every alignment (tests/models/transducer/test_loss.py).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def rnnt_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = 0,
) -> torch.Tensor:
    """Per-utterance negative log-likelihood (batch,) of `targets` under the transducer lattice.

    Args:
        logits: (batch, T, U + 1, vocab) joiner outputs (unnormalized).
        targets: (batch, U) label ids (padding anywhere past `target_lengths`).
        logit_lengths: (batch,) valid frames T_b.
        target_lengths: (batch,) valid labels U_b.
    """
    log_probs = F.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=-1)
    batch, frames, positions, _ = log_probs.shape
    blank_lp = log_probs[..., blank]  # (B, T, U+1)
    label_lp = torch.gather(log_probs[:, :, :-1], 3, targets[:, None, :, None].expand(-1, frames, -1, 1))[..., 0]
    prefix = F.pad(torch.cumsum(label_lp, dim=2), (1, 0))  # (B, T, U+1): S[t, u]
    start = torch.full((batch, positions), float("-inf"), dtype=log_probs.dtype)
    start[:, 0] = 0.0
    alphas, previous = [], start
    for t in range(frames):
        alpha = prefix[:, t] + torch.logcumsumexp(previous - prefix[:, t], dim=1)
        alphas.append(alpha)
        previous = alpha + blank_lp[:, t]
    alpha = torch.stack(alphas, dim=1)  # (B, T, U+1)
    b = torch.arange(batch)
    last_t, last_u = logit_lengths - 1, target_lengths
    return -(alpha[b, last_t, last_u] + blank_lp[b, last_t, last_u])
