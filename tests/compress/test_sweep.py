"""The sensitivity sweep on Ray: the local sweep's entries, each computed once, appended by the driver."""

import json

import pytest

from weightwise.compress.candidates import Candidate, CandidateSpace, weight_groups
from weightwise.compress.configs import Quant
from weightwise.compress.sensitivity import SensitivityCache, build_reference, sensitivity
from weightwise.evaluate.runtime import set_threads, threads
from weightwise.executors import ExecutorConfig, open_executor

SPACE = CandidateSpace((Candidate("int8", Quant(8)), Candidate("int4", Quant(4, "group", 64))), uniform=())


@pytest.mark.slow
def test_ray_sweep_gives_the_local_entries(ray_cluster, tiny_model, samples, tmp_path):
    from weightwise.models import load_model

    groups = {g.name: g for g in weight_groups(tiny_model.network)}
    chosen = [groups["model.decoder.layers.0.fc1"], groups["model.encoder.layers.3.fc2"]]
    runtime = load_model("whisper-tiny.en", precision="fp16")
    before = threads()
    set_threads(1)
    try:
        reference = build_reference(tiny_model, runtime, samples.head(1), [m for g in chosen for m in g.modules])
        local = sensitivity(tiny_model, reference, chosen, SPACE, SensitivityCache(tmp_path / "local.jsonl"))
        with open_executor(ExecutorConfig("ray", threads=1)) as executor:
            cache = SensitivityCache(tmp_path / "ray.jsonl")
            ray = sensitivity(tiny_model, reference, chosen, SPACE, cache, executor=executor)
    finally:
        set_threads(before)
    lines = [json.loads(line) for line in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert sorted((e["group"], e["candidate"]) for e in lines) == sorted(local)  # each entry once
    for key, entry in local.items():
        assert (ray[key].kl, ray[key].nll_delta, ray[key].tensors) == (entry.kl, entry.nll_delta, entry.tensors)
    assert all(e.kl > 0 for k, e in local.items() if k[1] != SPACE.keep.key)  # scored, not skipped
    with open_executor(ExecutorConfig("ray", threads=1)) as executor:  # a rerun finds everything cached
        again = sensitivity(
            tiny_model, reference, chosen, SPACE, SensitivityCache(tmp_path / "ray.jsonl"), executor=executor
        )
    assert again == ray and len((tmp_path / "ray.jsonl").read_text().splitlines()) == len(local)
