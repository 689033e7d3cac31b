"""JAX kernels of the 65 ops in the VM's lane-last layout.

Shapes: a scalar operand is `[*lanes]`, a vector `[F, *lanes]`, a matrix `[F, F, *lanes]` (the
lane axes, one lane per (task, program) pair, last so that every kernel is elementwise SIMD over
lanes; the VM's lanes are `[T, P]`). Each kernel maps an `Operands` view to its result, of its
output kind's shape. Semantics are the original's (REFERENCE.md §2.3; `azjax.reference` is the
readable spec), raw IEEE: nothing is guarded.

Matrix products are written as unrolled sums over F, not `dot_general`: XLA:CPU vectorizes those
well in the batch-minor layout and `dot_general` does not (VM_DESIGN.md §5.2).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from azjax import ops as ops_lib
from azjax import rng


class Operands:
    """Operands of one instruction for all lanes; random draws are built lazily, once per trace.

    `s`, `v`, `m` map an operand name ('a', 'b', or 'o' = the output's old value, for partial
    writes) to the selected bank entry. `c` holds the three constants `[*lanes]` (None where the
    component has none) and `key` the lanes' draw keys `[*lanes]` (uint32) for random ops.
    """

    def __init__(self, *, feature_size, s, v, m, c, key, dtype):
        self.F = feature_size
        self.s, self.v, self.m, self.c, self.key, self.dtype = s, v, m, c, key, dtype
        self._draws = {}  # ("u" or "n", kind) -> draws, built once per trace.

    def uniform(self, kind: ops_lib.Kind) -> jax.Array:
        """U(0,1) of the output kind's shape: element e = row * F + col of the lane's F x F draw;
        a vector is its row 0, a scalar its element 0. Only the kind's elements are hashed."""
        if ("u", kind) not in self._draws:
            F = self.F
            if kind == ops_lib.Kind.SCALAR:
                key, element = self.key, jnp.uint32(0)
            else:
                shape = (F,) * (kind - 1)
                element = jnp.arange(F ** (kind - 1), dtype=jnp.uint32)
                element = element.reshape(shape + (1,) * self.key.ndim)
                key = self.key.reshape((1,) * len(shape) + self.key.shape)
            u = rng.uniform01(key, element, xp=jnp, dtype=jnp.float32)
            self._draws["u", kind] = u.astype(self.dtype)
        return self._draws["u", kind]

    def normal(self, kind: ops_lib.Kind) -> jax.Array:
        if ("n", kind) not in self._draws:
            self._draws["n", kind] = rng.standard_normal(
                self.uniform(kind), jax.lax.erf_inv, xp=jnp
            )
        return self._draws["n", kind]


def _sum(terms):
    return functools.reduce(jnp.add, terms)


def _total(x, axes):
    """Sum over `axes` as unrolled elementwise adds in index order (the last of `axes` first),
    never a reduce: XLA:CPU turns a reduce over F into a library (YNNPACK) call per slot, ~12 us
    where a fused add chain takes ~1 us, with a summation order that depends on the shape."""
    for ax in sorted(axes, reverse=True):
        x = _sum(jnp.take(x, i, axis=ax) for i in range(x.shape[ax]))
    return x


def _matvec(m, v, F):  # [F, F, *lanes] x [F, *lanes] -> [F, *lanes]
    return _sum(m[:, j] * v[j] for j in range(F))


def _matmul(a, b, F):  # [F, F, *lanes] x [F, F, *lanes] -> [F, F, *lanes]
    return _sum(a[:, k, None] * b[None, k] for k in range(F))


def _heaviside_strict(x):  # vectors and matrices: 1 if x > 0
    return jnp.where(x > 0, 1.0, 0.0).astype(x.dtype)


def _min(a, b):  # std::min: a unless b < a (a on NaN or equality)
    return jnp.where(b < a, b, a)


def _max(a, b):  # std::max: a unless a < b
    return jnp.where(a < b, b, a)


def _std(x, axes):  # one-pass population std, as the original
    n = 1
    for ax in axes:
        n *= x.shape[ax]
    mean = _total(x, axes) / n
    return jnp.sqrt(_total(x * x, axes) / n - mean * mean)


def _index(fraction, F):
    """int(F * fraction), clamped to [0, F-1] against float rounding."""
    return jnp.clip((F * fraction).astype(jnp.int32), 0, F - 1)


def _positions(o: Operands, shape):
    """jnp.arange(F) laid out along `shape` (e.g. (F, 1): matrix rows), ones over the lanes."""
    return jnp.arange(o.F).reshape(shape + (1,) * o.c[0].ndim)


def _vector_const_set(o: Operands):
    rows = _positions(o, (o.F,))
    return jnp.where(rows == _index(o.c[0], o.F)[None], o.c[1][None], o.v["o"])


def _matrix_const_set(o: Operands):
    rows, cols = _positions(o, (o.F, 1)), _positions(o, (1, o.F))
    hit = (rows == _index(o.c[0], o.F)) & (cols == _index(o.c[1], o.F))
    return jnp.where(hit, o.c[2], o.m["o"])


def _uniform_set(kind):
    def kernel(o: Operands):
        u = o.uniform(kind)
        low, high = (_bcast(c, kind) for c in o.c[:2])
        return rng.to_uniform(u, low, high, xp=jnp)

    return kernel


def _gaussian_set(kind):
    def kernel(o: Operands):
        mean, std = (_bcast(c, kind) for c in o.c[:2])
        return mean + std * o.normal(kind)

    return kernel


def _bcast(c, kind):
    return c[(None,) * (kind - 1)]


S, V, M = (ops_lib.Kind.SCALAR, ops_lib.Kind.VECTOR, ops_lib.Kind.MATRIX)

# One kernel per op id; each reads its operands from `o` by the kinds the op table declares.
KERNELS: dict[int, Callable[[Operands], jax.Array]] = {
    1: lambda o: o.s["a"] + o.s["b"],
    2: lambda o: o.s["a"] - o.s["b"],
    3: lambda o: o.s["a"] * o.s["b"],
    4: lambda o: o.s["a"] / o.s["b"],
    5: lambda o: jnp.abs(o.s["a"]),
    6: lambda o: 1 / o.s["a"],
    7: lambda o: jnp.sin(o.s["a"]),
    8: lambda o: jnp.cos(o.s["a"]),
    9: lambda o: jnp.tan(o.s["a"]),
    10: lambda o: jnp.arcsin(o.s["a"]),
    11: lambda o: jnp.arccos(o.s["a"]),
    12: lambda o: jnp.arctan(o.s["a"]),
    13: lambda o: jnp.exp(o.s["a"]),
    14: lambda o: jnp.log(o.s["a"]),
    15: lambda o: jnp.where(o.s["a"] >= 0, 1.0, 0.0).astype(o.s["a"].dtype),
    16: lambda o: _heaviside_strict(o.v["a"]),
    17: lambda o: _heaviside_strict(o.m["a"]),
    18: lambda o: o.s["a"][None] * o.v["b"],
    19: lambda o: jnp.broadcast_to(o.s["a"][None], (o.F,) + o.s["a"].shape),
    20: lambda o: 1 / o.v["a"],
    21: lambda o: jnp.sqrt(_total(o.v["a"] * o.v["a"], (0,))),
    22: lambda o: jnp.abs(o.v["a"]),
    23: lambda o: o.v["a"] + o.v["b"],
    24: lambda o: o.v["a"] - o.v["b"],
    25: lambda o: o.v["a"] * o.v["b"],
    26: lambda o: o.v["a"] / o.v["b"],
    27: lambda o: _total(o.v["a"] * o.v["b"], (0,)),
    28: lambda o: o.v["a"][:, None] * o.v["b"][None, :],
    29: lambda o: o.s["a"][None, None] * o.m["b"],
    30: lambda o: 1 / o.m["a"],
    31: lambda o: _matvec(o.m["a"], o.v["b"], o.F),
    32: lambda o: jnp.broadcast_to(o.v["a"][:, None], (o.F,) + o.v["a"].shape),
    33: lambda o: jnp.broadcast_to(o.v["a"][None, :], (o.F,) + o.v["a"].shape),
    34: lambda o: jnp.sqrt(_total(o.m["a"] * o.m["a"], (0, 1))),
    35: lambda o: jnp.sqrt(_total(o.m["a"] * o.m["a"], (0,))),
    36: lambda o: jnp.sqrt(_total(o.m["a"] * o.m["a"], (1,))),
    37: lambda o: jnp.swapaxes(o.m["a"], 0, 1),
    38: lambda o: jnp.abs(o.m["a"]),
    39: lambda o: o.m["a"] + o.m["b"],
    40: lambda o: o.m["a"] - o.m["b"],
    41: lambda o: o.m["a"] * o.m["b"],
    42: lambda o: o.m["a"] / o.m["b"],
    43: lambda o: _matmul(o.m["a"], o.m["b"], o.F),
    44: lambda o: _min(o.s["a"], o.s["b"]),
    45: lambda o: _min(o.v["a"], o.v["b"]),
    46: lambda o: jnp.where(o.m["a"] < o.m["b"], o.m["a"], o.m["b"]),  # a loop, not std::min
    47: lambda o: _max(o.s["a"], o.s["b"]),
    48: lambda o: _max(o.v["a"], o.v["b"]),
    49: lambda o: jnp.where(o.m["a"] > o.m["b"], o.m["a"], o.m["b"]),  # a loop, not std::max
    50: lambda o: _total(o.v["a"], (0,)) / o.F,
    51: lambda o: _total(o.m["a"], (0, 1)) / (o.F * o.F),
    52: lambda o: _total(o.m["a"], (1,)) / o.F,
    53: lambda o: _std(o.m["a"], (1,)),
    54: lambda o: _std(o.v["a"], (0,)),
    55: lambda o: _std(o.m["a"], (0, 1)),
    56: lambda o: o.c[0],
    57: _vector_const_set,
    58: _matrix_const_set,
    59: _uniform_set(S),
    60: _uniform_set(V),
    61: _uniform_set(M),
    62: _gaussian_set(S),
    63: _gaussian_set(V),
    64: _gaussian_set(M),
}

assert set(KERNELS) == set(ops_lib.ALL_OPS) - {ops_lib.NO_OP}, "every op but NO_OP needs a kernel"

# Ops whose output address is also read (they overwrite one element and keep the rest).
PARTIAL_WRITE_OPS = frozenset({57, 58})
