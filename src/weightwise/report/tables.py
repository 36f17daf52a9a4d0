"""Terminal tables (rich) for results."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from weightwise.evaluate.evaluate import EvalResult


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def eval_table(result: EvalResult) -> Table:
    """One row for our model and one for the peer, if any."""
    table = Table(title=f"{result.data} ({result.n_utterances} utterances, {result.audio_s:.1f} s audio, "
                        f"{result.threads} threads)")
    for column in ("system", "precision", "WER", "RTF", "same text as ours", "peak RSS MiB"):
        table.add_column(column, justify="left" if column == "system" else "right")
    table.add_row(f"weightwise {result.model}", result.precision, _pct(result.wer), f"{result.rtf:.4f}",
                  "", f"{result.peak_rss_mb:.0f}")
    if result.peer:
        peer = result.peer
        table.add_row(peer.name, peer.compute_type, _pct(peer.wer), f"{peer.rtf:.4f}",
                      _pct(peer.same_normalized_fraction), "")
        table.caption = f"RTF ratio weightwise / {peer.name} = {peer.rtf_ratio:.2f}"
    return table


def print_eval(result: EvalResult, console: Console | None = None) -> None:
    (console or Console()).print(eval_table(result))
