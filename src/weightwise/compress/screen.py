"""Screened output projection (`Screen`): a cheap preview of every logit, exact logits for the best.

Whisper's tied token table (51,864 x 384 for tiny.en) is read in full at every decoder call by the
output projection: 62% of dense fp16's weight energy. Greedy decoding needs the argmax and the
top of the distribution, not 51,864 exact dot products. SVD-softmax (Shim et al., NeurIPS 2017)
computes a low-rank preview of all logits, takes the `top_k` tokens of the preview, and computes
their logits exactly from the full rows; the other tokens keep their preview logit, capped below
the best exact one (so the argmax is always a screened token).

The preview here is data-aware: with C the second moment of the projection's inputs on
calibration audio, the SVD of W C^1/2 = U S V^T gives the rank-r factors B = U_r S_r^1/2
(vocab x r) and P = S_r^1/2 V_r^T C^-1/2 (r x dim), so that B P x is the best rank-r approximation of the logits W x
over those inputs (plain SVD, ``whiten=false``, uses C = I). Measured on tiny.en, 287 decoder
positions of calibration audio held out from the fit: the exact argmax is in the preview's top 64
for 36% of positions at rank 128 with plain SVD (the table's spectrum is flat), and for 99.7% with
the whitened one (100% in the top 256).

One call reads the preview matrix (vocab x r at `preview_bits`, with one fp32 scale per row), the
small P, and `top_k` fp16 rows per position; the embedding lookup still reads one fp16 row.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from weightwise.compress.configs import Quant, Screen
from weightwise.compress.modules import register_handler, register_module
from weightwise.compress.quantize import dequantize_weight, quantize_weight
from weightwise.compress.weightop import WeightOpModule, flat_weight, frozen, op_of, replace_group, tied_groups
from weightwise.errors import InputError
from weightwise.profile.storage import TensorStorage, dense_storage

#: A screen is refused on a Linear with fewer than WIDE x its inputs as outputs: the preview (rank
#: r) plus top_k exact rows then read about as much as the dense weight (e.g. a 384 -> 1536 fc1).
WIDE = 16


def preview_quant(bits: int) -> Quant:
    """How the preview matrix is stored: one fp32 scale per row (symmetric)."""
    return Quant(bits=bits, granularity="channel", symmetric=True)


def screen_factors(
    weight: torch.Tensor, inputs: torch.Tensor | None, config: Screen
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B vocab x r, P r x dim) with B P ~= W on the inputs' span (see the module docstring).

    `inputs` (rows, dim): calibration inputs of the projection; None: plain SVD of W.
    """
    w = weight.double()
    dim = w.shape[1]
    if config.rank > dim:
        raise InputError(f"screen.rank {config.rank} exceeds the projection's {dim} input features")
    if inputs is None:
        root, inv_root = torch.eye(dim, dtype=torch.float64), torch.eye(dim, dtype=torch.float64)
    else:
        x = inputs.double()
        moment = x.T @ x / max(x.shape[0], 1)
        moment += config.damp * moment.diagonal().mean() * torch.eye(dim, dtype=torch.float64)
        values, vectors = torch.linalg.eigh(moment)
        values = values.clamp_min(values.max() * 1e-12)
        root = vectors @ torch.diag(values.sqrt()) @ vectors.T
        inv_root = vectors @ torch.diag(values.rsqrt()) @ vectors.T
    # right singular vectors of W C^1/2 from its small Gram matrix (as `lowrank` does: ~1 s, not ~9)
    scaled = w @ root
    energies, basis = torch.linalg.eigh(scaled.T @ scaled)
    top = basis[:, energies.argsort(descending=True)[: config.rank]]  # dim x r
    b = scaled @ top  # = U_r S_r
    p = top.T @ inv_root
    # balance S_r between the factors: B = U_r S_r^1/2. Whisper's first singular value is ~11x the
    # second, so with B = U_r S_r one scale per row leaves 4-bit codes for nothing but it (top-512
    # recall of the argmax 66%, against 100% balanced; int8 is 100% either way)
    root_s = b.norm(dim=0).clamp_min(1e-30).sqrt()
    return (b / root_s).float(), (p * root_s[:, None]).float()


@register_module
class ScreenModule(WeightOpModule):
    """The tied table as an Embedding (plain fp16 lookup) or as the screened output projection.

    State: ``codes`` fp16 table (vocab x dim), ``preview_codes`` (vocab x r: int8 codes, or fp16 at
    16 bits), ``preview_scales`` fp32 (vocab x 1, absent at 16 bits), ``basis`` P (r x dim).
    """

    kind = "screen"
    weightwise_derived = ("codes",)  # the fp16 table comes back from the float weights (`compress.state`)

    def __init__(
        self,
        op: str,
        shape: list[int],
        op_args: dict[str, Any] | None = None,
        tie: str | None = None,
        bias: bool = False,
        rank: int = 128,
        top_k: int = 64,
        preview_bits: int = 8,
        whiten: bool = True,
        damp: float = 0.01,
        tail: str = "preview",
    ):
        super().__init__(op, shape, op_args, tie)
        if op not in ("linear", "embedding"):
            raise InputError(f"screen applies to a Linear or an Embedding, not a {op}")
        self.config = Screen(rank, top_k, preview_bits, whiten, damp, tail)
        self.codes = frozen(torch.zeros(self.rows, self.cols, dtype=torch.float16))
        code_dtype = torch.float16 if preview_bits == 16 else torch.int8
        self.preview_codes = frozen(torch.zeros(self.rows, rank, dtype=code_dtype))
        self.preview_scales = None if preview_bits == 16 else frozen(torch.ones(self.rows, 1))
        self.basis = frozen(torch.zeros(rank, self.cols))
        self.bias = frozen(torch.zeros(self.rows)) if bias else None
        self.register_buffer("preview", torch.zeros(self.rows, rank), persistent=False)

    def spec(self) -> dict[str, Any]:
        return self.config_spec()

    @classmethod
    def from_float(cls, module: nn.Module, name: str, config: Screen, factors: tuple) -> ScreenModule:
        op, op_args = op_of(module, name)
        new = cls(op, list(module.weight.shape), op_args, None, getattr(module, "bias", None) is not None,
                  config.rank, config.top_k, config.preview_bits, config.whiten, config.damp, config.tail)  # fmt: skip
        b, p = factors
        new.codes.copy_(flat_weight(module).half())
        if config.preview_bits == 16:
            new.preview_codes.copy_(b.half())
        else:
            codes, scales, _ = quantize_weight(b, preview_quant(config.preview_bits))
            new.preview_codes.copy_(codes)
            new.preview_scales.copy_(scales)
        new.basis.copy_(p)
        new.load_bias(getattr(module, "bias", None))
        new.refresh()
        return new

    def dense_weight(self) -> torch.Tensor:
        return self.codes.float()

    @torch.no_grad()
    def refresh(self) -> None:
        super().refresh()
        if self.config.preview_bits == 16:
            preview = self.preview_codes.float()
        else:
            quant = preview_quant(self.config.preview_bits)
            preview = dequantize_weight(self.preview_codes, self.preview_scales, None, quant)
        self._buffers["preview"] = preview.to(self.weight.dtype)

    def share_state(self, owner: WeightOpModule) -> None:
        super().share_state(owner)
        self._buffers["preview"] = owner._buffers["preview"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op == "embedding":
            return F.embedding(x, self.weight, self.padding_idx)
        dtype = self.weight.dtype
        x = x.to(dtype)
        preview = (x @ self.basis.to(dtype).T) @ self.preview.T  # (..., vocab)
        k = min(self.config.top_k, self.rows)
        top = preview.topk(k, dim=-1).indices  # (..., k)
        exact = (self.weight[top] @ x.unsqueeze(-1)).squeeze(-1)  # their full rows
        # the others keep their preview, capped so that a preview that overshoots (a coarse one
        # does) never outranks the best token whose logit is known exactly (see `Screen.tail`)
        if self.config.tail == "floor":
            cap = exact.min(-1, keepdim=True).values
        else:
            best = exact.max(-1, keepdim=True).values
            cap = torch.nextafter(best, torch.full_like(best, -torch.inf))
        logits = torch.minimum(preview, cap).scatter(-1, top, exact)
        return logits if self.effective_bias is None else logits + self.effective_bias.to(dtype)

    def _positions(self, out: torch.Tensor) -> int:
        return out.numel() // self.rows

    def weightwise_macs(self, inp: torch.Tensor | None, out: torch.Tensor) -> int:
        if self.op == "embedding":
            return 0
        c = self.config
        return self._positions(out) * (c.rank * self.cols + self.rows * c.rank + min(c.top_k, self.rows) * self.cols)

    def weightwise_bytes_read(
        self, name: str, storage: TensorStorage, inp: torch.Tensor | None, out: torch.Tensor
    ) -> int:
        """The lookup reads its rows; the projection all of the preview and P, and top_k rows a position."""
        if self.op == "embedding":
            return round(out.numel() * storage.bytes_per_element) if name == "weight" else 0
        if name == "weight":
            rows = min(self._positions(out) * min(self.config.top_k, self.rows), self.rows)
            return round(rows * self.cols * storage.bytes_per_element)
        return storage.nbytes

    def weightwise_storage(self) -> dict[str, TensorStorage]:
        """fp16 table; the projection adds its preview (codes + row scales) and P, stored once."""
        table = TensorStorage(self.shape, "fp16", 2 * self.rows * self.cols, "fp16", id(self.codes))
        out = {"weight": table, **self.bias_storage()}
        if self.op == "linear":
            bits = self.config.preview_bits
            nbytes = math.ceil(self.preview_codes.numel() * bits / 8) + (0 if bits == 16 else 4 * self.rows)
            dtype = "fp16" if bits == 16 else f"int{bits}"
            shape = tuple(self.preview_codes.shape)
            out["preview"] = TensorStorage(shape, dtype, nbytes, f"screen-preview-{dtype}", id(self.preview_codes))
            out["basis"] = dense_storage(self.basis)
        return out


@register_handler(Screen)
def screen_handler(network: nn.Module, names: list[str], config: Screen, context: Any) -> None:
    """Replace each claimed tied table (its Embedding and its output Linear) by `ScreenModule`s."""
    for group in tied_groups(network, names):
        linears = [n for n in group if isinstance(network.get_submodule(n), nn.Linear)]
        if not linears:
            raise InputError(f"{group[0]}: screen needs the output projection (a Linear over the vocabulary)")
        rows, cols = flat_weight(network.get_submodule(linears[0])).shape
        if rows < WIDE * cols:
            raise InputError(
                f"{linears[0]}: screen pays only on a wide output layer (outputs >= {WIDE}x inputs), not {rows}x{cols}"
            )
        inputs = None
        if config.whiten:
            if context is None or context.calib is None:
                raise InputError(f"{linears[0]}: screen with whiten needs calibration audio (--calib MANIFEST)")
            inputs = context.inputs(linears[:1])[linears[0]]
        factors = screen_factors(flat_weight(network.get_submodule(linears[0])), inputs, config)
        replace_group(network, group, lambda module, name, f=factors: ScreenModule.from_float(module, name, config, f))
