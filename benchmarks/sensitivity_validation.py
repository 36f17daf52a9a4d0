"""Does the transcript-free sensitivity rank candidates as real WER does? (issue 11, item 2)

For a spread of scored (group, candidate) pairs of an optimize run (its sensitivity.json), compress
only that group of the float32 model, transcribe transcribed utterances that neither the
calibration nor the evaluation of that run saw, and compare the WER increase over the float32 model
with the pair's KL: Spearman rank correlation (scipy), plus the words each pair changed.

    python benchmarks/sensitivity_validation.py --summary benchmarks/results/optimize/<run>/summary.json \
        --skip 50 --limit 20 --out benchmarks/results/optimize/<run>/sensitivity_validation.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from scipy.stats import spearmanr

from weightwise.compress.candidates import Candidate, applied, weight_groups
from weightwise.data import Manifest, load_manifest
from weightwise.evaluate import evaluate
from weightwise.evaluate.runtime import set_threads
from weightwise.models import load_model
from weightwise.optimize.pipeline import DECODING
from weightwise.outputs import write_json_atomic

from _common import benchmark_parser


def spread(rows: list[dict], n: int) -> list[dict]:
    """`n` scored candidate rows evenly spaced in KL rank (the extremes included)."""
    scored = sorted((r for r in rows if r["kl"] is not None and r["kl"] > 0), key=lambda r: r["kl"])
    if len(scored) <= n:
        return scored
    return [scored[round(i * (len(scored) - 1) / (n - 1))] for i in range(n)]


def main() -> None:
    parser = benchmark_parser(__doc__, limit=20)
    parser.add_argument("--summary", required=True, help="summary.json of an optimize run")
    parser.add_argument("--skip", type=int, default=50, help="skip the first N utterances (the run's evaluation)")
    parser.add_argument("--pairs", type=int, default=12, help="how many (group, candidate) pairs")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    set_threads(args.threads)
    summary_path = Path(args.summary)
    summary = json.loads(summary_path.read_text())
    rows = json.loads((summary_path.parent / "sensitivity.json").read_text())
    full = load_manifest(args.data)
    data = Manifest(full.utterances[args.skip : args.skip + args.limit], full.source)
    seen = set(summary["calib_ids"]) | set(summary["eval_ids"])
    assert not seen & {u.id for u in data}, "validation audio overlaps the run's audio"
    labels = {c["label"]: c for c in summary["candidate_space"]["candidates"]}
    model = load_model(summary["model"])
    groups = {g.name: g for g in weight_groups(model.network)}
    start = time.perf_counter()
    base = evaluate(model, data, DECODING)
    results = []
    for row in spread(rows, args.pairs):
        candidate = Candidate.from_dict(labels[row["candidate"]], "candidate space")
        with applied(model.network, groups[row["group"]], candidate.config):
            result = evaluate(model, data, DECODING)
        changed = sum(a.hyp != b.hyp for a, b in zip(base.utterances, result.utterances, strict=True))
        results.append(
            {
                "group": row["group"],
                "candidate": row["candidate"],
                "kl": row["kl"],
                "predicted_wer_points": row["predicted_wer_points"],
                "wer_increase_points": 100 * (result.wer - base.wer),
                "utterances_changed": changed,
            }
        )
        print(
            f"{row['group']:45s} {row['candidate']:14s} KL {row['kl']:.2e}  "
            f"WER {100 * (result.wer - base.wer):+6.2f} pts  changed {changed}",
            flush=True,
        )
    rho, p_value = spearmanr([r["kl"] for r in results], [r["wer_increase_points"] for r in results])
    out = {
        "summary": str(summary_path),
        "data": full.source,
        "ids": [u.id for u in data],
        "float32_wer": base.wer,
        "pairs": results,
        "spearman_rho": float(rho),
        "spearman_p": float(p_value),
        "wall_s": time.perf_counter() - start,
    }
    write_json_atomic(Path(args.out), out)
    print(f"Spearman rho {rho:.3f} (p {p_value:.3g}) over {len(results)} pairs, {len(data)} utterances")


if __name__ == "__main__":
    main()
