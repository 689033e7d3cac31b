"""64-bit hashes on the device: structural keys of programs and FEC fingerprints.

JAX runs without 64-bit integers by default, so a 64-bit hash is a pair of independent 32-bit
hashes, uint32 `[..., 2]`. Each lane hashes a row of words as a sum (mod 2^32) of bijective
mixes of (word XOR a per-position key), then mixes the sum with the row length. Every step is a
bijection in any single word, so rows that differ in one word always hash differently; rows that
differ in more collide with odds of about 2^-64 (two independent lanes). A sum of mixes also has
no sequential chain, so it vectorizes over the whole row.

Deviation: the original hashes fingerprints with std::hash and a Jenkins mix, which no two
platforms reproduce anyway; this hash is the project's own and stable across runs and devices.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from azjax import rng
from azjax.program import COMPONENTS, Program

# Seeds of the two lanes, and of the two kinds of rows hashed (arbitrary, fixed).
_LANES = (0x243F6A88, 0x85A308D3)
PROGRAM_SEED = 0x5EED0FA1
FINGERPRINT_SEED = 42  # The original's WellMixedHash seed.
_CANONICAL_NAN = 0x7FC00000


@functools.lru_cache(maxsize=64)
def _position_keys(num_words: int, seed: int) -> np.ndarray:
    """uint32 `[2, W]`: a pseudo-random key per lane and word position."""
    positions = np.arange(num_words, dtype=np.uint32)
    keys = [
        rng.lowbias32(rng.lowbias32(positions ^ np.uint32(lane)) ^ np.uint32(seed))
        for lane in _LANES
    ]
    return np.stack(keys)


def hash_words(words: jax.Array, seed: int) -> jax.Array:
    """uint32 `[..., W]` rows -> uint32 `[..., 2]` 64-bit hashes (module docstring)."""
    words = jnp.asarray(words).astype(jnp.uint32)
    num_words = words.shape[-1]
    keys = jnp.asarray(_position_keys(num_words, seed))
    mixed = rng.lowbias32(words[..., None, :] ^ keys, jnp)  # [..., 2, W]
    total = jnp.sum(mixed, axis=-1, dtype=jnp.uint32)  # Wraps mod 2^32.
    tail = np.array([rng.lowbias32(np.uint32(num_words) ^ np.uint32(lane)) for lane in _LANES])
    return rng.lowbias32(total ^ jnp.asarray(tail), jnp)


def float_bits(x: jax.Array, *, canonical: bool = False) -> jax.Array:
    """The uint32 bit patterns of float32 values; `canonical`: every NaN as one NaN, -0 as +0."""
    x = jnp.asarray(x, jnp.float32)
    if canonical:
        x = jnp.where(x == 0, jnp.float32(0), x)
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    return jnp.where(jnp.isnan(x), jnp.uint32(_CANONICAL_NAN), bits) if canonical else bits


def program_keys(programs: Program) -> jax.Array:
    """Structural 64-bit keys `[..., 2]` of programs `[...]`: their code and the bits of their
    constants (-0.0 and +0.0 differ: 1 / -0.0 = -inf). Pass pruned programs: equal keys then
    mean equal predictions. `length` is not hashed (slots past it are NO_OPs)."""
    lead = programs.predict.length.shape
    words = []
    for c in COMPONENTS:
        comp = getattr(programs, c)
        words.append(comp.code.astype(jnp.uint32).reshape(lead + (-1,)))
        words.append(float_bits(comp.consts).reshape(lead + (-1,)))
    return hash_words(jnp.concatenate(words, axis=-1), PROGRAM_SEED)
