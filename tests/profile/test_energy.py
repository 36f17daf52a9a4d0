"""Energy, placement and roofline on a hand-made trace: every number computed by hand."""

import pytest

from weightwise.profile.device import DeviceSpec
from weightwise.profile.energy import component_of, tensor_profiles
from weightwise.profile.profile import analyze
from weightwise.profile.trace import OpTrace, TensorTrace, Trace


def spec(onchip_bytes=100, activation_bytes=64):
    return DeviceSpec(
        name="hand",
        description="hand-made",
        onchip_weight_bytes=onchip_bytes,
        onchip_activation_bytes=activation_bytes,
        onchip_pj_per_byte=1.0,
        dram_pj_per_byte=10.0,
        dram_bandwidth_bytes_per_s=1000.0,
        peak_macs_per_s=1e4,
        pj_per_mac={"fp32": 2.0, "int8": 0.5},
        sources={},
    )


def tensor(name, nbytes, calls, bytes_read, macs, dtype="fp32"):
    return TensorTrace(name, (nbytes,), dtype, "dense", nbytes, calls, bytes_read, macs, dtype, (name,))


@pytest.fixture
def trace():
    # 2 s of audio. Per audio-second: big reads 40 B, hot reads 300 B, cold reads 30 B.
    return Trace(
        model="hand",
        precision="fp32",
        audio_s=2.0,
        n_files=1,
        n_windows=1,
        n_decoder_calls=5,
        n_tokens=4,
        use_cache=True,
        tensors=(
            tensor("model.encoder.layers.0.fc1.weight", 80, 1, 80, 1000),
            tensor("model.decoder.layers.0.fc1.weight", 60, 10, 600, 200, "int8"),
            tensor("model.decoder.layers.0.fc2.weight", 60, 1, 60, 0),
        ),
        ops=(OpTrace("model.encoder.layers.0.self_attn", 1, 400, "fp32"),),
        activation_bytes=50,
    )


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
    assert component_of("model.decoder.layers.0.encoder_attn.k_proj.weight") == ("decoder.cross_attention", "decoder")


def traffic_trace(trace):
    """The hand trace plus two decoder calls of cache traffic (fp16) and two activation sizes."""
    from dataclasses import replace

    from weightwise.profile.traffic import ActivationTrace, KVStep

    steps = (
        KVStep(cross_read=16, self_read=4, cross_written=16, self_written=4, head_dim=8, calls=1),
        KVStep(cross_read=16, self_read=8, cross_written=0, self_written=4, head_dim=8, calls=1),
    )
    acts = (ActivationTrace("encoder", "fp32", 30, 2), ActivationTrace("encoder.attention_scores", "fp32", 50, 1))
    return replace(trace, kv_steps=steps, activations=acts, kv_dtype="fp16")


def test_cache_and_activations_fit_or_spill_by_the_activation_budget(trace):
    p = analyze(traffic_trace(trace), spec(onchip_bytes=100, activation_bytes=40))
    rows = {t.name: t for t in p.traffic}
    # call 1: self cache 8 B fits, cross 32 B fits beside it (40 <= 40): all on-chip.
    # call 2: self 16 B fits, cross 32 B does not fit beside it (48 > 40): cross reads from DRAM.
    cross, self_ = rows["kv_cache.cross_attention"], rows["kv_cache.self_attention"]
    assert cross.bytes_per_audio_s == pytest.approx((2 * (16 + 16) + 2 * 16) / 2)
    assert cross.offchip_bytes_per_audio_s == pytest.approx(2 * 16 / 2)
    assert cross.energy_j_per_audio_s == pytest.approx((64 * 1.0 + 32 * 10.0) / 2 * 1e-12)
    assert self_.offchip_bytes_per_audio_s == 0
    assert self_.energy_j_per_audio_s == pytest.approx(2 * (4 + 4 + 8 + 4) / 2 * 1e-12)
    # activations: each tensor written and read back; 30 B fits the 40 B budget, 50 B does not
    assert rows["activations.encoder"].energy_j_per_audio_s == pytest.approx(2 * 30 * 2 / 2 * 1e-12)
    assert rows["activations.encoder.attention_scores"].offchip_bytes_per_audio_s == pytest.approx(50)
    assert rows["activations.encoder.attention_scores"].dram_j_per_audio_s == pytest.approx(50 * 10e-12)
    # totals: weights as before plus the traffic; off-chip bytes = weights' 70 + cache 16 + activations 50
    weights = analyze(trace, spec(onchip_bytes=100, activation_bytes=40))
    traffic_j = sum(t.energy_j_per_audio_s for t in p.traffic)
    assert p.energy_j_per_audio_s == pytest.approx(weights.energy_j_per_audio_s + traffic_j)
    assert p.energy_j_per_audio_s == pytest.approx(
        p.dram_j_per_audio_s + p.onchip_j_per_audio_s + p.compute_j_per_audio_s
    )
    assert p.offchip_bytes_per_audio_s == pytest.approx(70 + 16 + 50)
    assert p.component_offchip_bytes_per_audio_s["kv_cache"] == pytest.approx(16)
    assert p.component_offchip_bytes_per_audio_s["activations"] == pytest.approx(50)
    assert p.component_energy_j_per_audio_s["kv_cache"] == pytest.approx(
        cross.energy_j_per_audio_s + self_.energy_j_per_audio_s
    )
    assert p.components["kv_cache"] == pytest.approx(
        p.component_energy_j_per_audio_s["kv_cache"] / p.energy_j_per_audio_s
    )
    assert p.baseline_energy_j_per_audio_s == pytest.approx(weights.baseline_energy_j_per_audio_s + traffic_j)
    assert p.kv_dtype == "fp16" and p.onchip_activation_bytes == 40


def test_int8_cache_carries_a_scale_per_head_vector(trace):
    p = analyze(traffic_trace(trace), spec(activation_bytes=10**6), kv_dtype="int8")
    cross = next(t for t in p.traffic if t.name == "kv_cache.cross_attention")
    # 48 elements moved over the trace = 6 head vectors of 8: 48 B + 6 fp32 scales, per 2 s
    assert cross.bytes_per_audio_s == pytest.approx((48 + 6 * 4) / 2)
    assert p.kv_dtype == "int8"


def test_int8_activations_carry_a_scale_per_row(trace):
    from dataclasses import replace

    from weightwise.profile.traffic import ActivationTrace

    # 8 fp32 elements in rows of 4, written 3 times; at int8: 8 B + 2 fp32 scales, written and read back
    acts = (ActivationTrace("encoder", "fp32", 32, 3, row_elements=4),)
    p = analyze(replace(trace, activations=acts), spec(activation_bytes=10**6), act_dtype="int8")
    row = next(t for t in p.traffic if t.name == "activations.encoder")
    assert row.bytes_per_audio_s == pytest.approx(2 * 3 * (8 + 2 * 4) / 2)
    assert p.act_dtype == "int8" and row.dtype == "int8"


def test_unknown_kv_precision_is_one_line(trace):
    from weightwise.errors import InputError

    with pytest.raises(InputError) as err:
        analyze(traffic_trace(trace), spec(), kv_dtype="fp8")
    assert "\n" not in str(err.value) and "--kv-precision" in str(err.value) and "int8" in str(err.value)


def test_traffic_components():
    assert component_of("kv_cache.cross_attention") == ("kv_cache.cross_attention", "kv_cache")
    assert component_of("activations.encoder.attention_scores")[1] == "activations"
