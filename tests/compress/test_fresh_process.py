"""A model saved by `weightwise compress` loads in a fresh interpreter (every compressed module kind).

The compressed-module kinds are registered when their handler modules are imported; these runs
start new Python processes, so nothing imported by the test process can hide a missing import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from weightwise.compress import Plan, compress_
from weightwise.decode import transcribe
from weightwise.models import load_model

# one rule per compressed-module kind: lowrank_embedding + lowrank_linear (the tied token table),
# quant, sparse, shared_lowrank_linear, shared_linear; mild enough that decoding stays short
PLAN = {
    "rules": [
        {"match": ["model.decoder.embed_tokens", "proj_out"], "lowrank": {"rank": 376}},
        {"match": "re:model\\.decoder\\.layers\\.\\d+\\.fc1", "quant": {"bits": 8}},
        {"match": "re:model\\.encoder\\.layers\\.\\d+\\.fc1", "prune": {"sparsity": 0.2}},
        {
            "match": ["model.decoder.layers.0.fc2", "model.decoder.layers.1.fc2"],
            "share": {"what": "lowrank_u", "rank": 320},
        },
        {
            "match": ["model.decoder.layers.2.encoder_attn.k_proj", "model.decoder.layers.3.encoder_attn.k_proj"],
            "share": {"what": "full"},
        },
    ]
}
KINDS = ["lowrank_embedding", "lowrank_linear", "quant", "shared_linear", "shared_lowrank_linear", "sparse"]


def weightwise(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """`python -m weightwise ARGS` in a new interpreter (same environment: PYTHONPATH, cache)."""
    proc = subprocess.run(
        [sys.executable, "-m", "weightwise", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.slow
def test_compress_then_transcribe_and_eval_in_fresh_processes(tmp_path, samples, sample_audio):
    plan, out = tmp_path / "mixed.json", tmp_path / "tiny-mixed"
    plan.write_text(json.dumps(PLAN))
    weightwise("compress", "--model", "whisper-tiny.en", "--plan", str(plan), "--out", str(out), "--threads", "1")
    saved = json.loads((out / "compressed.json").read_text())
    assert sorted({m["kind"] for m in saved["modules"].values()}) == KINDS

    utts = list(samples)[:2]
    files = [str(u.audio_path) for u in utts]
    weightwise("transcribe", "--model", str(out), *files, "--threads", "1", "--out", str(tmp_path / "t.json"))
    weightwise(
        "eval",
        "--model",
        str(out),
        "--data",
        "samples",
        "--limit",
        "2",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "e.json"),
    )
    # the library entry point too, with nothing but weightwise.models imported by the caller
    code = (
        "import sys; from weightwise.models import load_model; m = load_model(sys.argv[1]); "
        "print(sorted({getattr(x, 'kind', '') for x in m.network.modules()} - {''}))"
    )
    listed = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=600)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert listed.stdout.strip() == str(KINDS)

    model = load_model("whisper-tiny.en")  # the same plan applied in this process
    compress_(model, Plan.from_dict(PLAN))
    expected = [transcribe(model, audio).text for _utt, audio in sample_audio[:2]]
    transcribed = json.loads((tmp_path / "t.json").read_text())["transcripts"]
    evaluated = json.loads((tmp_path / "e.json").read_text())["utterances"]
    assert [row["text"] for row in transcribed] == expected
    assert [row["hyp"] for row in evaluated] == expected
    assert [row["id"] for row in evaluated] == [u.id for u in utts]
    assert expected[0] == "he could wait no longer"  # the plan keeps the model working (short decodes)
