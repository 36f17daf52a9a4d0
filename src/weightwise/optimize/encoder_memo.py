"""Encoder outputs reused across the closed loop's decodes (`EncoderMemo`).

    memo = EncoderMemo()
    with all_applied(model, assignment), memo.bound(model, assignment) as encoder:
        transcribe(model, samples, options, encoder=encoder)  # a window seen under this encoder: reused

The closed loop (`weightwise.optimize.run`) decodes every tuning (or calibration) item once per
plan it measures, and plans often differ only in decoder / output-projection rules, so the
encoder's output for an item is often one already computed. An output is reused only when all
that determines it is the same (a stale hit would be a silently wrong WER):

- the window's features: a BLAKE2b digest of the exact tensor the encoder gets (after the dtype
  cast and an encoder context's cut), with its shape and dtype;
- the encoder's live state (`encoder_state`): every encoder submodule's name, class and
  compressed `spec()`, the hooks on it, a patched `forward`, and the dtype, shape and bytes of
  every parameter and buffer;
- the runtime settings installed (`model.runtime`): `activation_precision` hooks the encoder's
  modules, `encoder_context` patches its forward; left out are `fused_attention` (the energy
  model's setting: nothing is simulated for it) and `kv_precision` (it rounds the decoder's cached
  keys/values only, `models.runtime`; a hook it put on the encoder would still change the state);
- the caller's assignment restricted to the groups with a module under the encoder (module names
  -> candidate config), when given: redundant with the state, a second guard.

Memory: outputs are kept for at most `max_signatures` encoder signatures, least recently bound
dropped first, and `max_bytes` in all (an output that does not fit is not kept: a miss, never an
error). whisper-tiny.en's output for one 30 s window is 1,500 x 384 fp32 = 2.3 MB (base: 512 wide,
3.1 MB), so 200 tuning items are 460 MB per signature and the default cap (1 GiB) holds two.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch

from weightwise.decode.transcribe import run_encoder
from weightwise.models.whisper import WhisperASR

DEFAULT_MAX_SIGNATURES = 2
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB: two signatures of 200 tiny.en windows (460 MB each)


def _digest(tensor: torch.Tensor) -> str:
    """BLAKE2b of the tensor's bytes (any dtype), with its dtype and shape."""
    flat = tensor.detach().reshape(-1).contiguous().cpu()
    h = hashlib.blake2b(f"{flat.dtype}{tuple(tensor.shape)}".encode(), digest_size=20)
    if flat.numel():
        h.update(flat.view(torch.uint8).numpy())
    return h.hexdigest()


def _spec(module: torch.nn.Module) -> str | None:
    spec = getattr(module, "spec", None)
    return json.dumps(spec(), sort_keys=True, default=str) if callable(spec) else None


def encoder_state(encoder: torch.nn.Module) -> str:
    """Digest of everything in `encoder` that its output depends on (see the module docstring)."""
    h = hashlib.blake2b(digest_size=20)
    for name, module in encoder.named_modules():
        hooks = (len(module._forward_pre_hooks), len(module._forward_hooks))
        patched = "forward" in module.__dict__
        cls = f"{type(module).__module__}.{type(module).__qualname__}"
        h.update(repr((name, cls, _spec(module), hooks, patched)).encode())
        for tname, tensor in (*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)):
            h.update(f"{tname}:{_digest(tensor)}".encode())
    return h.hexdigest()


def _encoder_assignment(network: torch.nn.Module, encoder: torch.nn.Module, assignment) -> tuple:
    """(module names, candidate config key) of the groups with a module under the encoder."""
    prefix = next(name for name, module in network.named_modules() if module is encoder) + "."
    return tuple(
        sorted(
            (group.modules, candidate.key)
            for group, candidate in assignment.items()
            if any(m.startswith(prefix) for m in group.modules)
        )
    )


def signature(model, assignment=None) -> tuple:
    """What the encoder's output for given features depends on, in `model`'s present state."""
    encoder = model.network.model.encoder
    runtime = getattr(model, "runtime", None)
    reaching = replace(runtime, fused_attention=None, kv_precision=None) if runtime else None
    settings = json.dumps(reaching.to_dict(), sort_keys=True) if reaching else "{}"
    applied = None if assignment is None else _encoder_assignment(model.network, encoder, assignment)
    return (str(model.dtype), settings, applied, encoder_state(encoder))


class EncoderMemo:
    """Encoder outputs by (encoder signature, window features); see the module docstring."""

    def __init__(self, max_signatures: int = DEFAULT_MAX_SIGNATURES, max_bytes: int = DEFAULT_MAX_BYTES):
        if max_signatures < 1 or max_bytes < 0:
            raise ValueError(f"EncoderMemo: max_signatures {max_signatures} (>= 1), max_bytes {max_bytes} (>= 0)")
        self.max_signatures, self.max_bytes = max_signatures, max_bytes
        self._outputs: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()  # least recent first
        self.hits = self.misses = self.nbytes = self.peak_nbytes = self.bindings = 0

    @contextlib.contextmanager
    def bound(self, model, assignment=None) -> Iterator[BoundEncoder | None]:
        """An `encoder` for `transcribe` while `model` stays as it is now (checked at every call);
        None for a model without a PyTorch Whisper encoder (a transducer: `transcribe` runs as ever)."""
        if not isinstance(model, WhisperASR):
            yield None
            return
        key = signature(model, assignment)
        self.bindings += 1
        self._outputs[key] = self._outputs.pop(key, {})  # most recent
        while len(self._outputs) > self.max_signatures:
            self._drop_oldest()
        encoder = BoundEncoder(self, model, key)
        try:
            yield encoder
        finally:
            encoder.closed = True

    def stats(self) -> dict[str, Any]:
        """Encoder calls saved (`hits`) and run (`misses`), over `bindings` decodes of the item set."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "bindings": self.bindings,
            "peak_nbytes": self.peak_nbytes,
            "max_signatures": self.max_signatures,
            "max_bytes": self.max_bytes,
        }

    def _drop_oldest(self) -> None:
        _key, outputs = self._outputs.popitem(last=False)
        self.nbytes -= sum(_nbytes(t) for t in outputs.values())

    def _store(self, key: tuple, item: str, output: torch.Tensor) -> None:
        size = _nbytes(output)
        while self.nbytes + size > self.max_bytes and len(self._outputs) > 1 and next(iter(self._outputs)) != key:
            self._drop_oldest()
        if self.nbytes + size <= self.max_bytes:
            self._outputs[key][item] = output.clone()
            self.nbytes += size
            self.peak_nbytes = max(self.peak_nbytes, self.nbytes)


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


class BoundEncoder:
    """`run_encoder` through the memo for one encoder signature. Every call first checks that the
    encoder is still the one bound (same module objects, hooks, runtime settings, tensor versions):
    a bound encoder used after its weights or hooks changed raises instead of serving stale outputs."""

    def __init__(self, memo: EncoderMemo, model, key: tuple):
        self.memo, self.model, self.key, self.closed = memo, model, key, False
        self._live = _live(model)  # holds the modules, so their ids cannot be reused meanwhile

    def __call__(self, model, features: torch.Tensor) -> torch.Tensor:
        if self.closed or model is not self.model or _live(model) != self._live:
            raise RuntimeError("EncoderMemo: the encoder changed since it was bound (bind it again)")
        item = _digest(features)
        outputs = self.memo._outputs.get(self.key)
        if outputs is not None and item in outputs:
            self.memo.hits += 1
            return outputs[item].clone()  # a copy: the caller may not write into the memo
        self.memo.misses += 1
        output = run_encoder(model, features)
        if outputs is not None:  # None: the signature was dropped meanwhile (cap reached)
            self.memo._store(self.key, item, output)
        return output


def _live(model) -> tuple:
    encoder = model.network.model.encoder
    modules = tuple(encoder.modules())
    tensors = (t for m in modules for t in (*m.parameters(recurse=False), *m.buffers(recurse=False)))
    versions = tuple(t.data_ptr() if t.is_inference() else t._version for t in tensors)  # no counter there
    hooks = tuple((len(m._forward_pre_hooks), len(m._forward_hooks)) for m in modules)
    return modules, versions, hooks, getattr(model, "runtime", None), encoder.__dict__.get("forward")
