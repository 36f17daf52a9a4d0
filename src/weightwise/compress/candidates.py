"""What the optimizer may do to each weight: groups, candidates, and applying one in place.

A **group** is one weight-bearing module that a plan can claim, or a tied set of them (Whisper's
token embedding and output projection share one table: ONE group). A **candidate** is a plan-rule
config with a label (``{"label": "int8", "quant": {"bits": 8}}``), so a chosen candidate per group is
an ordinary plan. The `CandidateSpace` is data (JSON): new methods (e.g. a GPTQ config registered in
`weightwise.compress.configs.METHODS`) join by adding a line, with no change here.

Candidate-space JSON::

    {"keep": {"label": "fp16", "quant": {"bits": 16}},          # the baseline every group starts at
     "candidates": [{"label": "int8", "quant": {"bits": 8}},
                    {"label": "int4", "quant": {"bits": 4}, "groups": ["re:model\\.decoder\\..*"]}, ...],
     "groups": ["re:.*"],                                       # which groups are planned (others keep)
     "uniform": ["int8", "int4-g64"]}                           # labels measured as uniform baselines
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from weightwise.compress.configs import CompressionConfig, LowRank, Prune, Quant, config_from_dict, config_to_dict
from weightwise.compress.modules import HANDLERS, replace_module
from weightwise.compress.plan import WEIGHT_MODULES, Plan, Rule
from weightwise.errors import InputError
from weightwise.profile.energy import component_of


@dataclass(frozen=True)
class Group:
    """One plannable weight: its module names (several when tied) and its energy component."""

    name: str
    modules: tuple[str, ...]

    @property
    def component(self) -> str:
        return component_of(self.name)[1]  # encoder | decoder | token_embedding_projection


@dataclass(frozen=True)
class Candidate:
    """A labelled plan-rule config; `groups` (names/regexes, as the space's own) limits the groups it
    is tried on (e.g. 4-bit on the decoder only: each sensitivity entry costs an accuracy pass)."""

    label: str
    config: CompressionConfig
    groups: tuple[str, ...] | None = None  # None: every planned group

    def applies_to(self, group: Group) -> bool:
        return self.groups is None or any(Rule(self.groups, self.config).matches(m) for m in group.modules)

    @property
    def key(self) -> str:
        """Canonical text of the config (what caches are keyed by; the label is cosmetic)."""
        method, params = config_to_dict(self.config)
        return json.dumps({method: params}, sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        method, params = config_to_dict(self.config)
        return {"label": self.label, method: params, **({"groups": list(self.groups)} if self.groups else {})}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Candidate:
        if not isinstance(data, dict) or not isinstance(data.get("label"), str) or not data["label"]:
            raise InputError(f"{where}: a candidate is an object with a 'label' and one method")
        methods = [k for k in data if k not in ("label", "groups")]
        if len(methods) != 1:
            raise InputError(f"{where}: candidate {data['label']!r} needs exactly one method, got {methods}")
        groups = data.get("groups")
        if groups is not None and (
            not isinstance(groups, list) or not groups or not all(isinstance(g, str) for g in groups)
        ):
            raise InputError(f"{where}: candidate {data['label']!r}: 'groups' must be a non-empty list of strings")
        _check_patterns(groups or (), where)
        return cls(
            data["label"], config_from_dict(methods[0], data[methods[0]], where), tuple(groups) if groups else None
        )


KEEP = Candidate("fp16", Quant(bits=16))
# Pruned values and low-rank factors are stored in float32 today, so on most modules they hold more
# bytes than fp16 and are skipped as dominated (no accuracy pass); they stay for the uniform
# baselines. A small rank ({"label": "lowrank-r64", "lowrank": {"rank": 64}}) does save bytes, but
# measured KL 0.57 nats/token on encoder layer 3's fc1 and 8.0 on the token table (int4: 0.001 and
# 0.07), so it is never chosen under small budgets and is left out to save its accuracy passes.
DEFAULT_CANDIDATES = (
    Candidate("int8", Quant(bits=8, granularity="channel")),
    Candidate("int4-g64", Quant(bits=4, granularity="group", group_size=64)),
    Candidate("prune50", Prune(sparsity=0.5)),
    Candidate("prune-2:4", Prune(sparsity=0.5, pattern="2:4")),
    Candidate("lowrank-e0.95", LowRank(energy_fraction=0.95)),
)


@dataclass(frozen=True)
class CandidateSpace:
    candidates: tuple[Candidate, ...] = DEFAULT_CANDIDATES
    keep: Candidate = KEEP
    groups: tuple[str, ...] = ("re:.*",)  # names/regexes of the groups to plan (first module name)
    uniform: tuple[str, ...] = ("int8", "int4-g64", "prune50", "lowrank-e0.95")
    source: str = field(default="built-in", compare=False)

    def __post_init__(self) -> None:
        labels = [c.label for c in (self.keep, *self.candidates)]
        duplicate = next((label for label in labels if labels.count(label) > 1), None)
        if duplicate:
            raise InputError(f"{self.source}: candidate label {duplicate!r} is used twice")
        unknown = [u for u in self.uniform if u not in labels]
        if unknown:
            raise InputError(f"{self.source}: uniform baseline {unknown[0]!r} is not a candidate label")
        _check_patterns(self.groups, self.source)

    def candidates_for(self, group: Group) -> tuple[Candidate, ...]:
        """keep, then the candidates tried on `group`."""
        return (self.keep, *(c for c in self.candidates if c.applies_to(group)))

    def by_label(self, label: str) -> Candidate:
        return next(c for c in (self.keep, *self.candidates) if c.label == label)

    def planned(self, groups: list[Group]) -> list[Group]:
        """The groups this space plans (matched by their first module name)."""
        rule = Rule(self.groups, self.keep.config)
        chosen = [g for g in groups if any(rule.matches(m) for m in g.modules)]
        if not chosen:
            raise InputError(f"{self.source}: 'groups' {list(self.groups)} match no weight module")
        return chosen

    def to_dict(self) -> dict[str, Any]:
        return {
            "keep": self.keep.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "groups": list(self.groups),
            "uniform": list(self.uniform),
        }

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> CandidateSpace:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as err:
            raise InputError(f"{path}: cannot read candidate space ({err.strerror or err})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(data, dict) or not isinstance(data.get("candidates"), list) or not data["candidates"]:
            raise InputError(f"{path}: a candidate space is an object with a non-empty list 'candidates'")
        unknown = sorted(set(data) - {"keep", "candidates", "groups", "uniform"})
        if unknown:
            raise InputError(f"{path}: unknown key {unknown[0]!r} (keep, candidates, groups, uniform)")
        where = str(path)
        groups, uniform = data.get("groups", ["re:.*"]), data.get("uniform", [])
        for key, value in (("groups", groups), ("uniform", uniform)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InputError(f"{path}: '{key}' must be a list of strings")
        keep = Candidate.from_dict(data["keep"], f"{where}: keep") if "keep" in data else KEEP
        candidates = tuple(Candidate.from_dict(c, f"{where}: candidate {i}") for i, c in enumerate(data["candidates"]))
        return cls(candidates, keep, tuple(groups), tuple(uniform), where)


def _check_patterns(patterns, where: str) -> None:
    for pattern in patterns:
        try:
            re.compile(pattern[3:] if pattern.startswith("re:") else re.escape(pattern))
        except re.error as err:
            raise InputError(f"{where}: bad group regex {pattern!r} ({err})") from None


def weight_groups(network: torch.nn.Module) -> list[Group]:
    """Every module a plan can claim, tied modules (one shared weight) in one group, model order.

    Positional tables (``embed_positions``, whatever their class) are left out, as the plan
    contract says: they are indexed by position, not multiplied."""
    by_weight: dict[int, list[str]] = {}
    for name, module in network.named_modules():
        if (
            isinstance(module, WEIGHT_MODULES)
            and "Positional" not in type(module).__name__
            and not name.endswith("embed_positions")
        ):
            by_weight.setdefault(id(module.weight), []).append(name)
    return [Group(names[0], tuple(names)) for names in by_weight.values()]


def _register_handlers() -> None:
    for name in ("lowrank", "prune", "quantize", "share"):  # importing them registers the handlers
        importlib.import_module(f"weightwise.compress.{name}")


@contextlib.contextmanager
def applied(
    network: torch.nn.Module, group: Group, config: CompressionConfig, context: Any = None
) -> Iterator[dict[str, torch.nn.Module]]:
    """Compress only `group` in place for the duration of the block (yields its new modules),
    then put the original modules back. A handler's InputError (the method does not apply to
    this module's shape or type) propagates after the originals are restored."""
    _register_handlers()
    originals = {name: network.get_submodule(name) for name in group.modules}
    try:
        with torch.no_grad():
            HANDLERS[type(config)](network, list(group.modules), config, context)
        yield {name: network.get_submodule(name) for name in group.modules}
    finally:
        for name, module in originals.items():
            replace_module(network, name, module)


def plan_of(assignment: dict[Group, Candidate], name: str = "") -> Plan:
    """An ordinary plan: one rule per distinct config, listing the exact module names it claims."""
    rules: dict[str, tuple[Candidate, list[str]]] = {}
    for group, candidate in assignment.items():
        rules.setdefault(candidate.key, (candidate, []))[1].extend(group.modules)
    return Plan(tuple(Rule(tuple(names), c.config) for c, names in rules.values()), name)
