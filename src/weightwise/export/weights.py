"""ONNX nodes for one weight module, at the precision the plan gave it.

Every Linear / Embedding of the network is written from the module the plan left in its place:

- `nn.Linear` / `nn.Embedding`: fp32 initializers (a Linear's weight stored transposed, (in, out),
  so `MatMul` needs no `Transpose`);
- a plan's `QuantModule` at 16 bits: the fp16 codes as an fp16 initializer, cast to float in the
  graph (the same numbers as our simulation: fp16 storage, fp32 arithmetic);
- a `QuantModule` with integer codes (int8 per channel / per tensor, int4 / int3 per group):
  `com.microsoft.MatMulNBits` built from OUR codes, scales and zero points (ONNX Runtime does not
  re-quantize anything): 4-bit codes two per byte, low nibble first, 8-bit one per byte; symmetric
  codes are shifted by the op's implicit zero point (2^(bits-1)), asymmetric ones carry explicit
  zero points. Per-channel / per-tensor int8 uses blocks of a power of two that divides the inputs,
  each block repeating its row's scale (numerically the same per-channel weight). Embeddings read
  the same codes with `com.microsoft.GatherBlockQuantized` (4-bit groups) or Gather + scale (int8).
- anything else (pruned, low-rank, shared modules; convolutions with a plan): the module's dense
  fp32 weight, and the manifest says so (`"dense fp32 copy of ..."`).

`accuracy_level` of MatMulNBits is left unset (0): ONNX Runtime computes in fp32 from the
dequantized weights, as our runtime's simulation does (level 4 would also quantize activations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

_MSFT = "com.microsoft"
_NBITS_BLOCKS = (256, 128, 64, 32, 16)  # MatMulNBits block sizes: powers of two >= 16


class Graph:
    """Nodes and initializers of one ONNX graph under construction, with unique value names."""

    def __init__(self):
        self.nodes: list = []
        self.initializers: dict[str, TensorProto] = {}
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, domain: str = "", **attrs) -> str:
        out = self.name(hint or op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, domain=domain or None, **attrs))
        return out

    def const(self, name: str, array: np.ndarray) -> str:
        """An initializer (named once: a second call with the same name reuses the first)."""
        if name not in self.initializers:
            self.initializers[name] = numpy_helper.from_array(np.array(array, order="C"), name)  # (0-d stays 0-d)
        return name

    def ints(self, *values: int) -> str:
        return self.const("const_i64_" + "_".join(str(v).replace("-", "m") for v in values), np.array(values, np.int64))

    def scalar(self, value: float) -> str:
        return self.const(f"const_f32_{value!r}".replace("-", "m"), np.array(value, np.float32))


@dataclass(frozen=True)
class NBits:
    """MatMulNBits operands of one quantized weight (rows = N outputs, cols = K inputs)."""

    packed: np.ndarray  # uint8 (N, K / block, block * bits / 8)
    scales: np.ndarray  # float32 (N, K / block)
    zero_points: np.ndarray | None  # uint8 (N, ceil(K / block * bits / 8)), None = implicit 2^(bits-1)
    bits: int
    block: int
    precision: str  # what the plan stored, e.g. "int4-group64-sym"


def _pack_nibbles(values: np.ndarray) -> np.ndarray:
    """uint8 values < 16 along the last axis, two per byte (low nibble first; odd lengths padded)."""
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros((*values.shape[:-1], 1), np.uint8)], -1)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)


def nbits_of(module: nn.Module) -> NBits | None:
    """MatMulNBits operands of a plan's integer `QuantModule`, or None when the op cannot hold it."""
    config = getattr(module, "config", None)
    if getattr(module, "kind", None) != "quant" or config is None or config.bits not in (3, 4, 8):
        return None
    rows, cols = module.rows, module.cols
    codes = module.codes.detach().to(torch.int16).numpy()
    scales = module.scales.detach().float().numpy()
    zeros = None if module.zero_points is None else module.zero_points.detach().numpy()
    if config.granularity == "group":
        block = config.group_size
    elif config.bits == 8:  # one scale per row (or tensor): repeat it over power-of-two blocks
        block = next((b for b in _NBITS_BLOCKS if cols % b == 0), None)
    else:
        return None
    if block not in _NBITS_BLOCKS or cols % block:
        return None
    repeat = cols // block // scales.shape[1]
    scales = np.broadcast_to(scales, (rows, scales.shape[1])).repeat(repeat, 1)
    bits = 8 if config.bits == 8 else 4  # 3-bit codes run in 4-bit lanes (the plan's numbers, 4-bit storage)
    offset = 0 if zeros is not None else 2 ** (bits - 1)
    unsigned = (codes + offset).astype(np.uint8).reshape(rows, cols // block, block)
    if zeros is not None:
        zeros = np.broadcast_to(zeros, (rows, zeros.shape[1])).repeat(repeat, 1).astype(np.uint8)
    if bits == 4:
        packed = _pack_nibbles(unsigned)
        zeros = None if zeros is None else _pack_nibbles(zeros)
    else:
        packed = unsigned
    fmt = module.weightwise_storage()["weight"].format
    return NBits(packed, np.ascontiguousarray(scales, np.float32), zeros, bits, block, fmt)


def dense_linear(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight (out, in), bias or None) in fp32 of any linear-like module, as its forward uses them."""
    if isinstance(module, nn.Linear):
        return module.weight.detach().float(), None if module.bias is None else module.bias.detach().float()
    if hasattr(module, "dense_weight") and hasattr(module, "dense_bias"):
        bias = module.dense_bias()
        return module.dense_weight().detach().float(), None if bias is None else bias.detach().float()
    with torch.no_grad():  # e.g. low-rank factors: probe the module (y = x W^T + b)
        cols = module.in_features
        bias = module(torch.zeros(1, cols)).float()[0]
        weight = (module(torch.eye(cols)).float() - bias).T
    return weight.contiguous(), bias if bool(bias.abs().max() > 0) else None


def precision_of(module: nn.Module) -> str:
    """The stored format a module keeps in the export (the manifest's per-tensor precision)."""
    if isinstance(module, (nn.Linear, nn.Embedding, nn.Conv1d)):
        return "fp32"
    storage = module.weightwise_storage()["weight"]
    if getattr(module, "kind", None) == "quant" and module.config.bits == 16:
        return "fp16"
    return f"dense fp32 copy of {getattr(module, 'kind', type(module).__name__)} {storage.format or ''}".strip()


def linear(graph: Graph, x: str, module: nn.Module, name: str) -> tuple[str, dict]:
    """y = x W^T + b for `module` at its plan's precision; returns (y, manifest entry)."""
    nbits = nbits_of(module)
    bias = module.dense_bias() if hasattr(module, "dense_bias") else getattr(module, "bias", None)
    if nbits is not None:
        inputs = [x, graph.const(f"{name}.qweight", nbits.packed), graph.const(f"{name}.scales", nbits.scales)]
        if nbits.zero_points is not None:
            inputs.append(graph.const(f"{name}.zero_points", nbits.zero_points))
        rows, cols = module.rows, module.cols
        y = graph.op("MatMulNBits", inputs, name, _MSFT, K=cols, N=rows, bits=nbits.bits, block_size=nbits.block)
        entry = {"precision": nbits.precision, "onnx_op": f"MatMulNBits(bits={nbits.bits}, block_size={nbits.block})"}
    elif getattr(module, "kind", None) == "quant" and module.config.bits == 16:
        weight = graph.const(f"{name}.weight_t", module.codes.detach().T.numpy().astype(np.float16))
        y = graph.op("MatMul", [x, graph.op("Cast", [weight], to=TensorProto.FLOAT)], name)
        entry = {"precision": "fp16", "onnx_op": "Cast(fp16)+MatMul"}
    else:
        weight, bias = dense_linear(module)
        y = graph.op("MatMul", [x, graph.const(f"{name}.weight_t", weight.T.numpy())], name)
        entry = {"precision": precision_of(module), "onnx_op": "MatMul"}
    if bias is not None:
        y = graph.op("Add", [y, graph.const(f"{name}.bias", bias.detach().float().numpy())], name)
    return y, entry


def embedding(graph: Graph, ids: str, module: nn.Module, name: str) -> tuple[str, dict]:
    """Rows `ids` of an embedding table at its plan's precision; returns (rows, manifest entry)."""
    nbits = nbits_of(module)
    if nbits is not None and nbits.bits == 4 and nbits.zero_points is None:
        data = graph.const(f"{name}.qweight", nbits.packed.reshape(module.rows, -1))
        scales = graph.const(f"{name}.scales", nbits.scales)
        rows = graph.op(
            "GatherBlockQuantized", [data, ids, scales], name, _MSFT,
            gather_axis=0, quantize_axis=1, block_size=nbits.block, bits=4,
        )  # fmt: skip
        return rows, {
            "precision": nbits.precision,
            "onnx_op": f"GatherBlockQuantized(bits=4, block_size={nbits.block})",
        }
    if nbits is not None and nbits.bits == 8 and module.config.granularity != "group":
        codes = module.codes.detach().numpy()
        scales = np.broadcast_to(module.scales.detach().float().numpy(), (module.rows, 1)).reshape(-1)
        picked = graph.op(
            "Cast", [graph.op("Gather", [graph.const(f"{name}.codes", codes), ids])], to=TensorProto.FLOAT
        )
        if module.zero_points is not None:
            zeros = np.broadcast_to(module.zero_points.detach().numpy(), (module.rows, 1)).reshape(-1)
            zero = graph.op("Gather", [graph.const(f"{name}.zero_points_f32", zeros.astype(np.float32)), ids])
            picked = graph.op("Sub", [picked, graph.op("Unsqueeze", [zero, graph.ints(-1)])])
        scale = graph.op("Gather", [graph.const(f"{name}.row_scales", np.ascontiguousarray(scales)), ids])
        rows = graph.op("Mul", [picked, graph.op("Unsqueeze", [scale, graph.ints(-1)])], name)
        return rows, {"precision": nbits.precision, "onnx_op": "Gather(int8)+Mul"}
    if getattr(module, "kind", None) == "quant" and module.config.bits == 16:
        table = graph.const(f"{name}.weight_fp16", module.codes.detach().numpy())
        rows = graph.op("Cast", [graph.op("Gather", [table, ids])], name, to=TensorProto.FLOAT)
        return rows, {"precision": "fp16", "onnx_op": "Gather(fp16)+Cast"}
    table = dense_table(module)
    return graph.op("Gather", [graph.const(f"{name}.weight", table), ids], name), {
        "precision": precision_of(module),
        "onnx_op": "Gather",
    }


def dense_table(module: nn.Module) -> np.ndarray:
    """An embedding's fp32 (rows, dim) table as its forward reads it."""
    if isinstance(module, nn.Embedding):
        return module.weight.detach().float().numpy()
    if hasattr(module, "dense_weight"):
        return module.dense_weight().detach().float().numpy()
    with torch.no_grad():
        return module(torch.arange(module.num_embeddings)).float().numpy()


def tied_projection(graph: Graph, x: str, embed: nn.Module, proj: nn.Module, name: str) -> tuple[str, dict]:
    """The output projection; when it shares the embedding's table (Whisper ties them), the
    initializers written for the embedding (`embed_name`) are read again instead of a second copy."""
    table = "model.decoder.embed_tokens"
    nbits = nbits_of(proj)
    codes = getattr(proj, "codes", None)
    shared = codes is not None and getattr(embed, "codes", None) is codes
    if shared and nbits is not None and f"{table}.qweight" in graph.initializers:  # 4-bit group, symmetric
        blocks = graph.op("Reshape", [f"{table}.qweight", graph.ints(*nbits.packed.shape)])
        inputs = [x, blocks, f"{table}.scales"]
        y = graph.op("MatMulNBits", inputs, name, _MSFT, K=proj.cols, N=proj.rows, bits=4, block_size=nbits.block)
        return y, {"precision": nbits.precision, "onnx_op": f"MatMulNBits(bits=4, block_size={nbits.block}), tied"}
    if shared and proj.config.bits == 16 and f"{table}.weight_fp16" in graph.initializers:
        weight = graph.op("Cast", [f"{table}.weight_fp16"], to=TensorProto.FLOAT)
        return graph.op("Gemm", [x, weight], name, transB=1), {"precision": "fp16", "onnx_op": "Gemm(transB), tied"}
    if isinstance(proj, nn.Linear) and isinstance(embed, nn.Embedding) and proj.weight is embed.weight:
        return graph.op("Gemm", [x, f"{table}.weight"], name, transB=1), {
            "precision": "fp32",
            "onnx_op": "Gemm(transB), tied",
        }
    return linear(graph, x, proj, name)
