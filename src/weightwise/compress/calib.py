"""Calibration activations: the inputs each targeted module sees while transcribing real audio.

Audio needs no transcript (e.g. ../shared/data/speech/librispeech_train_clean_100_untranscribed).
Rows are subsampled evenly per call and capped per module, so memory stays bounded.
"""

from __future__ import annotations

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


def collect_inputs(model, manifest: Manifest, names: list[str], max_rows: int = MAX_ROWS
                   ) -> dict[str, torch.Tensor]:
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
