"""Dead-code elimination and instruction compaction on the device (jit- and vmap-friendly).

The same liveness analysis as `azjax.pruning` (its module docstring derives it; tests check the
two agree on random programs), written with `jax.numpy` so the search can run it inside its
jitted generation step. Live sets are bool arrays `[A, P]` over all addresses (scalars, then
vectors, then matrices), programs last so each step is SIMD over programs; slots run backwards in
a `fori_loop`, and Predict and Learn iterate to their fixed point in a `while_loop`.

`prune` zeroes dead instructions (and the fields and constants live ones do not read), keeping
slot positions; `compact` then moves each component's instructions to the front, where no random
op makes slot positions matter (random draws are keyed by slot), so the VM's slot loop stops at
the last live instruction.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from azjax import ops as ops_lib
from azjax import pruning
from azjax.program import (
    COMPONENTS,
    FEATURES_VECTOR,
    LABEL_SCALAR,
    PREDICTION_SCALAR,
    Component,
    Program,
    ProgramSpec,
)

Kind = ops_lib.Kind
_FIELD_KINDS = np.array([(0, op.in1, op.in2, op.out) for op in ops_lib.OPS], np.int32)
_RANDOM = np.array([op.is_random for op in ops_lib.OPS])


def _address_tables(spec: ProgramSpec) -> tuple[np.ndarray, int]:
    """(first address of each Kind [4] (NONE: -1 marks no operand), number of addresses A)."""
    S, V, M = spec.num_scalars, spec.num_vectors, spec.num_matrices
    return np.array([-(10**6), 0, S, S + V], np.int32), S + V + M


def _slot_fields(code: jax.Array, spec: ProgramSpec):
    """Per slot of code `[P, L, 4]`: (out, in1, in2 global addresses, -1 = none; full: the
    write kills the old value), each `[L, P]`."""
    base, _ = _address_tables(spec)
    op = code[..., 0]
    kinds = jnp.asarray(_FIELD_KINDS)[op]  # [P, L, 4]
    address = jnp.asarray(base)[kinds] + code
    address = jnp.where(address < 0, -1, address)
    partial = jnp.asarray(pruning._PARTIAL)[op]
    out, in1, in2 = (address[..., f].T for f in (3, 1, 2))
    return out, in1, in2, (~partial).T


def _backward(fields, live_out: jax.Array):
    """Backward liveness through one component from `live_out` bool `[A, P]`: (live-in set
    `[A, P]`, keep bool `[L, P]`)."""
    out, in1, in2, full = fields
    L = out.shape[0]
    addr = jnp.arange(live_out.shape[0])[:, None]

    def body(j, carry):
        live, keep = carry
        i = L - 1 - j
        writes = addr == out[i]
        k = jnp.any(live & writes, axis=0)
        live = live & ~(writes & full[i])
        live = live | (((addr == in1[i]) | (addr == in2[i])) & k)
        return live, keep.at[i].set(k)

    keep = jnp.zeros(out.shape, bool)
    return jax.lax.fori_loop(0, L, body, (live_out, keep))


def live_instructions(programs: Program, spec: ProgramSpec) -> dict[str, jax.Array]:
    """Which slots can affect s1 as read after Predict: {component: bool `[P, L]`}; programs
    batched `[P]`. Equal to `azjax.pruning.live_instructions`."""
    _, A = _address_tables(spec)
    base, _ = _address_tables(spec)
    fields = {c: _slot_fields(getattr(programs, c).code, spec) for c in COMPONENTS}
    P = programs.predict.code.shape[0]
    strip = np.ones((A, 1), bool)
    strip[[LABEL_SCALAR, base[Kind.VECTOR] + FEATURES_VECTOR]] = False
    prediction = np.zeros((A, 1), bool)
    prediction[PREDICTION_SCALAR] = True

    def out_predict(in_predict, in_learn):
        return prediction | (strip & (in_learn | in_predict))

    def body(carry):
        in_predict, in_learn, _ = carry
        new = _backward(fields["predict"], out_predict(in_predict, in_learn))[0]
        changed = jnp.any(new != in_predict)
        return new, _backward(fields["learn"], strip & new)[0], changed

    empty = jnp.zeros((A, P), bool)
    start = body((empty, empty, True))
    in_predict, in_learn, _ = jax.lax.while_loop(lambda c: c[2], body, start)
    keep = {
        "setup": _backward(fields["setup"], strip & in_predict)[1],
        "predict": _backward(fields["predict"], out_predict(in_predict, in_learn))[1],
        "learn": _backward(fields["learn"], strip & in_predict)[1],
    }
    return {c: k.T for c, k in keep.items()}


def _flat(programs: Program):
    """Programs with any leading shape as a batch `[P]`, and the function undoing it."""
    lead = programs.predict.length.shape
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[len(lead) :]), programs)
    return flat, lambda tree: jax.tree.map(lambda x: x.reshape(lead + x.shape[1:]), tree)


@functools.partial(jax.jit, static_argnames=("spec",))
def prune(programs: Program, spec: ProgramSpec) -> Program:
    """`azjax.pruning.prune` (canonicalized) on the device; programs of any leading shape."""
    flat, unflat = _flat(programs)
    keep = live_instructions(flat, spec)
    code_kept, consts_kept = (jnp.asarray(t) for t in pruning._KEPT[True])
    comps = []
    for c in COMPONENTS:
        comp = getattr(flat, c)
        row = jnp.where(keep[c], comp.code[..., 0], ops_lib.NUM_OPS)
        comps.append(
            Component(
                jnp.where(code_kept[row], comp.code, 0),
                jnp.where(consts_kept[row], comp.consts, jnp.float32(0)),
                comp.length,
            )
        )
    return unflat(Program(*comps))


def compact(programs: Program, spec: ProgramSpec) -> Program:
    """Moves each component's non-NO_OP instructions to the front (`length` = their count),
    except in components whose allowed ops include a random op (their draws are keyed by slot).
    Any leading shape."""
    comps = []
    for c in COMPONENTS:
        comp = getattr(programs, c)
        if _RANDOM[list(spec.component(c).valid_ops)].any():
            comps.append(comp)
            continue
        live = comp.code[..., 0] != ops_lib.NO_OP
        order = jnp.argsort(~live, axis=-1, stable=True)[..., None]
        comps.append(
            Component(
                jnp.take_along_axis(comp.code, order, axis=-2),
                jnp.take_along_axis(comp.consts, order, axis=-2),
                jnp.sum(live, axis=-1, dtype=jnp.int32),
            )
        )
    return Program(*comps)


def has_random_ops(programs: Program) -> jax.Array:
    """bool `[...]`: the program uses a random-init op (its results depend on the lane seed)."""
    table = jnp.asarray(_RANDOM)
    return jnp.any(
        jnp.stack([jnp.any(table[getattr(programs, c).code[..., 0]], -1) for c in COMPONENTS]),
        axis=0,
    )


def live_lengths(programs: Program) -> jax.Array:
    """int32 `[..., 3]`: 1 + the last non-NO_OP slot of Setup, Predict and Learn (0 if none)."""

    def last(comp):
        slot = jnp.arange(1, comp.code.shape[-2] + 1, dtype=jnp.int32)
        return jnp.max(jnp.where(comp.code[..., 0] != ops_lib.NO_OP, slot, 0), axis=-1)

    return jnp.stack([last(getattr(programs, c)) for c in COMPONENTS], axis=-1)
