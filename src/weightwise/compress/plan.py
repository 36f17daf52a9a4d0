"""A compression plan: ordered rules mapping module names to one config; first match wins.

JSON contract (extend compatibly)::

    {"rules": [{"match": "re:<regex>" | "<exact module name>" | [names...], "<method>": {params}}, ...],
     "runtime": {"kv_precision": "int8", "activation_precision": "int8",       # optional: how the
                 "encoder_context": "auto", "fused_attention": true}}        # model runs (simulated)

`runtime` (see `weightwise.models.runtime`) is applied after the rules; a plan with a runtime may
have no rules (the weights stay dense).
`calib` (optional): the calibration manifest a gptq or csp rule was made with, relative to the plan
file; used when no --calib is given, so the plan alone rebuilds the same weights.
`state` (optional): a safetensors file, relative to the plan, with the tensors its calibrated rules
chose (`weightwise.compress.state`); when present the plan needs no calibration audio (an explicit
--calib recalibrates instead).

A rule applies to the weight-bearing modules (Linear, Conv1d, Embedding) whose names match; a
regex must match the whole name (``re:.*`` = all of them). Positional-embedding tables (Whisper's
`embed_positions`, 2% of tiny's weights) are not candidates: their modules index rows by position
with their own forward signature, which a compressed lookup would not honour. A rule that matches nothing, an unknown
method or parameter, or a rule with two methods is an error.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from weightwise.compress.configs import CompressionConfig, config_from_dict, config_to_dict
from weightwise.errors import InputError
from weightwise.models.runtime import RuntimeSettings

WEIGHT_MODULES = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Embedding)


@dataclass(frozen=True)
class Rule:
    match: tuple[str, ...]  # exact names and/or "re:<regex>" patterns
    config: CompressionConfig

    def matches(self, name: str) -> bool:
        for pattern in self.match:
            if pattern.startswith("re:"):
                if re.fullmatch(pattern[3:], name):
                    return True
            elif pattern == name:
                return True
        return False

    def to_dict(self) -> dict[str, Any]:
        method, params = config_to_dict(self.config)
        match: str | list[str] = self.match[0] if len(self.match) == 1 else list(self.match)
        return {"match": match, method: params}


@dataclass(frozen=True)
class Plan:
    rules: tuple[Rule, ...]
    name: str = ""
    runtime: RuntimeSettings | None = None
    calib: str | None = None  # calibration manifest (resolved against the plan file's folder)
    state: str | None = None  # calibrated tensors (`compress.state`), resolved like calib

    @classmethod
    def from_dict(cls, data: Any, where: str = "plan", name: str = "") -> Plan:
        has_runtime = isinstance(data, dict) and "runtime" in data
        runtime = RuntimeSettings.from_dict(data["runtime"], where) if has_runtime else None
        rules = data.get("rules") if isinstance(data, dict) else None
        if not isinstance(rules, list) or not (rules or runtime):
            raise InputError(f"{where}: a plan is an object with a non-empty list 'rules'")
        calib, state = data.get("calib"), data.get("state")
        if calib is not None and (not isinstance(calib, str) or not calib):
            raise InputError(f"{where}: 'calib' must be the path of a calibration manifest")
        if state is not None and (not isinstance(state, str) or not state):
            raise InputError(f"{where}: 'state' must be the path of a plan state file")
        rules = tuple(_rule(r, f"{where}: rule {i}") for i, r in enumerate(rules))
        return cls(rules, name, runtime or None, calib, state)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Plan:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: plan file not found")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"{path}: not valid JSON ({err})") from None
        plan = cls.from_dict(data, str(path), path.stem)
        if plan.calib is not None and plan.calib != "samples":
            plan = dataclasses.replace(plan, calib=os.path.normpath(path.parent / plan.calib))
        if plan.state is not None:
            state = path.parent / plan.state
            if not state.is_file():
                raise InputError(f"{path}: its state file {state} is missing")
            plan = dataclasses.replace(plan, state=os.path.normpath(state))
        return plan

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rules": [rule.to_dict() for rule in self.rules]}
        if self.runtime:
            out["runtime"] = self.runtime.to_dict()
        if self.calib is not None:
            out["calib"] = self.calib
        if self.state is not None:
            out["state"] = self.state
        return out

    def resolve(self, network: torch.nn.Module) -> dict[str, tuple[int, CompressionConfig]]:
        """module name -> (rule index, config) for every weight-bearing module a rule claims."""
        names = [
            n
            for n, m in network.named_modules()
            if isinstance(m, WEIGHT_MODULES) and "Positional" not in type(m).__name__
        ]
        claimed: dict[str, tuple[int, CompressionConfig]] = {}
        for index, rule in enumerate(self.rules):
            hits = [n for n in names if rule.matches(n)]
            if not hits:
                raise InputError(
                    f"plan {self.name} rule {index} ({rule.match}) matches no Linear/Conv1d/Embedding module"
                )
            fresh = [name for name in hits if name not in claimed]
            if not fresh:
                raise InputError(
                    f"plan {self.name} rule {index} ({rule.match}): every module it matches is "
                    "already claimed by an earlier rule (first match wins)"
                )
            for name in fresh:
                claimed[name] = (index, rule.config)
        return claimed


def _rule(data: Any, where: str) -> Rule:
    if not isinstance(data, dict) or "match" not in data:
        raise InputError(f"{where}: a rule is an object with 'match' and one method")
    match = data["match"]
    match = (match,) if isinstance(match, str) else match
    if not isinstance(match, (list, tuple)) or not match or not all(isinstance(m, str) for m in match):
        raise InputError(f"{where}: 'match' must be a name, 're:<regex>' or a list of them")
    for pattern in match:
        if pattern.startswith("re:"):
            try:
                re.compile(pattern[3:])
            except re.error as err:
                raise InputError(f"{where}: bad regex {pattern!r} ({err})") from None
    methods = [k for k in data if k != "match"]
    if len(methods) != 1:
        raise InputError(
            f"{where}: needs exactly one method, got {methods or 'none'} (conflicting entries: use one rule per method)"
        )
    return Rule(tuple(match), config_from_dict(methods[0], data[methods[0]], where))
