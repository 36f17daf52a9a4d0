"""A screened projection on its stored tensors (`PackedScreenModule`), from tiny.en's real token
table and the decoder's real inputs on a bundled sample: the embedding rows and the screened
tokens' exact logits equal the simulated `ScreenModule`'s, the preview (on a packed kernel: bf16
activations and scales) is its float one within 1% per position, the argmax is the same, the
profiler sees the same storage, and the weights in RAM are the stored bytes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from weightwise.compress import Screen
from weightwise.compress.packed import pack_
from weightwise.compress.packed_screen import PackedScreenModule
from weightwise.compress.screen import ScreenModule, screen_factors
from weightwise.decode import transcribe
from weightwise.evaluate.runtime import weight_bytes_resident

#: preview error per position relative to the preview's norm: bf16 keeps 8 significant bits, so the
#: rank-r inputs and the row scales round by <= 2^-9 each (~0.4%)
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def screens(tiny_model, sample_audio):
    """(simulated, packed) screened projection and embedding of tiny.en's table (plain SVD, int4
    preview), and the projection's inputs while tiny.en transcribes a bundled sample."""
    network = tiny_model.network
    seen: list[torch.Tensor] = []
    handle = network.proj_out.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    try:
        transcribe(tiny_model, sample_audio[0][1])
    finally:
        handle.remove()
    config = Screen(rank=128, top_k=256, preview_bits=4, whiten=False)
    factors = screen_factors(network.proj_out.weight.detach(), None, config)
    simulated = torch.nn.Module()
    simulated.proj = ScreenModule.from_float(network.proj_out, "proj_out", config, factors)
    simulated.embed = ScreenModule.from_float(network.model.decoder.embed_tokens, "embed_tokens", config, factors)
    simulated.embed.share_state(simulated.proj)  # tied, as `replace_group` ties them
    simulated.embed.refresh()
    reference = {"proj": simulated.proj, "embed": simulated.embed}
    packed = torch.nn.Module()
    packed.proj, packed.embed = simulated.proj, simulated.embed
    assert pack_(packed) == 2
    return reference, packed, torch.cat([x.reshape(-1, x.shape[-1]) for x in seen])


def test_the_packed_screen_computes_what_the_simulated_one_does(screens):
    reference, packed, x = screens
    assert isinstance(packed.proj, PackedScreenModule) and packed.embed.table is packed.proj.table
    tokens = torch.tensor([[50257, 464, 3797, 50256]])
    assert torch.equal(packed.embed(tokens), reference["embed"](tokens))
    with torch.no_grad():
        want, got = reference["proj"](x), packed.proj(x)
        preview_want = (x @ reference["proj"].basis.T) @ reference["proj"].preview.T
        preview_got = packed.proj.preview(x @ packed.proj.basis.T)
    error = (preview_got - preview_want).norm(dim=-1) / preview_want.norm(dim=-1)
    assert 0 < error.max() < TOLERANCE
    assert torch.equal(got.argmax(-1), want.argmax(-1))
    best = want.argmax(-1, keepdim=True)
    assert torch.equal(got.gather(-1, best), want.gather(-1, best))  # exact logits from the same fp16 rows


def test_the_packed_screen_stores_and_holds_what_the_simulated_one_stores(screens):
    reference, packed, _ = screens
    for name in ("proj", "embed"):
        want, got = reference[name].weightwise_storage(), getattr(packed, name).weightwise_storage()
        assert want.keys() == got.keys()
        for key in want:
            assert dataclasses.replace(want[key], key=0) == dataclasses.replace(got[key], key=0), (name, key)
    stored = sum(s.nbytes for s in packed.proj.weightwise_storage().values())
    assert weight_bytes_resident(packed) <= 1.05 * stored  # the simulated pair holds ~3x: float copies
    assert weight_bytes_resident(torch.nn.ModuleList(reference.values())) > 2.5 * stored
