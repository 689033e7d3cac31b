"""Tests for azjax.hashing and azjax.fec: structural program keys and FEC fingerprints."""

import jax
import jax.numpy as jnp
import numpy as np
from test_pruning import SPEC, random_population

from azjax import fec, hashing, pruning
from azjax.program import COMPONENTS, Component, Program, index, stack


def as_ints(keys) -> list[int]:
    keys = np.asarray(keys, np.uint64).reshape(-1, 2)
    return (keys[:, 0] | (keys[:, 1] << np.uint64(32))).tolist()


def key(program) -> int:
    return as_ints(hashing.program_keys(jax.tree.map(jnp.asarray, program)))[0]


def copy(program):
    return Program(*(Component(*(np.array(x) for x in comp)) for comp in program))


def test_program_keys_equal_programs_equal_and_any_single_change_differs():
    base = pruning.prune(random_population(np.random.default_rng(1), 1, SPEC), SPEC)
    assert key(base) == key(copy(base)) == key(index(base, 0))
    variants = []
    for c in COMPONENTS:
        for field in ("code", "consts"):
            for flat in range(getattr(getattr(base, c), field)[0].size):
                changed = copy(base)
                target = getattr(getattr(changed, c), field)[0].reshape(-1)
                if field == "code":
                    target[flat] += 1
                else:
                    target[flat] = np.nextafter(target[flat], np.float32(2))
                variants.append(index(changed, 0))
    keys = as_ints(hashing.program_keys(jax.tree.map(jnp.asarray, stack(variants))))
    assert len(set(keys) | {key(base)}) == len(variants) + 1
    neg = copy(base)
    neg.setup.consts[0, 0, 0] = 0.0
    positive = key(neg)
    neg.setup.consts[0, 0, 0] = -0.0
    assert key(neg) != positive  # 1 / c differs: different programs.


def test_program_keys_of_many_programs_distinguish_distinct_rows():
    population = pruning.prune(random_population(np.random.default_rng(2), 3000, SPEC), SPEC)
    keys = as_ints(hashing.program_keys(jax.tree.map(jnp.asarray, population)))
    rows = np.concatenate(
        [
            np.asarray(getattr(population, c)[f]).reshape(3000, -1).view(np.uint32)
            for c in COMPONENTS
            for f in (0, 1)
        ],
        axis=1,
    )
    assert len(set(keys)) == len(np.unique(rows, axis=0)) > 1000


def test_fingerprints_hash_exact_errors_with_one_nan_and_one_zero():
    train = np.full((3, 2, 10), 0.5, np.float32)
    valid = np.full((3, 2, 10), 0.25, np.float32)
    train[1, 0, 3] = np.nextafter(np.float32(0.5), np.float32(1))  # One ulp: another program.
    train[2, 1, 9] = np.nan  # Stopped early at the last step.
    prints = as_ints(fec.fingerprint(train, valid))
    assert len(set(prints)) == 3
    other_nan = train.copy()
    other_nan[2, 1, 9] = np.float32(np.frombuffer(np.uint32(0x7FC00001).tobytes(), np.float32)[0])
    assert as_ints(fec.fingerprint(other_nan, valid)) == prints
    zeros, negative = np.zeros((1, 2, 10), np.float32), np.full((1, 2, 10), -0.0, np.float32)
    assert as_ints(fec.fingerprint(zeros, valid[:1])) == as_ints(
        fec.fingerprint(negative, valid[:1])
    )
    swapped = np.stack([train[1, 1], train[1, 0]])[None]  # Tasks in another order.
    assert as_ints(fec.fingerprint(swapped, valid[:1])) != prints[1:2]


def test_hash_words_single_word_changes_always_differ():
    words = np.random.default_rng(0).integers(0, 2**32, (1, 50), dtype=np.uint32)
    variants = np.repeat(words, 50 * 4, axis=0)
    for j in range(50):
        for b in range(4):
            variants[j * 4 + b, j] ^= np.uint32(1 << (8 * b))
    hashes = as_ints(hashing.hash_words(jnp.asarray(np.concatenate([words, variants])), 7))
    assert len(set(hashes)) == 1 + 200
