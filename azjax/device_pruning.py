"""Dead-code elimination and instruction compaction on the device (jit- and vmap-friendly).

The same liveness analysis as `azjax.pruning` (its module docstring derives it; tests check the
two agree on random programs), written with `jax.numpy` so the search can run it inside its
jitted generation step. A live set is a bitmask over all A addresses (scalars, then vectors, then
matrices) in W = ceil(A / 32) uint32 words, `[W, P]` with programs last so each step is a few SIMD
ops over programs (bool arrays `[A, P]` took 3x longer); slots run backwards in a `fori_loop`,
and Predict and Learn iterate to their fixed point in a `while_loop`.

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


def _bits(address: jax.Array, num_words: int) -> jax.Array:
    """uint32 `[..., W]`: the one-address set {address} (empty for -1)."""
    word = jnp.arange(num_words)
    bit = jnp.left_shift(jnp.uint32(1), (address % 32).astype(jnp.uint32))[..., None]
    hit = (address[..., None] >= 0) & (address[..., None] // 32 == word)
    return jnp.where(hit, bit, jnp.uint32(0))


def _slot_sets(code: jax.Array, spec: ProgramSpec, num_words: int):
    """Per slot of code `[P, L, 4]`: (out, kill, gen) address sets, each uint32 `[L, W, P]`:
    what the slot writes, what the write kills (nothing for partial writes) and what it reads."""
    base, _ = _address_tables(spec)
    op = code[..., 0]
    kinds = jnp.asarray(_FIELD_KINDS)[op]  # [P, L, 4]
    address = jnp.asarray(base)[kinds] + code
    address = jnp.where(address < 0, -1, address)
    sets = _bits(address, num_words)  # [P, L, 4, W]
    out, gen = sets[..., 3, :], sets[..., 1, :] | sets[..., 2, :]
    kill = jnp.where(jnp.asarray(pruning._PARTIAL)[op][..., None], jnp.uint32(0), out)
    return tuple(jnp.transpose(x, (1, 2, 0)) for x in (out, kill, gen))


def _backward(sets, live_out: jax.Array):
    """Backward liveness through one component from the live-out set `[W, P]`: (live-in set
    `[W, P]`, keep bool `[L, P]`)."""
    out, kill, gen = sets
    L = out.shape[0]

    def body(j, carry):
        live, keep = carry
        i = L - 1 - j
        k = jnp.any((live & out[i]) != 0, axis=0)
        live = (live & ~kill[i]) | jnp.where(k, gen[i], jnp.uint32(0))
        return live, keep.at[i].set(k)

    keep = jnp.zeros((L, live_out.shape[-1]), bool)
    return jax.lax.fori_loop(0, L, body, (live_out, keep))


def live_instructions(programs: Program, spec: ProgramSpec) -> dict[str, jax.Array]:
    """Which slots can affect s1 as read after Predict: {component: bool `[P, L]`}; programs
    batched `[P]`. Equal to `azjax.pruning.live_instructions`."""
    base, A = _address_tables(spec)
    W = -(-A // 32)
    sets = {c: _slot_sets(getattr(programs, c).code, spec, W) for c in COMPONENTS}
    P = programs.predict.code.shape[0]
    strip = ~_bits(jnp.asarray(LABEL_SCALAR), W) & ~_bits(base[Kind.VECTOR] + FEATURES_VECTOR, W)
    strip, prediction = strip[:, None], _bits(jnp.asarray(PREDICTION_SCALAR), W)[:, None]

    def out_predict(in_predict, in_learn):
        return prediction | (strip & (in_learn | in_predict))

    def body(carry):
        in_predict, in_learn, _ = carry
        new = _backward(sets["predict"], out_predict(in_predict, in_learn))[0]
        changed = jnp.any(new != in_predict)
        return new, _backward(sets["learn"], strip & new)[0], changed

    empty = jnp.zeros((W, P), jnp.uint32)
    start = body((empty, empty, True))
    in_predict, in_learn, _ = jax.lax.while_loop(lambda c: c[2], body, start)
    keep = {
        "setup": _backward(sets["setup"], strip & in_predict)[1],
        "predict": _backward(sets["predict"], out_predict(in_predict, in_learn))[1],
        "learn": _backward(sets["learn"], strip & in_predict)[1],
    }
    return {c: k.T for c, k in keep.items()}


def _flat(programs: Program):
    """Programs with any leading shape as a batch `[P]`, and the function undoing it."""
    lead = programs.predict.length.shape
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[len(lead) :]), programs)
    return flat, lambda tree: jax.tree.map(lambda x: x.reshape(lead + x.shape[1:]), tree)


@functools.partial(jax.jit, static_argnames=("spec",))
def prune(programs: Program, spec: ProgramSpec) -> Program:
    """`azjax.pruning.prune` (canonicalized) on the device; programs of any leading shape.
    Components with fixed instructions (`ComponentSpec.fixed`) stay as they are: the VM runs
    them whole."""
    flat, unflat = _flat(programs)
    keep = live_instructions(flat, spec)
    code_kept, consts_kept = (jnp.asarray(t) for t in pruning._KEPT[True])
    comps = []
    for c in COMPONENTS:
        comp = getattr(flat, c)
        if spec.component(c).fixed is not None:  # Run as given (`ComponentSpec.fixed`).
            comps.append(comp)
            continue
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
    except in components whose allowed ops include a random op (their draws are keyed by slot)
    and in fixed ones.
    Any leading shape."""
    comps = []
    for c in COMPONENTS:
        comp = getattr(programs, c)
        cs = spec.component(c)
        if cs.fixed is not None or _RANDOM[list(cs.valid_ops)].any():
            comps.append(comp)
            continue
        live = comp.code[..., 0] != ops_lib.NO_OP
        L = live.shape[-1]
        # Slot s takes the (s+1)-th live slot: the first j with s+1 live slots in [0, j]. (A
        # stable argsort per program took 5x longer on XLA:CPU.)
        seen = jnp.cumsum(live, axis=-1, dtype=jnp.int32)
        source = jnp.sum(seen[..., None, :] <= jnp.arange(L)[:, None], axis=-1, dtype=jnp.int32)
        filled = (jnp.arange(L) < seen[..., -1:])[..., None]
        source = jnp.minimum(source, L - 1)[..., None]
        comps.append(
            Component(
                jnp.where(filled, jnp.take_along_axis(comp.code, source, axis=-2), 0),
                jnp.where(filled, jnp.take_along_axis(comp.consts, source, axis=-2), 0.0),
                seen[..., -1],
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
