"""Which components a plan compresses first, and why: paper 1's ratio, per component.

Paper 1 ranks weights by power sensitivity over accuracy sensitivity and compresses the best-ranked
first (joiner -> predictor -> encoder on its transducer). Here, per planned group and candidate:
the energy one move from all-keep saves per audio-second, priced as the greedy planner first
prices it (`compress.planner.single_moves`), and its accuracy cost (KL, nats per scored position:
a Whisper decoder token, a transducer joiner lattice point). Per component and candidate: the
sums and their ratio (energy saved per nat of KL; higher = compressed earlier). Beside them, the
dense baseline's invocations and energy per audio-second per component (the profiler's, on the
evaluation audio): the factors behind the energy side. `greedy_first_step` is where each
component first appears in the greedy planner's moves at the final alpha.
"""

from __future__ import annotations

import html
from typing import Any

from weightwise.compress.planner import single_moves
from weightwise.optimize.problem import Table, build_problem
from weightwise.profile.device import DeviceSpec
from weightwise.profile.profile import ModelProfile

TINY_KL = 1e-12  # nats: below this a move counts as free (its ratio is reported as None)


def _ratio(saved: float, kl: float) -> float | None:
    return saved / kl if kl > TINY_KL else None


def component_ranking(
    table: Table, device: DeviceSpec, alpha: float, baseline: ModelProfile, greedy_order: list | None = None
) -> dict[str, Any]:
    """Per candidate label: components ranked by energy saved per nat of KL (best first)."""
    problem, behind = build_problem(table, device, alpha)
    sums: dict[str, dict[str, list[float]]] = {}
    for g, o, saved in single_moves(problem):
        group, candidate = table.planned[g], behind[g][o]
        kl = max(table.entry(group, candidate).kl or 0.0, 0.0)
        total = sums.setdefault(candidate.label, {}).setdefault(group.component, [0.0, 0.0, 0])
        total[0] += saved
        total[1] += kl
        total[2] += 1
    invocations = baseline.component_invocations_per_audio_s
    energy = baseline.component_energy_j_per_audio_s
    by_candidate = {
        label: sorted(
            (
                {
                    "component": component,
                    "groups": int(n),
                    "energy_saved_j_per_audio_s": saved,
                    "kl_sum": kl,
                    "saved_j_per_nat": _ratio(saved, kl),
                    "baseline_invocations_per_audio_s": invocations.get(component),
                    "baseline_energy_j_per_audio_s": energy.get(component),
                }
                for component, (saved, kl, n) in per_component.items()
            ),
            key=lambda r: -(r["saved_j_per_nat"] if r["saved_j_per_nat"] is not None else float("inf")),
        )
        for label, per_component in sums.items()
    }
    first: dict[str, int] = {}
    names = {g.name: g.component for g in table.planned}
    for step, (group, _label) in enumerate(greedy_order or []):
        first.setdefault(names[group], step)
    return {
        "by_candidate": by_candidate,
        "greedy_first_step": first,
        "component_invocations_per_audio_s": dict(invocations),
        "component_energy_j_per_audio_s": dict(energy),
        "note": "saved: one move from all-keep, placement as the greedy planner first prices it; "
        "kl: nats per scored position; baseline columns: the dense baseline on the evaluation audio",
    }


def ranking_html(ordering: dict[str, Any] | None) -> str:
    """The ranking as HTML tables (empty without one)."""
    if not ordering:
        return ""
    parts = ["<h2>Which components first (energy saved per nat of KL, one move from all-keep)</h2>"]
    for label, rows in ordering["by_candidate"].items():
        cells = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(v)}</td>"
                for v in (
                    r["component"],
                    str(r["groups"]),
                    f"{1e6 * r['energy_saved_j_per_audio_s']:.3f}",
                    f"{r['kl_sum']:.3g}",
                    "" if r["saved_j_per_nat"] is None else f"{1e6 * r['saved_j_per_nat']:.4g}",
                    ""
                    if r["baseline_invocations_per_audio_s"] is None
                    else f"{r['baseline_invocations_per_audio_s']:.1f}",
                    ""
                    if r["baseline_energy_j_per_audio_s"] is None
                    else f"{1e6 * r['baseline_energy_j_per_audio_s']:.3f}",
                )
            )
            + "</tr>"
            for r in rows
        )
        header = "".join(
            f"<th>{h}</th>"
            for h in (
                "component",
                "groups",
                "saved uJ/audio-s",
                "sum KL",
                "uJ per nat",
                "baseline invocations/audio-s",
                "baseline uJ/audio-s",
            )
        )
        parts.append(f"<h3>{html.escape(label)}</h3><table><tr>{header}</tr>{cells}</table>")
    first = ", ".join(
        f"{c} at move {s}" for c, s in sorted(ordering["greedy_first_step"].items(), key=lambda kv: kv[1])
    )
    parts.append(f"<p>Greedy planner (final alpha): first move per component: {html.escape(first or 'none')}.</p>")
    return "\n".join(parts)
