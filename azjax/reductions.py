"""The ops that add over F, written once for NumPy (the reference) and JAX (the VM's kernels).

Dot products, norms, means, standard deviations and the matrix-vector and matrix-matrix products
add in one fixed order, so the VM and the reference agree bit for bit in float32, and the float64
reference adds like the original's `double` code:

- A sum over an axis of n entries is a pairwise tree: the first h = n // 2 entries are added to
  the next h (entry i to entry i + h), an odd last entry is carried to the next level, until one
  is left. For vectors of F <= 4 this is the order of the original's vectorized (Eigen) sums, and
  like them it is exact on equal terms when n is a power of two: the mean of a constant vector is
  the constant and its standard deviation exactly 0. (Adding left to right, as the VM once did,
  rounds 3c, so the one-pass std of a constant came out slightly negative, and NaN, for 10-40% of
  constants at F = 4-16.) Elsewhere Eigen pairs the entries in another tree order (F >= 8,
  whole-matrix and column sums): the same up to rounding, and exact on equal terms too.
- A sum over several axes adds the last axis first (a matrix: each row, then the row sums).
- A matrix product adds its F products in index order, as Eigen's product kernels do.
- Every product is rounded before it is added: the VM's `Arithmetic.product` is
  `kernels.Operands.rounded`, which stops XLA:CPU from fusing a multiply and an add into one FMA
  (rounded once: an inf term plus a product overflowing to -inf gives -inf, not NaN).

Shapes: a vector `[F, *lanes]`, a matrix `[F, F, *lanes]`; no lane axes in the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np


def _identity(x):
    return x


class Arithmetic(NamedTuple):
    """How to compute: `xp` (numpy or jax.numpy), `product` applied to every product that feeds
    an add (the VM's FMA barrier), `result` to every other intermediate result (the reference's
    subnormal flush, when it emulates the VM's flush-to-zero arithmetic), `divide(total, n)` for
    a mean's division by a count n that is not a power of two (XLA turns a division by a constant
    or a broadcast into a multiply by its reciprocal, which rounds differently)."""

    xp: Any = np
    product: Callable = _identity
    result: Callable = _identity
    divide: Callable = np.divide


NUMPY = Arithmetic()


def _take(x, axis: int, start: int, stop: int):
    return x[(slice(None),) * axis + (slice(start, stop),)]


def pairwise_sum(x, axes: Sequence[int], arith: Arithmetic = NUMPY):
    """Sum over `axes` (the last first), each in the pairwise tree order of the module doc."""
    for axis in sorted(axes, reverse=True):
        n = x.shape[axis]
        while n > 1:
            h = n // 2
            pairs = arith.result(_take(x, axis, 0, h) + _take(x, axis, h, 2 * h))
            x = arith.xp.concatenate([pairs, _take(x, axis, 2 * h, n)], axis) if n % 2 else pairs
            n = x.shape[axis]
        x = arith.xp.squeeze(x, axis)
    return x


def dot(a, b, arith: Arithmetic = NUMPY):
    """a . b of two vectors (op 27)."""
    return pairwise_sum(arith.product(a * b), (0,), arith)


def norm(x, axes: Sequence[int], arith: Arithmetic = NUMPY):
    """sqrt(sum x^2) over `axes` with no rescaling (Eigen's .norm(); ops 21, 34, 35, 36)."""
    return arith.xp.sqrt(pairwise_sum(arith.product(x * x), axes, arith))


def mean(x, axes: Sequence[int], arith: Arithmetic = NUMPY):
    """sum x / n over `axes` (ops 50, 51, 52)."""
    return _divide(pairwise_sum(x, axes, arith), _count(x, axes), arith)


def std(x, axes: Sequence[int], arith: Arithmetic = NUMPY):
    """The original's one-pass population std over `axes`, sqrt(sum x^2 / n - mean^2): NaN when
    rounding makes it negative, exactly 0 for equal entries when n is a power of two (53-55)."""
    n = _count(x, axes)
    mean_x = arith.result(_divide(pairwise_sum(x, axes, arith), n, arith))
    mean_sq = arith.product(_divide(pairwise_sum(arith.product(x * x), axes, arith), n, arith))
    return arith.xp.sqrt(arith.result(mean_sq - arith.product(mean_x * mean_x)))


def matvec(m, v, arith: Arithmetic = NUMPY):
    """m v (op 31): entry i is the dot product of row i with v, in the pairwise order."""
    return pairwise_sum(arith.product(m * v[None, :]), (1,), arith)


def matmul(a, b, arith: Arithmetic = NUMPY):
    """a b (op 43): entry (i, j) adds a[i, k] b[k, j] for k = 0, 1, ..., F - 1 in turn."""
    total = arith.product(a[:, 0, None] * b[None, 0])
    for k in range(1, a.shape[1]):
        total = arith.result(total + arith.product(a[:, k, None] * b[None, k]))
    return total


def _count(x, axes: Sequence[int]) -> int:
    n = 1
    for axis in axes:
        n *= x.shape[axis]
    return n


def _divide(total, n: int, arith: Arithmetic):
    return total / n if n & (n - 1) == 0 else arith.divide(total, n)  # x / 2^k = x * 2^-k.
