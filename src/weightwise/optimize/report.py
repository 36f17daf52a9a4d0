"""What `optimize` writes: summary.json, plan.json, sensitivity.json and a self-contained report.html."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import os
from pathlib import Path
from typing import Any

from weightwise.compress.candidates import plan_of
from weightwise.compress.loading import needs_calibration
from weightwise.evaluate.runtime import versions
from weightwise.optimize.ordering import component_ranking, ranking_html
from weightwise.optimize.pipeline import SUMMARY_KIND
from weightwise.optimize.problem import items_of, predict
from weightwise.report.bench_report import pareto_front
from weightwise.report.plots import _pyplot


def _cut(energy: float | None, reference: float | None) -> float | None:
    return None if energy is None or not reference else 1.0 - energy / reference


def _sensitivity_rows(table, device, alpha: float) -> list[dict[str, Any]]:
    rows = []
    for (group_name, _key), e in table.entries.items():
        items = items_of(e.tensors, table.base, device)
        rows.append(
            {
                "group": group_name,
                "candidate": e.label,
                "applicable": e.applicable,
                "kl": e.kl,
                "nll_delta": e.nll_delta,
                "predicted_wer_points": None if e.kl is None else alpha * e.kl,
                "streamed_energy_j_per_audio_s": sum(i.dram_j for i in items) if items else None,
                "nbytes": sum(t.nbytes for t in e.tensors),
                "reason": e.reason,
                "seconds": e.seconds,
            }
        )
    return rows


def _plan_file(inputs, plan) -> dict[str, Any]:
    """The plan as written to DIR/plan.json: a gptq (or csp) plan names its calibration manifest
    relative to DIR, so `--plan DIR/plan.json` alone rebuilds the same weights."""
    source = Path(inputs.calib.source)
    if needs_calibration(plan) and source.is_file():
        plan = dataclasses.replace(plan, calib=os.path.relpath(source.resolve(), inputs.out.resolve()))
    return plan.to_dict()


def dominated_by(wer: float, energy_j: float, uniform: list[dict[str, Any]]) -> list[str]:
    """The measured baselines at least as good on both WER and energy, and better on one."""
    return [
        u["name"]
        for u in uniform
        if u["wer"] is not None
        and u["wer"] <= wer
        and u["energy_j_per_audio_s"] <= energy_j
        and (u["wer"] < wer or u["energy_j_per_audio_s"] < energy_j)
    ]


def build_summary(
    inputs, options, table, assignment, planner, base, opt, uniform, timings, cache_path
) -> dict[str, Any]:
    device, keep = inputs.device, table.space.keep
    predicted = predict(table, assignment, device)
    keep_all = predict(table, {g: keep for g in table.groups}, device)
    alpha = planner["alpha_points_per_nat"]
    for row in uniform:
        row["energy_cut_vs_baseline"] = _cut(row["energy_j_per_audio_s"], base.energy_j_per_audio_s)
    sensitivity = _sensitivity_rows(table, device, alpha)
    return {
        "kind": SUMMARY_KIND,
        "format_version": 1,
        "model": inputs.model,
        "device": device.name,
        "device_path": device.path,
        "wer_budget_points": inputs.budget,
        "baseline": {
            "precision": options.runtime_precision,
            "wer": base.wer,
            "energy_j_per_audio_s": base.energy_j_per_audio_s,
            "offchip_bytes_per_audio_s": base.offchip_bytes_per_audio_s,
        },
        "optimized": {
            "wer": opt.wer,
            "energy_j_per_audio_s": opt.energy_j_per_audio_s,
            "offchip_bytes_per_audio_s": opt.offchip_bytes_per_audio_s,
            "wer_delta_points": 100.0 * (opt.wer - base.wer),
            "energy_cut_vs_baseline": _cut(opt.energy_j_per_audio_s, base.energy_j_per_audio_s),
            "components": opt.components,
            "dominated_by": dominated_by(opt.wer, opt.energy_j_per_audio_s, uniform),
            "predicted": {
                "wer_delta_points": planner["predicted_wer_delta_points"],
                "calib_pseudo_wer_points": planner["calib_pseudo_wer_points"],
                "calib_upper_points": planner.get("calib_upper_points"),
                "energy_j_per_audio_s": predicted.energy_j_per_audio_s,
                "offchip_bytes_per_audio_s": predicted.offchip_bytes_per_audio_s,
                "energy_cut_vs_keep": _cut(predicted.energy_j_per_audio_s, keep_all.energy_j_per_audio_s),
                "note": f"modeled on the calibration audio's decode; keep = every planned weight {keep.label}",
            },
        },
        "uniform": uniform,
        "planner": planner,
        "ordering": component_ranking(
            table, device, alpha, base, ((planner.get("solvers") or {}).get("greedy") or {}).get("order")
        ),
        "choices": [
            {
                "group": g.name,
                "modules": list(g.modules),
                "component": g.component,
                "candidate": c.label,
                "kl": table.entry(g, c).kl,
                "predicted_wer_points": alpha * (table.entry(g, c).kl or 0.0),
            }
            for g, c in assignment.items()
            if g in table.planned
        ],
        "plan": {
            **_plan_file(inputs, dataclasses.replace(plan_of(assignment), runtime=table.runtime)),
            "predicted": {
                "device": device.name,
                "wer_delta_points": planner["predicted_wer_delta_points"],
                "energy_j_per_audio_s": predicted.energy_j_per_audio_s,
                "offchip_bytes_per_audio_s": predicted.offchip_bytes_per_audio_s,
            },
        },
        "candidate_space": table.space.to_dict(),
        "sensitivity": {
            "cache": cache_path,
            "entries": len(sensitivity),
            "scored": sum(r["kl"] is not None for r in sensitivity),
            "dominated": sum(r["applicable"] and r["kl"] is None for r in sensitivity),
            "not_applicable": sum(not r["applicable"] for r in sensitivity),
            "rows": sensitivity,
        },
        "calib_source": inputs.calib.source,
        "calib_ids": [u.id for u in inputs.calib],
        "tune_source": None if inputs.tune is None else inputs.tune.source,
        "tune_ids": None if inputs.tune is None else [u.id for u in inputs.tune],
        "eval_source": inputs.eval_set.source,
        "eval_ids": [u.id for u in inputs.eval_set],
        "decoding": {"max_new_tokens": options.decoding.max_new_tokens, "beam_size": options.decoding.beam_size},
        "timings_s": timings,
        "versions": versions(),
    }


def _points(summary: dict[str, Any]) -> list[tuple[float, float, str]]:
    base = summary["baseline"]
    rows = [(f"{base['precision']} (baseline)", base)] + [(u["name"], u) for u in summary["uniform"][1:]]
    rows.append(("optimized", summary["optimized"]))
    return [(1e3 * r["energy_j_per_audio_s"], 100 * r["wer"], name) for name, r in rows if r["wer"] is not None]


def pareto_png(summary: dict[str, Any]) -> bytes:
    """WER vs modeled energy: the uniform baselines, fp16, the optimized plan and the predicted curve."""
    plt = _pyplot()
    points = _points(summary)
    base_wer = 100 * summary["baseline"]["wer"]
    top = max(3 * base_wer, base_wer + 10)
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for energy, wer, name in points:
        star = name == "optimized"
        shown = min(wer, top)
        ax.scatter(
            energy,
            shown,
            marker="*" if star else ("^" if wer > top else "o"),
            s=180 if star else 40,
            color="#d62728" if star else "#1f77b4",
            zorder=3,
        )
        text = name if wer <= top else f"{name} (WER {wer:.0f}%)"
        ax.annotate(text, (energy, shown), fontsize=8, xytext=(4, 4), textcoords="offset points")
    front = pareto_front(points)
    ax.plot([p[0] for p in front], [min(p[1], top) for p in front], "k--", lw=1, label="measured Pareto front")
    curve = summary["planner"]["frontier"]
    ax.plot(
        [1e3 * c["energy_j_per_audio_s"] for c in curve],
        [base_wer + c["wer_delta_points"] for c in curve],
        ":",
        color="#2ca02c",
        marker=".",
        label="planner's prediction (calibration audio)",
    )
    ax.set_ylim(0, top * 1.05)
    ax.set_xlabel("modeled energy, mJ per audio-second")
    ax.set_ylabel("WER, % (evaluation audio)")
    ax.set_title(f"{summary['model']} on {summary['device']}: budget +{summary['wer_budget_points']:g} points")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _table(header: list[str], body: list[list[str]]) -> str:
    cells = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    cells += ["<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in line) + "</tr>" for line in body]
    return "\n".join(cells) + "</table>"


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2, sign: bool = False) -> str:
    return "" if value is None else f"{scale * value:{'+' if sign else ''}.{digits}f}"


def report_html(summary: dict[str, Any]) -> str:
    base = summary["baseline"]
    dense = base["precision"]  # fp16 for Whisper; a transducer runs fp32 only
    rows = [(f"{dense} (baseline)", base, None)] + [(u["name"], u, u.get("predicted")) for u in summary["uniform"][1:]]
    rows.append(("optimized", summary["optimized"], summary["optimized"]["predicted"]))
    variants = [
        [
            name,
            _fmt(r["wer"], 100),
            _fmt(None if r["wer"] is None else r["wer"] - base["wer"], 100, sign=True),
            _fmt(r["energy_j_per_audio_s"], 1e3, 3),
            _fmt(_cut(r["energy_j_per_audio_s"], base["energy_j_per_audio_s"]), 100, 1),
            _fmt(r["offchip_bytes_per_audio_s"], 1e-6, 1),
            _fmt((p or {}).get("energy_j_per_audio_s"), 1e3, 3),
        ]
        for name, r, p in rows
    ]
    choices: dict[tuple[str, str], int] = {}
    for c in summary["choices"]:
        choices[(c["component"], c["candidate"])] = choices.get((c["component"], c["candidate"]), 0) + 1
    planner, opt = summary["planner"], summary["optimized"]
    loop = planner.get("closed_loop") or {"metric": "pseudo_wer_points"}
    tuned = loop["metric"] == "wer_delta_points"
    loop_name = f"WER increase on {len(loop['ids'])} tuning utterances" if tuned else "calibration pseudo-WER"
    about = (
        f"{summary['model']} on {summary['device']}, WER budget +{summary['wer_budget_points']:g} points over {dense}. "
        f"Calibration: {len(summary['calib_ids'])} utterances of {summary['calib_source']} (no transcripts used); "
        + (f"closed loop on {len(loop['ids'])} transcribed utterances of {loop['source']}; " if tuned else "")
        + f"evaluation: {len(summary['eval_ids'])} utterances of {summary['eval_source']}. Predicted WER increase "
        f"{opt['predicted']['wer_delta_points']:+.2f} points ({loop_name} "
        f"{opt['predicted']['calib_pseudo_wer_points']:.2f}), measured {opt['wer_delta_points']:+.2f}; "
        f"solver {planner['solver']}, alpha {planner['alpha_points_per_nat']:.1f} points per nat; "
        f"wall time {summary.get('wall_s', 0):.0f} s."
    )
    beaten = summary["optimized"].get("dominated_by")
    if beaten:
        about += f" The optimized point is dominated by {', '.join(beaten)} (as good or better on WER and energy)."
    png = base64.b64encode(pareto_png(summary)).decode()
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>weightwise optimize</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
        "font-size:13px;margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "td:first-child{text-align:left}img{max-width:100%}</style></head><body>",
        f"<h1>weightwise optimize</h1><p>{html.escape(about)}</p>",
        "<h2>Measured on the evaluation audio</h2>",
        _table(
            [
                "variant",
                "WER %",
                f"vs {dense} (pts)",
                "mJ/audio-s",
                f"cut vs {dense} %",
                "off-chip MB/audio-s",
                "predicted mJ/audio-s (calib)",
            ],
            variants,
        ),
        f"<h2>WER vs energy</h2><img alt='WER vs energy' src='data:image/png;base64,{png}'>",
        "<h2>What the plan chose (groups per component)</h2>",
        _table(["component", "candidate", "groups"], [[k[0], k[1], str(n)] for k, n in sorted(choices.items())]),
        "<h2>Calibration of predicted WER ("
        + html.escape(
            f"WER increase over the float model on {loop['source']}"
            if tuned
            else "pseudo-WER vs the float model's transcripts"
        )
        + ")</h2>",
        _table(
            [
                "point",
                "sum KL (nats/token)",
                "WER increase (pts)" if tuned else "pseudo-WER (pts)",
                f"upper bound at {planner.get('confidence', 0.5):g} (pts)",
                "alpha used",
                "per tuning manifest (pts, standard error)",
            ],
            [
                [
                    p["name"],
                    f"{p['kl_sum']:.4f}",
                    f"{p['pseudo_wer_points']:.2f}",
                    _fmt(p.get("upper_points"), digits=2),
                    _fmt(p["alpha"], digits=1),
                    _parts_cell(p.get("parts")),
                ]
                for p in planner["calibration_points"]
            ],
        ),
        ranking_html(summary.get("ordering")),
        "<h2>Per-group choices</h2>",
        _table(
            ["group", "candidate", "KL (nats/token)", "predicted WER (pts)"],
            [
                [c["group"], c["candidate"], _fmt(c["kl"], digits=5), _fmt(c["predicted_wer_points"], digits=3)]
                for c in summary["choices"]
            ],
        ),
        "</body></html>",
    ]
    return "\n".join(parts)


def _parts_cell(parts: dict | None) -> str:
    """ "name +0.34 (0.20); ..." per tuning manifest (its folder's name), or "" when one was given."""
    return "; ".join(
        f"{Path(source).parent.name or source} {d['points']:+.2f} ({d['se_points']:.2f})"
        for source, d in (parts or {}).items()
    )


def write_outputs(folder: Path, summary: dict[str, Any]) -> None:
    """plan.json (an ordinary plan plus its predicted numbers), summary.json, sensitivity.json, report.html."""
    rows = summary["sensitivity"].pop("rows")
    (folder / "sensitivity.json").write_text(json.dumps(rows, indent=1) + "\n")
    (folder / "plan.json").write_text(json.dumps(summary["plan"], indent=2) + "\n")
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "report.html").write_text(report_html(summary))
