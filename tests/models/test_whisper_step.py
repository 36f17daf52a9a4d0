"""`DecoderSteps` (our cached decoder step) against transformers' own decoder forward, on the real
whisper-tiny.en weights and the encoder output of real speech."""

from __future__ import annotations

import pytest
import torch

import weightwise.decode.search as search
from weightwise.decode import DecodingOptions, transcribe
from weightwise.decode.features import log_mel_spectrogram
from weightwise.models.runtime import RuntimeSettings, runtime_applied
from weightwise.models.whisper_step import DecoderSteps, supports

#: fp32 logits of the two paths differ by float rounding only (other summation orders)
ATOL = 2e-3


@pytest.fixture(scope="module")
def encoder_out(tiny_model, sample_audio):
    mel = log_mel_spectrogram(sample_audio[0][1], tiny_model.n_mels)[:, :3000]
    mel = torch.nn.functional.pad(mel, (0, 3000 - mel.shape[1]))
    with torch.inference_mode():
        return tiny_model.network.model.encoder(mel.unsqueeze(0)).last_hidden_state


def _transformers_logits(net, encoder_out, calls, reorders):
    """Logits of transformers' decoder, fed `calls` token batches, reordering its cache before call i
    by `reorders[i]` (None: keep)."""
    batch = calls[0].shape[0]
    cache, out = None, []
    expanded = encoder_out.expand(batch, -1, -1)
    for tokens, order in zip(calls, reorders, strict=True):
        if order is not None:
            cache.reorder_cache(order)
        result = net.model.decoder(
            input_ids=tokens, encoder_hidden_states=expanded, past_key_values=cache, use_cache=True
        )
        cache = result.past_key_values
        out.append(net.proj_out(result.last_hidden_state))
    return out


def _our_logits(net, encoder_out, calls, reorders):
    steps, out = DecoderSteps(net.model.decoder, encoder_out, calls[0].shape[0]), []
    for tokens, order in zip(calls, reorders, strict=True):
        if order is not None:
            steps.reorder(order)
        out.append(net.proj_out(steps.step(tokens)))
    return out


@torch.inference_mode()
def test_greedy_steps_match_transformers(tiny_model, encoder_out):
    prompt = torch.tensor([tiny_model.tokens.prompt])
    # the prompt in one call (causal within it), then one token per call past the first buffer size
    calls = [prompt] + [torch.tensor([[400 + i]]) for i in range(40)]
    ours = _our_logits(tiny_model.network, encoder_out, calls, [None] * len(calls))
    theirs = _transformers_logits(tiny_model.network, encoder_out, calls, [None] * len(calls))
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


@torch.inference_mode()
def test_beams_and_reorder_match_transformers(tiny_model, encoder_out):
    prompt = torch.tensor([tiny_model.tokens.prompt] * 3)
    calls = [
        prompt,
        torch.tensor([[500], [600], [700]]),
        torch.tensor([[501], [601], [701]]),
        torch.tensor([[9], [8], [7]]),
    ]
    reorders = [None, None, torch.tensor([2, 0, 0]), torch.tensor([1, 2, 1])]
    ours = _our_logits(tiny_model.network, encoder_out, calls, reorders)
    theirs = _transformers_logits(tiny_model.network, encoder_out, calls, reorders)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    # the beams really differ (a reorder that did nothing would pass the comparison too)
    assert not torch.allclose(ours[-1][0], ours[-1][1], atol=1e-2)


@torch.inference_mode()
def test_prefix_after_cached_positions_is_causal(tiny_model, encoder_out):
    """Several tokens in a call after cached positions (not used by our searches, but a valid call)."""
    prompt = torch.tensor([tiny_model.tokens.prompt])
    calls = [prompt, torch.tensor([[400, 401, 402]]), torch.tensor([[403]])]
    ours = _our_logits(tiny_model.network, encoder_out, calls, [None] * 3)
    theirs = _transformers_logits(tiny_model.network, encoder_out, calls, [None] * 3)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def _transcripts(model, audio, options, monkeypatch, ours: bool):
    monkeypatch.setattr(search, "supports", supports if ours else (lambda _decoder: False))
    return [transcribe(model, samples, options).text for _utt, samples in audio]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_transcripts_match_transformers_path(tiny_model, sample_audio, monkeypatch, beam_size):
    options = DecodingOptions(beam_size=beam_size)
    ours = _transcripts(tiny_model, sample_audio, options, monkeypatch, ours=True)
    theirs = _transcripts(tiny_model, sample_audio, options, monkeypatch, ours=False)
    assert ours == theirs
    assert all(ours)


def test_runtime_hooks_apply_to_our_steps(tiny_model, sample_audio, monkeypatch):
    """A plan's cached key/value and activation precisions are forward hooks on the modules our step
    calls: both paths give the same transcripts with them, and the hooks change the logits."""
    settings = RuntimeSettings(kv_precision="int8", activation_precision="int8")
    with runtime_applied(tiny_model, settings):
        ours = _transcripts(tiny_model, sample_audio, DecodingOptions(), monkeypatch, ours=True)
        theirs = _transcripts(tiny_model, sample_audio, DecodingOptions(), monkeypatch, ours=False)
    assert ours == theirs


@torch.inference_mode()
def test_runtime_hooks_change_our_logits(tiny_model, encoder_out):
    calls = [torch.tensor([tiny_model.tokens.prompt]), torch.tensor([[400]])]
    plain = _our_logits(tiny_model.network, encoder_out, calls, [None, None])
    with runtime_applied(tiny_model, RuntimeSettings(kv_precision="int8")):
        hooked = _our_logits(tiny_model.network, encoder_out, calls, [None, None])
    assert not torch.allclose(plain[-1], hooked[-1], atol=1e-4)


def test_supports_refuses_other_layouts(tiny_model):
    decoder = tiny_model.network.model.decoder
    assert supports(decoder)

    class Bare(torch.nn.Module):
        pass

    assert not supports(Bare())
    original = decoder.layers[0].encoder_attn
    try:
        decoder.layers[0].encoder_attn = torch.nn.Identity()  # e.g. a plan replacing the block
        assert not supports(decoder)
    finally:
        decoder.layers[0].encoder_attn = original
    assert supports(decoder)
