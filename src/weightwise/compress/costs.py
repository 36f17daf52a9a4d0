"""The energy side of a candidate: the profiler's counts for a compressed module, without a decode.

During the reference decode a `CallRecorder` notes, per weight module, the input shapes of its
calls (a Whisper decoder layer sees a 2-position prompt call and then 1-position calls; an encoder
layer sees 1,500 frames per window). `replay` then runs a compressed module once per distinct shape
on meta-device inputs under the profiler's own `Tracer` and multiplies by the number of calls: the same
invocations, bytes read and MACs that tracing a whole decode with that module would give (bytes and
MACs of a call depend only on the module and the input's shape). `tests/compress/test_costs.py`
checks this equals the real trace for uncompressed modules.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch

from weightwise.data import Manifest, iter_audio
from weightwise.decode import DecodingOptions, transcribe
from weightwise.profile.trace import TensorTrace, Trace, Tracer

Shape = tuple[tuple[int, ...], str]  # (input shape, "float" | "long")


class CallRecorder:
    """Context manager: counts the input shapes of every call of the named modules."""

    def __init__(self, network: torch.nn.Module, names: list[str]):
        self.network, self.names = network, list(names)
        self.calls: dict[str, Counter[Shape]] = {name: Counter() for name in names}
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module, args):
            x = args[0]
            kind = "float" if x.is_floating_point() else "long"
            self.calls[name][(tuple(x.shape), kind)] += 1

        return hook

    def __enter__(self) -> CallRecorder:
        for name in self.names:
            self._handles.append(self.network.get_submodule(name).register_forward_pre_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _shell(modules: dict[str, torch.nn.Module]) -> torch.nn.Module:
    """A bare module tree holding `modules` at their dotted names (so traced names match)."""
    root = torch.nn.Module()
    for name, module in modules.items():
        parent = root
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, torch.nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, module)
    return root


def _dummy(shape: tuple[int, ...], kind: str, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.long if kind == "long" else dtype, device="meta")


def _meta_copies(modules: dict[str, torch.nn.Module], dtype: torch.dtype) -> dict[str, torch.nn.Module]:
    """Copies on the meta device (shapes, no data, forwards without arithmetic), float tensors in
    `dtype`; tensors shared between modules (tied weights) stay shared."""
    memo: dict[int, Any] = {}
    for module in modules.values():
        for tensor in [*module.parameters(), *module.buffers()]:
            if id(tensor) not in memo:
                meta = torch.empty_like(
                    tensor, device="meta", dtype=dtype if tensor.is_floating_point() else tensor.dtype
                )
                memo[id(tensor)] = (
                    torch.nn.Parameter(meta, requires_grad=False) if isinstance(tensor, torch.nn.Parameter) else meta
                )
    return copy.deepcopy(modules, memo)


def replay(
    modules: dict[str, torch.nn.Module], calls: dict[str, Counter[Shape]], dtype: torch.dtype | None = None
) -> tuple[TensorTrace, ...]:
    """Traced totals of `modules` (name -> module, tied modules together) over the recorded calls.

    The replay runs on copies on the meta device (shapes, no arithmetic). `dtype`: the copies'
    float dtype, the runtime precision a deployment runs the compressed model at (its float
    tensors, e.g. biases, norms and low-rank factors, are stored and read in it); None: float32.
    """
    float_dtype = dtype or torch.float32
    modules = _meta_copies(modules, float_dtype)
    shell = _shell(modules)
    empty = Tracer(shell)
    with empty:
        pass
    template = {t.name: t for t in empty.result("", "", True).tensors}  # every stored tensor, 0 calls
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    users: dict[str, set[str]] = defaultdict(set)
    for name, counter in calls.items():
        for (shape, kind), count in counter.items():
            tracer = Tracer(shell)
            with tracer, torch.inference_mode():
                modules[name](_dummy(shape, kind, float_dtype))
            for t in tracer.result("", "", True).tensors:
                if t.calls:
                    total = totals[t.name]
                    total[0] += t.calls * count
                    total[1] += t.bytes_read * count
                    total[2] += t.macs * count
                    users[t.name].update(t.users)
    return tuple(
        dataclasses.replace(
            t, calls=totals[n][0], bytes_read=totals[n][1], macs=totals[n][2], users=tuple(sorted(users[n])) or t.users
        )
        for n, t in template.items()
    )


def trace_calls(
    model,
    manifest: Manifest,
    names: list[str],
    options: DecodingOptions = DecodingOptions(),
    progress: Callable[[Iterable, str], Iterable] | None = None,
) -> tuple[Trace, dict[str, Counter[Shape]]]:
    """Decode `manifest` with the profiler's hooks on: its trace, and the call shapes of `names`."""
    tracer, recorder = Tracer(model.network), CallRecorder(model.network, names)
    items = iter_audio(manifest)
    if progress is not None:
        items = progress(items, f"tracing {model.info.name} {model.info.precision} (calibration audio)")
    with tracer, recorder:
        for utt, samples in items:
            transcribe(model, samples, options, observer=tracer, file_id=utt.id)
    return tracer.result(model.info.name, model.info.precision, options.use_cache), recorder.calls


def group_tensors(trace: Trace, modules: set[str]) -> tuple[TensorTrace, ...]:
    """The traced tensors that belong to `modules` (used by one of them)."""
    return tuple(t for t in trace.tensors if set(t.users) & modules)


def with_tensors(
    base: Trace, fixed: tuple[TensorTrace, ...], chosen: list[tuple[TensorTrace, ...]], precision: str = "plan"
) -> Trace:
    """`base` with its weight tensors replaced: `fixed` (untouched) plus each group's `chosen` ones."""
    tensors = list(fixed)
    for group in chosen:
        tensors += group
    return dataclasses.replace(base, tensors=tuple(tensors), precision=precision)


def trace_to_dict(t: TensorTrace) -> dict[str, Any]:
    return dataclasses.asdict(t)


def trace_from_dict(data: dict[str, Any]) -> TensorTrace:
    """Inverse of `trace_to_dict` (lists back to tuples); TypeError when the fields differ."""
    return TensorTrace(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
