"""Milliseconds per call of the CPU matmul kernels a packed / int8 layer can use, by rows per call:
fp32 GEMM, fp32 GEMM over a weight dequantized in the call, a bf16 GEMM on the int8 codes (what
`--precision int8` runs many rows on where the CPU has AMX; the scales and bias applied after), torch's
int4 and int8 weight-only kernels (bf16 activations; fp32 ones up to 16 rows: that path is naive)
and fbgemm's dynamic int8 with per-row scales; then scaled-dot-product attention in fp32 and bf16 at
the encoder's shape (1,500 x 1,500, 6 heads of 64) and a decoder call's cross-attention (1 query).
Shapes are whisper-tiny.en's (384 -> 1536, 1536 -> 384, 384 -> 51,864). Every
kernel of one shape runs interleaved, repeat by repeat, and the fastest call is reported (this machine is shared: a
median mostly measures other processes preempting one of the two threads).

    python benchmarks/runtime_kernels.py --threads 2 --out benchmarks/results/runtime/kernels.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from weightwise.evaluate.runtime import set_threads, versions
from weightwise.models.int8 import RowwiseInt8Linear
from weightwise.outputs import write_json_atomic

SHAPES = ((384, 1536), (1536, 384), (384, 51904))  # (in, out); 51,864 vocabulary rows padded to 64
ROWS = (1, 4, 16, 64, 256, 1500)
GROUP = 64


def kernels(k: int, n: int) -> dict:
    """name -> fn(x fp32 (m, k)) for one weight shape."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(k, n)
    weight = linear.weight.detach()
    codes8 = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    scales8 = torch.rand(n).bfloat16()
    packed4 = torch._convert_weight_to_int4pack_for_cpu(torch.randint(0, 16, (n, k), dtype=torch.int32), 1)
    scale_zero = torch.rand(k // GROUP, n, 2)
    rowwise = RowwiseInt8Linear.from_float(linear)
    return {
        "fp32 GEMM": lambda x: F.linear(x, weight),
        "int8 dequant + fp32 GEMM": lambda x: F.linear(x, codes8.float() * scales8.float()[:, None]),
        "int8 codes bf16 GEMM": lambda x: torch.addcmul(
            linear.bias, F.linear(x.bfloat16(), codes8.bfloat16()).float(), scales8.float()
        ),
        "int8 weight-only bf16": lambda x: torch._weight_int8pack_mm(x.bfloat16(), codes8, scales8).float(),
        "int8 weight-only fp32": lambda x: torch._weight_int8pack_mm(x, codes8, scales8.float()),
        "int4 weight-only bf16": lambda x: torch._weight_int4pack_mm_for_cpu(
            x.bfloat16(), packed4, GROUP, scale_zero.bfloat16()
        ).float(),
        "int8 dynamic per-row (fbgemm)": rowwise,
    }


def measure(k: int, n: int, m: int, repeats: int) -> dict[str, float]:
    x = torch.randn(m, k)
    fns = kernels(k, n)
    if m > 16:  # the fp32 weight-only path is naive (seconds per call at 1,500 rows): not a candidate
        del fns["int8 weight-only fp32"]
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.no_grad():
        for fn in fns.values():  # warm-up
            fn(x)
        for _ in range(repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn(x)
                times[name].append(1e3 * (time.perf_counter() - start))
    return {name: min(t) for name, t in times.items()}


def attention(repeats: int) -> list[dict]:
    """SDPA ms per call, fp32 vs bf16 inputs (output cast back), at tiny.en's encoder and cross shapes."""
    rows = []
    for name, queries in (("encoder self-attention", 1500), ("decoder cross-attention", 1)):
        q, k, v = (torch.randn(1, 6, n, 64) for n in (queries, 1500, 1500))
        fns = {
            "fp32": lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v),
            "bf16": lambda q=q, k=k, v=v: F.scaled_dot_product_attention(
                q.bfloat16(), k.bfloat16(), v.bfloat16()
            ).float(),
        }
        times: dict[str, list[float]] = {n: [] for n in fns}
        for fn in fns.values():
            fn()
        for _ in range(repeats):
            for n, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[n].append(1e3 * (time.perf_counter() - start))
        rows.append({"attention": name, "queries": queries, "keys": 1500, "ms": {n: min(t) for n, t in times.items()}})
        print(f"{name:24s} " + "  ".join(f"{n} {min(t):.3f}" for n, t in times.items()), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    set_threads(args.threads)
    rows = []
    for k, n in SHAPES:
        for m in ROWS if n < 51904 else ROWS[:5]:  # the projection runs once per token: few rows
            ms = measure(k, n, m, args.repeats)
            rows.append({"in": k, "out": n, "rows": m, "ms": ms})
            print(f"{k:5d}->{n:6d} rows {m:5d}  " + "  ".join(f"{name} {v:.3f}" for name, v in ms.items()), flush=True)
    with torch.no_grad():
        attention_rows = attention(args.repeats)
    capabilities = {k: v for k, v in torch.cpu.get_capabilities().items() if k.startswith(("amx", "avx512_bf16"))}
    write_json_atomic(
        Path(args.out),
        {
            "threads": args.threads,
            "repeats": args.repeats,
            "rows": rows,
            "attention": attention_rows,
            "cpu_capabilities": capabilities,
            "versions": versions(),
        },
    )


if __name__ == "__main__":
    main()
