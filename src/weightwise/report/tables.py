"""Terminal tables (rich) for results."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from weightwise.evaluate.evaluate import EvalResult


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def eval_table(result: EvalResult) -> Table:
    """One row for our model and one for the peer, if any."""
    table = Table(
        title=f"{result.data} ({result.n_utterances} utterances, {result.audio_s:.1f} s audio, "
        f"{result.threads} threads)"
    )
    for column in ("system", "precision", "WER", "RTF", "same text as ours", "peak RSS MiB"):
        table.add_column(column, justify="left" if column == "system" else "right")
    table.add_row(
        f"weightwise {result.model}" + ("" if result.engine == "torch" else f" on {result.engine}"),
        result.precision,
        _pct(result.wer),
        f"{result.rtf:.4f}",
        "",
        f"{result.peak_rss_mb:.0f}",
    )
    if result.peer:
        peer = result.peer
        table.add_row(
            peer.name, peer.compute_type, _pct(peer.wer), f"{peer.rtf:.4f}", _pct(peer.same_normalized_fraction), ""
        )
        table.caption = f"RTF ratio weightwise / {peer.name} = {peer.rtf_ratio:.2f}"
    stopped = [
        f"{n} windows {why}"
        for n, why in (
            (result.n_windows_repetition_stopped, "stopped on repetition"),
            (result.n_windows_limit_stopped, "cut at max_new_tokens"),
        )
        if n
    ]
    if stopped:  # transcripts cut short: say so beside the WER they produced
        table.caption = "; ".join(filter(None, [table.caption, *stopped]))
    if result.weight_bytes_resident is not None:  # next to peak RSS: what the weights hold of it
        weights = f"weights in RAM {result.weight_bytes_resident / 2**20:.1f} MiB"
        weights += f" ({result.kernels} kernels)" if result.kernels else ""
        table.caption = "; ".join(filter(None, [table.caption, weights]))
    return table


def print_eval(result: EvalResult, console: Console | None = None) -> None:
    (console or Console()).print(eval_table(result))


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def profile_tables(p, top: int = 15) -> list[Table]:
    """Top tensors by modeled energy, the component shares, and the key/value-cache and activation
    traffic, for one `ModelProfile`."""
    tensors = Table(
        title=f"{p.model} {p.precision} on {p.device}: top {top} of {len(p.tensors)} "
        f"weight tensors by energy ({p.audio_s:.1f} s audio)"
    )
    for column in ("tensor", "inv/audio-s", "stored", "read/audio-s", "place", "mJ/audio-s", "share"):
        tensors.add_column(column, justify="left" if column == "tensor" else "right")
    for row in p.tensors[:top]:
        tensors.add_row(
            row.name.removeprefix("model."),
            f"{row.invocations_per_audio_s:.2f}",
            _si(row.nbytes, "B"),
            _si(row.bytes_read_per_audio_s, "B"),
            row.placement,
            f"{1e3 * row.energy_j_per_audio_s:.3f}",
            f"{100 * row.energy_j_per_audio_s / p.energy_j_per_audio_s:.1f}%",
        )
    shares = Table(
        title=f"energy {1e3 * p.energy_j_per_audio_s:.2f} mJ/audio-s (streaming baseline "
        f"{1e3 * p.baseline_energy_j_per_audio_s:.2f}); off-chip "
        f"{_si(p.offchip_bytes_per_audio_s, 'B')}/audio-s (baseline "
        f"{_si(p.baseline_offchip_bytes_per_audio_s, 'B')}); roofline RTF >= "
        f"{p.roofline['rtf_lower_bound']:.4f} ({p.roofline['bound']}-bound)"
    )
    for column in ("component", "energy share", "mJ/audio-s", "off-chip/audio-s"):
        shares.add_column(column, justify="left" if column == "component" else "right")
    energy, offchip = p.component_energy_j_per_audio_s, p.component_offchip_bytes_per_audio_s
    for name, share in p.components.items():
        shares.add_row(
            f"[bold]{name}[/bold]",
            f"{100 * share:.1f}%",
            f"{1e3 * energy[name]:.3f}" if name in energy else "",
            _si(offchip[name], "B") if name in offchip else "",
        )
    for name, share in p.component_details.items():
        if name not in p.components:
            shares.add_row(f"  {name}", f"{100 * share:.1f}%", "", "")
    return [tensors, shares, traffic_table(p)]


def traffic_table(p) -> Table:
    """Key/value cache and activations: bytes moved, what went off-chip, and the energy."""
    table = Table(
        title=f"key/value cache ({p.kv_dtype or 'none'}) and activations: on-chip activation "
        f"budget {_si(p.onchip_activation_bytes, 'B')}"
    )
    for column in ("traffic", "dtype", "moved/audio-s", "off-chip/audio-s", "largest", "mJ/audio-s"):
        table.add_column(column, justify="left" if column == "traffic" else "right")
    for t in p.traffic:
        table.add_row(
            t.name,
            t.dtype,
            _si(t.bytes_per_audio_s, "B"),
            _si(t.offchip_bytes_per_audio_s, "B"),
            _si(t.largest_nbytes, "B"),
            f"{1e3 * t.energy_j_per_audio_s:.3f}",
        )
    return table


def print_profile(p, console: Console | None = None) -> None:
    console = console or Console()
    for table in profile_tables(p):
        console.print(table)
