"""Unsigned 64-bit integers on the device as uint32 pairs `[..., 2]` (low word, high word).

JAX runs without 64-bit integers by default, but a search's train steps (the original's budget is
80 * 10^9) and the train budget's compute costs (up to ~10^12) need them. Only what those need:
sums, products by a static integer, comparisons with a static integer, and the host conversion.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_MASK = 0xFFFFFFFF


def constant(n: int) -> np.ndarray:
    """uint32 `[2]` of a Python int in [0, 2^64)."""
    if not 0 <= n < 2**64:
        raise ValueError(f"{n} is outside the unsigned 64-bit range")
    return np.array([n & _MASK, n >> 32], np.uint32)


def to_int(x) -> np.ndarray:
    """Host values (numpy int64 / Python ints for scalars) of uint32 pairs `[..., 2]`."""
    x = np.asarray(x, np.uint64)
    return (x[..., 0] | (x[..., 1] << np.uint64(32))).astype(np.int64)


def from_u32(x: jax.Array) -> jax.Array:
    """Non-negative 32-bit integers `[...]` as pairs `[..., 2]`."""
    x = jnp.asarray(x).astype(jnp.uint32)
    return jnp.stack([x, jnp.zeros_like(x)], axis=-1)


def add(a: jax.Array, b: jax.Array) -> jax.Array:
    """a + b (mod 2^64), pairs `[..., 2]` (broadcasting)."""
    lo = a[..., 0] + b[..., 0]
    carry = (lo < a[..., 0]).astype(jnp.uint32)
    return jnp.stack([lo, a[..., 1] + b[..., 1] + carry], axis=-1)


def sum(a: jax.Array, axis: int) -> jax.Array:  # noqa: A001
    """Sum (mod 2^64) of pairs `[..., 2]` over `axis` (not the last)."""
    axis = axis % a.ndim
    if axis == a.ndim - 1:
        raise ValueError("wide.sum: the last axis holds the two words")
    n = a.shape[axis]
    total = jnp.zeros(a.shape[:axis] + a.shape[axis + 1 :], jnp.uint32)
    for i in range(n):
        total = add(total, jax.lax.index_in_dim(a, i, axis, keepdims=False))
    return total


def _shifted(v: jax.Array, shift: int) -> jax.Array:
    """uint32 v << shift (shift in 0, 16, 32, 48) as a pair."""
    u, z = jnp.uint32, jnp.zeros_like(v)
    lo = {0: v, 16: v << u(16), 32: z, 48: z}[shift]
    hi = {0: z, 16: v >> u(16), 32: v, 48: v << u(16)}[shift]
    return jnp.stack([lo, hi], axis=-1)


def multiply(a: jax.Array, c: int) -> jax.Array:
    """a * c (mod 2^64) for a static integer 0 <= c < 2^32, by 16-bit limbs."""
    if not 0 <= c < 2**32:
        raise ValueError(f"multiplier {c} is outside [0, 2^32)")
    u = jnp.uint32
    limbs = [a[..., 0] & u(0xFFFF), a[..., 0] >> u(16), a[..., 1] & u(0xFFFF), a[..., 1] >> u(16)]
    total = jnp.zeros(a.shape, jnp.uint32)
    for j, cj in enumerate((c & 0xFFFF, c >> 16)):
        for i, ai in enumerate(limbs):
            if i + j < 4 and cj:
                total = add(total, _shifted(ai * u(cj), 16 * (i + j)))  # Each product < 2^32.
    return total


def greater_equal(a: jax.Array, n: int) -> jax.Array:
    """bool `[...]`: a >= n for a static Python int n."""
    lo, hi = (jnp.uint32(w) for w in constant(n))
    return (a[..., 1] > hi) | ((a[..., 1] == hi) & (a[..., 0] >= lo))
