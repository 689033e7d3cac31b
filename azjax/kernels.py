"""JAX kernels of the 65 ops in the VM's lane-last layout.

Shapes: a scalar operand is `[*lanes]`, a vector `[F, *lanes]`, a matrix `[F, F, *lanes]` (the
lane axes, one lane per (task, program) pair, last so that every kernel is elementwise SIMD over
lanes; the VM's lanes are `[T, P]`). Each kernel maps an `Operands` view to its result, of its
output kind's shape. Semantics are the original's op table (`azjax.reference` is the readable
spec), raw IEEE: nothing is guarded.

The ops that add over F (dot, norms, means, stds, matrix products) are `azjax.reductions`, shared
with the reference: unrolled elementwise adds in a fixed pairwise order, not `dot_general` or a
reduce (XLA:CPU vectorizes those adds well in the batch-minor layout and `dot_general` not), with
every product rounded before it is added (`Operands.rounded`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from azjax import ops as ops_lib
from azjax import reductions, rng

S, V, M = (ops_lib.Kind.SCALAR, ops_lib.Kind.VECTOR, ops_lib.Kind.MATRIX)


class Operands:
    """Operands of one instruction for all lanes; random draws are built lazily, once per trace.

    `s`, `v`, `m` map an operand name ('a', 'b', or 'o' = the output's old value, for partial
    writes) to the selected bank entry. `c` holds the three constants `[*lanes]` (None where the
    component has none) and `key` the lanes' draw keys `[*lanes]` (uint32) for random ops.
    `ops` says which op each lane runs, for `pick`: the op id itself when these operands serve
    one op (the switch VM), else per output kind the candidate op ids and each program's
    position among them (`[P]`, None for a single candidate). `zero`: `neg_zero` of the
    programs' op ids, broadcasting against the lanes, for `rounded` (None: no barrier).
    """

    def __init__(self, *, feature_size, s, v, m, c, key, dtype, ops, zero=None):
        self.F = feature_size
        self.s, self.v, self.m, self.c, self.key, self.dtype = s, v, m, c, key, dtype
        self.ops, self.zero = ops, zero
        self._memo = {}  # Values shared by several kernels, built once per trace.

    def rounded(self, x: jax.Array) -> jax.Array:
        """`x`, computed and rounded on its own, as the reference computes it: a barrier
        between `x` and the arithmetic around it. Two compiler rewrites change results:

        - XLA:CPU lets LLVM fuse a multiply and a later add into one FMA, rounded once, where the
          reference and the original round the product first (an inf term plus a product
          overflowing to -inf then gives -inf instead of NaN, and sums differ in the last bit);
        - XLA reassociates a chain of multiplies by broadcast scalars: std * (sqrt(2) * e) into
          (std * sqrt(2)) * e, which overflows for std > 2.4e38; (high - low) * (k * 2^-23) into
          ((high - low) * 2^-23) * k, which flushes to 0 for high - low < 1e-31.

        Adding `zero`, a -0.0 the compiler cannot prove (`neg_zero`), changes no value (x + -0.0
        is x, signed zeros included) and leaves no multiply to fuse or reassociate: LLVM either
        adds it or fuses a multiply with this add, FMA(a, b, -0.0) = round(a * b).
        """
        return x if self.zero is None else x + self.zero

    def memo(self, name, build: Callable[[], jax.Array]) -> jax.Array:
        if name not in self._memo:
            self._memo[name] = build()
        return self._memo[name]

    def pick(self, kind: ops_lib.Kind, values: dict[int, jax.Array]) -> jax.Array:
        """values[op] in each lane running one of those ops (`values`: op id -> array), so that
        ops of a kind can share one costly function by first selecting its argument."""
        if isinstance(self.ops, int):
            return values[self.ops]
        ids, index = self.ops[kind]
        present = [i for i in ids if i in values]
        if index is None or len(present) == 1:
            return values[present[0]]
        # Each program's position among `present` (other ops: 0), looked up per program `[P]`.
        position = jnp.asarray([present.index(i) if i in present else 0 for i in ids], jnp.int32)
        cases = [values[i] for i in present]
        return jax.lax.select_n(jnp.broadcast_to(position[index], cases[0].shape), *cases)

    def uniform(self, kind: ops_lib.Kind) -> jax.Array:
        """U(0,1) of the output kind's shape: element e = row * F + col of the lane's F x F draw;
        a vector is its row 0, a scalar its element 0. Only the kind's elements are hashed."""

        def build():
            F = self.F
            if kind == ops_lib.Kind.SCALAR:
                key, element = self.key, jnp.uint32(0)
            else:
                shape = (F,) * (kind - 1)
                element = jnp.arange(F ** (kind - 1), dtype=jnp.uint32)
                element = element.reshape(shape + (1,) * self.key.ndim)
                key = self.key.reshape((1,) * len(shape) + self.key.shape)
            return rng.uniform01(key, element, xp=jnp, dtype=jnp.float32).astype(self.dtype)

        return self.memo(("u", kind), build)

    def normal(self, kind: ops_lib.Kind) -> jax.Array:
        erfinv = functools.partial(rng.erfinv, xp=jnp)
        build = lambda: rng.standard_normal(self.uniform(kind), erfinv, xp=jnp)  # noqa: E731
        return self.memo(("n", kind), build)


def neg_zero(op) -> jax.Array:
    """-0.0 per program, from its op ids `[..., P]` (any slot's), that no compiler can prove:
    ops are never negative, but the compiler does not know it (+0.0, as harmless, if one were).
    A constant -0.0 would be folded away (x + -0.0 is x), and the FMA barrier with it."""
    return jnp.where(op < 0, 0.0, -0.0).astype(jnp.float32)


# The sums over F never use a reduce: XLA:CPU turns a reduce over F into a library (YNNPACK) call
# per slot, ~12 us where a fused add chain takes ~1 us, with a summation order that depends on the
# shape. `azjax.reductions` writes them as elementwise adds of slices.
def _arith(o: Operands) -> reductions.Arithmetic:
    return reductions.Arithmetic(jnp, o.rounded, divide=_divide)


def _divide(total, n: int):
    """total / n, a true division: a divisor of total's shape that XLA cannot see is constant
    (n + -0.0, or n + 0.0 where total is NaN), not n or a broadcast, which it would replace by
    a multiply with 1 / n."""
    return total / (n + jnp.where(jnp.isnan(total), 0.0, -0.0).astype(total.dtype))


# Cephes' atanf: |x| reduced to [0, tan(pi/8)] around 0, pi/4 or pi/2, then an odd polynomial.
_ATAN_POLY = (8.05374449538e-2, -1.38776856032e-1, 1.99777106478e-1, -3.33329491539e-1)


def atan(x):
    """arctan to float32 accuracy (3 ulp), NaN for NaN, +-pi/2 at +-inf. The VM's (and the
    fitness's) own: XLA:CPU's is wrong at the VM's 512-bit vector width (see
    `azjax.vm.COMPILER_OPTIONS`), and 2x slower."""
    t = jnp.abs(x)
    big, mid = t > 2.414213562373095, t > 0.41421356237309503
    r = jnp.where(big, -1 / t, jnp.where(mid, (t - 1) / (t + 1), t))
    base = jnp.where(big, math.pi / 2, jnp.where(mid, math.pi / 4, 0.0)).astype(x.dtype)
    z = r * r
    p = functools.reduce(lambda acc, a: acc * z + a, _ATAN_POLY[1:], _ATAN_POLY[0])
    return jnp.copysign(base + (p * z * r + r), x)


def _arc(o: Operands):
    """atan of each lane's own argument, so asin, acos and atan share ONE atan per lane:
    asin x = 2 atan(x / (1 + sqrt((1 - x)(1 + x)))), acos x = 2 atan(sqrt((1 - x) / (1 + x))).
    (jnp's asin and acos lower to atan2, a scalar libm call on XLA:CPU, 15x the cost of a
    vectorized atan.) Within 4 ulp of the exact values; NaN outside [-1, 1], as the original."""

    def build():
        x = o.s["a"]
        asin = x / (1 + jnp.sqrt((1 - x) * (1 + x)))
        return atan(o.pick(S, {10: asin, 11: jnp.sqrt((1 - x) / (1 + x)), 12: x}))

    return o.memo("arc", build)


def _heaviside_strict(x):  # vectors and matrices: 1 if x > 0
    return jnp.where(x > 0, 1.0, 0.0).astype(x.dtype)


def _min(a, b):  # std::min: a unless b < a (a on NaN or equality)
    return jnp.where(b < a, b, a)


def _max(a, b):  # std::max: a unless a < b
    return jnp.where(a < b, b, a)


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
        return rng.to_uniform(u, low, high, xp=jnp, rounded=o.rounded)

    return kernel


def _gaussian_set(kind):
    def kernel(o: Operands):
        mean, std = (_bcast(c, kind) for c in o.c[:2])
        return mean + o.rounded(std * o.rounded(o.normal(kind)))  # See `Operands.rounded`.

    return kernel


def _bcast(c, kind):
    return c[(None,) * (kind - 1)]


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
    9: lambda o: jnp.sin(o.s["a"]) / jnp.cos(o.s["a"]),  # Shares 7's and 8's (~2 ulp).
    10: lambda o: 2 * _arc(o),
    11: lambda o: 2 * _arc(o),
    12: _arc,
    13: lambda o: jnp.exp(o.s["a"]),
    14: lambda o: jnp.log(o.s["a"]),
    15: lambda o: jnp.where(o.s["a"] >= 0, 1.0, 0.0).astype(o.s["a"].dtype),
    16: lambda o: _heaviside_strict(o.v["a"]),
    17: lambda o: _heaviside_strict(o.m["a"]),
    18: lambda o: o.s["a"][None] * o.v["b"],
    19: lambda o: jnp.broadcast_to(o.s["a"][None], (o.F,) + o.s["a"].shape),
    20: lambda o: 1 / o.v["a"],
    21: lambda o: reductions.norm(o.v["a"], (0,), _arith(o)),
    22: lambda o: jnp.abs(o.v["a"]),
    23: lambda o: o.v["a"] + o.v["b"],
    24: lambda o: o.v["a"] - o.v["b"],
    25: lambda o: o.v["a"] * o.v["b"],
    26: lambda o: o.v["a"] / o.v["b"],
    27: lambda o: reductions.dot(o.v["a"], o.v["b"], _arith(o)),
    28: lambda o: o.v["a"][:, None] * o.v["b"][None, :],
    29: lambda o: o.s["a"][None, None] * o.m["b"],
    30: lambda o: 1 / o.m["a"],
    31: lambda o: reductions.matvec(o.m["a"], o.v["b"], _arith(o)),
    32: lambda o: jnp.broadcast_to(o.v["a"][:, None], (o.F,) + o.v["a"].shape),
    33: lambda o: jnp.broadcast_to(o.v["a"][None, :], (o.F,) + o.v["a"].shape),
    34: lambda o: reductions.norm(o.m["a"], (0, 1), _arith(o)),
    35: lambda o: reductions.norm(o.m["a"], (0,), _arith(o)),
    36: lambda o: reductions.norm(o.m["a"], (1,), _arith(o)),
    37: lambda o: jnp.swapaxes(o.m["a"], 0, 1),
    38: lambda o: jnp.abs(o.m["a"]),
    39: lambda o: o.m["a"] + o.m["b"],
    40: lambda o: o.m["a"] - o.m["b"],
    41: lambda o: o.m["a"] * o.m["b"],
    42: lambda o: o.m["a"] / o.m["b"],
    43: lambda o: reductions.matmul(o.m["a"], o.m["b"], _arith(o)),
    44: lambda o: _min(o.s["a"], o.s["b"]),
    45: lambda o: _min(o.v["a"], o.v["b"]),
    46: lambda o: jnp.where(o.m["a"] < o.m["b"], o.m["a"], o.m["b"]),  # a loop, not std::min
    47: lambda o: _max(o.s["a"], o.s["b"]),
    48: lambda o: _max(o.v["a"], o.v["b"]),
    49: lambda o: jnp.where(o.m["a"] > o.m["b"], o.m["a"], o.m["b"]),  # a loop, not std::max
    50: lambda o: reductions.mean(o.v["a"], (0,), _arith(o)),
    51: lambda o: reductions.mean(o.m["a"], (0, 1), _arith(o)),
    52: lambda o: reductions.mean(o.m["a"], (1,), _arith(o)),
    53: lambda o: reductions.std(o.m["a"], (1,), _arith(o)),
    54: lambda o: reductions.std(o.v["a"], (0,), _arith(o)),
    55: lambda o: reductions.std(o.m["a"], (0, 1), _arith(o)),
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
