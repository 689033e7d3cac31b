"""Lane compaction: run an expensive group of ops only on the lanes whose program uses it.

Design (c2) of docs/vm.md. Per slot, the programs whose op at that slot is in a group are
listed once per call (`program_lists`); the VM then gathers those programs' lanes, computes the
group's ops on them only, and scatters the results back (`gather`, `scatter`).

Capacities. A group is computed in rounds of `capacity` programs (a static bound, so one compile
serves every population): `for_each_round` runs ceil(count / capacity) rounds, where `count` is the
slot's number of listed programs, a run-time value. So no lane is ever dropped, whatever the
population (all programs using the group at one slot costs ceil(P / capacity) rounds), and a slot
where no program uses the group costs nothing. Lists are over programs: the VM's lanes are
`[T, P]`, so gathering the listed programs along the last axis takes all T tasks of each.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def program_lists(member) -> jax.Array:
    """Per slot, the programs whose op is in the group, and their count.

    Args:
      member: bool `[P, L]`, program p's op at slot l is in the group.
    Returns: int32 `[L, 2 P + 1]`: row l = the listed programs in increasing order, padded with
      P (an out-of-range program) to 2 P entries, so a round's slice never runs past the end;
      then the count in the last column.
    """
    P = member.shape[0]

    def one_slot(m):
        (idx,) = jnp.nonzero(m, size=2 * P, fill_value=P)
        return jnp.concatenate([idx.astype(jnp.int32), jnp.sum(m, dtype=jnp.int32)[None]])

    return jax.vmap(one_slot)(member.T)


def capacity(num_programs: int, fraction: float) -> int:
    """Programs per round: ceil(fraction * P), at least 1, at most P."""
    return max(1, min(num_programs, math.ceil(num_programs * fraction)))


def for_each_round(lists_row, cap: int, fn, init):
    """`init = fn(programs, init)` for each round of the slot's listed programs; returns it.

    `lists_row` is one slot's row of `program_lists` (`[2 P + 1]`); `fn` maps the round's
    programs `[cap]` (padding entries point past the last program) and the carry to the new
    carry. Rounds start below the count <= P and the row holds 2 P >= P + cap entries, so each
    listed program is in exactly one round.
    """
    count = lists_row[-1]
    lists = lists_row[:-1]

    def cond(carry):
        return carry[0] * cap < count

    def body(carry):
        r, x = carry
        return r + 1, fn(jax.lax.dynamic_slice_in_dim(lists, r * cap, cap), x)

    return jax.lax.while_loop(cond, body, (jnp.int32(0), init))[1]


# Both work on x viewed as 2-D `[rest, P]`: XLA:CPU's gather and scatter move the indexed axis
# first, and with the leading axes kept apart the values were laid out with a minor axis of T
# or 1, which took the fused computation of a compacted group out of SIMD (about 4x slower).


def gather(x: jax.Array, programs: jax.Array) -> jax.Array:
    """x[..., programs] (programs last); out-of-range entries read the last program (their
    results drop)."""
    rows = jnp.take(x.reshape(-1, x.shape[-1]), programs, axis=1, mode="clip")
    return rows.reshape(x.shape[:-1] + programs.shape)


def scatter(x: jax.Array, programs: jax.Array, values: jax.Array) -> jax.Array:
    """x with x[..., programs] = values; out-of-range entries are dropped."""
    rows = values.reshape(-1, programs.shape[0])
    return x.reshape(-1, x.shape[-1]).at[:, programs].set(rows, mode="drop").reshape(x.shape)
