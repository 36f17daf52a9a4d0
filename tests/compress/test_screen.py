"""Screened output projection: the factors against brute force, exactness when the screen covers
the vocabulary, the argmax kept whenever the preview ranks it, the bytes one call reads, and on
whisper-tiny.en: one tied table, a one-line error without calibration, save and reload."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from weightwise.cli import main
from weightwise.compress import Plan, Screen, compress_, load_compressed, save_compressed
from weightwise.compress.screen import ScreenModule, screen_factors
from weightwise.errors import InputError
from weightwise.profile.trace import Tracer


def _inputs(n: int, dim: int, span: int, seed: int) -> torch.Tensor:
    """Inputs concentrated in a `span`-dimensional subspace, plus a little isotropic noise."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(span, dim, generator=g)
    return torch.randn(n, span, generator=g) @ basis + 0.01 * torch.randn(n, dim, generator=g)


def _pair(vocab: int, dim: int, config: Screen, inputs: torch.Tensor | None, seed: int = 0):
    """(embedding, projection) ScreenModules sharing one table, as the handler builds them."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Module()
    net.emb = nn.Embedding(vocab, dim)
    net.proj = nn.Linear(dim, vocab, bias=False)
    with torch.no_grad():
        net.emb.weight.copy_(torch.randn(vocab, dim, generator=g))
    net.proj.weight = net.emb.weight

    class Context:
        calib = object()

        def inputs(self, names):
            return {names[0]: inputs}

    from weightwise.compress.screen import screen_handler

    screen_handler(net, ["emb", "proj"], config, Context() if inputs is not None else None)
    return net.emb, net.proj


def test_bad_config_names_the_field():
    with pytest.raises(InputError, match="screen.top_k"):
        Screen(top_k=0)
    with pytest.raises(InputError, match="screen.preview_bits"):
        Screen(preview_bits=3)


def test_full_rank_factors_reproduce_the_weight():
    w = torch.randn(50, 12, dtype=torch.float64)
    for inputs in (None, _inputs(200, 12, 12, 1)):
        b, p = screen_factors(w, inputs, Screen(rank=12, damp=0.0))
        assert torch.allclose((b.double() @ p.double()), w, atol=1e-4)


def test_whitened_preview_beats_plain_svd_on_the_inputs_it_was_fit_on():
    """Eckart-Young in the inputs' norm: at the same rank the whitened factors leave a smaller logit
    error on (inputs from the same distribution as) the calibration inputs than the plain SVD."""
    w = torch.randn(300, 32)
    inputs = _inputs(800, 32, 6, 2)
    fit, held_out = inputs[:400], inputs[400:]
    errors = {}
    for whiten in (False, True):
        b, p = screen_factors(w, fit if whiten else None, Screen(rank=6, whiten=whiten, damp=0.0))
        errors[whiten] = float(((held_out @ p.T) @ b.T - held_out @ w.T).norm())
    assert errors[True] < 0.2 * errors[False]


def test_a_screen_over_the_whole_vocabulary_is_exact():
    inputs = _inputs(100, 16, 16, 4)
    emb, proj = _pair(400, 16, Screen(rank=4, top_k=400, preview_bits=8), inputs)
    x = inputs[:7]
    assert torch.allclose(proj(x), x @ proj.weight.T, atol=1e-4)
    ids = torch.tensor([[3, 5, 399]])
    assert torch.equal(emb(ids), proj.weight[ids])  # the lookup reads the fp16 table
    assert emb.codes is proj.codes and emb.preview_codes is proj.preview_codes and emb.basis is proj.basis


def test_the_argmax_is_kept_whenever_the_preview_ranks_it_in_the_top_k():
    inputs = _inputs(600, 24, 5, 5)
    emb, proj = _pair(500, 24, Screen(rank=5, top_k=8, preview_bits=8), inputs[:300])
    x = inputs[300:]
    exact = x @ proj.weight.T
    preview = (x @ proj.basis.T) @ proj.preview.T
    ranked = (preview.topk(8, -1).indices == exact.argmax(-1, keepdim=True)).any(-1)
    out = proj(x)
    assert ranked.float().mean() > 0.9  # the preview works on inputs like its calibration's
    assert torch.equal(out.argmax(-1)[ranked], exact.argmax(-1)[ranked])
    top = preview.topk(8, -1).indices
    assert torch.allclose(out.gather(-1, top), exact.gather(-1, top), atol=1e-4)  # exact where screened
    assert (out.argmax(-1, keepdim=True) == top).any(-1).all()  # never an unscreened token, even unranked


@pytest.mark.parametrize("tail", ["preview", "floor"])
def test_unscreened_tokens_keep_their_preview_below_the_cap(tail):
    inputs = _inputs(400, 24, 5, 7)
    _, proj = _pair(500, 24, Screen(rank=5, top_k=8, preview_bits=16, tail=tail), inputs[:200])
    x = inputs[200:]
    preview = (x @ proj.basis.T) @ proj.preview.T
    top = preview.topk(8, -1).indices
    exact = (x @ proj.weight.T).gather(-1, top)
    cap = exact.max(-1, keepdim=True).values if tail == "preview" else exact.min(-1, keepdim=True).values
    out = proj(x)
    tail_mask = torch.ones_like(out, dtype=torch.bool).scatter(-1, top, False)
    expected = torch.minimum(preview, cap)
    assert torch.allclose(out[tail_mask], expected[tail_mask], atol=1e-5)
    assert (out[tail_mask] < cap.expand_as(out)[tail_mask]).all() or tail == "floor"


def test_storage_and_bytes_one_call_reads_by_hand():
    vocab, dim, rank, k = 256, 16, 4, 5
    emb, proj = _pair(vocab, dim, Screen(rank=rank, top_k=k, preview_bits=4), _inputs(80, dim, dim, 6))
    storage = proj.weightwise_storage()
    assert storage["weight"].nbytes == 2 * vocab * dim  # the fp16 table
    assert storage["preview"].nbytes == vocab * rank // 2 + 4 * vocab  # int4 codes + a scale per row
    assert storage["basis"].nbytes == rank * dim * 4
    assert set(emb.weightwise_storage()) == {"weight"}
    assert storage["weight"].key == emb.weightwise_storage()["weight"].key
    net = nn.Sequential(emb, proj)
    with Tracer(net) as tracer:
        proj(torch.randn(3, dim))  # three positions
    reads = {t.name.split(".")[-1]: t for t in tracer.result("m", "fp32").tensors}
    assert reads["weight"].bytes_read == 3 * k * dim * 2
    assert reads["preview"].bytes_read == storage["preview"].nbytes
    assert reads["weight"].macs == 3 * (rank * dim + vocab * rank + k * dim)


def test_a_rule_without_the_projection_or_a_rank_too_large_is_one_line():
    with pytest.raises(InputError, match="output projection"):
        net = nn.Module()
        net.emb = nn.Embedding(10, 4)
        from weightwise.compress.screen import screen_handler

        screen_handler(net, ["emb"], Screen(whiten=False), None)
    with pytest.raises(InputError, match="wide output layer"):
        _pair(40, 16, Screen(whiten=False), None)  # 40 outputs for 16 inputs: nothing to save
    with pytest.raises(InputError, match="exceeds"):
        screen_factors(torch.randn(10, 4), None, Screen(rank=5))


def test_whitening_without_calibration_is_one_line(tmp_path, capsys):
    plan = tmp_path / "screen.json"
    plan.write_text(json.dumps({"rules": [{"match": ["model.decoder.embed_tokens", "proj_out"], "screen": {}}]}))
    out = tmp_path / "o.json"
    assert main(["eval", "--plan", str(plan), "--data", "samples", "--limit", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--calib" in err[0] and not out.exists()


@pytest.mark.slow
def test_whisper_screened_projection_keeps_the_transcripts_and_reloads(samples, sample_audio, tmp_path):
    """tiny.en, whitened on the bundled samples; the transcripts of the samples stay the float
    model's (the argmax is screened exactly), and a saved model reloads to the same logits."""
    from weightwise.decode import transcribe
    from weightwise.models import load_model

    base = load_model("whisper-tiny.en")
    model = load_model("whisper-tiny.en")
    plan = Plan.from_dict(
        {"rules": [{"match": ["model.decoder.embed_tokens", "proj_out"], "screen": {"rank": 128, "top_k": 64}}]}
    )
    compress_(model, plan, samples)
    proj = model.network.proj_out
    assert isinstance(proj, ScreenModule) and proj.codes is model.network.model.decoder.embed_tokens.codes
    for _, audio in sample_audio:
        assert transcribe(model, audio).text == transcribe(base, audio).text
    loaded = load_compressed(save_compressed(model, tmp_path / "screened"))
    x = torch.randn(2, 384)
    assert torch.equal(loaded.network.proj_out(x), proj(x))
