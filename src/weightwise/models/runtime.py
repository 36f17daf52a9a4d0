"""Runtime settings a plan carries beside its weight rules, simulated in the decode itself.

    settings = RuntimeSettings(kv_precision="int8", activation_precision="int8", encoder_context="auto")
    apply_runtime(model, settings)   # hooks on the network: the decode now runs as deployed

- `kv_precision`: every key/value the decoder's attentions write to their cache (`k_proj`/`v_proj`
  outputs of its cross- and self-attention) is rounded to this precision before it is cached: int8
  symmetric per (position, head) vector with one scale each (the granularity `profile.traffic`
  charges; KIVI, Liu et al., ICML 2024, quantize the value cache per token), fp16/bf16 by a cast
  round trip. The encoder's self-attention keys/values are not a cache (used once, in the call that
  makes them): they are activations, rounded by `activation_precision` as the profiler charges them.
- `activation_precision`: every activation the energy model charges as stored is rounded: the
  inputs of every Linear/Conv1d (attention outputs, GELU outputs, normed hidden states) and the
  outputs of every weight module, int8 symmetric per row (per token: LLM.int8(), Dettmers et al.,
  NeurIPS 2022, SmoothQuant's per-token setting). Attention score matrices are NOT rounded: a plan
  with an activation precision is profiled with fused attention (scores stay on-chip, uncharged).
- `fused_attention`: the deployment keeps attention score matrices on-chip (flash-style kernels);
  the same arithmetic, so nothing to simulate: the profiler does not charge the scores.
- `encoder_context`: the encoder runs on fewer than 1,500 positions (whisper.cpp's `audio_ctx`):
  "auto" keeps the window's audio plus `ENCODER_MARGIN_S` of padding (rounded up to
  `ENCODER_POSITION_STEP` positions, at least `ENCODER_MIN_POSITIONS`), an integer keeps that many
  positions for every window.

Fake quantization: values are rounded and de-quantized in the run's dtype, so the numbers the
model computes with are exactly those an int8 store would give back (the arithmetic stays float).
"""

from __future__ import annotations

import contextlib
import math
import types
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from weightwise.errors import InputError

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
MAX_POSITIONS = 1500  # Whisper's encoder positions per 30 s window (max_source_positions)
SECONDS_PER_POSITION = 0.02  # 10 ms mel hop x conv2 stride 2 (Radford et al. 2022, section 2.2)
#: "auto" context: padding kept after the window's audio, and the fewest positions run.
#: assumption, measured on whisper-tiny.en (test-other 61-1..3, this module's tests): a 2.8 s
#: utterance on 200 or 300 positions (audio + 1 or 3 s) loops until the repetition guard stops it,
#: on 450 it decodes as on 1,500; so at least 10 s (500 positions) and 3 s of the padded tail.
ENCODER_MARGIN_S = 3.0
ENCODER_MIN_POSITIONS = 500
ENCODER_POSITION_STEP = 50  # "auto" rounds up to whole seconds (50 positions)
DECODER_PREFIX = "model.decoder."  # the modules whose attention keeps a key/value cache


@dataclass(frozen=True)
class RuntimeSettings:
    kv_precision: str | None = None
    activation_precision: str | None = None
    encoder_context: str | int | None = None  # "auto", a number of positions, or None (all 1,500)
    fused_attention: bool | None = None  # score matrices on-chip (energy model only)

    def __bool__(self) -> bool:
        return any(v is not None for v in asdict(self).values())

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RuntimeSettings:
        """Parse the plan's optional "runtime" object; a bad value is a one-line InputError naming `where`."""
        if not isinstance(data, dict):
            raise InputError(f"{where}: 'runtime' must be an object")
        keys = ("kv_precision", "activation_precision", "encoder_context", "fused_attention")
        unknown = sorted(set(data) - set(keys))
        if unknown:
            raise InputError(f"{where}: runtime key {unknown[0]!r} is unknown ({', '.join(keys)})")
        if data.get("fused_attention") not in (None, True, False):
            raise InputError(f"{where}: runtime fused_attention must be true or false")
        for key in ("kv_precision", "activation_precision"):
            if data.get(key) is not None and data[key] not in PRECISIONS:
                raise InputError(f"{where}: runtime {key} {data[key]!r}: choose one of {', '.join(PRECISIONS)}")
        context = data.get("encoder_context")
        if context is not None and context != "auto":
            if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= MAX_POSITIONS:
                raise InputError(
                    f"{where}: runtime encoder_context {context!r}: 'auto' or a number of positions 1..{MAX_POSITIONS}"
                )
        return cls(data.get("kv_precision"), data.get("activation_precision"), context, data.get("fused_attention"))


def fake_quant(x: torch.Tensor, precision: str | None, row: int | None = None) -> torch.Tensor:
    """`x` as stored at `precision` and read back (int8: symmetric, one scale per `row` elements
    along the last dimension, default the whole last dimension)."""
    if precision is None or precision == "fp32" or not x.is_floating_point():
        return x
    if precision in ("fp16", "bf16"):
        return x.to(torch.float16 if precision == "fp16" else torch.bfloat16).to(x.dtype)
    shape = x.shape
    rows = x.float().reshape(-1, row or shape[-1])
    scale = rows.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / 127.0
    return (torch.round(rows / scale).clamp(-127, 127) * scale).reshape(shape).to(x.dtype)


def encoder_positions(settings: RuntimeSettings | None, duration_s: float) -> int:
    """Encoder positions a window with `duration_s` of real audio runs on."""
    context = settings.encoder_context if settings else None
    if context is None:
        return MAX_POSITIONS
    if context == "auto":
        needed = (duration_s + ENCODER_MARGIN_S) / SECONDS_PER_POSITION
        rounded = ENCODER_POSITION_STEP * math.ceil(needed / ENCODER_POSITION_STEP)
        return min(MAX_POSITIONS, max(ENCODER_MIN_POSITIONS, rounded))
    return int(context)


def _short_encoder_forward(self, input_features, attention_mask=None, **kwargs):
    """transformers' WhisperEncoder.forward without its fixed-length check: the positional table is
    cut to the positions the (shorter) features give."""
    from transformers.modeling_outputs import BaseModelOutput

    hidden = torch.nn.functional.gelu(self.conv1(input_features))
    hidden = torch.nn.functional.gelu(self.conv2(hidden)).permute(0, 2, 1)
    hidden = hidden + self.embed_positions.weight[: hidden.shape[1]].to(hidden.dtype)
    for layer in self.layers:
        hidden = layer(hidden, None, **kwargs)
    return BaseModelOutput(last_hidden_state=self.layer_norm(hidden))


def run_short_encoder(encoder: torch.nn.Module, input_features: torch.Tensor) -> torch.Tensor:
    """The encoder's last hidden state on features of any length up to a 30 s window (the
    positional table cut to them), whether or not `apply_runtime` patched the encoder."""
    return _short_encoder_forward(encoder, input_features).last_hidden_state


def _head_dim(attention: torch.nn.Module) -> int:
    return int(getattr(attention, "head_dim", 0) or attention.k_proj.out_features // attention.num_heads)


def apply_runtime(model, settings: RuntimeSettings | None) -> None:
    """Install `settings` on `model` (a `WhisperASR`) in place; `model.runtime` records them.
    Applying twice is an error (the hooks would stack)."""
    if getattr(model, "runtime", None):
        raise InputError(f"{model.info.name}: runtime settings are already applied")
    _install(model, settings)


@contextlib.contextmanager
def runtime_applied(model, settings: RuntimeSettings | None) -> Iterator[None]:
    """`settings` installed for the block, then removed (hooks, encoder forward, `model.runtime`)."""
    if getattr(model, "runtime", None):
        raise InputError(f"{model.info.name}: runtime settings are already applied")
    handles = _install(model, settings)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        model.network.model.encoder.__dict__.pop("forward", None)
        model.runtime = None


def _install(model, settings: RuntimeSettings | None) -> list:
    model.runtime = settings if settings else None
    handles: list = []
    if not settings:
        return handles
    network = model.network
    if settings.kv_precision not in (None, "fp32"):
        for name, module in network.named_modules():
            if hasattr(module, "k_proj") and hasattr(module, "v_proj") and name.startswith(DECODER_PREFIX):
                head_dim = _head_dim(module)

                def cache_write(_m, _inputs, output, head_dim=head_dim):
                    return fake_quant(output, settings.kv_precision, head_dim)

                handles.append(module.k_proj.register_forward_hook(cache_write))
                handles.append(module.v_proj.register_forward_hook(cache_write))
    if settings.activation_precision not in (None, "fp32"):
        precision = settings.activation_precision
        hooked: list[str] = []
        for name, module in network.named_modules():
            op = _op_of(name, module)
            if op is None or any(name.startswith(f"{h}.") for h in hooked):
                continue
            hooked.append(name)
            if op != "embedding":

                def inputs(m, args, op=op):
                    return (_rows(args[0], op, precision), *args[1:])

                handles.append(module.register_forward_pre_hook(inputs))

            def outputs(m, _args, out, op=op):
                return _rows(out, op, precision)

            handles.append(module.register_forward_hook(outputs))
    if settings.encoder_context is not None:
        encoder = network.model.encoder
        encoder.forward = types.MethodType(_short_encoder_forward, encoder)
    return handles


def _op_of(name: str, module: torch.nn.Module) -> str | None:
    """ "linear", "conv1d" or "embedding" for a weight module (dense or compressed), else None."""
    if name.endswith("embed_positions") or "Positional" in type(module).__name__:
        return None
    for cls, op in ((torch.nn.Linear, "linear"), (torch.nn.Conv1d, "conv1d"), (torch.nn.Embedding, "embedding")):
        if isinstance(module, cls):
            return op
    op = getattr(module, "op", None)  # compressed modules: WeightOpModule's op, or a kind like "lowrank_linear"
    if op in ("linear", "conv1d", "embedding"):
        return op
    kind = getattr(module, "kind", "")
    return next((o for o in ("linear", "conv1d", "embedding") if isinstance(kind, str) and kind.endswith(o)), None)


def _rows(x: torch.Tensor, op: str, precision: str) -> torch.Tensor:
    """Per-token rounding: a Conv1d tensor (batch, channels, time) has one row per time step."""
    if op == "conv1d":
        return fake_quant(x.transpose(1, 2), precision).transpose(1, 2)
    return fake_quant(x, precision)


__all__ = [
    "ENCODER_MARGIN_S",
    "MAX_POSITIONS",
    "PRECISIONS",
    "RuntimeSettings",
    "apply_runtime",
    "encoder_positions",
    "fake_quant",
    "runtime_applied",
]
