"""Markdown table of `transducer_fsdd.py` results: python benchmarks/transducer_summary.py R1.json ... -o summary.md"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _wer_cell(result: dict) -> str:
    """WER, its 95% interval when known, and (utterances / words)."""
    ci = result.get("wer_ci95")
    interval = f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""
    words = f" / {result['n_words']} words" if "n_words" in result else ""
    return f"{_pct(result['wer'])}{interval} ({result['n']}{words})"


def table(rows: list[dict]) -> str:
    head = (
        "| model | encoder | sharing | params | search | isolated WER | strings WER | noisy strings WER "
        "| latency median / p90 (s) "
        "| RTF (strings) | invocations/audio-s enc / pred / joiner | weight bytes/audio-s off-chip, nothing resident "
        "| modeled energy (uJ/audio-s) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for row in rows:
        config, strings, profile = row["config"], row["strings_test"], row.get("profile") or {}
        sharing = []
        if config["n_unique_layers"] and config["n_unique_layers"] < config["n_layers"]:
            sharing.append(f"{config['n_layers']} layers over {config['n_unique_layers']} block(s)")
        if config["shared_modules"]:
            sharing.append("shared " + "+".join(config["shared_modules"]))
        if config["lowrank_rank"]:
            sharing.append(f"low-rank {config['lowrank_rank']}, shared {config['shared_factor']} factor")
        rates = profile.get("component_invocations_per_audio_s", {})
        noisy = row.get("noisy_strings_test", {}).get("wer")
        beam = row.get("beam_size", 1)
        lines.append(
            f"| {row['name']} | {config['encoder']} ({config['n_layers']} x d{config['d_model']}, "
            f"{config['stack_frames'] * 10} ms frames) | {'; '.join(sharing) or 'none'} | {row['n_params']:,} "
            f"| {'greedy' if beam == 1 else f'beam {beam}'} "
            f"| {_wer_cell(row['isolated_test'])} | {_wer_cell(strings)} | {_pct(noisy)} "
            f"| {_num(strings['latency_median_s'], '.2f')} / "
            f"{_num(strings['latency_p90_s'], '.2f')} | {strings['rtf']:.3f} "
            f"| {' / '.join(_num(rates.get(c), '.1f') for c in ('encoder', 'predictor', 'joiner'))} "
            f"| {_num(profile.get('baseline_offchip_bytes_per_audio_s'), ',.0f')} "
            f"| {_num(profile['energy_j_per_audio_s'] * 1e6 if profile else None, '.1f')} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)
    rows = [json.loads(Path(p).read_text()) for p in args.results]
    Path(args.output).write_text(table(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
