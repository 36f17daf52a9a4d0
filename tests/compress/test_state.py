"""A plan's calibrated state: 4-bit codes packed two to a byte and back, and on whisper-tiny.en a
GPTQ + whitened-screen plan rebuilt from its state file alone (no calibration audio) equal to the
calibrated model, tensor for tensor; a state for other weights, a corrupt one or a missing one are
one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from weightwise.compress import Plan, compress_
from weightwise.compress.loading import load_model_with_plan
from weightwise.compress.state import _pack, _unpack, save_plan_state
from weightwise.errors import InputError

PLAN = {
    "rules": [
        {"match": ["model.decoder.layers.0.fc1", "model.decoder.layers.0.fc2"], "gptq": {"bits": 4, "group_size": 64}},
        {"match": ["model.decoder.embed_tokens", "proj_out"], "screen": {"rank": 64, "top_k": 128, "preview_bits": 4}},
    ],
    "runtime": {"kv_precision": "int8"},
}


@pytest.mark.parametrize("dtype, low, high", [(torch.int8, -8, 8), (torch.uint8, 0, 16)])
def test_four_bit_codes_pack_two_to_a_byte_and_back(dtype, low, high):
    codes = torch.randint(low, high, (6, 10), dtype=torch.int16).to(dtype)
    suffix, packed = _pack(codes)
    assert suffix and packed.numel() == 30 and packed.dtype == torch.uint8
    assert torch.equal(_unpack(packed, codes), codes)


def test_wider_codes_and_odd_sizes_stay_as_they_are():
    wide = torch.tensor([[-100, 3], [7, 1]], dtype=torch.int8)
    odd = torch.tensor([1, 2, 3], dtype=torch.uint8)
    assert _pack(wide)[0] == "" and torch.equal(_pack(wide)[1], wide)
    assert _pack(odd)[0] == ""


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, samples):
    """tiny.en compressed by PLAN on one bundled sample, and the plan file with its state beside it."""
    from weightwise.models import load_model

    folder = tmp_path_factory.mktemp("state")
    model = load_model("whisper-tiny.en")
    plan = Plan.from_dict(PLAN, name="p")
    compress_(model, plan, samples.head(1))
    state = save_plan_state(model, plan, folder / "p.state.safetensors")
    (folder / "p.json").write_text(json.dumps({**PLAN, "state": state.name}))
    return model, folder / "p.json", state


@pytest.mark.slow
def test_the_state_rebuilds_the_calibrated_weights_without_audio(calibrated, sample_audio):
    from weightwise.decode import transcribe

    model, plan_file, state = calibrated
    rebuilt = load_model_with_plan("whisper-tiny.en", plan=plan_file, pack=False)  # no --calib anywhere
    for name in ("model.decoder.layers.0.fc1", "proj_out"):
        a, b = model.network.get_submodule(name), rebuilt.network.get_submodule(name)
        assert type(a) is type(b) and a.config == b.config
        assert torch.equal(a.weight, b.weight)
    a, b = model.network.proj_out, rebuilt.network.proj_out
    assert torch.equal(a.preview, b.preview) and torch.equal(a.basis, b.basis)
    assert rebuilt.network.model.decoder.embed_tokens.preview_codes is b.preview_codes  # still tied
    assert rebuilt.plan.state == str(state) and rebuilt.plan.runtime == model.plan.runtime
    audio = sample_audio[0][1]
    assert transcribe(rebuilt, audio).text == transcribe(model, audio).text
    packed = load_model_with_plan("whisper-tiny.en", plan=plan_file)  # the default: packed kernels
    assert type(packed.network.get_submodule("model.decoder.layers.0.fc1")).__name__ == "PackedQuantModule"
    assert packed.plan.runtime == model.plan.runtime
    # the 4-bit codes are stored packed: less than the 51,864 x 64 preview at one byte a code
    assert state.stat().st_size < 51864 * 64


@pytest.mark.slow
def test_a_state_for_other_weights_or_a_corrupt_one_is_one_line(calibrated, tmp_path):
    from safetensors.torch import load_file, save_file

    _, plan_file, state = calibrated
    other = tmp_path / "p.state.safetensors"
    save_file(load_file(str(state)), str(other), metadata={"format": "weightwise-plan-state/1", "weights_sha256": "0"})
    (tmp_path / "p.json").write_text(json.dumps({**PLAN, "state": other.name}))
    with pytest.raises(InputError, match="other model weights"):
        load_model_with_plan("whisper-tiny.en", plan=tmp_path / "p.json")
    other.write_bytes(b"\x00" * 20)
    with pytest.raises(InputError, match="not a readable plan state") as err:
        load_model_with_plan("whisper-tiny.en", plan=tmp_path / "p.json")
    assert "\n" not in str(err.value)


def test_a_missing_state_file_is_named(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({**PLAN, "state": "gone.safetensors"}))
    with pytest.raises(InputError, match="gone.safetensors is missing"):
        Plan.from_json(tmp_path / "p.json")


@pytest.mark.slow
def test_a_fresh_process_rebuilds_the_plan_from_its_state(calibrated, sample_audio, tmp_path):
    """`weightwise eval --plan` in a new interpreter (no calibration audio given or named): the same
    text as the calibrated model in this process."""
    import subprocess
    import sys

    from weightwise.decode import transcribe

    model, plan_file, _ = calibrated
    out = tmp_path / "eval.json"
    proc = subprocess.run(
        [sys.executable, "-m", "weightwise", "eval", "--plan", str(plan_file), "--data", "samples", "--limit", "1",
         "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    hyp = json.loads(out.read_text())["utterances"][0]["hyp"]
    assert hyp == transcribe(model, sample_audio[0][1]).text
