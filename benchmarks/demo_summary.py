"""`make demo`'s last step: dense fp16 next to the optimized plan, from two `weightwise profile` JSONs.

    python benchmarks/demo_summary.py results/demo/fp16.json results/demo/plan.json \
        --report benchmarks/results/optimize/whisper-tiny.en-jetson-orin-nano/report.html
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _top(profile: dict, n: int) -> list[tuple[str, float]]:
    """The `n` costliest items: weight tensors and the cache/activation traffic entries."""
    items = [(t["name"], t["energy_j_per_audio_s"]) for t in profile["tensors"]]
    items += [(t["name"], t["energy_j_per_audio_s"]) for t in profile.get("traffic") or []]
    return sorted(items, key=lambda item: -item[1])[:n]


def _wer(profile: dict) -> str:
    return "n/a" if profile.get("wer") is None else f"{100 * profile['wer']:.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("plan", type=Path)
    parser.add_argument("--report", default=None, help="where the optimize report of the plan is")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()
    base, plan = (json.loads(p.read_text()) for p in (args.baseline, args.plan))
    cut = 1 - plan["energy_j_per_audio_s"] / base["energy_j_per_audio_s"]
    print(f"\n{base['model']} on {base['device']}, {base['audio_s']:.1f} s of audio ({base['data']})")
    print(f"{'':22}{'dense fp16':>14}{'optimized plan':>18}")
    e_base, e_plan = 1e3 * base["energy_j_per_audio_s"], 1e3 * plan["energy_j_per_audio_s"]
    print(f"{'mJ per audio-second':22}{e_base:>14.3f}{e_plan:>18.3f}")
    print(f"{'energy cut':22}{'':>14}{100 * cut:>17.1f}%")
    print(f"{'WER':22}{_wer(base):>14}{_wer(plan):>18}")
    off_b, off_p = base["offchip_bytes_per_audio_s"], plan["offchip_bytes_per_audio_s"]
    print(f"{'off-chip MB/audio-s':22}{off_b / 1e6:>14.1f}{off_p / 1e6:>18.1f}")
    for name, profile in (("dense fp16", base), ("optimized plan", plan)):
        print(f"\ntop {args.top} energy items, {name} (mJ/audio-s):")
        for item, energy in _top(profile, args.top):
            print(f"  {1e3 * energy:8.3f}  {item}")
    if args.report:
        print(f"\nthe optimizer's report (WER-vs-energy Pareto plot, uniform baselines): {args.report}")


if __name__ == "__main__":
    main()
