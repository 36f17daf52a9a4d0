"""Sensitivity on real tiny.en and real audio: KL behaves, encoder re-runs are exact, a killed sweep resumes."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from weightwise.compress.candidates import Candidate, CandidateSpace, applied, weight_groups
from weightwise.compress.configs import Quant
from weightwise.compress.sensitivity import SensitivityCache, build_reference, encoder_from, score, sensitivity

INT8, INT4 = Candidate("int8", Quant(8)), Candidate("int4", Quant(4, "group", 64))
SPACE = CandidateSpace((INT8, INT4), uniform=())


@pytest.fixture(scope="module")
def reference(tiny_model, samples, weightwise_cache):
    from weightwise.models import load_model

    runtime = load_model("whisper-tiny.en", precision="fp16")
    groups = weight_groups(tiny_model.network)
    return build_reference(tiny_model, runtime, samples.head(2), [m for g in groups for m in g.modules])


@pytest.fixture(scope="module")
def groups(tiny_model):
    return {g.name: g for g in weight_groups(tiny_model.network)}


def test_reference_keeps_every_window_and_the_models_own_tokens(tiny_model, reference):
    assert len(reference.windows) == 2 and [t[0] for t in reference.transcripts] == [
        "1089-134691-0000",
        "1089-134686-0001",
    ]
    for window, (_id, text) in zip(reference.windows, reference.transcripts, strict=False):
        prompt = len(tiny_model.tokens.prompt)
        assert tiny_model.decode_text(window.ids[0, prompt:].tolist()) == text
        assert window.logprobs.shape == (window.ids.shape[1] - prompt + 1, 51864)
        # greedy output: every reference token is the argmax of the reference distribution
        assert torch.equal(window.logprobs[:-1].argmax(-1), window.ids[0, prompt:])
    assert reference.trace.precision == "fp16" and reference.runtime_dtype == torch.float16


def test_encoder_re_run_from_a_layer_equals_the_full_encoder(tiny_model, reference):
    for window in reference.windows:
        for layer in range(4):
            out = encoder_from(tiny_model, layer, window.layer_inputs[layer])
            torch.testing.assert_close(out, window.encoder_out, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_kl_is_zero_uncompressed_and_grows_as_bits_drop(tiny_model, reference, groups):
    for name in ("proj_out", "model.encoder.layers.3.fc1", "model.decoder.layers.1.fc2"):
        group = next(g for g in groups.values() if name in g.modules)
        assert score(tiny_model, reference, group)["kl"] == pytest.approx(0.0, abs=1e-7)
        kls = []
        for candidate in (INT8, INT4):
            with applied(tiny_model.network, group, candidate.config):
                kls.append(score(tiny_model, reference, group)["kl"])
        assert 0 < kls[0] < kls[1], (name, kls)


def test_encoder_groups_can_be_scored_on_the_first_windows_only(tiny_model, reference, groups):
    group = groups["model.encoder.layers.3.fc2"]
    capped = dataclasses.replace(reference, encoder_windows=1)
    first_only = dataclasses.replace(reference, windows=reference.windows[:1])
    with applied(tiny_model.network, group, INT8.config):
        assert score(tiny_model, capped, group) == score(tiny_model, first_only, group)
        assert score(tiny_model, capped, group) != score(tiny_model, reference, group)
    decoder = groups["model.decoder.layers.0.fc1"]  # decoder groups always use every window
    with applied(tiny_model.network, decoder, INT8.config):
        assert score(tiny_model, capped, decoder) == score(tiny_model, reference, decoder)


class KillAfter:
    """A progress wrapper that stops the sweep after `n` jobs, as a kill would."""

    def __init__(self, n: int):
        self.n, self.seen = n, []

    def __call__(self, jobs, label):
        self.seen.append(len(jobs))
        for i, job in enumerate(jobs):
            if i == self.n:
                raise KeyboardInterrupt
            yield job


@pytest.mark.slow
def test_killed_sweep_resumes_with_only_the_missing_entries(tiny_model, reference, groups, tmp_path):
    chosen = [groups["model.decoder.layers.0.fc1"], groups["model.decoder.layers.3.self_attn.v_proj"]]
    path = tmp_path / "sens.jsonl"
    with pytest.raises(KeyboardInterrupt):
        sensitivity(tiny_model, reference, chosen, SPACE, SensitivityCache(path), progress=KillAfter(4))
    assert len(path.read_text().splitlines()) == 4
    with path.open("a") as f:  # a kill in the middle of a write leaves a torn line
        f.write('{"group": "model.deco')
    counter = KillAfter(10**9)
    table = sensitivity(tiny_model, reference, chosen, SPACE, SensitivityCache(path), progress=counter)
    assert counter.seen == [2]  # 6 jobs (keep + 2 candidates, 2 groups): only the last 2 recomputed
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 6
    fresh = sensitivity(tiny_model, reference, chosen, SPACE)
    for key, entry in fresh.items():
        assert table[key].kl == pytest.approx(entry.kl, rel=1e-6, abs=1e-12) and table[key].tensors == entry.tensors
    assert table[(chosen[0].name, SPACE.keep.key)].kl == 0.0
    again = KillAfter(10**9)
    sensitivity(tiny_model, reference, chosen, SPACE, SensitivityCache(path), progress=again)
    assert again.seen == [0]


def test_skipped_candidates_are_scored_once_another_device_wants_them(tiny_model, reference, groups, tmp_path):
    chosen = [groups["model.decoder.layers.2.fc2"]]
    path = tmp_path / "sens.jsonl"

    def skip_int4(group, keep, tensors):
        return tensors[0].dtype == "int4"

    table = sensitivity(tiny_model, reference, chosen, SPACE, SensitivityCache(path), skip=skip_int4)
    int4 = table[(chosen[0].name, INT4.key)]
    assert int4.applicable and int4.kl is None and "dominated" in int4.reason and int4.tensors
    counter = KillAfter(10**9)
    table = sensitivity(tiny_model, reference, chosen, SPACE, SensitivityCache(path), progress=counter)
    assert counter.seen == [1] and table[(chosen[0].name, INT4.key)].kl > 0


def test_a_method_that_does_not_fit_a_module_is_recorded_not_raised(tiny_model, reference, groups):
    conv1 = groups["model.encoder.conv1"]  # 80 x 3 = 240 inputs: group size 64 does not divide them
    table = sensitivity(tiny_model, reference, [conv1], SPACE)
    entry = table[(conv1.name, INT4.key)]
    assert not entry.applicable and "group_size 64" in entry.reason
    assert isinstance(tiny_model.network.model.encoder.conv1, torch.nn.Conv1d)


def test_a_candidate_limited_to_some_groups_is_tried_only_there(tiny_model, reference, groups, tmp_path):
    """A space may try 4-bit on the decoder only (each entry costs an accuracy pass): the sweep
    scores int4 where its `groups` match and int8 everywhere, and the limit survives JSON."""
    int4_decoder = dataclasses.replace(INT4, groups=("re:model\\.decoder\\..*",))
    space = CandidateSpace((INT8, int4_decoder), uniform=())
    chosen = [groups["model.decoder.layers.1.fc1"], groups["model.encoder.layers.1.fc1"]]
    counter = KillAfter(10**9)
    table = sensitivity(tiny_model, reference, chosen, space, SensitivityCache(tmp_path / "s.jsonl"), progress=counter)
    assert counter.seen == [5]  # keep + int8 on both, int4 on the decoder's only
    assert set(table) == {(g.name, c.key) for g in chosen for c in (space.keep, INT8)} | {(chosen[0].name, INT4.key)}
    assert [c.label for c in space.candidates_for(chosen[1])] == ["fp16", "int8"]
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space.to_dict()))
    assert CandidateSpace.from_json(path).candidates == space.candidates


@pytest.mark.parametrize("groups_value", [[], "re:.*", [3], ["re:("]])
def test_a_bad_candidate_groups_limit_is_one_line(tmp_path, groups_value):
    from weightwise.errors import InputError

    path = tmp_path / "space.json"
    path.write_text(json.dumps({"candidates": [{"label": "int8", "quant": {"bits": 8}, "groups": groups_value}]}))
    with pytest.raises(InputError, match=r"space.json: .*(groups|group regex)") as err:
        CandidateSpace.from_json(path)
    assert "\n" not in str(err.value)
