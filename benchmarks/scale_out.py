"""The same bench matrix with `--executor local` and `--executor ray` (a local 2-worker cluster):
same WER per cell, identical hypotheses, and both wall times.

    python benchmarks/scale_out.py --limit 10 --threads 1

Each run starts from an empty results file (no resume) and is timed from the command's start to
its exit, Ray's cluster start-up and shutdown included. Writes benchmarks/results/scale_out/
{local,ray}.jsonl, summary.json (wall times, per-cell comparison) and summary.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from weightwise.bench import read_rows
from weightwise.evaluate.runtime import host
from weightwise.outputs import write_json_atomic

from _common import benchmark_parser

OUT = Path(__file__).resolve().parent / "results" / "scale_out"


def bench(args, out: Path, *executor: str) -> dict:
    """Wall seconds of one `weightwise bench` run into a fresh `out`, and the load around it."""
    out.unlink(missing_ok=True)
    cmd = [shutil.which("weightwise") or "weightwise", "bench", "--model", args.model, "--precision", "fp32,int8"]
    cmd += ["--noise", "white", "--snr", "10", "--peers", "", "--data", args.data, "--limit", str(args.limit)]
    cmd += ["--threads", str(args.threads), "--out", str(out), *executor]
    before, start = os.getloadavg()[0], time.perf_counter()
    subprocess.run(cmd, check=True)
    return {"wall_s": time.perf_counter() - start, "load_1min_before": before, "load_1min_after": os.getloadavg()[0]}


def compare(local: Path, ray: Path) -> list[dict]:
    ours = {row.cell: row for _, row in read_rows(ray)}
    cells = []
    for _, row in read_rows(local):
        other = ours[row.cell]
        cells.append(
            {
                "cell": row.cell,
                "wer_local": row.wer,
                "wer_ray": other.wer,
                "same_hypotheses": row.utterances == other.utterances,
                "rtf_local": row.rtf,
                "rtf_ray": other.rtf,
                "tasks_on_node_ray": other.tasks_on_node,
                "wall_s_local": row.wall_s,
                "wall_s_ray": other.wall_s,
            }
        )
    assert len(ours) == len(cells), "the two runs have different cells"
    return cells


def markdown(summary: dict) -> str:
    lines = [
        "| cell | WER local | WER ray | same hyps | RTF local | RTF ray | tasks on node (ray) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in summary["cells"]:
        name = " ".join(str(x) for x in json.loads(c["cell"])[1:] if x is not None)
        lines.append(
            f"| {name} | {100 * c['wer_local']:.2f}% | {100 * c['wer_ray']:.2f}% | {c['same_hypotheses']} "
            f"| {c['rtf_local']:.3f} | {c['rtf_ray']:.3f} | {c['tasks_on_node_ray']} |"
        )
    lines.append("")
    for name, run in summary["runs"].items():
        lines.append(
            f"- `--executor {name}`: {run['wall_s']:.1f} s wall on {summary['host']['cores']} cores "
            f"(1-min load average {run['load_1min_before']:.1f} before, {run['load_1min_after']:.1f} after)"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = benchmark_parser(__doc__, limit=10)
    parser.set_defaults(threads=1)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    local, ray = OUT / "local.jsonl", OUT / "ray.jsonl"
    runs = {"local": bench(args, local), "ray": bench(args, ray, "--executor", "ray")}
    cells = compare(local, ray)
    summary = {
        "command": f"python benchmarks/scale_out.py --limit {args.limit} --threads {args.threads}",
        "runs": runs,
        "host": {k: v for k, v in host().items() if k != "threads"},
        "cells": cells,
        "same_wer_every_cell": all(c["wer_local"] == c["wer_ray"] for c in cells),
        "same_hypotheses_every_cell": all(c["same_hypotheses"] for c in cells),
    }
    write_json_atomic(OUT / "summary.json", summary)
    (OUT / "summary.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
