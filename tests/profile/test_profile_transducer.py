"""Profiling the shipped transducer: encoder, predictor and joiner invocations follow the decode."""

from __future__ import annotations

import math

import pytest

from weightwise.audio import load_audio
from weightwise.data import Manifest, load_manifest
from weightwise.models import load_model
from weightwise.profile import load_device, profile


@pytest.fixture(scope="module")
def profiled(shared_data_dir):
    fsdd = load_manifest(shared_data_dir / "speech" / "fsdd_digits" / "manifest.jsonl")
    clips = Manifest(tuple(u for u in fsdd if u.extra.get("split") == "test")[::100], "fsdd test 3")
    model = load_model("transducer-fsdd")
    return model, clips, profile(model, clips, load_device("jetson-orin-nano"))


def test_component_invocations_follow_the_decode(profiled):
    model, clips, result = profiled
    config, audio_s = model.config, result.audio_s
    frames = 0
    for utt in clips:
        feature_frames = math.ceil(len(load_audio(utt.audio_path)) / config.hop_length)
        frames += math.ceil(feature_frames / config.stack_frames)
    rates = result.component_invocations_per_audio_s
    decode = result.decode
    assert set(rates) == {"encoder", "predictor", "joiner"}
    # the encoder runs once per chunk of chunk_frames encoder frames (a block reused by several
    # virtual layers, paper 4's repetition, is invoked once per use)
    repeats = config.n_layers / config.unique_layers
    assert rates["encoder"] == pytest.approx(decode["n_windows"] * repeats / audio_s)
    assert decode["n_windows"] >= frames / config.chunk_frames
    # greedy: the predictor once per file (start symbol) and once per emitted label
    assert decode["n_decoder_calls"] == decode["n_tokens"] + decode["n_files"]
    assert rates["predictor"] == pytest.approx(decode["n_decoder_calls"] / audio_s)
    # the joiner's output layer once per frame (blank) and once more per emitted label
    assert rates["joiner"] == pytest.approx((frames + decode["n_tokens"]) / audio_s)
    assert rates["joiner"] > rates["encoder"] and rates["joiner"] > rates["predictor"]


def test_energy_per_component(profiled):
    _, _, result = profiled
    energy = result.component_energy_j_per_audio_s
    assert {"encoder", "predictor", "joiner"} <= set(energy)
    assert all(energy[c] > 0 for c in ("encoder", "predictor", "joiner"))
    assert result.wer is not None and result.model_bytes < 2_000_000
    assert {"encoder.attention", "encoder.ffn", "encoder.conv", "joiner", "predictor"} <= set(result.component_details)


def test_shared_low_rank_factor_is_stored_once_and_invoked_per_layer(profiled):
    """Paper 4's shared factors: one stored tensor, read by every layer that uses it."""
    import torch

    from weightwise.models.transducer import TransducerASR, TransducerConfig, TransducerNetwork, count_params
    from weightwise.models.whisper import ModelInfo

    _, clips, _ = profiled
    torch.manual_seed(0)
    config = TransducerConfig(n_layers=3, lowrank_rank=16, shared_factor="in")
    network = TransducerNetwork(config)
    info = ModelInfo("lowrank-shared", "test", "-", "fp32", count_params(network), family="transducer")
    result = profile(
        TransducerASR(network, info), Manifest(clips.utterances[:1], "one"), load_device("jetson-orin-nano")
    )
    shared = [t for t in result.tensors if t.name.endswith("ffn1.fc1.down.weight")]
    assert len(shared) == 1  # stored once, whatever the number of layers using it
    chunks_per_s = result.decode["n_windows"] / result.audio_s
    assert shared[0].invocations_per_audio_s == pytest.approx(3 * chunks_per_s)
