"""Whisper's encoder and its key/value-cached decoder as ONNX graphs, written node by node.

Built with `onnx.helper` from the network's modules (as ONNX Runtime's own GenAI model builder
builds its graphs) rather than traced by `torch.onnx.export`: every weight module becomes the node
its plan precision asks for (`weightwise.export.weights`), the cache inputs and outputs are
explicit, and an export takes seconds. The arithmetic follows transformers' `WhisperEncoder` /
`WhisperDecoder` (pre-LayerNorm blocks, exact GELU, queries scaled by head_dim^-0.5, no bias on
`k_proj`); the round-trip test checks transcripts against our torch runtime.

encoder.onnx  input_features (batch, n_mels, frames) ->
              cross_key.{i}, cross_value.{i} (batch, heads, frames / 2, head_dim) for every decoder
              layer i: the cross-attention keys and values, computed once per window.
decoder.onnx  input_ids (batch, new), past_key.{i}, past_value.{i} (batch, heads, past, head_dim),
              cross_key.{i}, cross_value.{i} ->
              logits (batch, vocab) of the last new position, present_key.{i}, present_value.{i}
              (batch, heads, past + new, head_dim): the self-attention cache, grown by the new tokens.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import ModelProto, TensorProto, helper

from weightwise.export.weights import Graph, embedding, linear, precision_of, tied_projection

OPSET = 20  # LayerNormalization (17), Gelu (20)
_MSFT_OPSET = 1


def _model(graph: Graph, name: str, inputs: list, outputs: list) -> ModelProto:
    body = helper.make_graph(graph.nodes, name, inputs, outputs, list(graph.initializers.values()))
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", _MSFT_OPSET)]
    return helper.make_model(body, opset_imports=opsets, producer_name="weightwise")


def _layer_norm(graph: Graph, x: str, module, name: str) -> str:
    scale = graph.const(f"{name}.weight", module.weight.detach().float().numpy())
    bias = graph.const(f"{name}.bias", module.bias.detach().float().numpy())
    return graph.op("LayerNormalization", [x, scale, bias], name, axis=-1, epsilon=float(module.eps))


def _heads(graph: Graph, x: str, n_heads: int, head_dim: int) -> str:
    """(batch, time, heads * head_dim) -> (batch, heads, time, head_dim)."""
    split = graph.op("Reshape", [x, graph.ints(0, 0, n_heads, head_dim)])
    return graph.op("Transpose", [split], perm=[0, 2, 1, 3])


def _attend(graph: Graph, q: str, k: str, v: str, mask: str | None, width: int) -> str:
    """softmax(q k^T + mask) v over heads, back to (batch, time, width)."""
    scores = graph.op("MatMul", [q, graph.op("Transpose", [k], perm=[0, 1, 3, 2])], "scores")
    if mask is not None:
        scores = graph.op("Add", [scores, mask])
    context = graph.op("MatMul", [graph.op("Softmax", [scores], axis=-1), v], "context")
    merged = graph.op("Transpose", [context], perm=[0, 2, 1, 3])
    return graph.op("Reshape", [merged, graph.ints(0, 0, width)])


def _mlp(graph: Graph, x: str, layer, name: str, entries: dict) -> str:
    normed = _layer_norm(graph, x, layer.final_layer_norm, f"{name}.final_layer_norm")
    hidden, entries[f"{name}.fc1"] = linear(graph, normed, layer.fc1, f"{name}.fc1")
    out, entries[f"{name}.fc2"] = linear(graph, graph.op("Gelu", [hidden]), layer.fc2, f"{name}.fc2")
    return graph.op("Add", [x, out], f"{name}.residual")


def _projections(graph: Graph, x: str, attention, name: str, which: str, entries: dict) -> str:
    out, entries[f"{name}.{which}_proj"] = linear(graph, x, getattr(attention, f"{which}_proj"), f"{name}.{which}_proj")
    return out


def _conv(graph: Graph, x: str, module, name: str, entries: dict) -> str:
    if hasattr(module, "dense_weight"):
        weight = module.dense_weight().detach().float().reshape(module.shape).numpy()
        bias = module.dense_bias()
    else:
        weight, bias = module.weight.detach().float().numpy(), module.bias
    inputs = [x, graph.const(f"{name}.weight", weight)]
    if bias is not None:
        inputs.append(graph.const(f"{name}.bias", bias.detach().float().numpy()))
    entries[name] = {"precision": precision_of(module), "onnx_op": "Conv"}
    stride, padding = int(module.stride[0]), int(module.padding[0])
    return graph.op("Conv", inputs, name, strides=[stride], pads=[padding, padding], kernel_shape=[weight.shape[-1]])


def build_encoder(network) -> tuple[ModelProto, dict]:
    """encoder.onnx of a transformers Whisper `network` (plan modules in place); (model, entries)."""
    config, encoder, decoder = network.config, network.model.encoder, network.model.decoder
    graph, entries = Graph(), {}
    width, n_heads = config.d_model, config.encoder_attention_heads
    head_dim = width // n_heads
    x = graph.op("Gelu", [_conv(graph, "input_features", encoder.conv1, "model.encoder.conv1", entries)])
    x = graph.op("Gelu", [_conv(graph, x, encoder.conv2, "model.encoder.conv2", entries)])
    x = graph.op("Transpose", [x], perm=[0, 2, 1])  # (batch, positions, width)
    table = graph.const("model.encoder.embed_positions.weight", encoder.embed_positions.weight.detach().float().numpy())
    positions = graph.op("Shape", [x], start=1, end=2)
    x = graph.op("Add", [x, graph.op("Slice", [table, graph.ints(0), positions, graph.ints(0)])])
    scale = graph.scalar(head_dim**-0.5)
    for i, layer in enumerate(encoder.layers):
        name = f"model.encoder.layers.{i}"
        attn, where = layer.self_attn, f"{name}.self_attn"
        normed = _layer_norm(graph, x, layer.self_attn_layer_norm, f"{name}.self_attn_layer_norm")
        q = _heads(
            graph, graph.op("Mul", [_projections(graph, normed, attn, where, "q", entries), scale]), n_heads, head_dim
        )
        k = _heads(graph, _projections(graph, normed, attn, where, "k", entries), n_heads, head_dim)
        v = _heads(graph, _projections(graph, normed, attn, where, "v", entries), n_heads, head_dim)
        context = _attend(graph, q, k, v, None, width)
        x = graph.op("Add", [x, _projections(graph, context, attn, where, "out", entries)])
        x = _mlp(graph, x, layer, name, entries)
    hidden = _layer_norm(graph, x, encoder.layer_norm, "model.encoder.layer_norm")
    outputs, dec_heads = [], config.decoder_attention_heads
    for i, layer in enumerate(decoder.layers):
        where = f"model.decoder.layers.{i}.encoder_attn"
        for which, label in (("k", "cross_key"), ("v", "cross_value")):
            proj = _projections(graph, hidden, layer.encoder_attn, where, which, entries)
            heads = _heads(graph, proj, dec_heads, config.d_model // dec_heads)
            graph.nodes.append(helper.make_node("Identity", [heads], [f"{label}.{i}"]))
            outputs.append(_value(f"{label}.{i}", ["batch", dec_heads, "positions", config.d_model // dec_heads]))
    inputs = [_value("input_features", ["batch", config.num_mel_bins, "frames"])]
    return _model(graph, "whisper_encoder", inputs, outputs), entries


def _value(name: str, shape: list, dtype: int = TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _causal_mask(graph: Graph, past: str, new: str) -> str:
    """(new, past + new) additive mask: new token t sees the cache and new tokens up to itself."""
    total = graph.op("Add", [past, new])
    rows = graph.op(
        "Unsqueeze", [graph.op("Range", [past, total, graph.const("one_i64", np.array(1, np.int64))]), graph.ints(1)]
    )
    cols = graph.op(
        "Unsqueeze",
        [graph.op("Range", [graph.const("zero_i64", np.array(0, np.int64)), total, "one_i64"]), graph.ints(0)],
    )
    blocked = graph.op("Greater", [cols, rows])
    return graph.op("Where", [blocked, graph.scalar(-math.inf), graph.scalar(0.0)], "causal_mask")


def build_decoder(network) -> tuple[ModelProto, dict]:
    """decoder.onnx with the self-attention cache as inputs and outputs; (model, entries)."""
    config, decoder = network.config, network.model.decoder
    graph, entries = Graph(), {}
    width, n_heads = config.d_model, config.decoder_attention_heads
    head_dim = width // n_heads
    past = graph.op("Squeeze", [graph.op("Shape", ["past_key.0"], start=2, end=3), graph.ints(0)], "past_length")
    new = graph.op("Squeeze", [graph.op("Shape", ["input_ids"], start=1, end=2), graph.ints(0)], "new_length")
    x, entries["model.decoder.embed_tokens"] = embedding(
        graph, "input_ids", decoder.embed_tokens, "model.decoder.embed_tokens"
    )
    table = graph.const("model.decoder.embed_positions.weight", decoder.embed_positions.weight.detach().float().numpy())
    end = graph.op("Add", [past, new])
    starts, ends = (graph.op("Unsqueeze", [v, graph.ints(0)]) for v in (past, end))
    x = graph.op("Add", [x, graph.op("Slice", [table, starts, ends, graph.ints(0)])])
    mask = _causal_mask(graph, past, new)
    scale = graph.scalar(head_dim**-0.5)
    inputs = [_value("input_ids", ["batch", "new"], TensorProto.INT64)]
    outputs = [_value("logits", ["batch", config.vocab_size])]
    cache = ["batch", n_heads, "past", head_dim]
    for i, layer in enumerate(decoder.layers):
        name = f"model.decoder.layers.{i}"
        inputs += [_value(f"past_key.{i}", cache), _value(f"past_value.{i}", cache)]
        attn, where = layer.self_attn, f"{name}.self_attn"
        normed = _layer_norm(graph, x, layer.self_attn_layer_norm, f"{name}.self_attn_layer_norm")
        q = _heads(
            graph, graph.op("Mul", [_projections(graph, normed, attn, where, "q", entries), scale]), n_heads, head_dim
        )
        for which, label in (("k", "key"), ("v", "value")):
            step = _heads(graph, _projections(graph, normed, attn, where, which, entries), n_heads, head_dim)
            graph.nodes.append(
                helper.make_node("Concat", [f"past_{label}.{i}", step], [f"present_{label}.{i}"], axis=2)
            )
            outputs.append(_value(f"present_{label}.{i}", ["batch", n_heads, "total", head_dim]))
        context = _attend(graph, q, f"present_key.{i}", f"present_value.{i}", mask, width)
        x = graph.op("Add", [x, _projections(graph, context, attn, where, "out", entries)])
        cross, where = layer.encoder_attn, f"{name}.encoder_attn"
        normed = _layer_norm(graph, x, layer.encoder_attn_layer_norm, f"{name}.encoder_attn_layer_norm")
        q = _heads(
            graph, graph.op("Mul", [_projections(graph, normed, cross, where, "q", entries), scale]), n_heads, head_dim
        )
        context = _attend(graph, q, f"cross_key.{i}", f"cross_value.{i}", None, width)
        x = graph.op("Add", [x, _projections(graph, context, cross, where, "out", entries)])
        x = _mlp(graph, x, layer, name, entries)
    cross_shape = ["batch", n_heads, "positions", head_dim]
    inputs += [
        _value(f"cross_{kind}.{i}", cross_shape) for i in range(len(decoder.layers)) for kind in ("key", "value")
    ]
    last = graph.op("Gather", [x, graph.const("last_position", np.array(-1, np.int64))], axis=1)  # (batch, width)
    last = _layer_norm(graph, last, decoder.layer_norm, "model.decoder.layer_norm")
    logits, entries["proj_out"] = tied_projection(graph, last, decoder.embed_tokens, network.proj_out, "proj_out")
    graph.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    return _model(graph, "whisper_decoder", inputs, outputs), entries
