"""A plan's calibrated state: 4-bit codes packed two to a byte and back, and on whisper-tiny.en a
GPTQ + whitened-screen plan rebuilt from its state file alone (no calibration audio) equal to the
calibrated model, tensor for tensor; a state for other weights, a corrupt one or a missing one are
one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

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


def _inputs_of(model, name: str, audio) -> torch.Tensor:
    """The inputs module `name` of `model` sees while transcribing `audio` (the decoder's rows)."""
    from weightwise.decode import transcribe

    seen: list[torch.Tensor] = []
    handle = model.network.get_submodule(name).register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        transcribe(model, audio)
    finally:
        handle.remove()
    return torch.cat([x.reshape(-1, x.shape[-1]) for x in seen])


@pytest.mark.slow
def test_gptq_layers_load_from_the_state_straight_into_packed_form(calibrated, sample_audio):
    """`load_model_with_plan(plan with a state file)` packs the GPTQ layers from the file's codes:
    the same packed tensors as the simulated model packed afterwards (the path before) and the same
    text; a packed layer's output on the decoder's real inputs is the simulated one's within 1%
    (relative L2: the kernel takes bf16 activations and bf16 scales)."""
    from weightwise.compress.packed import PackedQuantModule, pack_
    from weightwise.decode import transcribe

    _, plan_file, _ = calibrated
    audio = sample_audio[0][1]
    packed = load_model_with_plan("whisper-tiny.en", plan=plan_file)
    simulated = load_model_with_plan("whisper-tiny.en", plan=plan_file, pack=False)
    name = "model.decoder.layers.0.fc1"
    x = _inputs_of(simulated, name, audio)
    assert len(x) > 1
    with torch.no_grad():
        want, got = simulated.network.get_submodule(name)(x), packed.network.get_submodule(name)(x)
    assert isinstance(packed.network.get_submodule(name), PackedQuantModule)
    assert 0 < (got - want).norm() / want.norm() < 0.01
    text = transcribe(simulated, audio).text
    pack_(simulated.network)
    pairs = zip(packed.network.state_dict().items(), simulated.network.state_dict().items(), strict=True)
    for (key, a), (other, b) in pairs:
        assert key == other and torch.equal(a, b), key
    assert transcribe(packed, audio).text == transcribe(simulated, audio).text == text


@pytest.mark.slow
def test_a_state_without_a_gptq_layers_codes_or_with_wrong_shapes_is_one_line(calibrated, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    _, plan_file, state = calibrated
    with safe_open(str(state), "pt") as handle:
        meta = handle.metadata()
    tensors = load_file(str(state))
    fc2 = next(k for k in tensors if k.startswith("model.decoder.layers.0.fc2.codes"))
    cases = {
        "holds no codes for model.decoder.layers.0.fc2": {k: v for k, v in tensors.items() if k != fc2},
        "tensor model.decoder.layers.0.fc2.scales is": {
            **tensors,
            "model.decoder.layers.0.fc2.scales": tensors["model.decoder.layers.0.fc2.scales"][:, :3].contiguous(),
        },
    }
    for (message, broken), packs in zip(cases.items(), ((True, False), (True,)), strict=True):
        save_file(broken, str(tmp_path / "p.state.safetensors"), metadata=meta)
        (tmp_path / "p.json").write_text(json.dumps({**PLAN, "state": "p.state.safetensors"}))
        for pack in packs:  # packed: the gptq handler finds it; simulated: `load_plan_state`
            with pytest.raises(InputError, match=message) as err:
                load_model_with_plan("whisper-tiny.en", plan=tmp_path / "p.json", pack=pack)
            assert "\n" not in str(err.value)


ORIN_PLAN = Path(__file__).resolve().parents[2] / "benchmarks" / "plans" / "whisper-tiny.en-jetson-orin-nano.json"


def _load_as_before(plan: Plan):
    """The committed plan as `load_model_with_plan` loaded it before plans with a state file loaded
    packed straight: simulated, the state loaded, the quantized layers packed, then the runtime hooks
    (the screen stayed simulated)."""
    import dataclasses

    from weightwise.compress.modules import replace_module
    from weightwise.compress.packed import PackedQuantModule, packable
    from weightwise.compress.state import calibration_free, load_plan_state
    from weightwise.models import load_model
    from weightwise.models.runtime import apply_runtime

    model = load_model("whisper-tiny.en")
    compress_(model, dataclasses.replace(calibration_free(plan), runtime=None))
    load_plan_state(model, plan, plan.state)
    for name, module in list(model.network.named_modules()):
        if packable(module):
            replace_module(model.network, name, PackedQuantModule.from_quant(module))
    apply_runtime(model, plan.runtime)
    return model


@pytest.mark.slow
def test_the_committed_plan_loads_packed_straight_and_as_small_as_it_is_stored(sample_audio):
    """The committed Orin Nano plan (GPTQ, int8, fp16, a whitened screen, a state file): its
    weights in RAM are its stored bytes (<= 1.2x; loaded as before, the screen's float copies made
    them > 2x), its tensors are those of the model loaded as before and packed afterwards, and its
    transcript of a bundled sample is that of the model loaded as before."""
    from weightwise.compress.packed import pack_
    from weightwise.compress.share import unique_storage
    from weightwise.decode import transcribe
    from weightwise.evaluate.runtime import weight_bytes_resident, weight_kernels

    plan = Plan.from_json(ORIN_PLAN)
    assert plan.state is not None
    packed, before = load_model_with_plan("whisper-tiny.en", plan=ORIN_PLAN), _load_as_before(plan)
    stored = unique_storage(packed.network)["unique_bytes"]
    assert stored == unique_storage(before.network)["unique_bytes"]  # the profile sees the same storage
    assert weight_kernels(packed.network) == "packed"
    assert weight_bytes_resident(packed.network) <= 1.2 * stored < 0.5 * weight_bytes_resident(before.network)
    audio = sample_audio[0][1]
    assert transcribe(packed, audio).text == transcribe(before, audio).text
    pack_(before.network)
    pairs = zip(packed.network.state_dict().items(), before.network.state_dict().items(), strict=True)
    for (key, a), (other, b) in pairs:
        assert key == other and torch.equal(a, b), key
