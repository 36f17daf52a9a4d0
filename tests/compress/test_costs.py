"""Replaying recorded calls on one module gives the profiler's own counts for a whole decode."""

from __future__ import annotations

import pytest
import torch

from weightwise.compress.candidates import KEEP, Candidate, applied, weight_groups
from weightwise.compress.configs import Quant
from weightwise.compress.costs import group_tensors, replay, trace_calls


@pytest.fixture(scope="module")
def tiny_fp16(weightwise_cache):
    from weightwise.models import load_model

    return load_model("whisper-tiny.en", precision="fp16")


@pytest.fixture(scope="module")
def traced(tiny_model, samples):
    groups = weight_groups(tiny_model.network)
    trace, calls = trace_calls(tiny_model, samples.head(2), [m for g in groups for m in g.modules])
    return groups, trace, calls


def by_name(tensors):
    return {t.name: t for t in tensors}


def test_replay_of_every_dense_group_equals_the_real_trace(tiny_model, traced):
    groups, trace, calls = traced
    assert len(groups) == 67  # 2 convs + 24 encoder + 40 decoder linears + the tied embedding/projection
    tied = [g for g in groups if len(g.modules) > 1]
    assert [g.modules for g in tied] == [("model.decoder.embed_tokens", "proj_out")]
    for group in groups:
        modules = {n: tiny_model.network.get_submodule(n) for n in group.modules}
        replayed = replay(modules, {n: calls[n] for n in group.modules})
        real = group_tensors(trace, set(group.modules))
        assert by_name(replayed) == by_name(real), group.name
        assert all(t.calls > 0 for t in replayed)


def test_replay_at_runtime_precision_equals_the_fp16_models_trace(tiny_model, tiny_fp16, samples):
    """fp32 modules replayed as fp16 copies count what the fp16 model's own decode counts."""
    groups = weight_groups(tiny_fp16.network)
    names = [m for g in groups for m in g.modules]
    trace, calls = trace_calls(tiny_fp16, samples.head(2), names)
    for group in groups[::7] + [g for g in groups if len(g.modules) > 1]:
        modules = {n: tiny_model.network.get_submodule(n) for n in group.modules}
        replayed = replay(modules, {n: calls[n] for n in group.modules}, torch.float16)
        assert by_name(replayed) == by_name(group_tensors(trace, set(group.modules))), group.name
    assert tiny_model.network.model.encoder.conv1.weight.dtype == torch.float32  # copies, not the model


def test_compressed_counts_follow_storage(tiny_model, traced):
    """int4 group-64 codes: half a byte per weight plus a 4-byte scale per 64 weights, same calls and MACs."""
    groups, _trace, calls = traced
    group = next(g for g in groups if g.name == "model.decoder.layers.1.fc1")
    counts = {n: calls[n] for n in group.modules}
    with applied(tiny_model.network, group, KEEP.config) as modules:
        keep = by_name(replay(modules, counts))["model.decoder.layers.1.fc1.weight"]
    int4 = Candidate("int4", Quant(4, "group", 64))
    with applied(tiny_model.network, group, int4.config) as modules:
        packed = by_name(replay(modules, counts))["model.decoder.layers.1.fc1.weight"]
    assert isinstance(tiny_model.network.get_submodule(group.name), torch.nn.Linear)  # restored
    assert keep.nbytes == 1536 * 384 * 2 and keep.dtype == "fp16"
    assert packed.nbytes == 1536 * 384 // 2 + 4 * 1536 * 384 // 64 and packed.dtype == "int4"
    assert packed.calls == keep.calls and packed.macs == keep.macs
    assert packed.bytes_read == packed.calls * packed.nbytes
