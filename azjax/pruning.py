"""Dead-code elimination and structural hashing of programs (host side, NumPy).

Mutated populations carry much code that cannot reach the prediction. `prune` replaces every such
instruction by an all-zero NO_OP row *in place* (slot positions are kept: the random-init ops draw
from a counter hash keyed by slot, `azjax.rng`, so moving an instruction would change its draws)
and `program_hashes` fingerprints the pruned code so that a child identical to an already scored
program can reuse its score. Nothing here exists in the original; it is a pure work-avoidance step
whose result must be exactly as fit as its input (tests/test_pruning.py checks that).

Liveness (per address of the scalar, vector and matrix banks) follows the execution pattern of one
task evaluation, REFERENCE.md §1.4 and §4: Setup ; (Predict ; Learn)* ; Predict* with memory
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

Caveat for callers: the train budget (REFERENCE.md §4.9) charges every instruction, dead code and
NO_OPs included, so compute budgets (and print, mutate, store) with the *unpruned* program and
send only the pruned copy to the VM. For the same reason a score reused through `program_hashes`
is only valid for an equal train count; pass it as `train_counts`.
"""

from __future__ import annotations

import numpy as np

from azjax import ops as ops_lib
from azjax.fec import hash_words
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
_IN1 = np.array([op.in1 for op in ops_lib.OPS], np.int32)
_IN2 = np.array([op.in2 for op in ops_lib.OPS], np.int32)
_OUT = np.array([op.out for op in ops_lib.OPS], np.int32)
# Ops that overwrite only part of their output (one element), so the old value stays live.
_PARTIAL = np.array(
    [op.data in (ops_lib.Data.CONST_VECTOR, ops_lib.Data.CONST_MATRIX) for op in ops_lib.OPS]
)
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

_HASH_SEED = 0x5EED_0F_A21A7  # arbitrary, fixed: hashes are stored in checkpoints.

Live = tuple  # (scalar [P, S], vector [P, V], matrix [P, M]) boolean live sets.


def _validate(code: np.ndarray, spec: ProgramSpec, name: str) -> None:
    """Raises ValueError on an unknown op or a used address outside its bank."""
    op = code[..., 0]
    bad = (op < 0) | (op >= ops_lib.NUM_OPS)
    if bad.any():
        p, i = np.argwhere(bad)[0]
        raise ValueError(f"{name}: program {p} slot {i} has unknown op id {op[p, i]}")
    for field, kinds in ((1, _IN1), (2, _IN2), (3, _OUT)):
        kind = kinds[op]
        size = np.select([kind == k for k in _KINDS], [spec.bank_size(k) for k in _KINDS], 1)
        addr = code[..., field]
        bad = (kind != ops_lib.Kind.NONE) & ((addr < 0) | (addr >= size))
        if bad.any():
            p, i = np.argwhere(bad)[0]
            raise ValueError(
                f"{name}: program {p} slot {i} field {('op', 'in1', 'in2', 'out')[field]} = "
                f"{addr[p, i]} is outside the {ops_lib.Kind(kind[p, i]).name.lower()} bank "
                f"(size {size[p, i]})"
            )


def _backward(code: np.ndarray, live_out: Live) -> tuple[np.ndarray, Live]:
    """Backward liveness through one component. code [P, L, 4] -> (keep [P, L], live-in)."""
    num_programs, num_slots = code.shape[:2]
    rows = np.arange(num_programs)
    live = [x.copy() for x in live_out]
    keep = np.zeros((num_programs, num_slots), bool)
    for i in range(num_slots - 1, -1, -1):
        op, in1, in2, out = (code[:, i, f] for f in range(4))
        out_kind = _OUT[op]
        for k, bank in zip(_KINDS, live, strict=True):
            is_k = out_kind == k
            keep[:, i] |= is_k & bank[rows, np.where(is_k, out, 0)]
        # Kill full writes (a dead instruction's output is not live anyway).
        for k, bank in zip(_KINDS, live, strict=True):
            r = np.flatnonzero((out_kind == k) & ~_PARTIAL[op])
            bank[r, out[r]] = False
        # Gen the inputs of live instructions (after the kill: `v1 = v1 + v2` reads v1).
        for k, bank in zip(_KINDS, live, strict=True):
            for addr, kinds in ((in1, _IN1), (in2, _IN2)):
                r = np.flatnonzero(keep[:, i] & (kinds[op] == k))
                bank[r, addr[r]] = True
    return keep, tuple(live)


def _strip(live: Live) -> Live:
    """Removes s0 and v0, which the harness overwrites at every component entry."""
    s, v, m = (x.copy() for x in live)
    s[:, LABEL_SCALAR] = False
    v[:, FEATURES_VECTOR] = False
    return s, v, m


def _union(a: Live, b: Live) -> Live:
    return tuple(x | y for x, y in zip(a, b, strict=True))


def live_instructions(population: Program, spec: ProgramSpec) -> dict[str, np.ndarray]:
    """Which slots can affect s1 as read after Predict: {component: bool [P, L]}. Batched only."""
    codes = {c: np.asarray(getattr(population, c).code) for c in COMPONENTS}
    for c in COMPONENTS:
        if codes[c].ndim != 3 or codes[c].shape[-1] != 4:
            raise ValueError(f"{c}.code must have shape [P, L, 4], got {codes[c].shape}")
        _validate(codes[c], spec, c)
    num_programs = codes["predict"].shape[0]
    empty = tuple(np.zeros((num_programs, spec.bank_size(k)), bool) for k in _KINDS)
    prediction = tuple(x.copy() for x in empty)
    prediction[0][:, PREDICTION_SCALAR] = True
    in_predict, in_learn = empty, empty
    while True:
        out_predict = _union(prediction, _strip(_union(in_learn, in_predict)))
        keep_predict, new_in_predict = _backward(codes["predict"], out_predict)
        keep_learn, new_in_learn = _backward(codes["learn"], _strip(new_in_predict))
        done = all(
            np.array_equal(a, b)
            for a, b in zip(new_in_predict + new_in_learn, in_predict + in_learn, strict=True)
        )
        in_predict, in_learn = new_in_predict, new_in_learn
        if done:
            break
    keep_setup, _ = _backward(codes["setup"], _strip(in_predict))
    return dict(setup=keep_setup, predict=keep_predict, learn=keep_learn)


def _prune_component(comp: Component, keep: np.ndarray, canonicalize: bool) -> Component:
    code = np.where(keep[..., None], np.asarray(comp.code), 0).astype(np.int32)
    consts = np.where(keep[..., None], np.asarray(comp.consts), 0).astype(np.float32)
    if canonicalize:  # Zero the fields the op does not read, so equal code hashes equal.
        op = code[..., 0]
        code[..., 1] *= _IN1[op] != ops_lib.Kind.NONE
        code[..., 2] *= _IN2[op] != ops_lib.Kind.NONE
        consts = np.where(_CONSTS_USED[op], consts, np.float32(0))
    return Component(code, consts, np.asarray(comp.length).copy())


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
    keep = live_instructions(population, spec)
    pruned = Program(
        *(_prune_component(getattr(population, c), keep[c], canonicalize) for c in COMPONENTS)
    )
    if not batched:
        pruned = Program(*(Component(*(x[0] for x in comp)) for comp in pruned))
    return pruned


def program_hashes(population: Program, *, train_counts=None) -> np.ndarray:
    """Structural 64-bit hash of each program's code and constants (all three components).

    Hash equality means bitwise-identical `code` and `consts` (up to 2^-64 collisions; a single
    changed word always changes the hash). Constants are compared bitwise and -0.0 is NOT
    merged with +0.0: the two are observably different (1 / -0.0 = -inf).
    `length` is not hashed (slots past the last live one are NO_OPs, which the VM skips).

    Args:
      population: a Program, batched ([P]) or unbatched ([]); normally the output of `prune`.
      train_counts: optional int [P] or [P, G] (unbatched: [] or [G]), mixed in: the budgeted
        number of training examples (per task group), which depends on the unpruned program
        (module docstring). Pass per-group counts rather than their sum, which can collide.

    Returns:
      uint64 [P] (or a 0-d array for an unbatched program).
    """
    batched = np.ndim(population.predict.length) == 1
    words = []
    for c in COMPONENTS:
        comp = getattr(population, c)
        code = np.asarray(comp.code, np.int32)
        consts = np.ascontiguousarray(np.asarray(comp.consts, np.float32))
        lead = code.shape[:-2]
        words += [
            code.view(np.uint32).reshape(lead + (-1,)),
            consts.view(np.uint32).reshape(lead + (-1,)),
        ]
    words = np.concatenate(words, axis=-1).astype(np.uint64)
    if words.shape[-1] % 2:
        words = np.concatenate([words, np.zeros(words.shape[:-1] + (1,), np.uint64)], axis=-1)
    packed = words[..., 0::2] | (words[..., 1::2] << np.uint64(32))
    if train_counts is not None:
        counts = np.asarray(train_counts, np.int64)
        lead = packed.shape[:-1]
        if counts.shape[: len(lead)] != lead:
            raise ValueError(
                f"train_counts must have shape {lead} or {lead} + (G,), got {counts.shape}"
            )
        counts = counts.reshape(lead + (-1,)).astype(np.uint64)
        packed = np.concatenate([packed, counts], axis=-1)
    hashes = hash_words(packed, seed=_HASH_SEED)
    return hashes if batched else np.asarray(hashes)
