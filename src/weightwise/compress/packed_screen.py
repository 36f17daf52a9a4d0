"""Run a screened output projection (`Screen`) and its tied embedding without float copies.

`ScreenModule` (simulation, for planning and saving) keeps beside its fp16 table a float32 copy of
it (4 bytes a weight) and its preview dequantized to float32. A `PackedScreenModule` holds what is
stored: the fp16 table, the preview's codes on a packed kernel (`PackedQuantModule`: int4 in
tinygemm layout, int8, or fp16; a <= 4-bit preview with one scale per row is one group per row) and
the small basis P, so its weights in RAM are about their stored bytes.

Numerics: the embedding rows and the exact logits of the `top_k` screened tokens are computed from
the fp16 table converted to float32, as the simulated module does (the same values). Only the
preview differs, by the packed kernel's bf16 activations and scales: it decides which tokens are
screened, and the argmax is then taken among their exact logits.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from weightwise.compress.configs import Quant, Screen
from weightwise.compress.modules import CompressedModule
from weightwise.compress.packed import PackedQuantModule, packable_config
from weightwise.compress.quantize import QuantModule
from weightwise.compress.screen import ScreenModule
from weightwise.compress.weightop import set_op_attributes
from weightwise.profile.storage import TensorStorage, dense_storage


def preview_module(config: Screen, codes: torch.Tensor, scales: torch.Tensor | None) -> torch.nn.Module:
    """The preview B (vocab x rank) as a Linear on its stored codes: packed where a kernel runs it,
    else a simulated `QuantModule` (a rank no int4 group size fits)."""
    rows, rank = codes.shape
    bits = config.preview_bits
    quant = Quant(bits, "group", rank, True) if bits <= 4 else Quant(bits, "channel", symmetric=True)
    state = (codes,) if bits == 16 else (codes, scales)
    if packable_config("linear", quant, rank):
        return PackedQuantModule.from_state("linear", (rows, rank), {}, None, quant, state, None)
    quant = Quant(bits, "channel", symmetric=True)
    module = QuantModule("linear", [rows, rank], {}, None, False, bits, "channel", 128, True)
    with torch.no_grad():
        for param, value in zip((module.codes, getattr(module, "scales", None)), state, strict=False):
            param.copy_(value)
    module.refresh()
    return module


class PackedScreenModule(CompressedModule):
    """A `ScreenModule` (Embedding or screened projection) on its stored tensors.

    Buffers: ``table`` fp16 (vocab, dim), ``basis`` P fp32 (rank, dim), ``bias`` fp32 or None, and
    the preview module's tensors as ``preview_<name>`` (the same tensors, counted once). Tied
    modules share all but the bias.
    """

    kind = "packed-screen"
    weightwise_macs = ScreenModule.weightwise_macs
    weightwise_bytes_read = ScreenModule.weightwise_bytes_read
    _positions = ScreenModule._positions

    def __init__(self, op, shape, op_args, tie, config: Screen, table, preview, basis, bias, preview_storage):
        super().__init__()
        self.op, self.shape, self.op_args, self.tie, self.config = op, tuple(shape), dict(op_args), tie, config
        set_op_attributes(self)
        self.register_buffer("table", table)
        self.register_buffer("basis", basis)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.__dict__["preview"] = preview  # not a submodule: the profiler prices the preview here
        for name, tensor in [*preview.named_parameters(recurse=False), *preview.named_buffers(recurse=False)]:
            if tensor is not None:
                self.register_buffer(f"preview_{name}", tensor)
        self._preview_storage = preview_storage

    @classmethod
    def from_state(cls, op, shape, op_args, config: Screen, table, state: tuple, bias) -> PackedScreenModule:
        """From the fp16 `table` and `state` = (preview codes, preview scales or None, basis) as
        `ScreenModule` holds them."""
        codes, scales, basis = state
        bits, (rows, rank) = config.preview_bits, codes.shape
        nbytes = -(-codes.numel() * bits // 8) + (0 if bits == 16 else 4 * rows)
        dtype = "fp16" if bits == 16 else f"int{bits}"
        preview = preview_module(config, codes, scales)
        # keyed by the preview module, which lives as long as this module and its tied twin: `codes`
        # may be freed once packed, and a dead object's id can be another live tensor's key
        storage = TensorStorage((rows, rank), dtype, nbytes, f"screen-preview-{dtype}", id(preview))
        return cls(op, shape, op_args, None, config, table, preview, basis.detach().float(), bias, storage)

    @classmethod
    def from_screen(cls, source: ScreenModule) -> PackedScreenModule:
        state = (source.preview_codes, source.preview_scales, source.basis)
        return cls.from_state(
            source.op, source.shape, source.op_args, source.config, source.codes.detach(), state, source.bias
        )

    def tied(self, op: str, op_args: dict, bias: torch.Tensor | None, owner: str) -> PackedScreenModule:
        """A module of `op` tied to this one (sharing its table, preview and basis), with its own bias."""
        return PackedScreenModule(
            op, self.shape, op_args, owner, self.config, self.table, self.preview, self.basis, bias,
            self._preview_storage,
        )  # fmt: skip

    def spec(self) -> dict[str, Any]:
        raise TypeError("a packed model runs only; save the simulated model (load it with pack=False)")

    @property
    def weight(self) -> torch.Tensor:
        """The fp32 table, converted on each access (not kept)."""
        return self.table.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op == "embedding":
            return F.embedding(x, self.table, self.padding_idx).float()
        x = x.float()
        preview = self.preview(x @ self.basis.T)  # (..., vocab)
        k = min(self.config.top_k, self.rows)
        top = preview.topk(k, dim=-1).indices  # (..., k)
        exact = (self.table[top].float() @ x.unsqueeze(-1)).squeeze(-1)  # their full rows
        if self.config.tail == "floor":  # as `ScreenModule.forward`
            cap = exact.min(-1, keepdim=True).values
        else:
            best = exact.max(-1, keepdim=True).values
            cap = torch.nextafter(best, torch.full_like(best, -torch.inf))
        logits = torch.minimum(preview, cap).scatter(-1, top, exact)
        return logits if self.bias is None else logits + self.bias

    def weightwise_storage(self) -> dict[str, TensorStorage]:
        """As `ScreenModule.weightwise_storage`: the fp16 table; the projection adds its preview and P."""
        table = TensorStorage(self.shape, "fp16", 2 * self.rows * self.cols, "fp16", id(self.table))
        out = {"weight": table, **({} if self.bias is None else {"bias": dense_storage(self.bias)})}
        if self.op == "linear":
            out["preview"] = self._preview_storage
            out["basis"] = dense_storage(self.basis)
        return out


def pack_screen(module: ScreenModule, owners: dict[int, PackedScreenModule]) -> PackedScreenModule:
    """`module` packed; a module tied to one already packed (keyed in `owners` by its table) shares it."""
    owner = owners.get(id(module.codes))
    if owner is not None:
        return owner.tied(module.op, module.op_args, module.bias, module.tie or "")
    owners[id(module.codes)] = new = PackedScreenModule.from_screen(module)
    return new
