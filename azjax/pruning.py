"""Dead-code elimination and structural hashing of programs (host side, NumPy).

Mutated populations carry much code that cannot reach the prediction. `prune` replaces every such
instruction by an all-zero NO_OP row *in place* (slot positions are kept: the random-init ops draw
from a counter hash keyed by slot, `azjax.rng`, so moving an instruction would change its draws)
and `program_hashes` fingerprints the pruned code so that a child identical to an already scored
program can reuse its score. Nothing here exists in the original; it is a pure work-avoidance step
whose result must be exactly as fit as its input (tests/test_pruning.py checks that).

Liveness (per address of the scalar, vector and matrix banks) follows the execution pattern of one
task evaluation, docs/ops.md: Setup ; (Predict ; Learn)* ; Predict* with memory
persisting throughout (and several epochs repeating the loop). The component-level flow graph is

    Setup -> Predict,   Predict -> {Learn, Predict, end},   Learn -> Predict

and s1 is read by the harness after every Predict. The harness writes s0 (0 or the label) and v0
(the features) before every Predict and Learn, so s0/v0 are never live across a component
boundary. Hence, with in(C) the live-in set of component C and `~` removing s0 and v0:

    out(Predict) = {s1} | ~in(Learn) | ~in(Predict)
    out(Learn)   = ~in(Predict)
    out(Setup)   = ~in(Predict)

solved by iterating to a fixed point (the sets only grow). An instruction is live when its output
address is live after it; a live instruction makes its inputs live and kills its output, except
VECTOR_CONST_SET / MATRIX_CONST_SET, which write one element and keep the rest (their output is
also an input). The classification sigmoid that overwrites s1 before Learn is a read of s1 by the
harness, already covered by s1 being live after Predict.

This runs on the search's hot path, vectorized over the population: each live set is a bitmask
(one uint64 for up to 64 addresses), each slot's output, kill and input sets come from one table
lookup per field, and a backward pass costs a handful of in-place NumPy ops per slot.

Caveat for callers: the train budget (docs/ops.md) charges every instruction, dead code and
NO_OPs included, so compute budgets (and print, mutate, store) with the *unpruned* program and
send only the pruned copy to the VM. For the same reason a score reused through `program_hashes`
is only valid for an equal train count; pass it as `train_counts`.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import numpy as np

from azjax import ops as ops_lib
from azjax.program import (
    COMPONENTS,
    FEATURES_VECTOR,
    LABEL_SCALAR,
    PREDICTION_SCALAR,
    Component,
    Program,
    ProgramSpec,
)

_KINDS = (ops_lib.Kind.SCALAR, ops_lib.Kind.VECTOR, ops_lib.Kind.MATRIX)
_FIELD_NAMES = ("op", "in1", "in2", "out")
# Operand kind of each field (op, in1, in2, out) of each op: int [NUM_OPS, 4] (op field: NONE).
_FIELD_KINDS = np.array([(0, op.in1, op.in2, op.out) for op in ops_lib.OPS], np.int32)
# Ops that overwrite only part of their output (one element), so the old value stays live.
_PARTIAL = np.array(
    [op.data in (ops_lib.Data.CONST_VECTOR, ops_lib.Data.CONST_MATRIX) for op in ops_lib.OPS]
)
# Fields a live instruction keeps when canonicalized: op, out and the inputs it reads.
_CODE_USED = _FIELD_KINDS != ops_lib.Kind.NONE
_CODE_USED[:, 0] = _CODE_USED[:, 3] = True
# Number of constants each op reads (the rest are don't-cares, zeroed by `prune`).
_NUM_CONSTS_USED = {
    ops_lib.Data.NONE: 0,
    ops_lib.Data.CONST_SCALAR: 1,
    ops_lib.Data.CONST_VECTOR: 2,
    ops_lib.Data.CONST_MATRIX: 3,
    ops_lib.Data.UNIFORM: 2,
    ops_lib.Data.GAUSSIAN: 2,
}
_CONSTS_USED = np.array(
    [[j < _NUM_CONSTS_USED[op.data] for j in range(ops_lib.NUM_CONSTS)] for op in ops_lib.OPS]
)

# A live set is a bitmask over all addresses: bit s_a = a, v_a = S + a, m_a = S + V + a, stored
# in W = ceil((S + V + M) / 64) uint64 words. Arrays of sets are [..., P] when W == 1 (every spec
# within the original's 20/20/20 address limits) and [..., W, P] otherwise.


class _Tables(NamedTuple):
    """Per-op lookup tables for one (S, V, M); see `_tables`."""

    max_value: np.ndarray  # uint32 [NUM_OPS, 4]: largest valid value of each field (unused: any).
    sets: np.ndarray  # uint64 [4 * NUM_OPS * A (, W)]: see `_tables`.
    offsets: np.ndarray  # int32 [NUM_OPS, 4]: (f * NUM_OPS + op) * A, the rows of `sets`.
    width: int  # A: a power of two >= every bank size.
    strip: np.ndarray  # all but s0 and v0, broadcastable against [(W,) P].
    prediction: np.ndarray  # {s1}, broadcastable against [(W,) P].


@functools.lru_cache(maxsize=16)
def _tables(bank_sizes: tuple[int, int, int]) -> _Tables:
    """Tables for bank sizes (S, V, M). `sets[(f * NUM_OPS + op) * A + a]` is the set {address a
    of field f's kind} for fields f = in1, in2, out ({} where op's field is unused), and for f = 0
    the complement of what the op kills when writing address a (all of it for partial writes)."""
    size = np.array((1,) + bank_sizes)  # Indexed by Kind.
    base = np.array([0, 0, size[1], size[1] + size[2]])
    num_words = -(-int(size[1:].sum()) // 64)
    width = 1 << (int(size.max()) - 1).bit_length()

    def as_set(bit, valid):  # int [...] -> uint64 [..., W]
        word = (bit // 64)[..., None] == np.arange(num_words)
        one = np.left_shift(np.uint64(1), (bit % 64).astype(np.uint64))[..., None]
        return np.where(word & np.asarray(valid)[..., None], one, np.uint64(0))

    kinds, addr = _FIELD_KINDS[:, :, None], np.arange(width)
    sets = as_set(base[kinds] + addr, (kinds != ops_lib.Kind.NONE) & (addr < size[kinds]))
    sets[:, 0] = ~np.where(_PARTIAL[:, None, None], np.uint64(0), sets[:, 3])
    sets = sets.transpose(1, 0, 2, 3).reshape(4 * ops_lib.NUM_OPS * width, num_words)
    max_value = np.where(_FIELD_KINDS != ops_lib.Kind.NONE, size[_FIELD_KINDS] - 1, 2**32 - 1)
    max_value[:, 0] = ops_lib.NUM_OPS - 1
    strip = ~(as_set(np.int64(LABEL_SCALAR), True) | as_set(base[2] + FEATURES_VECTOR, True))
    prediction = as_set(np.int64(PREDICTION_SCALAR), True)
    if num_words == 1:
        sets, strip, prediction = sets[:, 0], strip[0], prediction[0]
    else:
        strip, prediction = strip[:, None], prediction[:, None]
    offsets = (np.arange(4) * ops_lib.NUM_OPS + np.arange(ops_lib.NUM_OPS)[:, None]) * width
    return _Tables(
        max_value.astype(np.uint32), sets, offsets.astype(np.int32), width, strip, prediction
    )


def _raise_bad(code: np.ndarray, bank_sizes: tuple[int, int, int], spans) -> None:
    """Raises ValueError naming the first bad field of code [P, L, 4] (all components)."""
    op = code[..., 0]
    bad_op = (op < 0) | (op >= ops_lib.NUM_OPS)
    kinds = _FIELD_KINDS[np.where(bad_op, 0, op)]
    size = np.array((1,) + bank_sizes)[kinds]
    bad = (kinds != ops_lib.Kind.NONE) & ((code < 0) | (code >= size))
    bad[..., 0] = bad_op
    for name, lo, hi in spans:  # Components in order; within one, op first, then in1, in2, out.
        for field in range(4):
            hits = np.argwhere(bad[:, lo:hi, field])
            if not hits.size:
                continue
            p, i = hits[0]
            value = code[p, lo + i, field]
            if field == 0:
                raise ValueError(f"{name}: program {p} slot {i} has unknown op id {value}")
            kind = ops_lib.Kind(kinds[p, lo + i, field]).name.lower()
            raise ValueError(
                f"{name}: program {p} slot {i} field {_FIELD_NAMES[field]} = {value} is outside "
                f"the {kind} bank (size {size[p, lo + i, field]})"
            )
    raise ValueError("invalid program code")  # Unreachable unless the two checks disagree.


def _slot_sets(code: np.ndarray, tables: _Tables):
    """Per-slot sets (out, ~kill, gen), each [L, (W,) P], of valid code int32 [P, L, 4]."""
    index = np.take(tables.offsets, code[..., 0], axis=0) + (code & (tables.width - 1))
    index[..., 0] = index[..., 3] - tables.offsets[0, 3]  # ~kill is keyed by the out address.
    if tables.sets.ndim == 1:  # Gathered straight into [L, 4, P]: rows sets[i, f] contiguous.
        sets = tables.sets[index.transpose(1, 2, 0)]
    else:
        sets = np.moveaxis(tables.sets[index], 0, -1)  # [L, 4, W, P]
    return sets[:, 3], sets[:, 0], sets[:, 1] | sets[:, 2]


def _steps(sets, active: list[bool], lo: int, hi: int) -> list[tuple]:
    """(slot, out, ~kill, gen) of the slots lo..hi-1 (one component) to visit, last first.

    All-NO_OP slots are left out: they neither read, write nor live.
    """
    return [(i - lo, *(x[i] for x in sets)) for i in range(hi - 1, lo - 1, -1) if active[i]]


def _backward(steps, keep: np.ndarray, live_out: np.ndarray) -> np.ndarray:
    """Backward liveness through one component: fills keep bool [L, P], returns the live-in set.

    Writes the rows of the visited slots only (the others must already be False).
    """
    live, hit = live_out.copy(), np.empty_like(live_out)
    for i, out, not_kill, gen in steps:  # In-place ufuncs: this is the search's hot path.
        np.bitwise_and(live, out, out=hit)
        if hit.ndim == 1:
            np.not_equal(hit, 0, out=keep[i])
        else:
            keep[i] = (hit != 0).any(0)
        np.bitwise_and(live, not_kill, out=live)  # Kill full writes (of live instructions).
        np.multiply(gen, keep[i], out=hit)
        np.bitwise_or(live, hit, out=live)  # Gen after the kill: `v1 = v1 + v2` reads v1.
    return live


def _live(population: Program, spec: ProgramSpec):
    """(code int32 [P, L, 4], keep bool [L, P], spans): all components' slots concatenated,
    spans = [(component, first slot, end slot)]."""
    codes = [np.asarray(getattr(population, c).code) for c in COMPONENTS]
    for c, code in zip(COMPONENTS, codes, strict=True):
        if code.ndim != 3 or code.shape[-1] != 4:
            raise ValueError(f"{c}.code must have shape [P, L, 4], got {code.shape}")
        if code.shape[0] != codes[0].shape[0]:
            raise ValueError(f"{c}.code has {code.shape[0]} programs, setup {codes[0].shape[0]}")
    ends = np.cumsum([code.shape[1] for code in codes]).tolist()
    spans = [(c, e - code.shape[1], e) for c, code, e in zip(COMPONENTS, codes, ends, strict=True)]
    code = raw = np.concatenate(codes, axis=1)
    if code.dtype != np.int32:  # Out-of-range values stay out of range.
        code = np.clip(code.astype(np.int64), -1, 2**31 - 1).astype(np.int32)
    bank_sizes = tuple(spec.bank_size(k) for k in _KINDS)
    tables = _tables(bank_sizes)
    max_value = np.take(tables.max_value, code[..., 0], axis=0, mode="clip")
    if (code.view(np.uint32) > max_value).any():  # Negative values wrap around: too large.
        _raise_bad(raw, bank_sizes, spans)
    sets = _slot_sets(code, tables)
    active = (code[..., 0] != ops_lib.NO_OP).any(0).tolist()
    keep = np.zeros(code.shape[1::-1], bool)
    plan = {c: (_steps(sets, active, lo, hi), keep[lo:hi]) for c, lo, hi in spans}
    strip = tables.strip
    # Kleene iteration from empty sets (Gauss-Seidel order). The learn pass run right after a
    # predict pass is exact for that predict live-in, so stop as soon as it repeats.
    in_predict = in_learn = np.zeros(sets[0].shape[1:], np.uint64)
    for iteration in itertools.count():
        out_predict = tables.prediction | ((in_learn | in_predict) & strip)
        new_in_predict = _backward(*plan["predict"], out_predict)
        if iteration and np.array_equal(new_in_predict, in_predict):
            break
        in_predict = new_in_predict
        in_learn = _backward(*plan["learn"], in_predict & strip)
    _backward(*plan["setup"], in_predict & strip)
    return code, keep, spans


def live_instructions(population: Program, spec: ProgramSpec) -> dict[str, np.ndarray]:
    """Which slots can affect s1 as read after Predict: {component: bool [P, L]}. Batched only."""
    _, keep, spans = _live(population, spec)
    return {c: np.ascontiguousarray(keep[lo:hi].T) for c, lo, hi in spans}


def _with_dead_row(table: np.ndarray) -> np.ndarray:
    """Appends an all-False row NUM_OPS, looked up for pruned slots."""
    return np.concatenate([table, np.zeros_like(table[:1])])


# Which code fields and constants `prune` keeps, per op (+ the dead row), by `canonicalize`.
_KEPT = {
    True: (_with_dead_row(_CODE_USED), _with_dead_row(_CONSTS_USED)),
    False: (_with_dead_row(np.ones_like(_CODE_USED)), _with_dead_row(np.ones_like(_CONSTS_USED))),
}


def prune(population: Program, spec: ProgramSpec, *, canonicalize: bool = True) -> Program:
    """Replaces every instruction that cannot affect the prediction by an all-zero NO_OP row.

    Args:
      population: a Program, batched (leading P) or unbatched. NumPy or JAX arrays.
      spec: the ProgramSpec (bank sizes for the liveness sets and for validation).
      canonicalize: also zero the address fields and constants that live instructions do not
        read (the VM ignores them), so that programs differing only there hash equal.

    Returns:
      A NumPy Program of the same shapes; slot positions and `length` are unchanged, so padding
      slots stay all-zero. Fitness is unchanged (the pruned code computes the same s1 values).
      Pruning is idempotent.
    """
    batched = np.ndim(population.predict.length) == 1
    if not batched:
        population = Program(
            *(Component(*(np.asarray(x)[None] for x in comp)) for comp in population)
        )
    code, keep, spans = _live(population, spec)
    consts = np.concatenate([np.asarray(getattr(population, c).consts) for c in COMPONENTS], 1)
    row = np.where(keep.T, code[..., 0], ops_lib.NUM_OPS)
    code_kept, consts_kept = (np.take(x, row, axis=0) for x in _KEPT[bool(canonicalize)])
    consts = consts.astype(np.float32, copy=False)
    pruned = Program(
        *(
            Component(
                np.where(code_kept[:, lo:hi], code[:, lo:hi], 0),
                np.where(consts_kept[:, lo:hi], consts[:, lo:hi], np.float32(0)),
                np.asarray(getattr(population, c).length).copy(),
            )
            for c, lo, hi in spans
        )
    )
    if not batched:
        pruned = Program(*(Component(*(x[0] for x in comp)) for comp in pruned))
    return pruned
