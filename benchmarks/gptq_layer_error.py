"""GPTQ settings by held-out layer output error: ||X W^T - X Q^T||^2 relative to round-to-nearest.

For every Linear of whisper-tiny.en, Hessians H = X^T X / rows are collected on the float model
over the first --calib-limit utterances of librispeech_train_clean_100_untranscribed (the
calibration) and over the first --held-out utterances of test-other mini (never calibrated on).
Each variant's int4 group-64 asymmetric codes come from the calibration H; the score is their
output error on the held-out H divided by RTN's (same format). Lower is better; 1 = no gain.

    python benchmarks/gptq_layer_error.py --calib-limit 64 --held-out 8 --cache /tmp/moments64.pt
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import torch

from weightwise.compress.calib import Moments, collect_hessians
from weightwise.compress.configs import Gptq
from weightwise.compress.gptq import gptq_quantize
from weightwise.compress.quantize import dequantize_weight, quantize_weight
from weightwise.data import load_manifest
from weightwise.evaluate.runtime import set_threads
from weightwise.models import load_model
from weightwise.outputs import write_json_atomic

from _common import SHARED_SPEECH, TEST_OTHER, benchmark_parser

HERE = Path(__file__).resolve().parent
CALIB = SHARED_SPEECH / "librispeech_train_clean_100_untranscribed" / "manifest.jsonl"
VARIANTS = {  # name -> Gptq (int4, group 64, asymmetric; sequential does not apply: float-model inputs)
    "damp0.01": Gptq(damp=0.01),
    "damp0.03": Gptq(damp=0.03),
    "damp0.1": Gptq(damp=0.1),
    "damp0.3": Gptq(damp=0.3),
    "damp0.03-no-clip": Gptq(damp=0.03, clip_search=False),
    "damp0.03-no-act-order": Gptq(damp=0.03, act_order=False),
}


def output_error(weight: torch.Tensor, rebuilt: torch.Tensor, h: torch.Tensor) -> float:
    d = (weight - rebuilt).double()
    return float(((d @ h) * d).sum())


def moments(
    model, names: list[str], calib_limit: int, held_out: int, cache: Path | None
) -> tuple[dict[str, Moments], dict[str, Moments]]:
    if cache is not None and cache.exists():
        return torch.load(cache, weights_only=False)
    found = (
        collect_hessians(model, load_manifest(CALIB).head(calib_limit), names),
        collect_hessians(model, load_manifest(TEST_OTHER).head(held_out), names),
    )
    if cache is not None:
        torch.save(found, cache)
    return found


def main() -> None:
    parser = benchmark_parser(__doc__, limit=0)
    parser.add_argument("--calib-limit", type=int, default=64)
    parser.add_argument("--held-out", type=int, default=8)
    parser.add_argument("--cache", type=Path, default=None, help="moments file to reuse / write")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "compress" / "gptq" / "layer_error.json")
    args = parser.parse_args()
    set_threads(args.threads)
    model = load_model(args.model)
    names = [n for n, m in model.network.named_modules() if isinstance(m, torch.nn.Linear)]
    start = time.perf_counter()
    calib, held = moments(model, names, args.calib_limit, args.held_out, args.cache)
    rtn_config = Gptq().quant()
    layers, by_kind = {}, {}
    for name in names:
        weight = model.network.get_submodule(name).weight.detach()
        h = held[name].hessian()
        rtn = output_error(weight, dequantize_weight(*quantize_weight(weight, rtn_config), rtn_config), h)
        scores = {}
        for label, config in VARIANTS.items():
            codes = gptq_quantize(weight, calib[name].hessian(), config, name)
            scores[label] = output_error(weight, dequantize_weight(*codes, config.quant()), h) / rtn
        layers[name] = {"calib_rows": calib[name].rows, "held_out_rows": held[name].rows, **scores}
        kind = re.sub(r"layers\.\d+\.", "", name)
        for label, score in scores.items():
            by_kind.setdefault(kind, {}).setdefault(label, []).append(score)
        print(name, {k: round(v, 3) for k, v in scores.items()}, flush=True)
    mean = {kind: {label: sum(v) / len(v) for label, v in scores.items()} for kind, scores in by_kind.items()}
    write_json_atomic(
        args.out,
        {
            "model": args.model,
            "metric": "held-out ||X(W-Q)^T||^2 / same for RTN (int4 g64 asym)",
            "calib_ids": [u.id for u in load_manifest(CALIB).head(args.calib_limit)],
            "held_out_ids": [u.id for u in load_manifest(TEST_OTHER).head(args.held_out)],
            "wall_s": time.perf_counter() - start,
            "mean_by_kind": mean,
            "layers": layers,
        },
    )
    for kind, scores in mean.items():
        print(f"{kind:40s}", "  ".join(f"{label} {score:.3f}" for label, score in scores.items()))


if __name__ == "__main__":
    main()
