"""Paper 2's findings checked against bench rows (MISSION.md §2).

Paper 2 (Chakravarty, arXiv 2405.01004): Whisper on a Jetson Orin Nano in FP32/FP16/INT8, clean
and white noise at about 6-9 dB SNR. It found (1) FP32 -> FP16 halves energy with minimal WER
change, (2) INT8 costs about the same energy as FP16, (3) larger models are not reliably more
noise-robust, (4) size does not predict energy. Our energy is modeled (DRAM included) on the
device profile named in the rows; "about half" / "about the same" mean within +-15%.

`benchmarks/paper2_findings.py` is the command-line wrapper.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import mean

from weightwise.audio.noise import noise_label
from weightwise.bench.row import BenchRow

__all__ = ["TOLERANCE", "paper2_findings"]

TOLERANCE = 0.15  # "about": within +-15% of the paper's ratio


def ours(rows: list[BenchRow]) -> dict[tuple[str, str], list[BenchRow]]:
    """weightwise rows without a plan, by (model, precision)."""
    out = defaultdict(list)
    for r in rows:
        if r.system == "weightwise" and not r.plan:
            out[(r.model, r.precision)].append(r)
    return out


def in_band(rows: list[BenchRow], snr_min: float, snr_max: float) -> list[BenchRow]:
    return [r for r in rows if r.noise is None or snr_min <= r.snr_db <= snr_max]


def _fmt(value, spec: str) -> str:
    return "" if value is None or value is False else format(value, spec)


def verdict(ok: bool, tested: bool = True) -> str:
    if not tested:
        return "not tested (missing cells)"
    return "**holds**" if ok else "**does not hold**"


def precision_lines(groups: dict, snr_min: float, snr_max: float) -> tuple[list[str], dict]:
    """Energy and WER of fp16 and int8 relative to fp32 (and int8 to fp16), per model."""
    lines = [
        "| model | precision | mJ/audio-s | energy vs fp32 | energy vs fp16 | RTF vs fp32 "
        "| clean WER % | WER % in band | WER change vs fp32 (pts, in band) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratios: dict[str, list[float]] = defaultdict(list)
    for model in sorted({m for m, _ in groups}):
        by = {
            p: {(r.noise, r.snr_db): r for r in in_band(groups[(model, p)], snr_min, snr_max)}
            for p in ("fp32", "fp16", "int8")
            if (model, p) in groups
        }
        if "fp32" not in by:
            continue
        common = set.intersection(*(set(v) for v in by.values()))

        # means over the conditions every precision ran
        energy = {p: mean(by[p][c].energy_j_per_audio_s for c in common) for p in by}
        wer = {p: mean(by[p][c].wer for c in common) for p in by}
        for p in by:
            clean = by[p].get((None, None))
            vs32, rtf32 = energy[p] / energy["fp32"], clean and by["fp32"][(None, None)].rtf
            vs16 = energy[p] / energy["fp16"] if "fp16" in by else None
            if p != "fp32":
                ratios[f"{p}/fp32"].append(vs32)
            if p == "int8" and vs16 is not None:
                ratios["int8/fp16"].append(vs16)
            ratios[f"wer {p}-fp32"].append(wer[p] - wer["fp32"])
            lines.append(
                f"| {model} | {p} | {1e3 * energy[p]:.2f} | {vs32:.2f} | "
                f"{'' if vs16 is None else f'{vs16:.2f}'} | "
                f"{_fmt(clean and clean.rtf / rtf32, '.2f')} | "
                f"{_fmt(clean and 100 * clean.wer, '.2f')} | {100 * wer[p]:.2f} | "
                f"{100 * (wer[p] - wer['fp32']):+.2f} |"
            )
    return lines, ratios


def robustness_lines(groups: dict, snr_min: float, snr_max: float) -> tuple[list[str], int, int, int]:
    """Per noisy condition and precision: each model's WER and its rise over its clean WER."""
    models = sorted({m for m, _ in groups})
    lines = [
        "| precision | noise | SNR dB | "
        + " | ".join(f"{m} WER % (rise)" for m in models)
        + " | larger model rises less |",
        "|---|---|---:|" + "---:|" * len(models) + "---|",
    ]
    less = lower = total = 0
    if len(models) < 2:
        return lines[:0], 0, 0, 0
    sizes = {m: max((r.model_bytes or 0 for r in groups.get((m, "fp32"), [])), default=0) for m in models}
    small, large = min(models, key=sizes.get), max(models, key=sizes.get)
    for precision in ("fp32", "fp16", "int8"):
        per = {
            m: {(r.noise, r.snr_db): r.wer for r in in_band(groups.get((m, precision), []), snr_min, snr_max)}
            for m in models
        }
        conditions = sorted(
            set.intersection(*(set(v) for v in per.values())) - {(None, None)}, key=lambda c: (c[0], -c[1])
        )
        for noise, snr in conditions:
            rise = {m: per[m][(noise, snr)] - per[m][(None, None)] for m in models}
            total += 1
            less += rise[large] < rise[small]
            lower += per[large][(noise, snr)] < per[small][(noise, snr)]
            lines.append(
                f"| {precision} | {noise_label(noise)} | {snr:g} | "
                + " | ".join(f"{100 * per[m][(noise, snr)]:.2f} ({100 * rise[m]:+.2f})" for m in models)
                + f" | {'yes' if rise[large] < rise[small] else 'no'} |"
            )
    return lines, less, lower, total


def paper2_findings(rows: list[BenchRow], snr_min: float, snr_max: float, source: str) -> str:
    """The four findings as Markdown: each table, then each verdict with the numbers it rests on.

    Args:
        rows: bench rows (any row version); weightwise rows without a plan are used.
        snr_min, snr_max: the noisy cells counted (dB, inclusive); clean cells always are.
        source: the results file, named in the title.
    """
    groups = ours(rows)
    precision_table, ratios = precision_lines(groups, snr_min, snr_max)
    robust_table, less, lower, total = robustness_lines(groups, snr_min, snr_max)
    half, same = ratios["fp16/fp32"], ratios["int8/fp16"]
    devices = sorted({r.device for r in rows if r.device})
    hosts = sorted({f"{h['cpu']} with {h['threads']} threads" for r in rows if (h := r.host)})
    timed_on = "; ".join(hosts) or "the machine that ran the bench (the rows do not name it)"
    sizes = sorted(
        {
            (r.model_bytes, r.model, r.precision, r.energy_j_per_audio_s)
            for r in rows
            if r.system == "weightwise" and r.noise is None and r.model_bytes
        }
    )
    size_order = [f"{m} {p}" for _, m, p, _ in sizes]
    energy_order = [f"{m} {p}" for _, m, p, _ in sorted(sizes, key=lambda s: s[3])]
    out = [
        f"# Paper 2's findings on our data ({source})",
        "",
        f"Clean speech plus every noisy cell with {snr_min:g} <= SNR <= {snr_max:g} dB (paper 2: white noise "
        f"at about 6-9 dB). Energy is modeled on {', '.join(devices)} (DRAM included); RTF is measured on "
        f"{timed_on}. 'About' means within +-15%.",
        "",
        "## Precision: energy and WER",
        "",
        *precision_table,
        "",
        f"1. *FP32 -> FP16 halves energy with minimal WER change*: fp16/fp32 energy = "
        f"{', '.join(f'{r:.2f}' for r in half)} -> "
        f"{verdict(all(abs(r / 0.5 - 1) <= TOLERANCE for r in half), bool(half))}; "
        f"WER change {', '.join(f'{100 * w:+.2f}' for w in ratios['wer fp16-fp32'])} points.",
        f"2. *INT8 costs about the same energy as FP16*: int8/fp16 energy = "
        f"{', '.join(f'{r:.2f}' for r in same)} -> "
        f"{verdict(all(abs(r - 1) <= TOLERANCE for r in same), bool(same))}; "
        f"WER change vs fp32 {', '.join(f'{100 * w:+.2f}' for w in ratios['wer int8-fp32'])} points.",
        "",
        "## Noise robustness: smaller vs larger model",
        "",
        *robust_table,
        "",
        f"3. *Larger models are not reliably more noise-robust*: the larger model's WER rises less than the "
        f"smaller one's in {less} of {total} noisy cells and is lower in {lower} of {total} -> "
        f"{verdict(less < total, total > 0)} "
        "(it holds when the larger model is not better in every cell).",
        f"4. *Size does not predict energy*: by stored bytes: {' < '.join(size_order)}; by modeled energy: "
        f"{' < '.join(energy_order)} -> {verdict(size_order != energy_order, len(size_order) > 1)} "
        "(holds when the orders differ).",
        "",
    ]
    return "\n".join(out)
