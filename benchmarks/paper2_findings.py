"""Check paper 2's findings (MISSION.md §2) against a `weightwise bench` results file.

A thin wrapper: the checks are `weightwise.report.findings.paper2_findings`.

    python benchmarks/paper2_findings.py benchmarks/results/bench/full_matrix.jsonl \
        --snr-min 5 --snr-max 10 -o benchmarks/results/bench/paper2_findings.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from weightwise.errors import InputError
from weightwise.outputs import write_text_atomic
from weightwise.report.bench_report import load_rows
from weightwise.report.findings import paper2_findings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--snr-min", type=float, default=5.0)
    parser.add_argument("--snr-max", type=float, default=10.0)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    try:
        rows = load_rows(args.results)
    except InputError as err:
        print(f"paper2_findings: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    text = paper2_findings(rows, args.snr_min, args.snr_max, str(args.results))
    if args.output:
        write_text_atomic(args.output, text)
    print(text)


if __name__ == "__main__":
    main()
