"""Plan runtime settings (kv-cache / activation precision, encoder context): simulated in the decode,
charged by the profiler, carried by the plan file."""

from __future__ import annotations

import json

import pytest
import torch

from weightwise.compress import Plan
from weightwise.errors import InputError
from weightwise.models.runtime import (
    MAX_POSITIONS,
    RuntimeSettings,
    apply_runtime,
    encoder_positions,
    fake_quant,
)


def test_fake_quant_int8_rounds_each_row_within_half_a_step():
    x = torch.randn(6, 4, 64) * torch.linspace(0.1, 10, 6).view(6, 1, 1)
    y = fake_quant(x, "int8")
    step = x.abs().amax(dim=-1, keepdim=True) / 127
    assert not torch.equal(x, y)
    assert ((y - x).abs() <= step / 2 + 1e-6).all()
    assert len(torch.unique(y[0, 0] / step[0, 0]).round()) <= 255  # 255 levels per row at most
    # one scale per 16 elements: a finer grid, so a smaller error than one scale per row
    assert (fake_quant(x, "int8", 16) - x).abs().mean() < (y - x).abs().mean()
    assert torch.equal(fake_quant(x, "fp32"), x) and torch.equal(fake_quant(x, None), x)
    assert torch.equal(fake_quant(x, "fp16"), x.half().float())


def test_encoder_positions_auto_keeps_the_audio_and_a_margin():
    auto = RuntimeSettings(encoder_context="auto")
    assert encoder_positions(None, 3.0) == MAX_POSITIONS
    assert encoder_positions(auto, 30.0) == MAX_POSITIONS
    for seconds in (1.0, 7.3, 14.0, 20.0):
        positions = encoder_positions(auto, seconds)
        assert positions * 0.02 >= seconds + 1.0 and positions % 50 == 0
    assert encoder_positions(RuntimeSettings(encoder_context=700), 2.0) == 700


def _k_outputs(model, audio):
    """Every decoder self-attention k_proj output of one transcription."""
    from weightwise.decode import transcribe

    seen = []
    module = model.network.model.decoder.layers[0].self_attn.k_proj
    handle = module.register_forward_hook(lambda m, i, out: seen.append(out.detach().clone()))
    try:
        text = transcribe(model, audio).text
    finally:
        handle.remove()
    return text, seen


def test_kv_int8_rounds_what_the_cache_stores_and_the_text_survives(weightwise_cache, sample_audio, tiny_greedy):
    from weightwise.models import load_model

    utt, audio = sample_audio[0]
    model = load_model("whisper-tiny.en")
    apply_runtime(model, RuntimeSettings(kv_precision="int8"))
    text, keys = _k_outputs(model, audio)
    # the cached keys sit on the int8 grid of their (position, head) vectors: 64 values, one scale each
    first = keys[0].reshape(-1, 64)
    steps = first.abs().amax(dim=-1, keepdim=True) / 127
    assert torch.allclose(first / steps, (first / steps).round(), atol=1e-3)
    assert text == tiny_greedy[utt.id].text  # bounded error: the greedy text of a clean sample holds
    with pytest.raises(InputError, match="already applied"):
        apply_runtime(model, RuntimeSettings(kv_precision="int8"))


def test_kv_precision_rounds_the_decoders_caches_not_the_encoders_activations(tiny_model):
    """Cross- and self-attention keys/values of the decoder are hooked; the encoder's self-attention
    keys/values (used once, activations to the profiler) are not."""
    from weightwise.models.runtime import runtime_applied

    def hooked(module):
        return bool(module.k_proj._forward_hooks) and bool(module.v_proj._forward_hooks)

    network = tiny_model.network
    with runtime_applied(tiny_model, RuntimeSettings(kv_precision="int8")):
        assert all(hooked(layer.self_attn) and hooked(layer.encoder_attn) for layer in network.model.decoder.layers)
        assert not any(hooked(layer.self_attn) for layer in network.model.encoder.layers)
    assert not any(hooked(layer.self_attn) for layer in network.model.decoder.layers)  # removed after


def test_plan_runtime_round_trips_and_bad_values_name_the_file(tmp_path):
    rules = [{"match": "proj_out", "quant": {"bits": 8}}]
    runtime = {"kv_precision": "int8", "activation_precision": "int8", "encoder_context": "auto"}
    plan = Plan.from_dict({"rules": rules, "runtime": runtime})
    assert plan.runtime == RuntimeSettings("int8", "int8", "auto")
    assert Plan.from_dict(plan.to_dict()).to_dict() == plan.to_dict()
    assert Plan.from_dict({"rules": rules}).runtime is None  # older plans: no runtime
    assert Plan.from_dict({"rules": [], "runtime": {"kv_precision": "int8"}}).rules == ()
    for bad, words in (
        ({"kv_precision": "int3"}, "kv_precision 'int3'"),
        ({"activation_precision": 8}, "activation_precision 8"),
        ({"encoder_context": 0}, "encoder_context 0"),
        ({"encoder_context": "short"}, "encoder_context 'short'"),
        ({"audio_ctx": 700}, "runtime key 'audio_ctx'"),
        ({"fused_attention": "yes"}, "fused_attention"),
        ([], "'runtime' must be an object"),
    ):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({"rules": rules, "runtime": bad}))
        with pytest.raises(InputError, match=str(path)) as err:
            Plan.from_json(path)
        assert words in str(err.value) and "\n" not in str(err.value)


def test_profile_of_a_plan_charges_its_runtime_and_runs_a_shorter_encoder(weightwise_cache, samples):
    from weightwise.audio import load_audio
    from weightwise.compress.loading import load_model_with_plan
    from weightwise.profile.device import load_device
    from weightwise.profile.profile import profile

    device = load_device("jetson-orin-nano")
    manifest = samples.head(1)
    dense_plan = Plan.from_dict({"rules": [], "runtime": {"fused_attention": True}}, name="dense")
    runtime = {
        "kv_precision": "int8",
        "activation_precision": "int8",
        "encoder_context": "auto",
        "fused_attention": True,
    }
    plan = Plan.from_dict({"rules": [], "runtime": runtime}, name="rt")
    dense = profile(load_model_with_plan("whisper-tiny.en", plan=dense_plan), manifest, device)
    short = profile(load_model_with_plan("whisper-tiny.en", plan=plan), manifest, device)
    assert dense.kv_dtype == "fp32" and short.kv_dtype == "int8" and short.act_dtype == "int8"
    assert dense.fused_attention and short.fused_attention
    seconds = len(load_audio(manifest[0].audio_path)) / 16000
    positions = encoder_positions(plan.runtime, seconds)
    assert positions < MAX_POSITIONS
    enc = [op for op in dense.attention_ops if ".encoder." in op["module"]]
    enc_short = [op for op in short.attention_ops if ".encoder." in op["module"]]
    # attention MACs grow with positions squared: the ratio is the context's, squared
    ratio = sum(o["macs_per_audio_s"] for o in enc_short) / sum(o["macs_per_audio_s"] for o in enc)
    assert ratio == pytest.approx((positions / MAX_POSITIONS) ** 2, rel=0.01)
    kv = short.component_energy_j_per_audio_s["kv_cache"] / dense.component_energy_j_per_audio_s["kv_cache"]
    assert kv < 0.5  # a quarter of the bytes per value, and a shorter cross-attention cache
    assert short.energy_j_per_audio_s < dense.energy_j_per_audio_s
    assert short.wer is not None and short.wer <= dense.wer + 0.1
