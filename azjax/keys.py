"""Bits and splits of typed PRNG keys by the counter hash: the search's own draws.

Selection, mutation and new random programs draw from ordinary typed `jax.random` keys (one seed,
threaded explicitly), but their bits and splits come from the counter hash of `azjax.rng` applied
to the key's data, not from threefry: XLA:CPU takes about 1-2 s to compile each threefry call
(jaxlib 0.10.2) and a generation step draws in a dozen places, where the hash compiles in
milliseconds and runs in a few integer operations per word. That is plenty of randomness for an
evolutionary search.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from azjax.rng import lowbias32

_GOLDEN = 0x9E3779B9
_MIX = 0x85EBCA6B


def _key_words(key):
    """Two uint32 words `(h1, h2)` of a typed key's data: the data itself for two-word keys
    (threefry), else its words folded by the hash."""
    words = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
    if words.shape[0] == 2:
        return words[0], words[1]
    h1, h2 = jnp.uint32(_GOLDEN), jnp.uint32(_MIX)
    for i in range(words.shape[0]):
        h1 = lowbias32(h1 ^ words[i], jnp)
        h2 = lowbias32(h2 + words[i] * jnp.uint32(_GOLDEN), jnp)
    return h1, h2


def key_bits(key, shape) -> jax.Array:
    """uint32 `shape` pseudo-random bits of one typed key (consumed): two rounds of lowbias32
    per word, the key's words mixed into each round."""
    h1, h2 = _key_words(key)
    n = jnp.arange(int(np.prod(shape)), dtype=jnp.uint32).reshape(shape)
    return lowbias32(lowbias32(n * jnp.uint32(_GOLDEN) ^ h1, jnp) ^ h2, jnp)


def split(key, num: int = 2) -> jax.Array:
    """`num` new typed keys `[num]` from one (consumed), like `jax.random.split`."""
    data = jax.random.key_data(key)
    new = key_bits(key, (num,) + data.shape).astype(data.dtype)
    return jax.random.wrap_key_data(new, impl=jax.random.key_impl(key))
