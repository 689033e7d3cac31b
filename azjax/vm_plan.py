"""The VM's static side: which ops a component computes and how, and its programs decoded.

`plan_component` groups a component's allowed ops (`ComponentPlan`): a dense group computed on
every lane and the compacted groups of `COMPACT_GROUPS` (design c2, `azjax.compaction`).
`decode` turns a population's component into what the slot loop reads: one packed int32 array
`[L, NF, P]` of per-slot program fields (one dynamic slice per slot; one slice per field cost a
thunk each on XLA:CPU), plus the compacted groups' per-slot program lists. `azjax.vm` runs them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from azjax import compaction
from azjax import ops as ops_lib
from azjax.kernels import PARTIAL_WRITE_OPS, neg_zero
from azjax.program import Component, ProgramSpec

Kind = ops_lib.Kind
KINDS = (Kind.SCALAR, Kind.VECTOR, Kind.MATRIX)
BANK = {Kind.SCALAR: "s", Kind.VECTOR: "v", Kind.MATRIX: "m"}


class OpGroup(NamedTuple):
    """Ops computed together: their ids per output kind (S, V, M) and the operands they read.

    `fraction`: for a compacted group, the round capacity as a fraction of the programs (see
    `azjax.compaction`); None for the dense group, computed on every lane.
    """

    name: str
    kinds: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    operands: tuple[tuple[str, str], ...]  # sorted: a stable trace, so the compile cache hits
    has_random: bool
    has_consts: bool
    fraction: float | None = None


# Compacted groups (docs/vm.md, design c2): (name, ops, capacity fraction). An op belongs to
# the first group listing it; ops in none are dense. Random ops (a hash and erfinv per element and
# lane) and the scalar transcendentals are costly and rare per slot. The matrix draws have a group
# of their own: a group scatters each of its kinds back every round, and F x F values per lane
# cost most (one random group: 604 cand/s; split: 672, full op set, one core, P = 128). Matrix
# ops stay dense: their compacted [F, F] kernels lost the lane vectorization (module docstring).
_RANDOM_OPS = frozenset(op.id for op in ops_lib.OPS if op.is_random)
_MATRIX_RANDOM_OPS = frozenset(i for i in _RANDOM_OPS if ops_lib.OPS[i].out == Kind.MATRIX)
_TRANSCENDENTAL_OPS = frozenset(
    ops_lib.op_ids(
        ("SCALAR_SIN_OP", "SCALAR_COS_OP", "SCALAR_TAN_OP", "SCALAR_ARCSIN_OP")
        + ("SCALAR_ARCCOS_OP", "SCALAR_ARCTAN_OP", "SCALAR_EXP_OP", "SCALAR_LOG_OP")
    )
)
COMPACT_GROUPS = (
    ("random_m", _MATRIX_RANDOM_OPS, 1 / 16),
    ("random", _RANDOM_OPS, 1 / 16),
    ("transcendental", _TRANSCENDENTAL_OPS, 1 / 8),
)


def _op_group(name: str, op_ids, fraction=None) -> OpGroup:
    table = [ops_lib.OPS[i] for i in sorted(op_ids)]
    operands = set()
    for op in table:
        for role, kind in (("a", op.in1), ("b", op.in2)):
            if kind != Kind.NONE:
                operands.add((BANK[kind], role))
        if op.id in PARTIAL_WRITE_OPS:
            operands.add((BANK[op.out], "o"))
    return OpGroup(
        name=name,
        kinds=tuple(tuple(op.id for op in table if op.out == k) for k in KINDS),
        operands=tuple(sorted(operands)),
        has_random=any(op.is_random for op in table),
        has_consts=any(op.is_set_op for op in table),
        fraction=fraction,
    )


@dataclasses.dataclass(frozen=True)
class ComponentPlan:
    """Static plan of one component: its allowed ops grouped by output kind, and what they read.

    `groups[kind]` lists the op ids producing that kind; `operands` the (bank, role) pairs the
    allowed ops read, role 'a' = in1, 'b' = in2, 'o' = the output's old value (partial writes).
    `dense` is the group of ops computed on every lane, `compact` the compacted groups.
    """

    bank_sizes: tuple[int, int, int]
    groups: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    operands: tuple[tuple[str, str], ...]
    has_random: bool
    has_consts: bool
    dense: OpGroup
    compact: tuple[OpGroup, ...]

    @property
    def out_kinds(self) -> tuple[Kind, ...]:
        return tuple(k for k, g in zip(KINDS, self.groups, strict=True) if g)


@functools.cache
def plan_component(spec: ProgramSpec, component: str, compact: bool = True) -> ComponentPlan:
    """Builds the static plan for `spec`'s `component` ('setup', 'predict' or 'learn').

    `compact=False` computes every op on every lane (design c1; for tests and benchmarks).
    """
    valid = [i for i in spec.component(component).valid_ops if i != ops_lib.NO_OP]
    everything = _op_group("all", valid)
    groups, rest = [], set(valid)
    for name, members, fraction in COMPACT_GROUPS if compact else ():
        if rest & members:
            groups.append(_op_group(name, rest & members, fraction))
            rest -= members
    return ComponentPlan(
        bank_sizes=(spec.num_scalars, spec.num_vectors, spec.num_matrices),
        groups=everything.kinds,
        operands=everything.operands,
        has_random=everything.has_random,
        has_consts=everything.has_consts,
        dense=_op_group("dense", rest),
        compact=tuple(groups),
    )


CONSTS = tuple(f"c{j}" for j in range(ops_lib.NUM_CONSTS))
NEG_ZERO = "neg_zero"  # kernels.neg_zero of the slot's op, for the barrier Operands.rounded.
_FLOAT_FIELDS = frozenset(CONSTS + (NEG_ZERO,))


def sel_name(group: OpGroup, kind: Kind) -> str:
    return f"sel_{BANK[kind]}" if group.fraction is None else f"{group.name}_{BANK[kind]}"


def field_names(plan: ComponentPlan) -> tuple[str, ...]:
    """The decoded per-slot fields of a plan, in their packed order (see `decode`)."""
    names = [f"w_{BANK[k]}" for k, g in zip(KINDS, plan.groups, strict=True) if g]
    for group in (plan.dense, *plan.compact):
        names += [sel_name(group, k) for k, g in zip(KINDS, group.kinds, strict=True) if len(g) > 1]
    names += [f"{bank}{role}" for bank, role in plan.operands]
    if plan.has_consts:
        names += list(CONSTS)
    return tuple(names) + (NEG_ZERO,)


class Decoded(NamedTuple):
    """`decode`'s output. fields: int32 `[L, NF, P]`; lists: int32 `[L, G, 2 P + 1]`, per slot
    and compacted group the `azjax.compaction.program_lists` row (None without groups)."""

    fields: jax.Array
    lists: jax.Array | None


def decode(plan: ComponentPlan, component: Component) -> Decoded:
    """Per-slot fields of a population's component, packed: int32 `[L, NF, P]`, fields in
    `field_names(plan)` order (constants bitcast to int32), and the compacted groups' program
    lists. Fields are per program: the VM broadcasts them over the tasks.

    One packed array keeps the slot loop to one dynamic slice per step (one slice per field
    cost a thunk each on XLA:CPU). `component.code` is `[P, L, 4]`; padding rows are NO_OPs.
    """
    code = jnp.asarray(component.code)
    op, fields = code[..., 0], {"a": code[..., 1], "b": code[..., 2], "o": code[..., 3]}
    out_kind = jnp.asarray([o.out for o in ops_lib.OPS], jnp.int32)[op]
    dec = {}
    for kind, group in zip(KINDS, plan.groups, strict=True):
        if group:
            dec[f"w_{BANK[kind]}"] = jnp.where(out_kind == kind, fields["o"], -1)
    for group in (plan.dense, *plan.compact):
        for kind, ids in zip(KINDS, group.kinds, strict=True):
            if len(ids) > 1:
                local = np.zeros(ops_lib.NUM_OPS, np.int32)
                local[list(ids)] = np.arange(len(ids))
                dec[sel_name(group, kind)] = jnp.asarray(local)[op]
    for bank, role in plan.operands:
        size = plan.bank_sizes["svm".index(bank)]
        dec[f"{bank}{role}"] = jnp.clip(fields[role], 0, size - 1)
    if plan.has_consts:
        consts = jnp.asarray(component.consts, jnp.float32)
        for j, name in enumerate(CONSTS):
            dec[name] = jax.lax.bitcast_convert_type(consts[..., j], jnp.int32)
    dec[NEG_ZERO] = jax.lax.bitcast_convert_type(neg_zero(op), jnp.int32)
    packed = jnp.stack([dec[name].astype(jnp.int32) for name in field_names(plan)], axis=-1)
    packed = jnp.transpose(packed, (1, 2, 0))  # [P, L, NF] -> [L, NF, P]: slot-major.
    lists = None
    if plan.compact:
        member = [jnp.isin(op, jnp.asarray(sum(g.kinds, ()))) for g in plan.compact]
        lists = jnp.stack([compaction.program_lists(m) for m in member], axis=1)
    return Decoded(packed, lists)


def unpack(plan: ComponentPlan, cur: jax.Array, names=None) -> dict[str, jax.Array]:
    """One slot's packed fields `[NF, P]` as a dict of `[P]` arrays (constants and the
    `NEG_ZERO` field as float32).

    `names`: the fields `cur` holds, in order (default: all of `field_names(plan)`).
    """
    out = {}
    for i, name in enumerate(field_names(plan) if names is None else names):
        out[name] = cur[i]
        if name in _FLOAT_FIELDS:
            out[name] = jax.lax.bitcast_convert_type(cur[i], jnp.float32)
    return out


def num_live_slots(component: Component) -> jax.Array:
    """int32 scalar: 1 + the last slot holding a non-NO_OP in any program (0 if all NO_OPs).

    The VM loops only that far: pruned and compacted programs skip their dead tail at run time,
    without a new compile.
    """
    op = jnp.asarray(component.code)[..., 0]
    slot = jnp.arange(1, op.shape[-1] + 1, dtype=jnp.int32)
    return jnp.max(jnp.where(op != ops_lib.NO_OP, slot, 0))
