"""A readable report of benchmark rows (JSONL): WER-vs-SNR curves, the energy/WER Pareto front,
per-component energy bars and the tables, as one self-contained HTML page (images embedded as
base64 PNG) or Markdown (images written next to it).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from weightwise.errors import InputError
from weightwise.report.plots import _pyplot

CLEAN_X_DB = 40.0  # where clean speech sits on the SNR axis of the WER-vs-SNR plots
COLUMNS = ("system", "model", "precision", "plan", "noise", "snr_db", "wer", "rtf",
           "energy_j_per_audio_s", "model_bytes", "peak_rss_mb")


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: results file not found")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise InputError(f"{path}:{number}: not a JSON line") from None
    if not rows:
        raise InputError(f"{path}: no result rows")
    return rows


def label(row: dict[str, Any]) -> str:
    variant = row.get("plan") or row["precision"]
    return f"{row['system']} {row['model']} {variant}"


def pareto_front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points (energy, wer, label) not dominated by another with both lower energy and lower WER."""
    front, best_wer = [], float("inf")
    for energy, wer, name in sorted(points):
        if wer < best_wer:
            front.append((energy, wer, name))
            best_wer = wer
    return front


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def wer_vs_snr_figure(rows: list[dict[str, Any]]) -> bytes:
    plt = _pyplot()
    fig, axes = plt.subplots(1, max(1, len({r["noise"] for r in rows if r["noise"]})), squeeze=False,
                             figsize=(5.5 * max(1, len({r["noise"] for r in rows if r["noise"]})), 4))
    clean = {label(r): r["wer"] for r in rows if r["noise"] is None}
    for ax, noise in zip(axes[0], sorted({r["noise"] for r in rows if r["noise"]}) or [None]):
        series = defaultdict(list)
        for r in rows:
            if r["noise"] == noise and r["snr_db"] is not None:
                series[label(r)].append((r["snr_db"], 100 * r["wer"]))
        for name, points in sorted(series.items()):
            if name in clean:  # clean speech drawn at the left end, labelled as 40 dB
                points.append((CLEAN_X_DB, 100 * clean[name]))
            points.sort(reverse=True)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        ax.set_title(f"noise: {noise}")
        ax.set_xlabel(f"SNR, dB ({CLEAN_X_DB:g} = clean)")
        ax.set_ylabel("WER, %")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    data = _png(fig)
    plt.close(fig)
    return data


def pareto_figure(rows: list[dict[str, Any]]) -> bytes:
    plt = _pyplot()
    points = [(1e3 * r["energy_j_per_audio_s"], 100 * r["wer"], label(r)) for r in rows
              if r["noise"] is None and r.get("energy_j_per_audio_s") is not None]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for energy, wer, name in points:
        ax.scatter(energy, wer)
        ax.annotate(name, (energy, wer), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(points)
    ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=1, label="Pareto front")
    ax.set_xlabel("modeled energy, mJ per audio-second")
    ax.set_ylabel("WER on clean speech, %")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    data = _png(fig)
    plt.close(fig)
    return data


def components_figure(rows: list[dict[str, Any]]) -> bytes:
    plt = _pyplot()
    clean = [r for r in rows if r["noise"] is None and r.get("components")
             and r.get("energy_j_per_audio_s") is not None]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(clean) + 1.5))
    names = sorted({c for r in clean for c in r["components"]})
    left = [0.0] * len(clean)
    for component in names:
        values = [1e3 * r["energy_j_per_audio_s"] * r["components"].get(component, 0.0) for r in clean]
        ax.barh([label(r) for r in clean], values, left=left, label=component)
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlabel("modeled energy, mJ per audio-second (clean)")
    ax.legend(fontsize=8)
    data = _png(fig)
    plt.close(fig)
    return data


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [[_cell(r.get(c)) for c in COLUMNS] for r in rows]


def write_report(results: str | Path, out: str | Path) -> Path:
    """Write `out` (.html: self-contained; .md: PNGs beside it) from the benchmark rows."""
    rows, out = load_rows(results), Path(out)
    figures = {"WER vs SNR": wer_vs_snr_figure(rows), "Energy vs WER (clean)": pareto_figure(rows),
               "Energy by component (clean)": components_figure(rows)}
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".md":
        lines = [f"# weightwise benchmark: {results}", ""]
        for i, (title, png) in enumerate(figures.items()):
            image = out.with_name(f"{out.stem}_fig{i}.png")
            image.write_bytes(png)
            lines += [f"## {title}", "", f"![{title}]({image.name})", ""]
        lines += ["## Results", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(r) + " |" for r in table_rows(rows)]
        out.write_text("\n".join(lines) + "\n")
        return out
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>weightwise benchmark</title>"
             "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "img{max-width:100%}</style></head><body>",
             f"<h1>weightwise benchmark</h1><p>{html.escape(str(results))}: {len(rows)} cells</p>"]
    for title, png in figures.items():
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
                     f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    parts.append("<h2>Results</h2><table><tr>" + "".join(f"<th>{c}</th>" for c in COLUMNS) + "</tr>")
    parts += ["<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in table_rows(rows)]
    parts.append("</table></body></html>")
    out.write_text("\n".join(parts))
    return out
