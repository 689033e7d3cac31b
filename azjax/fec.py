"""Functional equivalence checking (FEC): fingerprints of short runs (the paper's §3.2).

As in the original (fec_cache.cc, fec_hashing.cc): every program is first run on the first 10
training and 10 validation examples of each task, with the FEC generator re-seeded to a fixed
seed, recording |label - prediction| after each training Predict and each validation Predict (0/1
correctness for classification); the exact error values are hashed into a 64-bit fingerprint, and
programs with equal fingerprints share one full evaluation through a cache (`azjax.caches`) whose
entries are forgotten after `forget_every` uses, so noisy (random-op) programs get re-scored.

Deviations: the fingerprint covers all of a program's tasks at once (one cache entry per program,
where the original keeps one per (program, task): a program hits when it would hit on every task;
a partial match, about 1% of lookups in the demo, is a miss and the program is scored in full);
the hash is the project's own (`azjax.hashing`). Errors are hashed bitwise, every NaN (recorded
after an early stop) as one NaN and -0 as +0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from azjax import hashing

FEC_SEED = 235732282  # The original re-seeds its FEC generator to this before every fingerprint.


def fingerprint(train_errors: jax.Array, valid_errors: jax.Array) -> jax.Array:
    """64-bit fingerprints uint32 `[..., 2]` from float errors `[..., T, n_train]` and
    `[..., T, n_valid]` (NaN after an early stop; T tasks in a fixed order)."""
    lead = train_errors.shape[:-2]
    words = jnp.concatenate(
        [
            hashing.float_bits(train_errors, canonical=True).reshape(lead + (-1,)),
            hashing.float_bits(valid_errors, canonical=True).reshape(lead + (-1,)),
        ],
        axis=-1,
    )
    return hashing.hash_words(words, hashing.FINGERPRINT_SEED)
