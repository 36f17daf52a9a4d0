"""weightwise.compress.loading.load_model_with_plan: one function for the CLI's and the bench's plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from weightwise.compress import Plan
from weightwise.compress.loading import load_model_with_plan
from weightwise.errors import InputError

INT8 = {"rules": [{"match": "re:model\\.decoder\\.layers\\.0\\.fc1", "quant": {"bits": 8}}]}


def test_a_plan_path_and_a_plan_object_give_the_same_compressed_model(tmp_path: Path, weightwise_cache):
    path = tmp_path / "int8-fc1.json"
    path.write_text(json.dumps(INT8))
    by_path = load_model_with_plan("whisper-tiny.en", plan=path)
    by_object = load_model_with_plan("whisper-tiny.en", plan=Plan.from_dict(INT8), pack=False)
    assert by_path.info.plan == "int8-fc1" and by_path.plan is not None
    fc1 = "model.decoder.layers.0.fc1"
    assert type(by_path.network.get_submodule(fc1)).__name__ == "PackedQuantModule"  # runs on the int8 kernel
    assert type(by_object.network.get_submodule(fc1)).__name__ == "QuantModule"  # simulated, to save
    packed, simulated = by_path.network.get_submodule(fc1), by_object.network.get_submodule(fc1)
    assert torch.allclose(packed.dense_weight(), simulated.weight, rtol=2**-8)  # bf16 scales
    plain = load_model_with_plan("whisper-tiny.en")
    assert plain.plan is None and type(plain.network.get_submodule(fc1)).__name__ == "Linear"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"plan": "missing-plan.json"}, "missing-plan.json"),
        ({"plan": Plan.from_dict(INT8), "calib": "no/such/manifest.jsonl"}, "manifest not found"),
        ({"plan": Plan.from_dict(INT8), "finetune_steps": 3}, "--finetune-steps needs transcribed training audio"),
    ],
)
def test_bad_inputs_fail_before_the_model_loads(kwargs, message):
    with pytest.raises(InputError, match=message):  # an unknown model would fail later, in load_model
        load_model_with_plan("no-such-model", **kwargs)
