"""Profiling real whisper-tiny.en on real audio: counts agree with the decode, bytes with storage."""

import json

import pytest

from weightwise.decode import DecodingOptions
from weightwise.profile import analyze, load_device, trace_manifest


@pytest.fixture(scope="module")
def traced(tiny_model, samples):
    trace, results, _ = trace_manifest(tiny_model, samples.head(2))
    return trace, results


def rows(trace):
    return {t.name: t for t in trace.tensors}


def test_invocations_follow_the_decode(traced, tiny_model):
    trace, results = traced
    t = rows(trace)
    assert trace.n_windows == 2 and trace.n_files == 2
    # greedy with a cache: one decoder call per text token plus the eot step, per window
    assert trace.n_decoder_calls == sum(r.n_tokens for r in results) + trace.n_windows
    assert t["model.encoder.layers.0.fc1.weight"].calls == trace.n_windows
    assert t["model.decoder.layers.0.fc1.weight"].calls == trace.n_decoder_calls
    # cross-attention keys/values are computed once per window and cached
    assert t["model.decoder.layers.0.encoder_attn.k_proj.weight"].calls == trace.n_windows
    assert t["model.decoder.layers.0.encoder_attn.q_proj.weight"].calls == trace.n_decoder_calls
    assert trace.audio_s == pytest.approx(sum(r.audio_s for r in results))


def test_tied_projection_and_bytes(traced, tiny_model):
    trace, _ = traced
    emb = rows(trace)["model.decoder.embed_tokens.weight"]
    vocab, d = tiny_model.network.config.vocab_size, tiny_model.network.config.d_model
    assert emb.nbytes == vocab * d * 4
    assert emb.users == ("model.decoder.embed_tokens", "proj_out")
    # the projection reads the whole table per decoder call; the embedding only the looked-up rows
    prompt = len(tiny_model.tokens.prompt)
    looked_up_rows = trace.n_decoder_calls - trace.n_windows + prompt * trace.n_windows
    assert emb.bytes_read == trace.n_decoder_calls * emb.nbytes + looked_up_rows * d * 4
    assert emb.macs == trace.n_decoder_calls * vocab * d
    assert sum(t.nbytes for t in trace.tensors) == 4 * tiny_model.info.n_params


def test_fc1_macs(traced, tiny_model):
    trace, _ = traced
    cfg = tiny_model.network.config
    enc = rows(trace)["model.encoder.layers.0.fc1.weight"]
    assert enc.macs == trace.n_windows * 1500 * cfg.d_model * cfg.encoder_ffn_dim


def test_without_kv_cache_same_fetches_more_macs(tiny_model, samples, traced):
    cached, _ = traced
    plain, _, _ = trace_manifest(tiny_model, samples.head(2), DecodingOptions(use_cache=False))
    a, b = rows(cached), rows(plain)
    name = "model.decoder.layers.0.fc1.weight"
    assert a[name].calls == b[name].calls and a[name].bytes_read == b[name].bytes_read
    assert b[name].macs > a[name].macs
    # without a cache, cross-attention keys/values are recomputed at every step
    kname = "model.decoder.layers.0.encoder_attn.k_proj.weight"
    assert b[kname].calls == plain.n_decoder_calls > a[kname].calls


@pytest.mark.parametrize("precision,ratio", [("fp16", 0.5), ("int8", 0.25)])
def test_lower_precision_stores_fewer_bytes(precision, ratio, samples, traced):
    from weightwise.models import load_model

    fp32, _ = traced
    trace, _, _ = trace_manifest(load_model("whisper-tiny.en", precision=precision), samples.head(1))
    name = "model.decoder.layers.0.fc1.weight"
    n_out = rows(fp32)[name].shape[0]
    expected = rows(fp32)[name].nbytes * ratio + (4 * n_out if precision == "int8" else 0)  # + scales
    assert rows(trace)[name].nbytes == expected


def test_knapsack_beats_streaming_on_every_device(traced):
    trace, _ = traced
    for name in ("jetson-orin-nano", "mcu-npu", "x86-laptop"):
        device = load_device(name)
        p = analyze(trace, device)
        assert p.onchip_bytes_used <= device.onchip_weight_bytes
        assert p.offchip_bytes_per_audio_s <= p.baseline_offchip_bytes_per_audio_s
        assert p.energy_j_per_audio_s <= p.baseline_energy_j_per_audio_s
        total = p.dram_j_per_audio_s + p.onchip_j_per_audio_s + p.compute_j_per_audio_s
        assert p.energy_j_per_audio_s == pytest.approx(total)


def test_cli_profile_contract(tmp_path, tiny_model, capsys):
    from weightwise.cli import main

    out, plot = tmp_path / "p.json", tmp_path / "p.png"
    assert (
        main(
            [
                "profile",
                "--model",
                "whisper-tiny.en",
                "--device",
                "mcu-npu",
                "--data",
                "samples",
                "--limit",
                "1",
                "--kv-precision",
                "int8",
                "--activation-precision",
                "fp16",
                "--fused-attention",
                "--meter",
                "null",
                "--out",
                str(out),
                "--plot",
                str(plot),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    # the meter's name, why it measured nothing, and its energy are separate fields; `measured` stays
    assert (data["meter"], data["measured_energy_j"]) == ("null", None)
    assert "disabled" in data["meter_reason"] and data["measured"]["reason"] == data["meter_reason"]
    for key in (
        "device",
        "audio_s",
        "energy_j_per_audio_s",
        "offchip_bytes_per_audio_s",
        "baseline_offchip_bytes_per_audio_s",
        "components",
        "tensors",
        "traffic",
        "component_energy_j_per_audio_s",
        "component_offchip_bytes_per_audio_s",
    ):
        assert key in data
    assert data["device"] == "mcu-npu" and data["kv_dtype"] == "int8"
    assert data["act_dtype"] == "fp16" and data["fused_attention"] is True
    assert any("attention fused" in a for a in data["assumptions"])
    assert data["onchip_activation_bytes"] == load_device("mcu-npu").onchip_activation_bytes
    groups = {"encoder", "decoder", "token_embedding_projection", "kv_cache", "activations"}
    assert set(data["components"]) == set(data["component_energy_j_per_audio_s"]) == groups
    assert set(data["component_offchip_bytes_per_audio_s"]) == groups
    assert sum(data["component_energy_j_per_audio_s"].values()) == pytest.approx(data["energy_j_per_audio_s"])
    assert sum(data["component_offchip_bytes_per_audio_s"].values()) == pytest.approx(data["offchip_bytes_per_audio_s"])
    names = {t["name"] for t in data["traffic"]}
    assert names >= {"kv_cache.cross_attention", "kv_cache.self_attention", "activations.encoder"}
    assert not any(name.endswith("attention_scores") for name in names)  # fused
    assert set(data["tensors"][0]) >= {"name", "invocations_per_audio_s", "nbytes", "placement", "energy_j_per_audio_s"}
    assert sum(data["components"].values()) == pytest.approx(1.0)
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "top 15" in printed and "kv_cache.cross_attention" in printed and "activations" in printed


def test_cli_profile_unknown_device(capsys):
    from weightwise.cli import main

    assert main(["profile", "--device", "toaster", "--data", "samples", "--out", "x.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "toaster" in err[0]


def test_cli_profile_unknown_activation_precision(tmp_path, capsys):
    from weightwise.cli import main

    out = tmp_path / "p.json"
    assert (
        main(
            [
                "profile",
                "--device",
                "jetson-orin-nano",
                "--data",
                "samples",
                "--activation-precision",
                "fp8",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--activation-precision" in err[0] and "'fp8'" in err[0]
    assert not out.exists()


def test_cli_profile_device_file_missing_the_activation_budget(tmp_path, capsys):
    from weightwise.cli import main
    from weightwise.profile.devices import DEVICES_DIR

    text = (DEVICES_DIR / "jetson-orin-nano.toml").read_text()
    start = text.index("[memory.onchip_activation_bytes]")
    board = tmp_path / "board.toml"
    board.write_text(text[:start] + text[text.index("[memory.onchip_pj_per_byte]") :])
    out = tmp_path / "p.json"
    assert main(["profile", "--device", str(board), "--data", "samples", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(board) in err[0] and "memory.onchip_activation_bytes" in err[0]
    assert not out.exists()


def test_scaled_trace_matches_a_real_trace(traced, tiny_model, samples):
    from weightwise.data import Manifest
    from weightwise.profile.trace import scale_trace

    reference, _ = traced  # first two samples
    other = Manifest(samples.utterances[2:], samples.source)
    real, _, _ = trace_manifest(tiny_model, other)
    scaled = scale_trace(reference, real.n_windows, real.n_decoder_calls, real.n_tokens, real.audio_s, real.n_files)
    a, b = rows(scaled), rows(real)
    for name, t in b.items():
        assert a[name].calls == t.calls, name
        if t.bytes_read == t.calls * t.nbytes:  # whole-tensor reads scale exactly
            assert a[name].bytes_read == t.bytes_read, name
        else:  # lookups (token and position rows) scale approximately
            assert a[name].bytes_read == pytest.approx(t.bytes_read, rel=0.05), name
        assert a[name].macs == pytest.approx(t.macs, rel=0.15, abs=1)
    # cross-attention cache traffic scales exactly (self-attention reads grow with the square of
    # the tokens per window and scale only roughly, but cost little: the group's energy is checked)
    for part in ("cross_read", "cross_written"):
        assert sum(getattr(s, part) * s.calls for s in scaled.kv_steps) == pytest.approx(
            sum(getattr(s, part) * s.calls for s in real.kv_steps)
        ), part
    device = load_device("jetson-orin-nano")
    # bench prices scaled traces: the deployment options must carry over too
    for options in ({}, {"act_dtype": "fp16"}, {"act_dtype": "int8", "kv_dtype": "int8", "fused_attention": True}):
        p, q = analyze(scaled, device, **options), analyze(real, device, **options)
        assert p.energy_j_per_audio_s == pytest.approx(q.energy_j_per_audio_s, rel=0.02), options
        for group in ("kv_cache", "activations"):
            assert p.component_energy_j_per_audio_s[group] == pytest.approx(
                q.component_energy_j_per_audio_s[group], rel=0.02
            ), (group, options)
    assert p.act_dtype == "int8" and p.fused_attention
