"""Key/value-cache and activation traffic of real whisper-tiny.en on real audio, against the numbers
its architecture implies (computed here from the model's config, not copied from the code)."""

import dataclasses

import pytest

from weightwise.decode import DecodingOptions
from weightwise.profile import analyze, load_device, trace_manifest
from weightwise.profile.energy import ASSUMPTIONS
from weightwise.profile.traffic import ACT_INT8_SCALE_BYTES, KV_INT8_SCALE_BYTES

FP32 = 4  # bytes per value of the fp32 run


@pytest.fixture(scope="module")
def traced(tiny_model, samples):
    trace, results, _ = trace_manifest(tiny_model, samples.head(2))
    return trace, results


@pytest.fixture(scope="module")
def cfg(tiny_model):
    return tiny_model.network.config


def per_position(cfg) -> int:
    """Cached elements per position over all decoder layers: a key and a value of d_model each."""
    return cfg.decoder_layers * 2 * cfg.d_model


def test_cross_attention_cache_is_read_in_full_at_every_decoder_call(traced, cfg):
    trace, _ = traced
    per_call = per_position(cfg) * cfg.max_source_positions  # layers x (K, V) x 1500 x d_model
    assert trace.kv_dtype == "fp32"
    assert sum(s.calls for s in trace.kv_steps) == trace.n_decoder_calls
    assert {s.cross_read for s in trace.kv_steps} == {per_call}
    # written once per window (the first decoder call computes the keys/values of every frame)
    assert sum(s.cross_written * s.calls for s in trace.kv_steps) == trace.n_windows * per_call
    device = load_device("jetson-orin-nano")
    p = analyze(trace, device)
    cross = next(t for t in p.traffic if t.name == "kv_cache.cross_attention")
    moved = (trace.n_decoder_calls + trace.n_windows) * per_call * FP32
    assert cross.bytes_per_audio_s == pytest.approx(moved / trace.audio_s)
    # 18.4 MB in fp32: far over the Jetson's 2 MiB activation budget, so every byte goes to DRAM
    assert cross.largest_nbytes == per_call * FP32 > p.onchip_activation_bytes
    assert cross.offchip_bytes_per_audio_s == pytest.approx(moved / trace.audio_s)
    assert cross.energy_j_per_audio_s == pytest.approx(moved / trace.audio_s * device.dram_pj_per_byte * 1e-12)


def test_self_attention_cache_grows_with_the_position(traced, tiny_model, cfg):
    trace, results = traced
    prompt = len(tiny_model.tokens.prompt)
    # one window per utterance; call t of a window reads the prompt and t generated positions,
    # and there are n_tokens + 1 calls (the last one yields end-of-text)
    reads = sum(prompt + t for r in results for t in range(r.n_tokens + 1))
    writes = sum(prompt + r.n_tokens for r in results)
    assert sum(s.self_read * s.calls for s in trace.kv_steps) == reads * per_position(cfg)
    assert sum(s.self_written * s.calls for s in trace.kv_steps) == writes * per_position(cfg)
    longest = max(r.n_tokens for r in results)
    assert {s.self_read for s in trace.kv_steps} == {(prompt + t) * per_position(cfg) for t in range(longest + 1)}


def test_encoder_activations_from_the_architecture(traced, cfg):
    trace, _ = traced
    acts = {(a.part, a.nbytes): a.count for a in trace.activations}
    frames, d, layers = cfg.max_source_positions, cfg.d_model, cfg.encoder_layers
    # attention scores: heads x 1500 x 1500 per layer per window
    heads = cfg.encoder_attention_heads
    assert acts[("encoder.attention_scores", heads * frames * frames * FP32)] == layers * trace.n_windows
    # FFN hidden: 1500 x ffn_dim per layer per window; conv1 output: d_model x 3000 frames
    assert acts[("encoder", frames * cfg.encoder_ffn_dim * FP32)] == layers * trace.n_windows
    assert acts[("encoder", 2 * frames * d * FP32)] == trace.n_windows
    # 1500 x d_model per layer: norm, q, k, v, attention output, out_proj, norm, fc2; plus the
    # conv2 output, the position-embedding lookup and the final norm
    assert acts[("encoder", frames * d * FP32)] == (8 * layers + 3) * trace.n_windows
    # the decoder's key/value projections go to the cache, not to activations
    assert ("decoder", frames * d * FP32) not in acts


def test_kv_precision_scales_the_cache_bytes(traced, cfg):
    trace, _ = traced
    device = load_device("jetson-orin-nano")

    def cache(kv_dtype):
        p = analyze(trace, device, kv_dtype=kv_dtype)
        assert p.kv_dtype == kv_dtype
        return {t.name: t for t in p.traffic if t.component == "kv_cache"}

    fp32, head_dim = cache("fp32"), cfg.d_model // cfg.decoder_attention_heads
    for kv_dtype, factor in {"fp16": 0.5, "bf16": 0.5, "int8": (1 + KV_INT8_SCALE_BYTES / head_dim) / 4}.items():
        rows = cache(kv_dtype)
        for name, row in rows.items():
            assert row.bytes_per_audio_s == pytest.approx(factor * fp32[name].bytes_per_audio_s), (kv_dtype, name)
        # the cross cache still overflows 2 MiB at every precision: its energy scales the same way
        cross = "kv_cache.cross_attention"
        assert rows[cross].energy_j_per_audio_s == pytest.approx(factor * fp32[cross].energy_j_per_audio_s)
    # activations keep the run's dtype whatever the cache's
    assert analyze(trace, device, kv_dtype="int8").component_energy_j_per_audio_s["activations"] == pytest.approx(
        analyze(trace, device).component_energy_j_per_audio_s["activations"]
    )


def test_huge_activation_budget_charges_on_chip_energy_only(traced):
    trace, _ = traced
    device = load_device("jetson-orin-nano")
    huge = dataclasses.replace(device, onchip_activation_bytes=2**40)
    p, q = analyze(trace, huge), analyze(trace, device)
    for t in p.traffic:
        assert t.offchip_bytes_per_audio_s == 0 and t.dram_j_per_audio_s == 0, t.name
        assert t.energy_j_per_audio_s == pytest.approx(t.bytes_per_audio_s * device.onchip_pj_per_byte * 1e-12)
    assert p.component_offchip_bytes_per_audio_s["kv_cache"] == 0
    assert p.component_offchip_bytes_per_audio_s["activations"] == 0
    weights_offchip = sum(r.bytes_read_per_audio_s for r in p.tensors if r.placement == "dram")
    assert p.offchip_bytes_per_audio_s == pytest.approx(weights_offchip)
    assert p.energy_j_per_audio_s < q.energy_j_per_audio_s
    assert q.offchip_bytes_per_audio_s > weights_offchip


def test_without_a_cache_keys_and_values_are_activations(tiny_model, samples, cfg):
    trace, _, _ = trace_manifest(tiny_model, samples.head(1), DecodingOptions(use_cache=False))
    assert trace.kv_steps == () and trace.kv_dtype == ""
    acts = {(a.part, a.nbytes): a.count for a in trace.activations}
    # every call recomputes the cross-attention keys and values of all 1500 frames, per layer
    kv = cfg.max_source_positions * cfg.d_model * FP32
    assert acts[("decoder", kv)] == cfg.decoder_layers * 2 * trace.n_decoder_calls
    assert not any(t.component == "kv_cache" for t in analyze(trace, load_device("mcu-npu")).traffic)


def activation_rows(p):
    return {t.name: t for t in p.traffic if t.component == "activations"}


def attention_mac_j(p):
    return sum(op["energy_j_per_audio_s"] for op in p.attention_ops)


def test_default_activation_charge_is_the_runs(traced):
    trace, _ = traced
    device = load_device("jetson-orin-nano")
    p = analyze(trace, device)
    assert p.act_dtype == "fp32" and p.fused_attention is False and p.assumptions == ASSUMPTIONS
    # as before the option: each traced tensor written and read back at the bytes the run stored
    for name, row in activation_rows(p).items():
        traced_bytes = sum(2 * a.nbytes * a.count for a in trace.activations if f"activations.{a.part}" == name)
        assert row.bytes_per_audio_s == pytest.approx(traced_bytes / trace.audio_s), name
    # naming the run's own dtype and unfused attention changes nothing
    q = analyze(trace, device, act_dtype="fp32", fused_attention=False)
    assert q.traffic == p.traffic and q.attention_ops == p.attention_ops
    assert q.energy_j_per_audio_s == p.energy_j_per_audio_s
    assert q.offchip_bytes_per_audio_s == p.offchip_bytes_per_audio_s


def test_activation_precision_scales_the_activation_bytes(traced, cfg, tiny_model):
    trace, _ = traced
    device = load_device("jetson-orin-nano")
    fp32 = analyze(trace, device)
    base = activation_rows(fp32)
    for act_dtype in ("fp16", "bf16"):
        p = analyze(trace, device, act_dtype=act_dtype)
        rows = activation_rows(p)
        assert p.act_dtype == act_dtype and rows.keys() == base.keys()
        for name, row in rows.items():
            assert row.dtype == act_dtype
            assert row.bytes_per_audio_s == pytest.approx(0.5 * base[name].bytes_per_audio_s), name
        # attention MACs run at the activation dtype; weights and the cache are untouched
        mac_ratio = device.pj_per_mac_for(act_dtype) / device.pj_per_mac_for("fp32")
        assert attention_mac_j(p) == pytest.approx(mac_ratio * attention_mac_j(fp32))
        for group in ("token_embedding_projection", "kv_cache"):
            assert p.component_energy_j_per_audio_s[group] == fp32.component_energy_j_per_audio_s[group]
        assert p.energy_j_per_audio_s == pytest.approx(
            fp32.energy_j_per_audio_s
            - fp32.component_energy_j_per_audio_s["activations"]
            + p.component_energy_j_per_audio_s["activations"]
            - attention_mac_j(fp32)
            + attention_mac_j(p)
        )

    # int8: a byte per element plus one fp32 scale per row, from the encoder's architecture
    frames, d, ffn = cfg.max_source_positions, cfg.d_model, cfg.encoder_ffn_dim
    layers, heads, windows = cfg.encoder_layers, cfg.encoder_attention_heads, trace.n_windows

    def int8(elements, row):
        return elements * (1 + ACT_INT8_SCALE_BYTES / row)

    # conv1 output (d channels x 3000 frames, a scale per frame), 8 per layer + 3 of frames x d, FFN hidden
    encoder = int8(2 * frames * d, d) + (8 * layers + 3) * int8(frames * d, d) + layers * int8(frames * ffn, ffn)
    scores = layers * int8(heads * frames * frames, frames)  # a scale per query and head
    rows = activation_rows(analyze(trace, device, act_dtype="int8"))
    assert rows["activations.encoder"].bytes_per_audio_s == pytest.approx(2 * windows * encoder / trace.audio_s)
    assert rows["activations.encoder.attention_scores"].bytes_per_audio_s == pytest.approx(
        2 * windows * scores / trace.audio_s
    )
    # decoder rows are at least d_model long (module outputs) or the prompt (score rows)
    shortest = {"activations.decoder": d, "activations.decoder.attention_scores": len(tiny_model.tokens.prompt)}
    for name, row in shortest.items():
        ratio = rows[name].bytes_per_audio_s / base[name].bytes_per_audio_s
        assert 0.25 < ratio <= (1 + ACT_INT8_SCALE_BYTES / row) / 4, name

    # a smaller tensor may now fit the on-chip activation budget: at fp16 the 1500 x d tensors do
    # (1.15 MB < 2 MiB), the conv1 output and the FFN hidden do not
    budget = device.onchip_activation_bytes
    sizes = {2 * frames * d * 2: 1, frames * d * 2: 8 * layers + 3, frames * ffn * 2: layers}
    spilled = sum(2 * windows * count * size for size, count in sizes.items() if size > budget)
    assert 0 < spilled < 2 * windows * sum(size * count for size, count in sizes.items())
    row = activation_rows(analyze(trace, device, act_dtype="fp16"))["activations.encoder"]
    assert row.offchip_bytes_per_audio_s == pytest.approx(spilled / trace.audio_s)
    assert base["activations.encoder"].offchip_bytes_per_audio_s == base["activations.encoder"].bytes_per_audio_s


def test_fused_attention_removes_exactly_the_score_traffic(traced):
    trace, _ = traced
    device = load_device("jetson-orin-nano")
    for options in ({}, {"act_dtype": "int8", "kv_dtype": "int8"}):
        q = analyze(trace, device, **options)
        p = analyze(trace, device, fused_attention=True, **options)
        scores = [t for t in q.traffic if t.name.endswith(".attention_scores")]
        assert {t.name for t in scores} == {
            "activations.encoder.attention_scores",
            "activations.decoder.attention_scores",
        }
        assert p.traffic == [t for t in q.traffic if t not in scores]
        assert p.energy_j_per_audio_s == pytest.approx(
            q.energy_j_per_audio_s - sum(t.energy_j_per_audio_s for t in scores)
        )
        assert p.offchip_bytes_per_audio_s == pytest.approx(
            q.offchip_bytes_per_audio_s - sum(t.offchip_bytes_per_audio_s for t in scores)
        )
        assert p.compute_j_per_audio_s == q.compute_j_per_audio_s  # the score MACs are still done
        assert p.fused_attention and not q.fused_attention
        assert any("attention fused" in a for a in p.assumptions)
        assert not any("attention fused" in a for a in q.assumptions)


def test_unknown_activation_precision_is_one_line(traced):
    from weightwise.errors import InputError

    trace, _ = traced
    with pytest.raises(InputError) as err:
        analyze(trace, load_device("jetson-orin-nano"), act_dtype="fp8")
    assert "\n" not in str(err.value) and "--activation-precision" in str(err.value) and "int8" in str(err.value)
