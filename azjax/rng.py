"""The random-init ops' generator: a stateless counter hash, identical in NumPy and JAX.

A draw is a pure function of (lane seed, call, slot, element), so a program's random ops give the
same numbers whatever batch it is evaluated in, and the NumPy reference interpreter reproduces the
VM's uniforms bit for bit (docs/ops.md deviation: the original shares one mt19937; matching
its stream is not required). `call` numbers component invocations in execution order within one
(program, task) evaluation: Setup is call 0, then each Predict / Learn run takes the next number.

Functions take `xp` (numpy or jax.numpy) so both implementations share this one definition.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = 0x9E3779B9
_SLOT_MIX = 0x85EBCA6B


def lowbias32(x, xp=np):
    """Chris Wellons' lowbias32 integer hash on uint32 arrays (wrapping arithmetic)."""
    if xp is np:
        with np.errstate(over="ignore"):
            return _lowbias32(np.asarray(x, np.uint32), np)
    return _lowbias32(x, xp)


def _lowbias32(x, xp):
    u = xp.uint32
    x = x ^ (x >> u(16))
    x = x * u(0x7FEB352D)
    x = x ^ (x >> u(15))
    x = x * u(0x846CA68B)
    return x ^ (x >> u(16))


def draw_key(seed, call, slot, xp=np):
    """uint32 key of one instruction execution: (lane seed, call number, slot). Broadcasts."""
    u = xp.uint32
    seed, call, slot = (xp.asarray(v).astype(u) for v in (seed, call, slot))
    with np.errstate(over="ignore"):
        mixed = lowbias32(seed ^ (call * u(_GOLDEN)), xp) ^ (slot * u(_SLOT_MIX) + u(1))
    return lowbias32(mixed, xp)


def uniform_bits(key, element, xp=np):
    """uint32 hash of element `element` (row-major index) of the draw with `key`."""
    u = xp.uint32
    element = xp.asarray(element).astype(u)
    with np.errstate(over="ignore"):
        return lowbias32(lowbias32(key + element * u(_GOLDEN), xp) ^ key, xp)


def uniform01(key, element, xp=np, dtype=np.float32):
    """U(0, 1), open at both ends: 23 bits, so float32 never rounds to 1 (docs/vm.md)."""
    bits = uniform_bits(key, element, xp) >> xp.uint32(9)
    return ((bits.astype(dtype) + dtype(0.5)) * dtype(2.0**-23)).astype(dtype)


def to_uniform(u, low, high, xp=np, rounded=lambda x: x):
    """U(low, high) from U(0,1); the constant `low` when low >= high, as absl's Uniform does.
    `rounded`: the VM's barrier (`kernels.Operands.rounded`) against fusing and reassociating."""
    return xp.where(low < high, low + rounded((high - low) * rounded(u)), low)


# Giles (2010), "Approximating the erfinv function": single-precision coefficients, highest
# degree first, for w = -log(1 - x^2) < 5 (in w - 2.5) and for w >= 5 (in sqrt(w) - 3).
_ERFINV_CENTRAL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 2.1858087e-04)
_ERFINV_CENTRAL += (-1.25372503e-03, -4.17768164e-03, 2.46640727e-01, 1.50140941)
_ERFINV_TAIL = (-2.00214257e-04, 1.00950558e-04, 1.34934322e-03, -3.67342844e-03, 5.73950773e-03)
_ERFINV_TAIL += (-7.6224613e-03, 9.43887047e-03, 1.00167406, 2.83297682)


def erfinv(x, xp=np):
    """erfinv for |x| < 1 in the input's float dtype: Giles' single-precision approximation,
    as XLA's `erf_inv`, but with w = -log((1 - x)(1 + x)) where XLA takes -log1p(-x^2):
    XLA:CPU's log1p costs 2.3x its log, and the two agree to ~1e-7 relative over (-1, 1)."""
    dtype = x.dtype.type
    w = -xp.log((dtype(1) - x) * (dtype(1) + x))
    central = w < dtype(5)
    t = xp.where(central, w - dtype(2.5), xp.sqrt(w) - dtype(3))
    p = xp.zeros_like(x)
    for a, b in zip(_ERFINV_CENTRAL, _ERFINV_TAIL, strict=True):
        p = p * t + xp.where(central, dtype(a), dtype(b))
    return p * x


def standard_normal(u, erfinv, xp=np):
    """N(0, 1) from U(0,1) by the inverse CDF, sqrt(2) * erfinv(2u - 1); finite since 0 < u < 1."""
    return xp.sqrt(xp.asarray(2.0, u.dtype)) * erfinv(2 * u - 1)
