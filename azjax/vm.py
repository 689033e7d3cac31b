"""The batched VM: runs one component function of many programs on many memories at once.

Layout and tricks follow what the prototype measured (docs/vm.md, design "c1"):
- Lanes. A lane is one (task, program) pair; every per-lane array ends in the two lane axes
  `[T, P]`, programs LAST, so each kernel is elementwise SIMD over programs, and whatever is per
  program (the decoded instruction fields, constants, write targets) is a `[P]` array that
  broadcasts over the tasks inside the fused kernels. Decoding per lane instead (`[T * P]`) made
  the decode's slices and loop-carried copies about 40% of a slot's memory traffic.
- Memory is a `Memory` of Python tuples of separate arrays (s_k `[T, P]`, v_k `[F, T, P]`,
  m_k `[F, F, T, P]`), never one stacked array: stacking made XLA recompute candidates per entry.
- Specialised op table. A `ComponentPlan` holds only the ops allowed in that component; per
  instruction the VM computes the candidate result of each allowed op, grouped by output kind, and
  picks one per kind with `select_n` (never by multiplying with one-hot masks, which turns inf into
  NaN in other lanes).
- Decode once per call, outside all loops (`azjax.vm_plan`): one packed `[L, NF, P]` array.
- `fori_loop` over slots with a deferred write (the previous slot's result is written at the start
  of the next iteration, so it is materialised once) and a carried decode (slot i+1's fields are
  sliced in iteration i, keeping dynamic slices out of the big fusion).
- Random ops use the stateless counter hash of `azjax.rng`, keyed by (lane seed, call, slot).
- Compaction (design "c2", `azjax.compaction`): the groups of `COMPACT_GROUPS` (random-init ops,
  scalar transcendentals) are computed only on the lanes whose program uses them at that slot,
  in rounds of a static capacity, so no lane is ever dropped and an unused group costs nothing.
  Measured (1 core, P=128 x T=10, full op set): 635 -> 350 ms per call. Compacting the matrix
  ops as well was slower than computing them densely (365 vs 170 ms): XLA:CPU lays the gathered
  operands out lanes-major, which kills the lane vectorization of their [F, F] kernels. A group
  gathers its operands after selecting them on all lanes (one gather per operand, not per bank
  entry): XLA:CPU's gather and scatter move one element at a time, ~1.3 ns each.
- Compiled with `COMPILER_OPTIONS` (512-bit vectors) by its callers on CPU; see that constant.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from azjax import compaction, rng
from azjax import ops as ops_lib
from azjax.kernels import KERNELS, PARTIAL_WRITE_OPS, Operands
from azjax.program import Component, Instruction, ProgramSpec
from azjax.vm_plan import (
    BANK,
    CONSTS,
    KINDS,
    NEG_ZERO,
    ComponentPlan,
    Decoded,
    OpGroup,
    decode,
    field_names,
    plan_component,
    sel_name,
    unpack,
)

Kind = ops_lib.Kind

# XLA:CPU options for the VM calls of `azjax.search` and `azjax.scoring` (on CPU meshes: a
# top-level jit; jax.jit refuses options on a nested jit, so the public `execute_component` and
# `evaluation.evaluate_lanes` take none and stay composable). 512-bit vectors: the slot loop's
# fused kernels are elementwise over lanes, and on this AVX-512 machine they ran 1.2x faster on
# the full op set (XLA's default is 256). One casualty: XLA:CPU's vectorized atan is WRONG at that
# width (jaxlib 0.10.2), so the VM never calls jnp.arctan; `kernels.atan` stands in, and a test
# checks that these options change no bit of any op's result.
COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512}


class Memory(NamedTuple):
    """VM memory for lanes `[T, P]`: scalars S x `[T, P]`, vectors V x `[F, T, P]`, matrices
    M x `[F, F, T, P]`."""

    scalars: tuple[jax.Array, ...]
    vectors: tuple[jax.Array, ...]
    matrices: tuple[jax.Array, ...]


def zeros_memory(spec: ProgramSpec, feature_size: int, lanes: tuple[int, int], dtype=jnp.float32):
    """A zeroed `Memory` for lanes `(T, P)`."""
    F = feature_size
    return Memory(
        tuple(jnp.zeros(lanes, dtype) for _ in range(spec.num_scalars)),
        tuple(jnp.zeros((F, *lanes), dtype) for _ in range(spec.num_vectors)),
        tuple(jnp.zeros((F, F, *lanes), dtype) for _ in range(spec.num_matrices)),
    )


def memory_to_lanes(scalars, vectors, matrices) -> Memory:
    """From program-major arrays `[P, S]`, `[P, V, F]`, `[P, M, F, F]` (one memory per program)
    to the lane-last `Memory` of lanes `(1, P)`."""
    lanes = lambda x: jnp.moveaxis(x, 0, -1)[..., None, :]  # noqa: E731  [P, ...] -> [..., 1, P]
    return Memory(
        tuple(lanes(scalars[:, k]) for k in range(scalars.shape[1])),
        tuple(lanes(vectors[:, k]) for k in range(vectors.shape[1])),
        tuple(lanes(matrices[:, k]) for k in range(matrices.shape[1])),
    )


def memory_from_lanes(mem: Memory) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The inverse of `memory_to_lanes`."""
    programs = lambda x: jnp.moveaxis(x[..., 0, :], -1, 0)  # noqa: E731
    return tuple(jnp.stack([programs(x) for x in bank], axis=1) for bank in mem)


def _select(index, bank):
    """bank[index] per lane, by `select_n` (never one-hot products: 0 * inf = NaN)."""
    if len(bank) == 1:
        return bank[0]
    return jax.lax.select_n(jnp.broadcast_to(index, bank[0].shape), *bank)


def _reads(group: OpGroup, banks: dict, cur: dict) -> dict:
    """The group's operands: per bank ('s', 'v', 'm') and role, the selected bank entry of lanes
    `[..., T, P]`; `cur` holds the per-program fields `[P]`."""
    reads = {"s": {}, "v": {}, "m": {}}
    for bank, role in group.operands:
        reads[bank][role] = _select(cur[f"{bank}{role}"], banks[bank])
    return reads


def _compute(group: OpGroup, reads: dict, cur: dict, key, lanes, feature_size: int, dtype):
    """The result of the current instruction for the group's ops, one array per output kind
    (None where the group has no op of that kind). `reads`: `_reads` of lanes `lanes` = (T, P);
    `cur` holds the per-program fields `[P]`."""
    o = Operands(
        feature_size=feature_size,
        s=reads["s"],
        v=reads["v"],
        m=reads["m"],
        c=tuple(None if name not in cur else jnp.broadcast_to(cur[name], lanes) for name in CONSTS),
        key=key,
        dtype=dtype,
        ops={
            kind: (ids, cur[sel_name(group, kind)] if len(ids) > 1 else None)
            for kind, ids in zip(KINDS, group.kinds, strict=True)
        },
        zero=cur[NEG_ZERO],
    )
    new = []
    for kind, ids in zip(KINDS, group.kinds, strict=True):
        cands = [KERNELS[i](o).astype(dtype) for i in ids]
        if len(cands) > 1:
            cands = [_select(cur[sel_name(group, kind)], cands)]
        new.append(cands[0] if cands else None)
    return tuple(new)


def _write(plan: ComponentPlan, mem: Memory, new, targets) -> Memory:
    """Writes each kind's result to its target address (-1 = none). s0 and v0 are never written."""
    banks = list(mem)
    for i, kind in enumerate(KINDS):
        if new[i] is None:
            continue
        first = 0 if kind == Kind.MATRIX else 1
        banks[i] = tuple(
            x if k < first else jnp.where(targets[i] == k, new[i], x)
            for k, x in enumerate(banks[i])
        )
    return Memory(*banks)


def run_component(
    plan: ComponentPlan,
    mem: Memory,
    dec: Decoded,
    *,
    seeds,
    call,
    feature_size: int,
    num_slots=None,
):
    """Runs the slots of one component in every lane; returns the new memory.

    Args:
      mem: lanes `(T, P)`; dec: `decode` output for the P programs.
      seeds: uint32 `[T, P]` lane seeds for the random ops; `call`: int32 scalar call number.
      num_slots: optional traced int32 bound (`num_live_slots`); slots past it must be NO_OPs.
    """
    if not plan.out_kinds:
        return mem
    fields, lists = dec
    L = fields.shape[0]
    names = field_names(plan)
    dtype = mem.scalars[0].dtype
    targets_of = lambda d: tuple(d.get(f"w_{BANK[k]}") for k in KINDS)  # noqa: E731

    def step(i, mem, cur, cur_lists):
        banks = {"s": mem.scalars, "v": mem.vectors, "m": mem.matrices}
        d = unpack(plan, cur)
        key = rng.draw_key(seeds, call, i, xp=jnp) if plan.dense.has_random else None
        reads = _reads(plan.dense, banks, d)
        new = _compute(plan.dense, reads, d, key, mem.scalars[0].shape, feature_size, dtype)
        # Kinds produced by compacted ops only start from zeros (other lanes do not write them).
        new = tuple(
            jnp.zeros_like(bank[0]) if n is None and g else n
            for n, g, bank in zip(new, plan.groups, mem, strict=True)
        )

        def lane_key(programs):  # The draw keys of the listed programs' lanes.
            return rng.draw_key(compaction.gather(seeds, programs), call, i, xp=jnp)

        for g, row in zip(plan.compact, [] if cur_lists is None else cur_lists, strict=True):
            reads = _reads(g, banks, d)
            new = _run_group(g, reads, cur, names, row, new, lane_key, feature_size, dtype)
        return new, targets_of(d)

    if L == 1:
        return _write(plan, mem, *step(0, mem, fields[0], None if lists is None else lists[0]))

    def at(x, i):
        return None if x is None else jax.lax.dynamic_index_in_dim(x, i, keepdims=False)

    def body(i, carry):
        mem, (new, targets), cur, cur_lists = carry
        mem = _write(plan, mem, new, targets)
        pending = step(i, mem, cur, cur_lists)
        nxt = jnp.minimum(i + 1, L - 1)
        return mem, pending, at(fields, nxt), at(lists, nxt)

    cur0 = unpack(plan, fields[0])
    pending0 = (
        tuple(None if g is None else jnp.zeros_like(g) for g in _shapes_like(plan, mem)),
        tuple(None if t is None else jnp.full_like(t, -1) for t in targets_of(cur0)),
    )
    upper = L if num_slots is None else num_slots
    init = (mem, pending0, fields[0], at(lists, 0))
    mem, pending, _, _ = jax.lax.fori_loop(0, upper, body, init)
    return _write(plan, mem, *pending)


def run_fixed(
    instructions: tuple[Instruction, ...], mem: Memory, *, seeds, call, feature_size: int
) -> Memory:
    """Runs a frozen component's fixed instructions (`ComponentSpec.fixed`) in every lane, as
    straight-line code: static addresses and only the ops they use, where `run_component` reads
    by per-lane selects and computes every allowed op. Same semantics, draws and rounding.

    Args: as `run_component` (`mem` of lanes `(T, P)`, `seeds` uint32 `[T, P]`, `call` int32).
    """
    banks = [list(bank) for bank in mem]
    dtype, lanes = mem.scalars[0].dtype, mem.scalars[0].shape
    # The FMA barrier's -0.0 (`Operands.rounded`), from a value the compiler cannot bound; also
    # added to the constants (x + -0.0 is x), which XLA would otherwise fold into later ops.
    zero = jnp.where(jnp.asarray(call) < 0, 0.0, -0.0).astype(dtype)
    for slot, ins in enumerate(instructions):
        op = ops_lib.OPS[ins.op]
        if ins.op == ops_lib.NO_OP or ins.out < (0 if op.out == Kind.MATRIX else 1):
            continue  # s0 and v0 are never written.
        result = apply_op(
            ins.op,
            banks,
            ins.in1,
            ins.in2,
            ins.out,
            consts=tuple(jnp.full(lanes, np.float32(c), dtype) + zero for c in _padded(ins.consts)),
            key=rng.draw_key(seeds, call, slot, xp=jnp) if op.is_random else None,
            zero=zero,
            feature_size=feature_size,
            dtype=dtype,
        )
        banks[KINDS.index(op.out)][ins.out] = result
    return Memory(*(tuple(bank) for bank in banks))


def apply_op(op_id: int, banks, in1, in2, out, *, consts, key, zero, feature_size: int, dtype):
    """The result of one op, known statically, on the operands its fields address: `banks` holds
    the scalar, vector and matrix entries (indexable by address, a Python int or a traced
    scalar); `consts` the three constants, `key` the draw keys (random ops), `zero` the FMA
    barrier's -0.0 (`Operands.rounded`). For straight-line code and the naive switch VM."""
    op = ops_lib.OPS[op_id]
    reads = {"s": {}, "v": {}, "m": {}}
    for role, kind, addr in (("a", op.in1, in1), ("b", op.in2, in2)):
        if kind != Kind.NONE:
            reads[BANK[kind]][role] = banks[KINDS.index(kind)][addr]
    if op_id in PARTIAL_WRITE_OPS:
        reads[BANK[op.out]]["o"] = banks[KINDS.index(op.out)][out]
    o = Operands(
        feature_size=feature_size,
        s=reads["s"],
        v=reads["v"],
        m=reads["m"],
        c=consts,
        key=key,
        dtype=dtype,
        ops=op_id,
        zero=zero,
    )
    return KERNELS[op_id](o).astype(dtype)


def _padded(consts) -> tuple[float, ...]:
    return tuple(consts) + (0.0,) * (ops_lib.NUM_CONSTS - len(consts))


def _shapes_like(plan: ComponentPlan, mem: Memory):
    return tuple(bank[0] if g else None for bank, g in zip(mem, plan.groups, strict=True))


def _run_group(g: OpGroup, reads, cur, names, row, new, lane_key, feature_size, dtype):
    """Computes group g on the lanes of its listed programs (in rounds) and scatters the results
    into `new`. `reads`: the group's `_reads` on all lanes (the dense group computes the same
    selects anyway), of which only the listed programs' lanes are gathered, not whole banks;
    `cur`: this slot's packed fields `[NF, P]` (`names`); `row`: its `program_lists` row;
    `lane_key(programs)`: the draw keys `[T, cap]` of those programs' lanes."""
    wanted = {sel_name(g, k) for k in KINDS} | {NEG_ZERO} | (set(CONSTS) if g.has_consts else set())
    sub_names = tuple(n for n in names if n in wanted)
    sub_fields = cur[np.asarray([names.index(n) for n in sub_names], np.int32)]

    def one_round(programs, new):
        sub = unpack(None, compaction.gather(sub_fields, programs), sub_names)
        sub_reads = {
            b: {r: compaction.gather(x, programs) for r, x in rs.items()} for b, rs in reads.items()
        }
        key = lane_key(programs)  # Unused (and dropped by XLA) without random ops.
        vals = _compute(
            g, sub_reads, sub, key if g.has_random else None, key.shape, feature_size, dtype
        )
        return tuple(
            n if v is None else compaction.scatter(n, programs, v)
            for n, v in zip(new, vals, strict=True)
        )

    cap = compaction.capacity(cur.shape[-1], g.fraction)
    return compaction.for_each_round(row, cap, one_round, new)


@functools.partial(jax.jit, static_argnames=("spec", "component", "compact"))
def execute_component(
    spec: ProgramSpec,
    component: str,
    programs: Component,
    scalars,
    vectors,
    matrices,
    seeds,
    call,
    compact: bool = True,
):
    """Runs one component of P programs, each on its own memory (program-major arrays).

    Args:
      programs: batched `Component` (code `[P, L, 4]`).
      scalars, vectors, matrices: `[P, S]`, `[P, V, F]`, `[P, M, F, F]` memories.
      seeds: uint32 `[P]`; call: int32 call number.
      compact: False computes every op on every lane (no compaction; see `plan_component`).
    Returns: the new (scalars, vectors, matrices).
    """
    plan = plan_component(spec, component, compact)
    mem = memory_to_lanes(scalars, vectors, matrices)
    dec = decode(plan, programs)
    seeds = jnp.asarray(seeds, jnp.uint32)[None]
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
    dec = decode(plan, batched[0])
    mem = run_component(
        plan,
        mem,
        dec,
        seeds=jnp.asarray(seed, jnp.uint32).reshape(1, 1),
        call=call,
        feature_size=vectors.shape[-1],
    )
    return tuple(x[0] for x in memory_from_lanes(mem))
