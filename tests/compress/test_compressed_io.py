"""Save/load of compressed models (bit-identical, sharing preserved) and the compress CLI."""

import json
import re

import pytest
import torch

from weightwise.cli import main
from weightwise.compress import Plan, compress_, load_compressed, save_compressed, unique_storage
from weightwise.decode import transcribe
from weightwise.errors import InputError
from weightwise.models import load_model

PLAN = {
    "rules": [
        {"match": ["model.decoder.embed_tokens", "proj_out"], "lowrank": {"rank": 368}},
        {
            "match": "re:model\\.decoder\\.layers\\.\\d+\\.fc1",
            "quant": {"bits": 4, "granularity": "group", "group_size": 64},
        },
        {"match": "re:model\\.encoder\\.layers\\.\\d+\\.fc1", "prune": {"sparsity": 0.3, "pattern": "unstructured"}},
        {
            "match": ["model.decoder.layers.0.fc2", "model.decoder.layers.1.fc2"],
            "share": {"what": "lowrank_u", "rank": 256},
        },
    ]
}


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    model = load_model("whisper-tiny.en")
    compress_(model, Plan.from_dict(PLAN, name="mixed"))
    out = save_compressed(model, tmp_path_factory.mktemp("saved") / "tiny-mixed")
    return model, out


def test_reload_is_bit_identical(compressed, sample_audio):
    model, out = compressed
    again = load_model(str(out))
    a, b = model.network.state_dict(), again.network.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert again.info.plan == "mixed" and again.plan.to_dict() == Plan.from_dict(PLAN).to_dict()
    for _utt, audio in sample_audio[:2]:
        assert transcribe(model, audio).tokens == transcribe(again, audio).tokens


def test_sharing_survives_the_round_trip(compressed):
    model, out = compressed
    again = load_compressed(out)
    net = again.network
    emb, proj = net.model.decoder.embed_tokens, net.proj_out
    shared_emb = {id(t) for t in emb.state_dict(keep_vars=True).values()}
    assert shared_emb & {id(t) for t in proj.state_dict(keep_vars=True).values()}  # factors tied
    assert unique_storage(net) == unique_storage(model.network)
    assert unique_storage(net)["unique_bytes"] < unique_storage(load_model("whisper-tiny.en").network)["unique_bytes"]


def test_changed_base_weights_are_refused(compressed, tmp_path):
    _model, out = compressed
    manifest = json.loads((out / "compressed.json").read_text())
    manifest["base_weights_sha256"] = "0" * 64
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "compressed.json").write_text(json.dumps(manifest))
    (broken / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    with pytest.raises(InputError, match="different weights"):
        load_model(str(broken))


@pytest.mark.slow
def test_cli_compress_then_eval(tmp_path, capsys):
    plan = tmp_path / "int8.json"
    plan.write_text(json.dumps({"rules": [{"match": "re:.*", "quant": {"bits": 8}}]}))
    out = tmp_path / "tiny-int8"
    assert main(["compress", "--model", "whisper-tiny.en", "--plan", str(plan), "--out", str(out)]) == 0
    assert "unique parameters" in capsys.readouterr().out
    saved, on_the_fly = tmp_path / "saved.json", tmp_path / "fly.json"
    assert main(["eval", "--model", str(out), "--data", "samples", "--limit", "2", "--out", str(saved)]) == 0
    assert (
        main(
            [
                "eval",
                "--model",
                "whisper-tiny.en",
                "--plan",
                str(plan),
                "--data",
                "samples",
                "--limit",
                "2",
                "--out",
                str(on_the_fly),
            ]
        )
        == 0
    )
    a, b = json.loads(saved.read_text()), json.loads(on_the_fly.read_text())
    assert a["plan"] == b["plan"] == "int8"
    assert [u["hyp"] for u in a["utterances"]] == [u["hyp"] for u in b["utterances"]]
    assert a["wer"] == b["wer"]


def test_cli_bad_plan_is_one_line(tmp_path, capsys):
    plan = tmp_path / "bad.json"
    plan.write_text(json.dumps({"rules": [{"match": "nothing.here", "quant": {"bits": 8}}]}))
    assert main(["compress", "--plan", str(plan), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matches no" in err[0]


def _copy_saved(out, to):
    to.mkdir()
    for name in ("compressed.json", "model.safetensors"):
        (to / name).write_bytes((out / name).read_bytes())
    return to


@pytest.mark.parametrize(
    "damage,fragment",
    [
        ("truncated weights", "model.safetensors: cannot load the saved weights"),
        ("no weights", "model.safetensors: cannot load the saved weights"),
        ("unknown kind", "module proj_out: cannot rebuild it (unknown compressed module kind 'future_kind')"),
        ("bad spec", "module proj_out: cannot rebuild it"),
        ("manifest not an object", "malformed compressed-model manifest"),
        ("manifest without modules", "malformed compressed-model manifest (no 'modules')"),
    ],
)
def test_a_damaged_saved_model_is_a_one_line_error(compressed, tmp_path, damage, fragment, capsys, samples):
    _model, out = compressed
    broken = _copy_saved(out, tmp_path / "broken")
    manifest = json.loads((broken / "compressed.json").read_text())
    weights = broken / "model.safetensors"
    if damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    elif damage == "no weights":
        weights.unlink()
    elif damage == "unknown kind":
        manifest["modules"]["proj_out"]["kind"] = "future_kind"
    elif damage == "bad spec":
        manifest["modules"]["proj_out"]["spec"] = {"colour": "blue"}
    elif damage == "manifest not an object":
        manifest = ["not", "a", "manifest"]
    else:
        del manifest["modules"]
    (broken / "compressed.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=re.escape(fragment)) as err:
        load_model(str(broken))
    assert "\n" not in str(err.value)
    assert main(["transcribe", "--model", str(broken), str(next(iter(samples)).audio_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
