"""Plan JSON: parsing, first-match-wins resolution, and one-line errors for every bad input."""

import json
import re

import pytest
from torch import nn

from weightwise.compress.configs import LowRank, Prune, Quant, Share, config_from_dict, config_to_dict
from weightwise.compress.plan import Plan
from weightwise.errors import InputError


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])
        self.conv = nn.Conv1d(2, 2, 3)
        self.emb = nn.Embedding(5, 4)
        self.norm = nn.LayerNorm(4)  # not weight-bearing for plans


def test_first_match_wins_and_names():
    plan = Plan.from_dict(
        {
            "rules": [
                {"match": "enc.0", "prune": {"sparsity": 0.5}},
                {"match": "re:enc\\..*", "quant": {"bits": 8}},
                {"match": ["emb", "conv"], "quant": {"bits": 16}},
            ]
        }
    )
    claimed = plan.resolve(Net())
    assert claimed["enc.0"] == (0, Prune(sparsity=0.5))
    assert claimed["enc.1"] == (1, Quant(bits=8))
    assert claimed["emb"][0] == claimed["conv"][0] == 2
    assert "norm" not in claimed


def test_all_weight_modules():
    claimed = Plan.from_dict({"rules": [{"match": "re:.*", "quant": {}}]}).resolve(Net())
    assert set(claimed) == {"enc.0", "enc.1", "conv", "emb"}


def test_rule_shadowed_by_earlier_rules_is_an_error():
    plan = Plan.from_dict({"rules": [{"match": "re:enc\\..*", "quant": {}}, {"match": "enc.1", "prune": {}}]}, name="p")
    with pytest.raises(InputError, match="rule 1 .* already claimed by an earlier rule"):
        plan.resolve(Net())


def test_regex_must_match_whole_name():
    with pytest.raises(InputError, match="matches no"):
        Plan.from_dict({"rules": [{"match": "re:enc", "quant": {}}]}).resolve(Net())


@pytest.mark.parametrize(
    "config",
    [
        Quant(bits=4, granularity="group", group_size=64, symmetric=False),
        Prune(sparsity=0.3, pattern="2:4", method="csp"),
        LowRank(energy_fraction=0.9),
        Share(what="lowrank_v", rank=8),
    ],
)
def test_config_round_trip(config):
    assert config_from_dict(*config_to_dict(config)) == config


def test_plan_round_trip(tmp_path):
    data = {
        "rules": [
            {"match": ["a", "re:b.*"], "lowrank": {"rank": 3, "energy_fraction": None}},
            {"match": "c", "share": {"what": "full", "rank": None}},
        ]
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    plan = Plan.from_json(path)
    assert plan.name == "p" and plan.to_dict() == data


@pytest.mark.parametrize(
    "data,fragment",
    [
        ({}, "non-empty list 'rules'"),
        ({"rules": []}, "non-empty list 'rules'"),
        ({"rules": [{"quant": {}}]}, "rule 0"),
        ({"rules": [{"match": 3, "quant": {}}]}, "'match' must be"),
        ({"rules": [{"match": "re:(", "quant": {}}]}, "bad regex"),
        ({"rules": [{"match": "a"}]}, "exactly one method"),
        ({"rules": [{"match": "a", "quant": {}, "prune": {}}]}, "conflicting"),
        ({"rules": [{"match": "a", "squash": {}}]}, "unknown method 'squash'"),
        ({"rules": [{"match": "a", "quant": {"bitz": 8}}]}, "unknown quant parameter"),
        ({"rules": [{"match": "a", "quant": {"bits": 2}}]}, "quant.bits must be"),
        ({"rules": [{"match": "a", "quant": 8}]}, "must be an object"),
        ({"rules": [{"match": "a", "prune": {"sparsity": 1.5}}]}, "prune.sparsity"),
        ({"rules": [{"match": "a", "prune": {"pattern": "4:2"}}]}, "prune.pattern"),
        ({"rules": [{"match": "a", "prune": {"method": "random"}}]}, "prune.method"),
        ({"rules": [{"match": "a", "lowrank": {}}]}, "exactly one of rank or energy_fraction"),
        ({"rules": [{"match": "a", "lowrank": {"rank": 0}}]}, "lowrank.rank"),
        ({"rules": [{"match": "a", "share": {"what": "lowrank_u"}}]}, "needs a positive integer rank"),
    ],
)
def test_bad_plans_are_one_line_errors(data, fragment):
    with pytest.raises(InputError) as err:
        Plan.from_dict(data, where="p.json")
    message = str(err.value)
    assert fragment in message and "\n" not in message and message.startswith("p.json")


def test_plan_file_errors(tmp_path):
    with pytest.raises(InputError, match="plan file not found"):
        Plan.from_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json: not valid JSON"):
        Plan.from_json(bad)


def test_nm_property():
    assert Prune(pattern="2:4").nm == (2, 4)
    assert Prune().nm is None


@pytest.mark.parametrize(
    "method,params,field",
    [
        ("quant", {"bits": True}, "quant.bits"),
        ("quant", {"bits": 8.0}, "quant.bits"),
        ("quant", {"group_size": True}, "quant.group_size"),
        ("prune", {"sparsity": False}, "prune.sparsity"),
        ("prune", {"sparsity": True}, "prune.sparsity"),
        ("prune", {"sparsity": "0.5"}, "prune.sparsity"),
        ("lowrank", {"rank": True}, "lowrank.rank"),
        ("lowrank", {"energy_fraction": True}, "lowrank.energy_fraction"),
        ("lowrank", {"energy_fraction": "0.9"}, "lowrank.energy_fraction"),
        ("share", {"what": "lowrank_u", "rank": True}, "share.what=lowrank_u needs a positive integer rank"),
    ],
)
def test_json_booleans_and_strings_are_not_numbers(method, params, field):
    with pytest.raises(InputError, match=rf"^plan: rule 0: {re.escape(field)}") as err:
        Plan.from_dict({"rules": [{"match": "a", method: params}]})
    assert "\n" not in str(err.value)


def test_cli_plan_with_a_boolean_rank_is_one_line(tmp_path, capsys):
    from weightwise.cli import main

    plan = tmp_path / "bool.json"
    plan.write_text('{"rules": [{"match": "proj_out", "lowrank": {"rank": true}}]}')
    assert main(["compress", "--plan", str(plan), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"weightwise: error: {plan}: rule 0: lowrank.rank must be a positive integer, got True"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bool.json"]


def test_a_plan_names_its_calibration_manifest_relative_to_its_file(tmp_path):
    from weightwise.compress.loading import load_model_with_plan

    gptq = {"rules": [{"match": "proj_out", "gptq": {"bits": 4}}], "calib": "../calib/first8.jsonl"}
    folder = tmp_path / "plans"
    folder.mkdir()
    (folder / "p.json").write_text(json.dumps(gptq))
    plan = Plan.from_json(folder / "p.json")
    assert plan.calib == str(tmp_path / "calib" / "first8.jsonl")
    # used when no --calib is given: a missing manifest is one line naming it, before the model load
    with pytest.raises(InputError, match="first8.jsonl"):
        load_model_with_plan("whisper-tiny.en", plan=folder / "p.json")
    with pytest.raises(InputError, match="'calib' must be"):
        Plan.from_dict({**gptq, "calib": 3})
