"""The pure-PyTorch RNN-T loss equals a brute-force sum over every alignment."""

from __future__ import annotations

import itertools

import torch

from weightwise.models.transducer import rnnt_loss


def brute_force_nll(log_probs: torch.Tensor, labels: list[int], frames: int) -> torch.Tensor:
    """-log sum over all paths from (0, 0) to (frames - 1, U) that end with a blank."""
    n_labels, paths = len(labels), []
    for label_slots in itertools.combinations(range(frames - 1 + n_labels), n_labels):
        t = u = 0
        total = log_probs.new_zeros(())
        for slot in range(frames - 1 + n_labels):
            if slot in label_slots:
                total = total + log_probs[t, u, labels[u]]
                u += 1
            else:
                total = total + log_probs[t, u, 0]
                t += 1
        paths.append(total + log_probs[frames - 1, n_labels, 0])
    return -torch.logsumexp(torch.stack(paths), dim=0)


def test_loss_matches_brute_force_with_padding():
    generator = torch.Generator().manual_seed(3)
    batch, frames, n_labels, vocab = 4, 4, 3, 5
    logits = torch.randn(batch, frames, n_labels + 1, vocab, generator=generator, dtype=torch.float64)
    labels = torch.randint(1, vocab, (batch, n_labels), generator=generator)
    frame_lengths, label_lengths = torch.tensor([4, 3, 1, 4]), torch.tensor([3, 2, 1, 0])
    loss = rnnt_loss(logits, labels, frame_lengths, label_lengths)
    log_probs = logits.log_softmax(-1)
    expected = [
        brute_force_nll(log_probs[b], labels[b, : label_lengths[b]].tolist(), int(frame_lengths[b]))
        for b in range(batch)
    ]
    torch.testing.assert_close(loss, torch.stack(expected))


def test_loss_gradient_is_finite_and_matches_autograd_of_brute_force():
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(1, 3, 3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[2, 3]])
    rnnt_loss(logits, labels, torch.tensor([3]), torch.tensor([2])).sum().backward()
    ours = logits.grad.clone()
    logits.grad = None
    brute_force_nll(logits.log_softmax(-1)[0], [2, 3], 3).backward()
    torch.testing.assert_close(ours, logits.grad)
