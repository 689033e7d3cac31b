"""The batched VM: runs one component function of many programs on many memories at once.

Layout and tricks follow what the prototype measured (VM_DESIGN.md §3-§6, design "c1"):
- Lanes. Lane b is one (program, task) pair; every per-lane array has the lane axis LAST, so each
  kernel is elementwise SIMD over lanes.
- Memory is a `Memory` of Python tuples of separate arrays (s_k `[B]`, v_k `[F, B]`,
  m_k `[F, F, B]`), never one stacked array: stacking made XLA recompute candidates per entry.
- Specialised op table. A `ComponentPlan` holds only the ops allowed in that component; per
  instruction the VM computes the candidate result of each allowed op, grouped by output kind, and
  picks one per kind with `select_n` (never by multiplying with one-hot masks, which turns inf into
  NaN in other lanes).
- Decode once per call, outside all loops: `[L, B]` int/float fields per component.
- `fori_loop` over slots with a deferred write (the previous slot's result is written at the start
  of the next iteration, so it is materialised once) and a carried decode (slot i+1's fields are
  sliced in iteration i, keeping dynamic slices out of the big fusion).
- Random ops use the stateless counter hash of `azjax.rng`, keyed by (lane seed, call, slot).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from azjax import ops as ops_lib
from azjax import rng
from azjax.kernels import KERNELS, PARTIAL_WRITE_OPS, Operands
from azjax.program import Component, ProgramSpec

Kind = ops_lib.Kind
_KINDS = (Kind.SCALAR, Kind.VECTOR, Kind.MATRIX)
_BANK = {Kind.SCALAR: "s", Kind.VECTOR: "v", Kind.MATRIX: "m"}


class Memory(NamedTuple):
    """VM memory for B lanes: scalars S x `[B]`, vectors V x `[F, B]`, matrices M x `[F, F, B]`."""

    scalars: tuple[jax.Array, ...]
    vectors: tuple[jax.Array, ...]
    matrices: tuple[jax.Array, ...]


def zeros_memory(spec: ProgramSpec, feature_size: int, num_lanes: int, dtype=jnp.float32) -> Memory:
    F, B = feature_size, num_lanes
    return Memory(
        tuple(jnp.zeros((B,), dtype) for _ in range(spec.num_scalars)),
        tuple(jnp.zeros((F, B), dtype) for _ in range(spec.num_vectors)),
        tuple(jnp.zeros((F, F, B), dtype) for _ in range(spec.num_matrices)),
    )


def memory_to_lanes(scalars, vectors, matrices) -> Memory:
    """From program-major arrays `[B, S]`, `[B, V, F]`, `[B, M, F, F]` to the lane-last `Memory`."""
    return Memory(
        tuple(scalars[:, k] for k in range(scalars.shape[1])),
        tuple(vectors[:, k].T for k in range(vectors.shape[1])),
        tuple(jnp.moveaxis(matrices[:, k], 0, -1) for k in range(matrices.shape[1])),
    )


def memory_from_lanes(mem: Memory) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The inverse of `memory_to_lanes`."""
    return (
        jnp.stack(mem.scalars, axis=1),
        jnp.stack([v.T for v in mem.vectors], axis=1),
        jnp.stack([jnp.moveaxis(m, -1, 0) for m in mem.matrices], axis=1),
    )


@dataclasses.dataclass(frozen=True)
class ComponentPlan:
    """Static plan of one component: its allowed ops grouped by output kind, and what they read.

    `groups[kind]` lists the op ids producing that kind; `operands` the (bank, role) pairs the
    allowed ops read, role 'a' = in1, 'b' = in2, 'o' = the output's old value (partial writes).
    """

    bank_sizes: tuple[int, int, int]
    groups: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    operands: tuple[tuple[str, str], ...]  # sorted: a stable trace, so the compile cache hits
    has_random: bool
    has_consts: bool

    @property
    def out_kinds(self) -> tuple[Kind, ...]:
        return tuple(k for k, g in zip(_KINDS, self.groups, strict=True) if g)


@functools.cache
def plan_component(spec: ProgramSpec, component: str) -> ComponentPlan:
    """Builds the static plan for `spec`'s `component` ('setup', 'predict' or 'learn')."""
    cs = spec.component(component)
    table = [ops_lib.OPS[i] for i in cs.valid_ops if i != ops_lib.NO_OP]
    operands = set()
    for op in table:
        for role, kind in (("a", op.in1), ("b", op.in2)):
            if kind != Kind.NONE:
                operands.add((_BANK[kind], role))
        if op.id in PARTIAL_WRITE_OPS:
            operands.add((_BANK[op.out], "o"))
    return ComponentPlan(
        bank_sizes=(spec.num_scalars, spec.num_vectors, spec.num_matrices),
        groups=tuple(tuple(op.id for op in table if op.out == k) for k in _KINDS),
        operands=tuple(sorted(operands)),
        has_random=any(op.is_random for op in table),
        has_consts=any(op.is_set_op for op in table),
    )


def field_names(plan: ComponentPlan) -> tuple[str, ...]:
    """The decoded per-slot fields of a plan, in their packed order (see `decode`)."""
    names = []
    for kind, group in zip(_KINDS, plan.groups, strict=True):
        if group:
            names.append(f"w_{_BANK[kind]}")
            if len(group) > 1:
                names.append(f"sel_{_BANK[kind]}")
    names += [f"{bank}{role}" for bank, role in plan.operands]
    if plan.has_consts:
        names += [f"c{j}" for j in range(ops_lib.NUM_CONSTS)]
    return tuple(names)


def decode(plan: ComponentPlan, component: Component, num_tasks: int) -> jax.Array:
    """Per-slot fields of a population's component, packed: int32 `[L, NF, B]`, lanes
    b = p * num_tasks + t, fields in `field_names(plan)` order (constants bitcast to int32).

    One packed array keeps the slot loop to one dynamic slice per step (one slice per field
    cost a thunk each on XLA:CPU). `component.code` is `[P, L, 4]`; padding rows are NO_OPs.
    """
    code = jnp.asarray(component.code)
    op, fields = code[..., 0], {"a": code[..., 1], "b": code[..., 2], "o": code[..., 3]}
    out_kind = jnp.asarray([o.out for o in ops_lib.OPS], jnp.int32)[op]
    dec = {}
    for kind, group in zip(_KINDS, plan.groups, strict=True):
        if not group:
            continue
        bank = _BANK[kind]
        dec[f"w_{bank}"] = jnp.where(out_kind == kind, fields["o"], -1)
        if len(group) > 1:
            local = np.zeros(ops_lib.NUM_OPS, np.int32)
            local[list(group)] = np.arange(len(group))
            dec[f"sel_{bank}"] = jnp.asarray(local)[op]
    for bank, role in plan.operands:
        size = plan.bank_sizes["svm".index(bank)]
        dec[f"{bank}{role}"] = jnp.clip(fields[role], 0, size - 1)
    if plan.has_consts:
        consts = jnp.asarray(component.consts, jnp.float32)
        for j in range(ops_lib.NUM_CONSTS):
            dec[f"c{j}"] = jax.lax.bitcast_convert_type(consts[..., j], jnp.int32)
    packed = jnp.stack([dec[name].astype(jnp.int32) for name in field_names(plan)], axis=-1)
    # [P, L, NF] -> [L, NF, P * T]: slot-major, lanes last.
    return jnp.repeat(jnp.transpose(packed, (1, 2, 0)), num_tasks, axis=2)


def _unpack(plan: ComponentPlan, cur: jax.Array) -> dict[str, jax.Array]:
    """One slot's packed fields `[NF, B]` as a dict of `[B]` arrays (constants as float32)."""
    out = {}
    for i, name in enumerate(field_names(plan)):
        out[name] = cur[i]
        if name.startswith("c"):
            out[name] = jax.lax.bitcast_convert_type(cur[i], jnp.float32)
    return out


def _select(index, bank):
    """bank[index] per lane, by `select_n` (never one-hot products: 0 * inf = NaN)."""
    if len(bank) == 1:
        return bank[0]
    return jax.lax.select_n(jnp.broadcast_to(index, bank[0].shape), *bank)


def _compute(plan: ComponentPlan, mem: Memory, cur: dict, key, feature_size: int):
    """The result of the current instruction in every lane, one array per output kind."""
    banks = {"s": mem.scalars, "v": mem.vectors, "m": mem.matrices}
    reads = {"s": {}, "v": {}, "m": {}}
    for bank, role in plan.operands:
        reads[bank][role] = _select(cur[f"{bank}{role}"], banks[bank])
    consts = tuple(cur.get(f"c{j}") for j in range(ops_lib.NUM_CONSTS))
    o = Operands(
        feature_size=feature_size,
        s=reads["s"],
        v=reads["v"],
        m=reads["m"],
        c=consts,
        key=key,
        dtype=mem.scalars[0].dtype,
    )
    new = []
    for kind, group in zip(_KINDS, plan.groups, strict=True):
        if not group:
            new.append(None)
            continue
        cands = [KERNELS[i](o).astype(o.dtype) for i in group]
        new.append(cands[0] if len(cands) == 1 else _select(cur[f"sel_{_BANK[kind]}"], cands))
    return tuple(new)


def _write(plan: ComponentPlan, mem: Memory, new, targets) -> Memory:
    """Writes each kind's result to its target address (-1 = none). s0 and v0 are never written."""
    banks = list(mem)
    for i, kind in enumerate(_KINDS):
        if new[i] is None:
            continue
        first = 0 if kind == Kind.MATRIX else 1
        banks[i] = tuple(
            x if k < first else jnp.where(targets[i] == k, new[i], x)
            for k, x in enumerate(banks[i])
        )
    return Memory(*banks)


def num_live_slots(component: Component) -> jax.Array:
    """int32 scalar: 1 + the last slot holding a non-NO_OP in any program (0 if all NO_OPs).

    The VM loops only that far: pruned and compacted programs skip their dead tail at run time,
    without a new compile.
    """
    op = jnp.asarray(component.code)[..., 0]
    slot = jnp.arange(1, op.shape[-1] + 1, dtype=jnp.int32)
    return jnp.max(jnp.where(op != ops_lib.NO_OP, slot, 0))


def run_component(
    plan: ComponentPlan, mem: Memory, dec: dict, *, seeds, call, feature_size: int, num_slots=None
):
    """Runs the slots of one component in every lane; returns the new memory.

    Args:
      dec: `decode` output, fields `[L, B]`.
      seeds: uint32 `[B]` lane seeds for the random ops; `call`: int32 scalar call number.
      num_slots: optional traced int32 bound (`num_live_slots`); slots past it must be NO_OPs.
    """
    if not plan.out_kinds:
        return mem
    L = dec.shape[0]
    targets_of = lambda d: tuple(d.get(f"w_{_BANK[k]}") for k in _KINDS)  # noqa: E731

    def step(i, mem, cur):
        key = rng.draw_key(seeds, call, i, xp=jnp) if plan.has_random else None
        cur = _unpack(plan, cur)
        return _compute(plan, mem, cur, key, feature_size), targets_of(cur)

    if L == 1:
        return _write(plan, mem, *step(0, mem, dec[0]))

    def body(i, carry):
        mem, (new, targets), cur = carry
        mem = _write(plan, mem, new, targets)
        pending = step(i, mem, cur)
        cur = jax.lax.dynamic_index_in_dim(dec, jnp.minimum(i + 1, L - 1), keepdims=False)
        return mem, pending, cur

    cur0 = _unpack(plan, dec[0])
    pending0 = (
        tuple(None if g is None else jnp.zeros_like(g) for g in _shapes_like(plan, mem)),
        tuple(None if t is None else jnp.full_like(t, -1) for t in targets_of(cur0)),
    )
    upper = L if num_slots is None else num_slots
    mem, pending, _ = jax.lax.fori_loop(0, upper, body, (mem, pending0, dec[0]))
    return _write(plan, mem, *pending)


def _shapes_like(plan: ComponentPlan, mem: Memory):
    return tuple(bank[0] if g else None for bank, g in zip(mem, plan.groups, strict=True))


@functools.partial(jax.jit, static_argnames=("spec", "component"))
def execute_component(
    spec: ProgramSpec, component: str, programs: Component, scalars, vectors, matrices, seeds, call
):
    """Runs one component of P programs, each on its own memory (program-major arrays).

    Args:
      programs: batched `Component` (code `[P, L, 4]`).
      scalars, vectors, matrices: `[P, S]`, `[P, V, F]`, `[P, M, F, F]` memories.
      seeds: uint32 `[P]`; call: int32 call number.
    Returns: the new (scalars, vectors, matrices).
    """
    plan = plan_component(spec, component)
    mem = memory_to_lanes(scalars, vectors, matrices)
    dec = decode(plan, programs, 1)
    mem = run_component(plan, mem, dec, seeds=seeds, call=call, feature_size=vectors.shape[-1])
    return memory_from_lanes(mem)


def execute_component_single(
    spec, component, program: Component, scalars, vectors, matrices, seed, call
):
    """`execute_component` for ONE program on ONE memory (`[S]`, `[V, F]`, `[M, F, F]`).

    Composable: works under `jax.vmap` (over programs and/or memories) and `jax.jit`.
    """
    batched = jax.tree_util.tree_map(
        lambda x: jnp.asarray(x)[None], (program, scalars, vectors, matrices)
    )
    plan = plan_component(spec, component)
    mem = memory_to_lanes(*batched[1:])
    dec = decode(plan, batched[0], 1)
    mem = run_component(
        plan,
        mem,
        dec,
        seeds=jnp.asarray(seed, jnp.uint32)[None],
        call=call,
        feature_size=vectors.shape[-1],
    )
    return tuple(x[0] for x in memory_from_lanes(mem))
