"""Figures (matplotlib, imported lazily; install the `plots` extra)."""

from __future__ import annotations

import io
from pathlib import Path

from weightwise.errors import InputError
from weightwise.outputs import write_bytes_atomic


def _pyplot():
    try:
        import matplotlib  # lazy: the optional `plots` extra, and slow to import

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("plotting needs matplotlib (pip install 'weightwise[plots]')") from None
    return plt


def plot_profile(p, path: str | Path, top: int = 20) -> None:
    """Top tensors' energy split (DRAM / on-chip / compute) and the component shares."""
    plt = _pyplot()
    rows = p.tensors[:top][::-1]
    fig, (ax_t, ax_c) = plt.subplots(1, 2, figsize=(14, 0.32 * top + 2.5), gridspec_kw={"width_ratios": [3, 1.3]})
    names = [r.name.removeprefix("model.") for r in rows]
    left = [0.0] * len(rows)
    for label, attr, color in (
        ("DRAM", "dram_j_per_audio_s", "#d62728"),
        ("on-chip", "onchip_j_per_audio_s", "#2ca02c"),
        ("compute", "compute_j_per_audio_s", "#1f77b4"),
    ):
        values = [1e3 * getattr(r, attr) for r in rows]
        ax_t.barh(names, values, left=left, color=color, label=label)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax_t.set_xlabel("modeled energy, mJ per audio-second")
    ax_t.set_title(f"{p.model} {p.precision} on {p.device}: top {len(rows)} weight tensors")
    ax_t.legend(loc="lower right")
    ax_t.tick_params(axis="y", labelsize=7)
    comps = list(p.components.items())
    colors = {"kv_cache": "#ff7f0e", "activations": "#9467bd"}  # traffic that is not weights
    ax_c.bar([c for c, _ in comps], [100 * s for _, s in comps], color=[colors.get(c, "#7f7f7f") for c, _ in comps])
    ax_c.set_ylabel("share of energy, %")
    ax_c.set_title(
        f"total {1e3 * p.energy_j_per_audio_s:.2f} mJ/audio-s\n"
        f"off-chip {p.offchip_bytes_per_audio_s / 1e6:.1f} MB/audio-s "
        f"(streaming {p.baseline_offchip_bytes_per_audio_s / 1e6:.1f})",
        fontsize=9,
    )
    ax_c.tick_params(axis="x", labelsize=8)
    plt.setp(ax_c.get_xticklabels(), rotation=35, ha="right")
    fig.tight_layout()
    suffix = Path(path).suffix.lower().lstrip(".")  # .svg/.pdf/... as savefig(path) did; else PNG
    image = io.BytesIO()
    fig.savefig(image, format=suffix if suffix in fig.canvas.get_supported_filetypes() else "png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, image.getvalue())
