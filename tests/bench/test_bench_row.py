"""The typed, versioned bench row: round trip, version-0 rows, refusals with the line named."""

import json
from pathlib import Path

import pytest

from weightwise.bench.row import ROW_VERSION, BenchRow, read_rows
from weightwise.errors import InputError

FULL_MATRIX = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "bench" / "full_matrix.jsonl"


def test_a_row_survives_json():
    row = BenchRow(
        "weightwise",
        "whisper-tiny.en",
        "fp32",
        "int4-group64",
        "white",
        10.0,
        0.25,
        n_utterances=2,
        rtf=0.1,
        components={"encoder": 1.0},
        utterances=({"id": "a", "hyp": "b"},),
        data="samples",
        inputs={"seed": 0, "decoding": {"beam_size": 1}},
        executor="ray",
        tasks_on_node=2,
        extra={"future": [1]},
    )
    data = json.loads(json.dumps(row.to_dict()))
    assert data["cell"] == '["weightwise", "whisper-tiny.en", "fp32", "int4-group64", "white", 10.0]'
    assert data["version"] == ROW_VERSION == 3 and data["future"] == [1]
    assert BenchRow.from_dict(data) == row


def test_committed_version_0_rows_read_as_version_0():
    line = FULL_MATRIX.read_text().splitlines()[0]
    raw = json.loads(line)
    row = BenchRow.from_dict(raw)
    assert row.version == 0 and row.inputs is None and row.cell == raw["cell"] and row.extra == {}
    assert {k: v for k, v in row.to_dict().items() if k in raw} == raw  # every field read back as written


def test_a_version_2_row_reads_without_executor_or_share():
    data = BenchRow("weightwise", "m", "fp32", None, None, None, 0.1, version=2).to_dict()
    del data["executor"], data["tasks_on_node"]
    row = BenchRow.from_dict(data)
    assert (row.version, row.executor, row.tasks_on_node, row.extra) == (2, None, None, {})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"version": 4}, "row version 4 is newer than this weightwise reads (3)"),
        ({"tasks_on_node": 1.5}, "field 'tasks_on_node' must be an integer or null, got 1.5"),
        ({"wer": "low"}, "field 'wer' must be a number or null, got 'low'"),
        ({"substitutions": True}, "field 'substitutions' must be an integer or null, got True"),
        ({"model": None}, "field 'model' must be a string, got None"),
        ({"cell": "[]"}, "'cell' '[]' does not match the row's fields"),
    ],
)
def test_bad_rows_are_one_line_errors_naming_the_line(tmp_path, change, message):
    good = BenchRow("weightwise", "m", "fp32", None, None, None, 0.1).to_dict()
    bad = {**good, **change}
    if "cell" not in change:  # the key follows the fields, so that only `change` is wrong
        bad["cell"] = json.dumps([bad["system"], bad["model"], bad["precision"], None, None, None])
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(InputError) as err:
        read_rows(path)
    assert str(err.value).startswith(f"{path}:2: ") and message in str(err.value)
