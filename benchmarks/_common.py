"""Arguments every benchmark script shares (model, manifest, number of utterances, threads) and the
header of its result JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

SHARED_SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
TEST_OTHER = SHARED_SPEECH / "librispeech_test_other_mini" / "manifest.jsonl"


def benchmark_parser(doc: str, limit: int) -> argparse.ArgumentParser:
    """A parser with --model, --data (test-other mini), --limit and --threads (default 2)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", default="whisper-tiny.en")
    parser.add_argument("--data", default=str(TEST_OTHER))
    parser.add_argument("--limit", type=int, default=limit, help="first N utterances")
    parser.add_argument("--threads", type=int, default=2)
    return parser


def run_header(args: argparse.Namespace, n_utterances: int, audio_s: float) -> dict:
    """What every plan benchmark's JSON starts with: the model, plan, data and threads it ran."""
    return {
        "model": args.model,
        "plan": args.plan,
        "data": args.data,
        "n_utterances": n_utterances,
        "audio_s": audio_s,
        "threads": args.threads,
    }
