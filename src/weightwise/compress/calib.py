"""Calibration activations: the inputs each targeted module sees while transcribing real audio.

Audio needs no transcript (e.g. ../shared/data/speech/librispeech_train_clean_100_untranscribed).
`collect_inputs` subsamples rows evenly per call and caps them per module, so memory stays
bounded; `collect_hessians` keeps every row, folded into a (in x in) second-moment matrix.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from weightwise.data import Manifest, iter_audio
from weightwise.decode import transcribe

ROWS_PER_CALL = 128  # encoder calls carry 1500 frames; keep an even subsample of them
MAX_ROWS = 4096  # per module


def _rows(x: torch.Tensor, in_features: int) -> torch.Tensor:
    rows = x.detach().reshape(-1, in_features).float()
    if rows.shape[0] > ROWS_PER_CALL:
        rows = rows[torch.linspace(0, rows.shape[0] - 1, ROWS_PER_CALL).long()]
    return rows


def collect_inputs(model, manifest: Manifest, names: list[str], max_rows: int = MAX_ROWS) -> dict[str, torch.Tensor]:
    """name -> (rows, in_features) float32 inputs of each Linear `names` on `manifest`'s audio."""
    network = model.network
    store: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    counts = dict.fromkeys(names, 0)
    handles = []
    for name in names:
        module = network.get_submodule(name)
        in_features = module.weight.shape[1]

        def hook(mod, args, name=name, in_features=in_features):
            if counts[name] < max_rows:
                rows = _rows(args[0], in_features)[: max_rows - counts[name]]
                store[name].append(rows)
                counts[name] += rows.shape[0]

        handles.append(module.register_forward_pre_hook(hook))
    try:
        for _utt, samples in iter_audio(manifest):
            transcribe(model, samples)
    finally:
        for handle in handles:
            handle.remove()
    return {n: torch.cat(rows) for n, rows in store.items() if rows}


class Moments(NamedTuple):
    """Second moments of one module's calibration inputs X (rows, in)."""

    xtx: torch.Tensor  # X^T X, float64 (in, in)
    rows: int
    fourth: float  # sum over rows of ||x||^4 (for Ledoit-Wolf shrinkage, `weightwise.compress.csp.gram`)

    def hessian(self) -> torch.Tensor:
        """X^T X / rows."""
        return self.xtx / max(self.rows, 1)


def collect_hessians(model, manifest: Manifest, names: list[str]) -> dict[str, Moments]:
    """name -> `Moments` over every input row each Linear `names` sees while `model` transcribes
    `manifest` (every encoder frame, every decoder token); names never called are left out.

    Rows are buffered per module and folded in once per utterance (a decoder call carries one row).
    """
    network = model.network
    sums: dict[str, torch.Tensor] = {}
    pending: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    counts, fourth = dict.fromkeys(names, 0), dict.fromkeys(names, 0.0)
    handles = []
    for name in names:
        module = network.get_submodule(name)
        in_features = module.weight.shape[1]
        sums[name] = torch.zeros(in_features, in_features, dtype=torch.float64)

        def hook(mod, args, name=name, in_features=in_features):
            pending[name].append(args[0].detach().reshape(-1, in_features).float())

        handles.append(module.register_forward_pre_hook(hook))
    try:
        for _utt, samples in iter_audio(manifest):
            transcribe(model, samples)
            for name, rows in pending.items():
                if rows:
                    x = torch.cat(rows)
                    sums[name] += (x.T @ x).double()
                    counts[name] += x.shape[0]
                    fourth[name] += float((x.double().pow(2).sum(1) ** 2).sum())
                    rows.clear()
    finally:
        for handle in handles:
            handle.remove()
    return {n: Moments(sums[n], counts[n], fourth[n]) for n in names if counts[n]}
