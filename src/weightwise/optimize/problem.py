"""From the sensitivity table and a device profile to the planner's `Problem`, and back to a profile.

Energy per (group, candidate) is the profiler's own arithmetic (`profile.energy.tensor_profiles`)
applied to the candidate's traced tensors, once with every tensor streamed from DRAM and once with
every tensor resident; the planner re-solves the on-chip placement for each choice it considers.
Whatever the profiler charges beyond weight tensors (attention MACs, key/value-cache and activation
traffic) enters as the constants `extra_j` and `extra_offchip_bytes`, measured from `analyze()` on the all-keep model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from weightwise.compress.candidates import Candidate, CandidateSpace, Group
from weightwise.compress.costs import with_tensors
from weightwise.compress.planner import Item, Option, Problem
from weightwise.compress.sensitivity import Entry
from weightwise.models.runtime import RuntimeSettings
from weightwise.profile.device import DeviceSpec
from weightwise.profile.energy import tensor_profiles
from weightwise.profile.profile import ModelProfile, analyze
from weightwise.profile.trace import TensorTrace, Trace


def items_of(tensors: tuple[TensorTrace, ...], base: Trace, device: DeviceSpec) -> tuple[Item, ...]:
    """Planner items (streamed and resident energy, size, bytes read per audio-s) of traced tensors."""
    if not tensors:
        return ()
    sub = dataclasses.replace(base, tensors=tuple(tensors))
    streamed = tensor_profiles(sub, device, set())
    resident = tensor_profiles(sub, device, set(range(len(tensors))))
    return tuple(
        Item(t.nbytes, s.energy_j_per_audio_s, r.energy_j_per_audio_s, s.bytes_read_per_audio_s)
        for t, s, r in zip(tensors, streamed, resident, strict=True)
    )


def dominated_on(device: DeviceSpec, base: Trace):
    """`skip` for the sensitivity sweep: a candidate with at least keep's bytes and at least keep's
    energy both streamed and resident is never worth its accuracy pass on this device."""

    def skip(group: Group, keep: tuple[TensorTrace, ...], tensors: tuple[TensorTrace, ...]) -> bool:
        k, c = items_of(keep, base, device), items_of(tensors, base, device)
        return (
            sum(i.nbytes for i in c) >= sum(i.nbytes for i in k)
            and sum(i.dram_j for i in c) >= sum(i.dram_j for i in k)
            and sum(i.onchip_j for i in c) >= sum(i.onchip_j for i in k)
        )

    return skip


@dataclass(frozen=True)
class Table:
    """Everything the planner and the reports need, device-independent."""

    base: Trace  # the reference trace (float32 model on the calibration audio)
    groups: tuple[Group, ...]  # every weight group of the model
    planned: tuple[Group, ...]  # the ones the candidate space may change
    space: CandidateSpace
    entries: dict  # (group name, candidate key) -> Entry
    runtime: RuntimeSettings | None = None  # the plan's runtime settings (priced by `analyze`)

    def energy_options(self) -> dict:
        """`analyze`'s cache/activation options under the runtime settings."""
        rt = self.runtime
        return {
            "kv_dtype": rt.kv_precision if rt else None,
            "act_dtype": rt.activation_precision if rt else None,
            "fused_attention": bool(rt and rt.fused_attention),
        }

    def fixed_tensors(self) -> tuple[TensorTrace, ...]:
        """Traced tensors no candidate touches (norms, positions, biases of untouched modules)."""
        claimed = {m for g in self.groups for m in g.modules}
        return tuple(t for t in self.base.tensors if not set(t.users) & claimed)

    def entry(self, group: Group, candidate: Candidate) -> Entry | None:
        return self.entries.get((group.name, candidate.key))

    def usable(self, group: Group) -> list[tuple[Candidate, Entry]]:
        """keep, then the candidates that apply to `group` and have an accuracy score."""
        out = [(self.space.keep, self.entry(group, self.space.keep))]
        if group in self.planned:
            for c in self.space.candidates:
                e = self.entry(group, c)
                if e is not None and e.applicable and e.kl is not None:
                    out.append((c, e))
        return out

    def tensors_for(self, assignment: dict[Group, Candidate]) -> list[tuple[TensorTrace, ...]]:
        """Each group's traced tensors under `assignment` (groups not in it keep)."""
        return [self.entry(g, assignment.get(g, self.space.keep)).tensors for g in self.groups]

    def trace_for(self, assignment: dict[Group, Candidate]) -> Trace:
        return with_tensors(self.base, self.fixed_tensors(), self.tensors_for(assignment))

    def kl_sum(self, assignment: dict[Group, Candidate]) -> float | None:
        """Sum of the chosen candidates' KL (nats per token); None if one has no score."""
        kls = [self.entry(g, c).kl for g, c in assignment.items()]
        return None if any(k is None for k in kls) else float(sum(kls))


def uniform_assignment(table: Table, candidate: Candidate) -> dict[Group, Candidate]:
    """`candidate` on every group where it applies (scored or not), keep elsewhere."""
    out = {}
    for g in table.groups:
        e = table.entry(g, candidate)
        out[g] = candidate if e is not None and e.applicable else table.space.keep
    return out


def build_problem(
    table: Table, device: DeviceSpec, alpha_points_per_nat: float
) -> tuple[Problem, list[list[Candidate]]]:
    """The planner's problem (predicted WER cost = alpha x KL, in points) and, per planned group,
    the candidate behind each option index."""
    keep_all = {g: table.space.keep for g in table.groups}
    unplanned = [t for g in table.groups if g not in table.planned for t in table.entry(g, table.space.keep).tensors]
    fixed = table.fixed_tensors() + tuple(unplanned)
    full = analyze(table.trace_for(keep_all), device, **table.energy_options())
    extra = full.energy_j_per_audio_s - sum(r.energy_j_per_audio_s for r in full.tensors)
    # key/value-cache and activation traffic: its own budget, so independent of the weights' placement
    extra_offchip = full.offchip_bytes_per_audio_s - sum(
        r.bytes_read_per_audio_s for r in full.tensors if r.placement == "dram"
    )
    options, behind = [], []
    for g in table.planned:
        usable = table.usable(g)
        options.append(
            tuple(
                Option(c.label, alpha_points_per_nat * e.kl, items_of(e.tensors, table.base, device)) for c, e in usable
            )
        )
        behind.append([c for c, _ in usable])
    problem = Problem(
        tuple(g.name for g in table.planned),
        tuple(options),
        items_of(fixed, table.base, device),
        int(device.onchip_weight_bytes),
        extra,
        extra_offchip,
    )
    return problem, behind


def assignment_of(table: Table, behind: list[list[Candidate]], choice: tuple[int, ...]) -> dict[Group, Candidate]:
    chosen = {g: behind[i][o] for i, (g, o) in enumerate(zip(table.planned, choice, strict=True))}
    return {g: chosen.get(g, table.space.keep) for g in table.groups}


def predict(table: Table, assignment: dict[Group, Candidate], device: DeviceSpec) -> ModelProfile:
    """The profile a plan would get on the calibration audio (placement re-solved by `analyze`)."""
    return dataclasses.replace(analyze(table.trace_for(assignment), device, **table.energy_options()), plan="predicted")
