"""A readable report of benchmark rows (JSONL): a summary per model variant, WER by condition,
WER-vs-SNR curves, the energy/WER Pareto front, per-component energy bars and every cell, as one
self-contained HTML page (images embedded as base64 PNG) or Markdown (images written beside it).
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

from weightwise.audio.noise import noise_label
from weightwise.bench.row import BenchRow, read_rows
from weightwise.errors import InputError
from weightwise.outputs import write_bytes_atomic, write_text_atomic
from weightwise.report.plots import _pyplot

CLEAN_X_DB = 40.0  # where clean speech sits on the SNR axis of the WER-vs-SNR plots
WER_CAP_PCT = 120.0  # top of the WER-vs-SNR y axis; higher WERs are marked on the edge
COLUMNS = (
    "system",
    "model",
    "precision",
    "plan",
    "noise",
    "snr_db",
    "wer",
    "rtf",
    "energy_j_per_audio_s",
    "model_bytes",
    "peak_rss_mb",
    "wall_s",
    "kernels",
)
SUMMARY_COLUMNS = (
    "variant",
    "clean WER %",
    "mean noisy WER %",
    "mJ/audio-s",
    "energy vs fp32",
    "RTF clean",
    "RTF vs fp32",
    "RTF vs peer",
    "model MB",
    "peak RSS MiB",
    "cells",
    "wall s",
    "real kernels",
)
# weightwise precision -> the faster-whisper compute type it is timed against ("RTF vs peer")
PEER_OF = {"fp32": "float32", "int8": "int8"}
RSS_SCOPES = {
    "cell": "peak RSS per cell (high-water mark reset at cell start)",
    "process": "peak RSS since the process started",
    None: "peak RSS = largest RSS sampled after each utterance of the cell",
}


def load_rows(path: str | Path) -> list[BenchRow]:
    """Rows of a bench JSONL (any row version); a bad line, a line that is not a bench row or a
    cell listed twice is a one-line `InputError` naming file:line (see `read_rows`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: results file not found")
    rows = [row for _line, row in read_rows(path)]
    if not rows:
        raise InputError(f"{path}: no result rows")
    return rows


#: what rows that did not record `kernels` ran on, where their coordinates say it for certain
_KERNELS_BY_PRECISION = {"fp32": "float", "fp16": "float", "bf16": "float", "int8": "int8"}


def kernels_of(row: BenchRow) -> str | None:
    """What the row's weights ran on (`BenchRow.kernels`); for rows from before it was recorded,
    the faster-whisper peer's CTranslate2 and our plan-less precisions, else None (unknown)."""
    if row.kernels:
        return row.kernels
    if row.system == "faster-whisper":
        return "ctranslate2"
    return _KERNELS_BY_PRECISION.get(row.precision) if row.system == "weightwise" and not row.plan else None


def _real(kernels: set[str | None]) -> str:
    """The summary's "real kernels" cell for a variant's rows."""
    if None in kernels or not kernels:
        return "not recorded"
    return f"no ({'/'.join(sorted(kernels))})" if "simulated" in kernels else f"yes ({'/'.join(sorted(kernels))})"


def label(row: BenchRow) -> str:
    variant = row.plan or row.precision
    return f"{row.system} {row.model} {variant}"


def condition(row: BenchRow) -> str:
    return "clean" if row.noise is None else f"{noise_label(row.noise)} {row.snr_db:g} dB"


def _conditions(rows: list[BenchRow]) -> list[str]:
    """clean first, then each noise from high to low SNR."""
    seen = {(noise_label(r.noise) if r.noise else "", -(r.snr_db or 0.0)): condition(r) for r in rows}
    return [seen[k] for k in sorted(seen, key=lambda k: (k[0] != "", k))]


def _variants(rows: list[BenchRow]) -> list[str]:
    return list(dict.fromkeys(label(r) for r in rows))


def pareto_front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points (energy, wer, label) not dominated by another with both lower energy and lower WER."""
    front, best_wer = [], float("inf")
    for energy, wer, name in sorted(points):
        if wer < best_wer:
            front.append((energy, wer, name))
            best_wer = wer
    return front


def wer_table(rows: list[BenchRow]) -> tuple[list[str], list[list[str]]]:
    """WER % per variant (rows) and condition (columns)."""
    conditions = _conditions(rows)
    by = {(label(r), condition(r)): r.wer for r in rows}
    body = [[name] + [_pct(by.get((name, c))) for c in conditions] for name in _variants(rows)]
    return ["variant", *conditions], body


def summary_table(rows: list[BenchRow]) -> tuple[list[str], list[list[str]]]:
    """One line per variant: WER clean and under noise, modeled energy and speed vs fp32 of the
    same system and model, size, memory and the wall time its cells took."""
    groups: dict[str, list[BenchRow]] = defaultdict(list)
    for r in rows:
        groups[label(r)].append(r)
    clean = {name: next((r for r in g if r.noise is None), None) for name, g in groups.items()}

    def reference(r: BenchRow) -> BenchRow | None:
        ref = clean.get(f"{r.system} {r.model} {'float32' if r.system != 'weightwise' else 'fp32'}")
        return ref if ref is not None and ref is not r else None

    def peer(r: BenchRow) -> BenchRow | None:  # faster-whisper at the same precision
        if r.system != "weightwise" or r.plan or r.precision not in PEER_OF:
            return None
        return clean.get(f"faster-whisper {r.model} {PEER_OF[r.precision]}")

    body = []
    for name, group in groups.items():
        c, noisy = clean[name], [r.wer for r in group if r.noise is not None and r.wer is not None]
        ref, other = (reference(c) if c else None), (peer(c) if c else None)
        energy, rtf = _get(c, "energy_j_per_audio_s"), _get(c, "rtf")
        body.append(
            [
                name,
                _pct(_get(c, "wer")),
                _pct(mean(noisy) if noisy else None),
                _num(1e3 * energy if energy is not None else None),
                _ratio(energy, _get(ref, "energy_j_per_audio_s")),
                _num(rtf),
                _ratio(rtf, _get(ref, "rtf")),
                _ratio(rtf, _get(other, "rtf")),
                _num(c.model_bytes / 1e6 if c and c.model_bytes else None),
                _num(max((r.peak_rss_mb or 0.0) for r in group) or None),
                str(len(group)),
                _num(sum(r.wall_s or 0.0 for r in group) or None),
                _real({kernels_of(r) for r in group}),
            ]
        )
    return list(SUMMARY_COLUMNS), body


def _get(row: BenchRow | None, name: str):
    return None if row is None else getattr(row, name)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _ratio(value: float | None, reference: float | None) -> str:
    return "" if value is None or not reference else f"{value / reference:.2f}x"


def _style(rows: list[BenchRow]):
    """Colour per system+precision/plan, line style per model: the same everywhere in a report."""
    kinds = list(dict.fromkeys(f"{r.system} {r.plan or r.precision}" for r in rows))
    models = list(dict.fromkeys(r.model for r in rows))
    colors = [f"C{i % 10}" for i in range(len(kinds))]
    styles = ["-", "--", ":", "-."]

    def style(r: BenchRow) -> dict[str, Any]:
        kind = f"{r.system} {r.plan or r.precision}"
        return {"color": colors[kinds.index(kind)], "linestyle": styles[models.index(r.model) % 4]}

    return style


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def wer_vs_snr_figure(rows: list[BenchRow]) -> bytes:
    """WER against SNR, one panel per noise. The y axis stops at WER_CAP_PCT: a hallucinating model
    can pass 200% at 0 dB and would flatten every other curve; such points sit on the top edge as
    triangles (their values are in the tables). Rows without a WER (no reference texts) are left out."""
    plt = _pyplot()
    from matplotlib.lines import Line2D  # lazy: the optional `plots` extra (see plots._pyplot)

    rows = [r for r in rows if r.wer is not None] or rows
    noises = sorted({r.noise for r in rows if r.noise}, key=noise_label) or [None]
    fig, axes = plt.subplots(1, len(noises), squeeze=False, figsize=(5.5 * len(noises), 4.5), sharey=True)
    clean = {label(r): r.wer for r in rows if r.noise is None}
    style, first = _style(rows), {label(r): r for r in rows}
    top = min(WER_CAP_PCT, max((100 * r.wer for r in rows if r.wer is not None), default=100.0) * 1.05)
    for ax, noise in zip(axes[0], noises, strict=True):
        series = defaultdict(list)
        for r in rows:
            if r.noise == noise and r.snr_db is not None and r.wer is not None:
                series[label(r)].append((r.snr_db, 100 * r.wer))
        for name, points in series.items():
            if clean.get(name) is not None:  # clean speech drawn at the left end, labelled as 40 dB
                points.append((CLEAN_X_DB, 100 * clean[name]))
            points.sort(reverse=True)
            look = style(first[name])
            ax.plot([p[0] for p in points], [min(p[1], top) for p in points], marker="o", ms=3, **look)
            over = [p[0] for p in points if p[1] > top]
            if over:
                ax.plot(over, [top] * len(over), marker="^", ms=7, ls="none", color=look["color"], clip_on=False)
        ax.set_title(f"noise: {noise_label(noise) if noise else 'none'}")
        ax.set_xlabel(f"SNR, dB ({CLEAN_X_DB:g} = clean)")
        ax.set_ylim(0, top)
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"WER, % (triangles: above {top:.0f}%)" if top == WER_CAP_PCT else "WER, %")
    kinds = {f"{r.system} {r.plan or r.precision}": style(r)["color"] for r in rows}
    models = {r.model: style(r)["linestyle"] for r in rows}
    handles = [Line2D([], [], color=c, marker="o", ms=3, label=k) for k, c in kinds.items()]
    handles += [Line2D([], [], color="k", linestyle=ls, label=m) for m, ls in models.items()]
    fig.legend(handles=handles, fontsize=8, loc="upper center", ncol=min(7, len(handles)), bbox_to_anchor=(0.5, 0.0))
    data = _png(fig)
    plt.close(fig)
    return data


def pareto_figure(rows: list[BenchRow]) -> bytes:
    """Modeled energy vs WER, on clean speech and averaged over the noisy conditions."""
    plt = _pyplot()
    has_noise = any(r.noise is not None for r in rows)
    fig, axes = plt.subplots(1, 2 if has_noise else 1, squeeze=False, figsize=(13 if has_noise else 6.5, 4.5))
    style = _style(rows)
    panels = [("clean speech", lambda r: r.noise is None)]
    if has_noise:
        panels.append(("mean over noisy conditions", lambda r: r.noise is not None))
    for ax, (title, keep) in zip(axes[0], panels, strict=True):
        groups = defaultdict(list)
        for r in rows:
            if keep(r) and r.energy_j_per_audio_s is not None and r.wer is not None:
                groups[label(r)].append(r)
        points = [
            (1e3 * mean(r.energy_j_per_audio_s for r in g), 100 * mean(r.wer for r in g), name)
            for name, g in groups.items()
        ]
        for (energy, wer, name), g in zip(points, groups.values(), strict=True):
            ax.scatter(energy, wer, color=style(g[0])["color"])
            ax.annotate(
                name.removeprefix("weightwise "), (energy, wer), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        front = pareto_front(points)
        ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=1, label="Pareto front")
        ax.set_xlabel("modeled energy, mJ per audio-second")
        ax.set_ylabel(f"WER, % ({title})")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    data = _png(fig)
    plt.close(fig)
    return data


def components_figure(rows: list[BenchRow]) -> bytes:
    plt = _pyplot()
    clean = [r for r in rows if r.noise is None and r.components and r.energy_j_per_audio_s is not None]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(clean) + 1.5))
    names = sorted({c for r in clean for c in r.components})
    left = [0.0] * len(clean)
    for component in names:
        values = [1e3 * r.energy_j_per_audio_s * r.components.get(component, 0.0) for r in clean]
        ax.barh([label(r) for r in clean], values, left=left, label=component)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlabel("modeled energy, mJ per audio-second (clean)")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    data = _png(fig)
    plt.close(fig)
    return data


def table_rows(rows: list[BenchRow]) -> list[list[str]]:
    def cell(r: BenchRow, column: str) -> str:
        v = kernels_of(r) if column == "kernels" else getattr(r, column)
        if column == "noise" and v is not None:
            return noise_label(v)
        return _num(v) if isinstance(v, float) else ("" if v is None else str(v))

    return [[cell(r, c) for c in COLUMNS] for r in rows]


def _about(results: str | Path, rows: list[BenchRow]) -> str:
    devices = sorted({r.device for r in rows if r.device})
    utts = sorted({r.n_utterances for r in rows if r.n_utterances})
    wall = sum(r.wall_s or 0.0 for r in rows)
    text = f"{results}: {len(rows)} cells"
    text += f", {'/'.join(map(str, utts))} utterances per cell" if utts else ""
    text += f", modeled energy on {', '.join(devices)}" if devices else ""
    text += f", cells took {wall / 60:.1f} min of wall time in all" if wall else ""
    hosts = dict.fromkeys(f"{h['cpu']}, {h['threads']} threads" for r in rows if (h := r.host))
    text += f", timed on {'; '.join(hosts)}" if hosts else ""
    shares = sorted({r.tasks_on_node for r in rows if r.tasks_on_node})  # rows v3+: RTF compares within one count
    text += f", {'/'.join(map(str, shares))} bench tasks per machine while timed" if shares else ""
    scopes = dict.fromkeys(r.peak_rss_scope for r in rows)
    text += "; " + "; ".join(RSS_SCOPES.get(s, f"peak RSS scope {s}") for s in scopes)
    return text + (
        "; kernels: what the weights ran on (real: float, int8, packed low-bit, ctranslate2; simulated: "
        "compressed layers computed from float copies, so their speed and memory are not a deployment's; "
        "rows that did not record it: inferred from precision where certain)"
    )


def _markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(line) + " |" for line in body),
        "",
    ]


def _html_table(header: list[str], body: list[list[str]]) -> str:
    cells = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    cells += ["<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in line) + "</tr>" for line in body]
    return "\n".join(cells) + "</table>"


def write_report(results: str | Path, out: str | Path) -> Path:
    """Write `out` (.html: self-contained; .md: PNGs beside it) from the benchmark rows."""
    rows, out = load_rows(results), Path(out)
    if out.suffix not in (".html", ".htm", ".md"):
        raise InputError(f"{out}: the report must end in .html or .md")
    tables = {"Summary per variant": summary_table(rows), "WER % by condition": wer_table(rows)}
    figures = {
        "WER vs SNR": wer_vs_snr_figure(rows),
        "Energy vs WER": pareto_figure(rows),
        "Energy by component (clean)": components_figure(rows),
    }
    cells = (list(COLUMNS), table_rows(rows))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".md":
        lines = ["# weightwise benchmark", "", _about(results, rows), ""]
        for title, (header, body) in tables.items():
            lines += [f"## {title}", "", *_markdown_table(header, body)]
        for i, (title, png) in enumerate(figures.items()):
            image = out.with_name(f"{out.stem}_fig{i}.png")
            write_bytes_atomic(image, png)
            lines += [f"## {title}", "", f"![{title}]({image.name})", ""]
        lines += ["## All cells", "", *_markdown_table(*cells)]
        write_text_atomic(out, "\n".join(lines))
        return out
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>weightwise benchmark</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
        "font-size:13px;margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "td:first-child{text-align:left}img{max-width:100%}</style></head><body>",
        f"<h1>weightwise benchmark</h1><p>{html.escape(_about(results, rows))}</p>",
    ]
    for title, (header, body) in tables.items():
        parts.append(f"<h2>{html.escape(title)}</h2>{_html_table(header, body)}")
    for title, png in figures.items():
        parts.append(
            f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        )
    parts += [f"<h2>All cells</h2>{_html_table(*cells)}", "</body></html>"]
    write_text_atomic(out, "\n".join(parts))
    return out
