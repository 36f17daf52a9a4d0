"""Issue 11 item 1: GPTQ int4 rows for whisper-tiny.en on test-other mini, each one `weightwise eval` run.

Rows: fp32; round-to-nearest int4 group 64 (`quant`) and GPTQ int4 group 64 (`gptq`) on the
decoder's linears + the tied embedding / output projection, on every layer linear, and on the
encoder's; GPTQ on the decoder + projection also calibrated block by block (``-seq``, `Gptq.sequential`)
and with groups of 32; ``-untied``: the projection GPTQ int4 as in ``-dec``, the token embedding it
is tied to kept apart at int8 per row (a lookup reads one row per token: no energy to save there, and
its int4 rows fed every decoder layer). The plans are benchmarks/plans/gptq/<row>.json.
Calibration: the first --calib-limit utterances (by id, one speaker each) of
librispeech_train_clean_100_untranscribed, written as benchmarks/calib/<name>.jsonl (paths
relative to it) so `--calib` names one file. Rows run one after another (the CPU is shared); a row
whose result exists is skipped, so a killed run resumes.

    python benchmarks/gptq_rows.py --threads 2 --calib-limit 64

Each result is `weightwise eval`'s JSON plus ``wall_s`` (the whole command) and ``command``;
``calib_s`` = wall_s - compute_s - (fp32's wall_s - compute_s): compression (calibration passes
+ GPTQ) on top of model loading and decoding, on the same machine in the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from weightwise.outputs import write_json_atomic

from _common import SHARED_SPEECH, benchmark_parser

HERE = Path(__file__).resolve().parent
CALIB_SOURCE = SHARED_SPEECH / "librispeech_train_clean_100_untranscribed" / "manifest.jsonl"
ROWS = (
    "fp32",
    "rtn-int4-g64-dec",
    "gptq-int4-g64-dec",
    "gptq-int4-g64-dec-untied",
    "gptq-int4-g64-dec-seq",
    "gptq-int4-g32-dec",
    "gptq-int4-g64-dec-tied0.3",
    "gptq-int4-g64-all",
    "gptq-int4-g64-enc",
    "rtn-int4-g64-all",
    "rtn-int4-g64-enc",
)


def calib_manifest(limit: int) -> Path:
    """The first `limit` calibration utterances as a manifest beside the plans (relative paths)."""
    target = HERE / "calib" / f"librispeech_train_clean_100_first{limit}.jsonl"
    lines = CALIB_SOURCE.read_text().splitlines()[:limit]
    out = []
    for line in lines:
        record = json.loads(line)
        audio = os.path.normpath(CALIB_SOURCE.parent / record["audio"])  # keep ../shared as laid out
        record["audio"] = os.path.relpath(audio, target.parent.resolve())
        out.append(json.dumps(record))
    target.parent.mkdir(exist_ok=True)
    target.write_text("\n".join(out) + "\n")
    return target


def run_row(row: str, args, calib: Path, out: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "weightwise",
        "eval",
        "--model",
        args.model,
        "--data",
        args.data,
        "--threads",
        str(args.threads),
        "--out",
        str(out),
    ]
    if row != "fp32":
        command += ["--plan", str(HERE / "plans" / "gptq" / f"{row}.json")]
        if row.startswith("gptq"):
            command += ["--calib", str(calib)]
    if args.limit:
        command += ["--limit", str(args.limit)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall_s = time.perf_counter() - start
    result = json.loads(out.read_text())
    result.update(
        row=row,
        wall_s=wall_s,
        command=" ".join(_shown(c) for c in command),
        calib_ids=[json.loads(line)["id"] for line in calib.read_text().splitlines()] if row.startswith("gptq") else [],
    )
    write_json_atomic(out, result)
    return result


def _shown(part: str) -> str:
    """Command parts relative to the repository root, as one would type them there."""
    path = Path(part)
    if path.is_absolute() and path.exists() and path != Path(sys.executable):
        return os.path.relpath(path, HERE.parent)
    return "python" if path == Path(sys.executable) else part


def summary(out_dir: Path) -> dict:
    rows = {p.stem: json.loads(p.read_text()) for p in sorted(out_dir.glob("*.json")) if p.stem in ROWS}
    base = rows.get("fp32")
    overhead = base["wall_s"] - base["compute_s"] if base else 0.0
    table = []
    for name in ROWS:
        if name not in rows:
            continue
        r = rows[name]
        table.append(
            {
                "row": name,
                "wer": r["wer"],
                "delta_wer_points": 100 * (r["wer"] - base["wer"]) if base else None,
                "wall_s": r["wall_s"],
                "compute_s": r["compute_s"],
                "calib_s": max(0.0, r["wall_s"] - r["compute_s"] - overhead) if name != "fp32" else 0.0,
                "n_utterances": r["n_utterances"],
                "command": r["command"],
            }
        )
    return {
        "model": base["model"] if base else None,
        "data": base["data"] if base else None,
        "calib_ids": next((r["calib_ids"] for r in rows.values() if r.get("calib_ids")), []),
        "rows": table,
    }


def main() -> None:
    parser = benchmark_parser(__doc__, limit=0)
    parser.add_argument("--calib-limit", type=int, default=64)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of " + ", ".join(ROWS))
    parser.add_argument("--out-dir", default=str(HERE / "results" / "compress" / "gptq"))
    args = parser.parse_args()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    calib = calib_manifest(args.calib_limit)
    for row in filter(None, args.rows.split(",")):
        target = out_dir / f"{row}.json"
        if target.exists():
            continue
        result = run_row(row, args, calib, target)
        print(f"{row:22s} WER {100 * result['wer']:6.2f}%  wall {result['wall_s']:6.0f} s", flush=True)
    table = summary(out_dir)
    write_json_atomic(out_dir / "summary.json", table)
    for r in table["rows"]:
        delta = "" if r["delta_wer_points"] is None else f"{r['delta_wer_points']:+.2f}"
        print(f"| {r['row']} | {100 * r['wer']:.2f} | {delta} | {r['calib_s']:.0f} |")


if __name__ == "__main__":
    main()
