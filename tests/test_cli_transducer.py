"""`weightwise train-transducer`, and transcribe/eval on the shipped transducer, through the CLI."""

from __future__ import annotations

import json

import pytest

from weightwise.cli import main

FSDD = "speech/fsdd_digits/manifest.jsonl"


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--model-config", '{"bogus": 1}'], "unknown transducer config fields"),
        (["--model-config", "[1, 2]"], "must be a JSON object"),
        (["--model-config", '{"encoder": "lstm"}'], "encoder must be one of"),
        (["--steps", "0"], "must be >= 1"),
    ],
)
def test_train_transducer_bad_flags_are_one_line(flags, words, capsys, tmp_path, shared_data_dir):
    try:
        code = main(["train-transducer", "--data", str(shared_data_dir / FSDD), "--out", str(tmp_path), *flags])
    except SystemExit as exit_:  # argparse's own checks exit (with the CLI's one-line message)
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1


def test_transcribe_and_eval_the_transducer(capsys, tmp_path, shared_data_dir):
    folder = shared_data_dir / "speech" / "fsdd_digits"
    records = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    picked = [r for r in records if r["split"] == "test"][::50]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({**r, "audio": str(folder / r["audio"])}) + "\n" for r in picked))
    assert main(["transcribe", str(folder / picked[1]["audio"]), "--model", "transducer-fsdd"]) == 0
    assert capsys.readouterr().out.strip() == f"{picked[1]['id']}.flac\t{picked[1]['text']}"
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", "transducer-fsdd", "--data", str(manifest), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "transducer-fsdd" and result["n_utterances"] == len(picked)
    assert result["wer"] <= 1 / len(picked)  # at most one of the 6 digits wrong
