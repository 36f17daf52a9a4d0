"""Compressed-sensing pruning: beats magnitude pruning on correlated inputs at exact sparsity, its
pieces (Gram shrinkage, Lipschitz constant, refit) are right, and it keeps Whisper transcribing."""

from __future__ import annotations

import math

import pytest
import torch

from weightwise.compress import Plan, compress_, csp
from weightwise.compress.prune import SparseModule, nm_mask, topk_mask


def correlated_layer(rows: int = 2000, in_f: int = 64, out_f: int = 32, rank: int = 6):
    """Inputs with a strong low-dimensional structure (rank-6 signal + 5 % noise), a random W."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, rank, generator=g) @ torch.randn(rank, in_f, generator=g)
    x = x + 0.05 * torch.randn(rows, in_f, generator=g)
    return x, torch.randn(out_f, in_f, generator=g)


def output_error(x: torch.Tensor, w: torch.Tensor, pruned: torch.Tensor) -> float:
    return float(torch.linalg.norm(x @ w.T - x @ pruned.T))


def test_csp_beats_magnitude_at_exact_sparsity():
    x, w = correlated_layer()
    mask, pruned = csp.csp_prune(w, csp.gram(x), 0.5)
    assert torch.equal((pruned == 0).sum(1), torch.full((32,), 32))  # exactly half of every row
    assert torch.equal(pruned != 0, mask)
    magnitude = w * topk_mask(w.abs(), 32)
    assert output_error(x, w, pruned) < 0.5 * output_error(x, w, magnitude)


def test_csp_support_beats_magnitude_support_with_the_same_refit():
    x, w = correlated_layer()
    g = csp.damped(csp.gram(x))
    mask, pruned = csp.csp_prune(w, csp.gram(x), 0.5)
    refit_magnitude = csp.refit(w, g, topk_mask(w.abs(), 32))
    assert output_error(x, w, pruned) < output_error(x, w, refit_magnitude)


def test_csp_nm_pattern():
    x, w = correlated_layer()
    mask, pruned = csp.csp_prune(w, csp.gram(x), 0.0, nm=(2, 4))
    assert torch.equal(mask, nm_mask(torch.where(mask, 1.0, 0.0), 2, 4))
    assert torch.equal((pruned != 0).reshape(32, 16, 4).sum(-1), torch.full((32, 16), 2))


def test_refit_is_least_squares_on_the_support():
    x, w = correlated_layer(in_f=16, out_f=4)
    g = csp.damped(csp.gram(x))
    mask = topk_mask(w.abs(), 8)
    fitted = csp.refit(w, g, mask, steps=50)
    for row in range(4):
        s = mask[row].nonzero()[:, 0]
        exact = torch.linalg.solve(g[s][:, s].double(), (g[s] @ w[row]).double()).float()
        assert torch.allclose(fitted[row, s], exact, rtol=1e-3, atol=1e-4)
    assert torch.equal(fitted[~mask], torch.zeros(int((~mask).sum())))


def test_lipschitz_and_gram_shrinkage():
    x, _ = correlated_layer()
    s = x.T @ x / x.shape[0]
    top = float(torch.linalg.eigvalsh(s.double())[-1])
    assert 2 * top <= csp.lipschitz(s) <= 2 * top * 1.1
    many = csp.gram(x)  # 2000 rows: little shrinkage
    assert torch.allclose(many, s, rtol=0.05, atol=0.05 * float(s.diagonal().mean()))
    few = csp.gram(x[:4])  # 4 rows for 64 inputs: pulled toward mu I
    assert float(few.diagonal().min()) > 0 and torch.linalg.matrix_rank(few) == 64


def test_ramp_reaches_the_target_at_seventy_percent():
    assert csp.ramp(0, 100, 0.5) > 0
    assert csp.ramp(69, 100, 0.5) == pytest.approx(0.5) and csp.ramp(99, 100, 0.5) == 0.5
    assert all(csp.ramp(i, 100, 0.5) <= csp.ramp(i + 1, 100, 0.5) for i in range(99))


def test_channel_csp_drops_least_output_energy():
    x, w = correlated_layer(out_f=8)
    w[3] *= 0.01
    keep = csp.channel_mask(w, csp.gram(x), 6)
    assert keep.all(1).sum() == 6 and not keep[3].any()


@pytest.mark.slow
def test_csp_on_whisper_fc1_keeps_transcribing(sample_audio):
    from weightwise.data import sample_manifest
    from weightwise.decode import transcribe
    from weightwise.evaluate import normalize, word_errors
    from weightwise.models import load_model

    model = load_model("whisper-tiny.en")  # our own: the session model is shared
    plan = Plan.from_dict(
        {
            "rules": [
                {"match": "re:model\\.(en|de)coder\\.layers\\.\\d+\\.fc1", "prune": {"sparsity": 0.5, "method": "csp"}}
            ]
        }
    )
    compress_(model, plan, calib=sample_manifest())
    pruned = [m for m in model.network.modules() if isinstance(m, SparseModule)]
    assert len(pruned) == 8
    assert all(torch.equal((m.weight == 0).sum(1), torch.full((1536,), 192)) for m in pruned)
    refs = [normalize(utt.text) for utt, _ in sample_audio]
    hyps = [normalize(transcribe(model, audio).text) for _, audio in sample_audio]
    assert word_errors(refs, hyps).wer <= 0.3
    assert math.isclose(pruned[0].density, 0.5)
