"""Print a Markdown table from `weightwise eval` result files (ours vs peer)."""

from __future__ import annotations

import json
import sys


def row(path: str) -> str:
    r = json.load(open(path))
    p = r["peer"] or {}
    cells = [
        r["model"],
        r["data"].split("/")[-2],
        str(r["n_utterances"]),
        f"{100 * r['wer']:.2f}",
        f"{100 * p['wer']:.2f}" if p else "",
        f"{100 * (r['wer'] - p['wer']):+.2f}" if p else "",
        f"{100 * p['same_normalized_fraction']:.0f}%" if p else "",
        f"{r['rtf']:.3f}",
        f"{p['rtf']:.3f}" if p else "",
        f"{p['rtf_ratio']:.2f}" if p else "",
    ]
    return "| " + " | ".join(cells) + " |"


def main(paths: list[str]) -> None:
    print(
        "| model | set | utts | WER % ours | WER % faster-whisper | diff (pts) | same text | RTF ours "
        "| RTF peer | RTF ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for path in paths:
        print(row(path))


if __name__ == "__main__":
    main(sys.argv[1:])
