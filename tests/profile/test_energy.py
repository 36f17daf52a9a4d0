"""Energy, placement and roofline on a hand-made trace: every number computed by hand."""

import pytest

from weightwise.profile.device import DeviceSpec
from weightwise.profile.energy import component_of, tensor_profiles
from weightwise.profile.profile import analyze
from weightwise.profile.trace import OpTrace, TensorTrace, Trace


def spec(onchip_bytes=100):
    return DeviceSpec(name="hand", description="hand-made", onchip_weight_bytes=onchip_bytes,
                      onchip_pj_per_byte=1.0, dram_pj_per_byte=10.0, dram_bandwidth_bytes_per_s=1000.0,
                      peak_macs_per_s=1e4, pj_per_mac={"fp32": 2.0, "int8": 0.5}, sources={})


def tensor(name, nbytes, calls, bytes_read, macs, dtype="fp32"):
    return TensorTrace(name, (nbytes,), dtype, "dense", nbytes, calls, bytes_read, macs, dtype, (name,))


@pytest.fixture
def trace():
    # 2 s of audio. Per audio-second: big reads 40 B, hot reads 300 B, cold reads 30 B.
    return Trace(model="hand", precision="fp32", audio_s=2.0, n_files=1, n_windows=1, n_decoder_calls=5,
                 n_tokens=4, use_cache=True,
                 tensors=(tensor("model.encoder.layers.0.fc1.weight", 80, 1, 80, 1000),
                          tensor("model.decoder.layers.0.fc1.weight", 60, 10, 600, 200, "int8"),
                          tensor("model.decoder.layers.0.fc2.weight", 60, 1, 60, 0)),
                 ops=(OpTrace("model.encoder.layers.0.self_attn", 1, 400, "fp32"),),
                 activation_bytes=50)


def test_knapsack_places_the_hot_tensor(trace):
    rows = {r.name: r for r in tensor_profiles(trace, spec(onchip_bytes=100))}
    # budget 100 B: either encoder (80 B, saves 40*9) or one decoder tensor (60 B); hot one saves 300*9
    assert rows["model.decoder.layers.0.fc1.weight"].placement == "onchip"
    assert rows["model.encoder.layers.0.fc1.weight"].placement == "dram"
    hot = rows["model.decoder.layers.0.fc1.weight"]
    assert hot.invocations_per_audio_s == 5.0
    assert hot.onchip_j_per_audio_s == pytest.approx(300 * 1.0e-12)
    assert hot.dram_j_per_audio_s == 0.0
    assert hot.compute_j_per_audio_s == pytest.approx(100 * 0.5e-12)  # 200 MACs / 2 s, int8


def test_totals_baseline_and_roofline(trace):
    p = analyze(trace, spec(onchip_bytes=100))
    # knapsack: DRAM reads 40 + 30 = 70 B/s; on-chip 300 B/s; MACs 500 fp32 + 100 int8 + 200 attention
    assert p.offchip_bytes_per_audio_s == pytest.approx(70)
    assert p.baseline_offchip_bytes_per_audio_s == pytest.approx(370)
    expected = (70 * 10 + 300 * 1 + 500 * 2 + 100 * 0.5 + 200 * 2) * 1e-12
    assert p.energy_j_per_audio_s == pytest.approx(expected)
    assert p.baseline_energy_j_per_audio_s == pytest.approx((370 * 10 + 500 * 2 + 100 * 0.5 + 200 * 2) * 1e-12)
    assert p.onchip_bytes_used == 60 and p.model_bytes == 200
    assert p.macs_per_audio_s == pytest.approx(800)
    assert p.roofline["memory_s_per_audio_s"] == pytest.approx(70 / 1000)
    assert p.roofline["compute_s_per_audio_s"] == pytest.approx(800 / 1e4)
    assert p.roofline["rtf_lower_bound"] == pytest.approx(0.08) and p.roofline["bound"] == "compute"
    encoder = (40 * 10 + 500 * 2 + 200 * 2) * 1e-12
    assert p.components["encoder"] == pytest.approx(encoder / expected)
    assert sum(p.components.values()) == pytest.approx(1.0)


def test_no_budget_means_streaming(trace):
    p = analyze(trace, spec(onchip_bytes=0))
    assert p.offchip_bytes_per_audio_s == p.baseline_offchip_bytes_per_audio_s
    assert p.energy_j_per_audio_s == pytest.approx(p.baseline_energy_j_per_audio_s)


def test_components():
    assert component_of("model.decoder.embed_tokens.weight")[1] == "token_embedding_projection"
    assert component_of("proj_out.weight")[1] == "token_embedding_projection"
    assert component_of("model.encoder.layers.3.self_attn.q_proj.weight") == ("encoder.attention", "encoder")
    assert component_of("model.decoder.layers.0.encoder_attn.k_proj.weight") == (
        "decoder.cross_attention", "decoder")
