"""Trace a real decode: per weight tensor, how often it is invoked, the bytes read and the MACs.

Hooks on every module count calls and read shapes; a torch-function mode counts the MACs of
scaled-dot-product attention (activation x activation work that has no weight). Counts come from
the actual decode of real audio, not from a formula: the encoder runs once per 30 s window, the
decoder once per generated token (plus the prompt and end-of-text steps), cross-attention keys and
values once per window when the key/value cache is on.

Schedule assumed (paper 3, MISSION.md §3): a weight used for T frames or positions inside one
module call is fetched once per call ("fetch-once-per-call"), so bytes read per call = its storage
bytes; an embedding lookup reads only the rows it returns.

The same hooks count the traffic that is not weights (key/value cache, activations): see
`weightwise.profile.traffic`.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode

from weightwise.decode.options import DecodeCounter
from weightwise.profile.storage import TensorStorage, dtype_name, module_storage
from weightwise.profile.traffic import ActivationTrace, KVStep, TrafficCounter, scale_traffic

SCHEDULE = "fetch-once-per-call"


@dataclass(frozen=True)
class TensorTrace:
    """One stored weight tensor over a whole trace (totals, not rates)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    format: str
    nbytes: int  # stored once, whatever the number of users (tied/shared weights)
    calls: int  # invocations: calls of every module that reads it
    bytes_read: int
    macs: int  # MACs of the ops that multiply by this tensor
    mac_dtype: str
    users: tuple[str, ...]


@dataclass(frozen=True)
class OpTrace:
    """Weight-free compute inside one module (attention scores and weighted sums)."""

    module: str
    calls: int
    macs: int
    mac_dtype: str


@dataclass(frozen=True)
class Trace:
    """Device-independent counts from decoding real audio."""

    model: str
    precision: str
    audio_s: float
    n_files: int
    n_windows: int
    n_decoder_calls: int
    n_tokens: int
    use_cache: bool
    tensors: tuple[TensorTrace, ...]
    ops: tuple[OpTrace, ...]
    activation_bytes: int  # inputs + outputs of weight-bearing modules, summed over calls
    schedule: str = SCHEDULE
    kv_steps: tuple[KVStep, ...] = ()  # key/value-cache elements read/written per decoder call
    activations: tuple[ActivationTrace, ...] = ()  # activation tensors written (and read back)
    kv_dtype: str = ""  # the cache's dtype in the run ("" when no cache was read)


def _first_tensor(value) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((v for v in value if isinstance(v, torch.Tensor)), None)
    return getattr(value, "last_hidden_state", None)


def _mac_dtype(storage: dict[str, TensorStorage]) -> str:
    """MACs run in the dtype of the module's main weight (`weight`, else its first tensor)."""
    main = storage.get("weight") or next(iter(storage.values()), None)
    return main.dtype if main is not None else "fp32"


def _weight_macs(module: torch.nn.Module, inp: torch.Tensor | None, out: torch.Tensor) -> int:
    """MACs of a call, from its output shape (each output element is one dot product).

    Modules with another structure (e.g. low-rank factors) report their own via
    ``weightwise_macs(input, output) -> int``.
    """
    custom = getattr(module, "weightwise_macs", None)
    if callable(custom):
        return int(custom(inp, out))
    if isinstance(module, torch.nn.Conv1d):
        return out.numel() * (module.in_channels // module.groups) * module.kernel_size[0]
    in_features = getattr(module, "in_features", None)
    if in_features is not None:  # nn.Linear and quantized Linear
        return out.numel() * in_features
    if isinstance(module, torch.nn.LayerNorm):
        return out.numel()  # one multiply-add by gamma/beta per element
    return 0  # embeddings: lookups, no MACs


def _bytes_read(module: torch.nn.Module, pname: str, st: TensorStorage, inp, out) -> int:
    """Bytes one call reads from a stored tensor: all of it, except lookups (rows returned).

    Compressed modules with other access patterns report it via ``weightwise_bytes_read``.
    """
    custom = getattr(module, "weightwise_bytes_read", None)
    if callable(custom):
        return int(custom(pname, st, inp, out))
    if isinstance(module, torch.nn.Embedding) and pname == "weight" and out is not None:
        return round(out.numel() * st.bytes_per_element)
    return st.nbytes


@dataclass
class _Usage:
    calls: int = 0
    bytes_read: int = 0
    macs: int = 0
    users: set = field(default_factory=set)


class _AttentionCounter(TorchFunctionMode):
    def __init__(self, tracer: Tracer):
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.scaled_dot_product_attention:
            self.tracer.on_attention(*args[:3])
        return func(*args, **(kwargs or {}))


class Tracer(DecodeCounter):
    """Context manager that hooks a network while `transcribe(..., observer=tracer)` runs.

    `use_cache` says whether the decode keeps a key/value cache: then, between `on_decoder_step`
    and the end of the window, attention keys/values are cache reads and `k_proj`/`v_proj`
    outputs cache writes. Cross-attention = an attention module called with `key_value_states`
    (the Hugging Face encoder-decoder convention).
    """

    hooks_modules = True  # attention blocks' forward hooks attribute MACs and cache traffic

    def __init__(self, network: torch.nn.Module, use_cache: bool = True):
        super().__init__()
        self.network, self.use_cache = network, use_cache
        self.storage = {n: module_storage(m) for n, m in network.named_modules()}
        self.calls: dict[str, int] = defaultdict(int)
        self.usage: dict[int, _Usage] = defaultdict(_Usage)
        self.ops: dict[str, list] = {}
        self.stack: list[str] = []
        self.activation_bytes = 0
        self.traffic, self.decoding = TrafficCounter(), False
        self.cross: dict[str, bool] = {}  # attention module -> called with key_value_states
        self._kv_projections: set[str] = set()
        self._handles: list = []
        self._mode = _AttentionCounter(self)

    # -- decode phases --------------------------------------------------------------------------
    def on_window(self, window_index: int, start_s: float, duration_s: float) -> None:
        super().on_window(window_index, start_s, duration_s)
        self.traffic.end_call()
        self.decoding = False

    def on_decoder_step(self, window_index: int, step: int, n_positions: int, n_sequences: int) -> None:
        super().on_decoder_step(window_index, step, n_positions, n_sequences)
        self.traffic.begin_call()
        self.decoding = True

    def on_window_end(self, window_index: int, n_tokens: int) -> None:
        super().on_window_end(window_index, n_tokens)
        self.traffic.end_call()
        self.decoding = False

    @property
    def part(self) -> str:
        return "decoder" if self.decoding else "encoder"

    # -- hooks ---------------------------------------------------------------------------------
    def on_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """One scaled-dot-product attention: its MACs, score matrix, output and cache reads."""
        module = self.stack[-1] if self.stack else ""
        rows = q.numel() // q.shape[-1]  # batch x heads x queries
        entry = self.ops.setdefault(module, [0, 0, dtype_name(q.dtype)])
        entry[0] += 1
        entry[1] += rows * k.shape[-2] * (q.shape[-1] + v.shape[-1])
        heads = q.shape[1] if q.dim() == 4 else 1  # (batch, heads, queries, head_dim)
        self.traffic.activation(f"{self.part}.attention_scores", q, rows * k.shape[-2], row=k.shape[-2])
        self.traffic.activation(self.part, q, rows * v.shape[-1], row=heads * v.shape[-1])  # per token
        if self.decoding and self.use_cache:
            self.traffic.kv_read(self.cross.get(module, False), k, v)

    def _push(self, name: str):
        def hook(module, args, kwargs):
            self.stack.append(name)
            self.cross[name] = kwargs.get("key_value_states") is not None

        return hook

    def _kv_projection(self, attention: str):
        def hook(module, args, output):
            out = _first_tensor(output)
            if out is None:
                return
            if self.decoding and self.use_cache:
                self.traffic.kv_write(self.cross.get(attention, False), out)
            else:
                self.traffic.activation(self.part, out)

        return hook

    def _pop(self, module, args, output) -> None:
        self.stack.pop()

    def _count(self, name: str):
        def hook(module, args, output):
            self.calls[name] += 1

        return hook

    def _post(self, name: str):
        storage = self.storage[name]

        def hook(module, args, output):
            self.calls[name] += 1
            out = _first_tensor(output)
            inp = _first_tensor(args)
            self.activation_bytes += sum(t.numel() * t.element_size() for t in (inp, out) if t is not None)
            if out is not None and name not in self._kv_projections:
                # a row = one position's features (conv outputs are channels x frames)
                self.traffic.activation(self.part, out, row=getattr(module, "out_channels", None))
            macs = _weight_macs(module, inp, out) if out is not None else 0
            mac_owner = "weight" if "weight" in storage else next(iter(storage))
            for pname, st in storage.items():
                use = self.usage[st.key]
                use.calls += 1
                use.bytes_read += _bytes_read(module, pname, st, inp, out)
                use.macs += macs if pname == mac_owner else 0
                use.users.add(name)

        return hook

    def __enter__(self) -> Tracer:
        """Hook weight-bearing modules (counts, bytes, MACs), attention modules (to attribute
        attention MACs) and the parents of weight-bearing modules (call counts only); fewer hooks
        keep the tracing overhead down."""
        for name, module in self.network.named_modules():
            if "Attention" in type(module).__name__:
                self._handles.append(module.register_forward_pre_hook(self._push(name), with_kwargs=True))
                self._handles.append(module.register_forward_hook(self._pop))
                for child in ("k_proj", "v_proj"):
                    if isinstance(getattr(module, child, None), torch.nn.Module):
                        self._kv_projections.add(f"{name}.{child}" if name else child)
                        hook = self._kv_projection(name)
                        self._handles.append(getattr(module, child).register_forward_hook(hook))
            if self.storage[name]:
                self._handles.append(module.register_forward_hook(self._post(name)))
            elif any(module_storage(child) for _, child in module.named_children()):  # (shared children too)
                self._handles.append(module.register_forward_hook(self._count(name)))
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # -- result --------------------------------------------------------------------------------
    def _fallback_calls(self, name: str) -> int:
        """Calls of the nearest called ancestor, for weights read directly as `.weight`."""
        while name:
            name = name.rpartition(".")[0]
            if self.calls.get(name):
                return self.calls[name]
        return self.calls.get("", 0)

    def result(self, model: str, precision: str, use_cache: bool | None = None) -> Trace:
        use_cache = self.use_cache if use_cache is None else use_cache
        tensors, seen = [], set()
        for mname, storage in self.storage.items():
            for pname, st in storage.items():
                if st.key in seen:
                    continue
                seen.add(st.key)
                use = self.usage.get(st.key) or _Usage(calls=0)
                if use.calls == 0:  # never reached through its module's forward
                    calls = self._fallback_calls(mname)
                    use = _Usage(calls, calls * st.nbytes, 0, {mname})
                full = f"{mname}.{pname}" if mname else pname
                tensors.append(
                    TensorTrace(
                        full,
                        st.shape,
                        st.dtype,
                        st.format,
                        st.nbytes,
                        use.calls,
                        use.bytes_read,
                        use.macs,
                        _mac_dtype(storage),
                        tuple(sorted(use.users)),
                    )
                )
        ops = tuple(OpTrace(m, c, macs, dt) for m, (c, macs, dt) in sorted(self.ops.items()))
        steps, activations = self.traffic.result()
        return Trace(
            model,
            precision,
            self.audio_s,
            self.n_files,
            self.n_windows,
            self.n_decoder_calls,
            self.n_tokens,
            use_cache,
            tuple(tensors),
            ops,
            self.activation_bytes,
            kv_steps=steps,
            activations=activations,
            kv_dtype=self.traffic.kv_dtype,
        )


def scale_trace(
    reference: Trace, n_windows: int, n_decoder_calls: int, n_tokens: int, audio_s: float, n_files: int = 1
) -> Trace:
    """The trace another decode of the same model would give, from its window and decoder-call counts.

    In an encoder-decoder every weight is invoked a whole number of times per encoder window
    (encoder, cross-attention keys/values with a cache) or per decoder call (the rest; the tied
    embedding/projection twice). Each tensor's calls, bytes and MACs are scaled by its own rate.
    Whole-tensor reads are exact; embedding row reads, and MACs of per-call work, are
    approximate (the prompt step processes several positions and attention grows with position). Used by the
    benchmark matrix so that every cell gets energy without paying for hooks in its timed run.
    """

    def factor(calls: int) -> float:
        if (
            reference.n_decoder_calls
            and calls % reference.n_decoder_calls == 0
            and calls >= reference.n_decoder_calls > reference.n_windows
        ):
            return n_decoder_calls / reference.n_decoder_calls
        return n_windows / reference.n_windows if reference.n_windows else 0.0

    tensors = tuple(
        dataclasses.replace(
            t, calls=round(t.calls * (f := factor(t.calls))), bytes_read=round(t.bytes_read * f), macs=round(t.macs * f)
        )
        for t in reference.tensors
    )
    ops = tuple(
        dataclasses.replace(op, calls=round(op.calls * (f := factor(op.calls))), macs=round(op.macs * f))
        for op in reference.ops
    )
    activation = reference.activation_bytes * (n_decoder_calls / max(reference.n_decoder_calls, 1))
    later = reference.n_decoder_calls - reference.n_windows  # decoder calls after each window's first
    steps, activations = scale_traffic(
        reference.kv_steps,
        reference.activations,
        n_windows / reference.n_windows if reference.n_windows else 0.0,
        (n_decoder_calls - n_windows) / later if later > 0 else 0.0,
        n_decoder_calls / reference.n_decoder_calls if reference.n_decoder_calls else 0.0,
    )
    return dataclasses.replace(
        reference,
        audio_s=audio_s,
        n_files=n_files,
        n_windows=n_windows,
        n_decoder_calls=n_decoder_calls,
        n_tokens=n_tokens,
        tensors=tensors,
        ops=ops,
        activation_bytes=round(activation),
        kv_steps=steps,
        activations=activations,
    )
