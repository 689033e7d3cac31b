"""Tests for azjax.fec: fingerprints and the LRU cache with the original's hit/forget rule."""

import numpy as np
import pytest

from azjax.fec import FECCache, fingerprint, hash_rows, hash_words, unique_misses


def find(cache, key):
    hit, fitness = cache.lookup([key])
    return bool(hit[0]), float(fitness[0])


def insert_and_verify(cache, key, fitness, expect_new):
    """fec_cache_test.cc's helper: a new key misses and is inserted, a known one hits."""
    hit, value = find(cache, key)
    assert hit == (not expect_new)
    if expect_new:
        cache.insert([key], [fitness])
    else:
        assert value == fitness


def test_inserts_correctly():  # fec_cache_test.cc InsertsCorrectly
    cache = FECCache(10, forget_every=0)
    for key in (1, 2, 3):
        insert_and_verify(cache, key, key / 10, True)
    insert_and_verify(cache, 2, 0.2, False)
    insert_and_verify(cache, 4, 0.4, True)
    insert_and_verify(cache, 3, 0.3, False)
    insert_and_verify(cache, 2, 0.2, False)
    insert_and_verify(cache, 2, 0.2, False)
    assert (cache.hits, cache.misses, cache.evictions, cache.forgets) == (4, 4, 0, 0)


def test_discards_by_lru_policy():  # fec_cache_test.cc DiscardsByLRUPolicy
    cache = FECCache(5, forget_every=0)
    for key in (5, 2, 4, 1, 3, 6, 7):
        insert_and_verify(cache, key, key / 10, True)
    assert cache.evictions == 2
    assert [find(cache, k)[0] for k in (1, 2, 3, 4, 5, 6, 7)] == [1, 0, 1, 1, 0, 1, 1]


def test_lru_policy_considers_reinserts():  # fec_cache_test.cc LRUPolicyConsidersReinserts
    cache = FECCache(5, forget_every=0)
    for key in (5, 2, 4, 1, 3):
        insert_and_verify(cache, key, key / 10, True)
    insert_and_verify(cache, 5, 0.5, False)
    insert_and_verify(cache, 4, 0.4, False)
    insert_and_verify(cache, 6, 0.6, True)
    insert_and_verify(cache, 7, 0.7, True)
    assert [find(cache, k)[0] for k in (1, 2, 3, 4, 5, 6, 7)] == [0, 0, 1, 1, 1, 1, 1]


def test_forget_rule_99th_hit_erases():
    cache = FECCache(10, forget_every=100)
    cache.insert([42], [0.75])  # count 1
    for _ in range(98):
        assert find(cache, 42) == (True, 0.75)
    assert 42 in cache and cache.forgets == 0
    assert find(cache, 42) == (True, 0.75)  # The 99th hit returns the value and erases it.
    assert 42 not in cache and cache.forgets == 1
    assert find(cache, 42) == (False, 0.0)
    never = FECCache(10, forget_every=0)
    never.insert([42], [0.5])
    assert all(find(never, 42)[0] for _ in range(500))


def test_batch_lookup_is_sequential_and_insert_counts_repeats_as_hits():
    cache = FECCache(10, forget_every=3)
    cache.insert([7], [0.7])
    hit, fitness = cache.lookup([7, 8, 7, 7])  # count 2, miss, count 3 -> forgotten, miss
    np.testing.assert_array_equal(hit, [True, False, True, False])
    np.testing.assert_array_equal(fitness, [0.7, 0.0, 0.7, 0.0])
    assert (cache.hits, cache.misses, cache.forgets) == (2, 2, 1)

    keys = np.array([5, 9, 5, 5, 9, 5], np.uint64)
    hit, fitness = cache.lookup(keys)
    assert not hit.any()
    todo, inverse = unique_misses(keys, hit)
    np.testing.assert_array_equal(keys[todo], [5, 9])
    np.testing.assert_array_equal(todo, [0, 1])
    evaluated = np.array([0.5, 0.9])
    fitness[~hit] = evaluated[inverse]
    np.testing.assert_array_equal(fitness, [0.5, 0.9, 0.5, 0.5, 0.9, 0.5])
    cache.insert(keys[~hit], fitness[~hit])
    # Sequentially: 5 miss (count 1), 9 miss, 5 hit (2), 5 hit (3: forgotten), 9 hit (2), 5 miss.
    assert (cache.hits, cache.misses, cache.forgets) == (2 + 3, 2 + 3, 1 + 1)
    assert 5 in cache and 9 in cache
    with pytest.raises(ValueError, match="already cached"):
        cache.insert([9], [0.1])


def test_lru_eviction_on_batch_insert():
    cache = FECCache(3, forget_every=0)
    cache.insert([1, 2, 3], [0.1, 0.2, 0.3])
    find(cache, 1)  # 1 becomes the most recent: 2 is now the oldest.
    cache.insert([4, 5], [0.4, 0.5])
    assert [k in cache for k in (1, 2, 3, 4, 5)] == [True, False, False, True, True]
    assert cache.evictions == 2 and len(cache) == 3


def test_bad_config_and_inputs():
    with pytest.raises(ValueError, match="cache_size"):
        FECCache(1)
    with pytest.raises(ValueError, match="forget_every"):
        FECCache(10, forget_every=1)
    with pytest.raises(ValueError, match="2 hashes but 1"):
        FECCache(10).insert([1, 2], [0.5])


def test_state_round_trip_exact():
    rng = np.random.default_rng(0)
    cache = FECCache(50, forget_every=4)
    keys = rng.integers(0, 80, 400).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for batch in np.split(keys, 20):
        hit, fitness = cache.lookup(batch)
        todo, inverse = unique_misses(batch, hit)
        fitness[~hit] = rng.random(len(todo))[inverse]
        cache.insert(batch[~hit], fitness[~hit])
    assert cache.evictions > 0 and cache.forgets > 0 and cache.hits > 0
    state = cache.state_arrays()
    assert state["keys"].shape == (50,) and state["keys"].dtype == np.uint64
    restored = FECCache.from_state_arrays(state)
    for k, v in restored.state_arrays().items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)
    # Same future behaviour (hits, forgets, eviction order).
    for batch in np.split(rng.permutation(keys)[:100], 10):
        for c in (cache, restored):
            hit, fitness = c.lookup(batch)
            todo, inverse = unique_misses(batch, hit)
            fitness[~hit] = np.arange(len(todo), dtype=float)[inverse]
            c.insert(batch[~hit], fitness[~hit])
    for k, v in restored.state_arrays().items():
        np.testing.assert_array_equal(v, cache.state_arrays()[k], err_msg=k)
    empty = FECCache(5, 0)
    assert len(FECCache.from_state_arrays(empty.state_arrays())) == 0


# ------------------------------------------------------------------------------------------------
# Fingerprints.


def errors(rng, p=3, t=2, n_tr=10, n_va=10):
    return (
        rng.random((p, t, n_tr)).astype(np.float32),
        rng.random((p, t, n_va)).astype(np.float32),
    )


def test_fingerprint_shape_and_determinism():
    tr, va = errors(np.random.default_rng(0))
    h = fingerprint(tr, va, [10, 10, 10], [0, 1])
    assert h.shape == (3, 2) and h.dtype == np.uint64
    np.testing.assert_array_equal(h, fingerprint(tr.copy(), va.copy(), [10] * 3, [0, 1]))
    assert len(set(h.ravel().tolist())) == 6
    # Pinned: hashes are stored in checkpoints, so the function must not drift.
    one = fingerprint(np.ones((1, 1, 2), np.float32), np.zeros((1, 1, 1), np.float32), [5], [3])
    assert int(one[0, 0]) == 0x9807BC88B91267EC  # Since checkpoint format 3 (fec.hash_rows).


def test_fingerprint_sensitivity():
    tr, va = errors(np.random.default_rng(1), p=1, t=1)
    base = fingerprint(tr, va, [10], [0])[0, 0]

    def fp(tr=tr, va=va, counts=(10,), task=(0,), **kw):
        return fingerprint(tr, va, list(counts), list(task), **kw)[0, 0]

    for arr, name in ((tr, "train"), (va, "valid")):
        for j in (0, 5, 9):
            changed = arr.copy()
            changed[0, 0, j] = np.nextafter(changed[0, 0, j], np.float32(2))
            kwargs = dict(tr=changed) if name == "train" else dict(va=changed)
            assert fp(**kwargs) != base, (name, j)
    assert fp(task=(1,)) != base
    assert fp(counts=(0,)) != base
    assert fp(num_train_errors=[[9]]) != base  # stopped early after 9 steps
    assert fp(num_valid_errors=[[3]]) != base
    # Stopping after 3 steps differs from having run 3 steps with the same first errors.
    short = tr.copy()
    short[..., 3:] = np.nan
    assert fp(tr=short, num_train_errors=[[3]]) != fp(tr=short)
    # Entries past the count are ignored, whatever they hold.
    junk = short.copy()
    junk[..., 3:] = 123.0
    assert fp(tr=junk, num_train_errors=[[3]]) == fp(tr=short, num_train_errors=[[3]])


def test_fingerprint_nan_payload_and_negative_zero():
    tr, va = errors(np.random.default_rng(2), p=1, t=1)
    a, b = tr.copy(), tr.copy()
    a[0, 0, 2] = np.float32(np.nan)
    b.view(np.uint32)[0, 0, 2] = 0xFFC01234  # Another (negative, payload) NaN.
    assert np.isnan(b[0, 0, 2])
    assert fingerprint(a, va, [10], [0])[0, 0] == fingerprint(b, va, [10], [0])[0, 0]
    a[0, 0, 4], b[0, 0, 4] = 0.0, -0.0
    assert fingerprint(a, va, [10], [0])[0, 0] == fingerprint(b, va, [10], [0])[0, 0]
    assert fingerprint(tr, va, [10], [0])[0, 0] != fingerprint(a, va, [10], [0])[0, 0]


def test_fingerprint_float64_hashes_full_precision():
    tr, va = errors(np.random.default_rng(3), p=1, t=1)
    tr64 = tr.astype(np.float64)
    nudged = tr64.copy()
    nudged[0, 0, 0] += 1e-12  # Invisible in float32.
    assert fingerprint(tr64, va, [10], [0])[0, 0] != fingerprint(nudged, va, [10], [0])[0, 0]


def test_fingerprint_per_task_train_counts_and_errors():
    tr, va = errors(np.random.default_rng(4))
    per_task = fingerprint(tr, va, np.array([[10, 0]] * 3), [0, 1])
    same = fingerprint(tr, va, [10] * 3, [0, 1])
    np.testing.assert_array_equal(per_task[:, 0], same[:, 0])
    assert (per_task[:, 1] != same[:, 1]).all()
    with pytest.raises(ValueError, match="task_index must have shape"):
        fingerprint(tr, va, [10] * 3, [0, 1, 2])
    with pytest.raises(ValueError, match="train_counts must have shape"):
        fingerprint(tr, va, [10] * 2, [0, 1])
    with pytest.raises(ValueError, match=r"num_train_errors must lie in \[0, 10\]"):
        fingerprint(tr, va, [10] * 3, [0, 1], num_train_errors=np.full((3, 2), 11))
    with pytest.raises(ValueError, match="must be \\[P, T, n\\]"):
        fingerprint(tr[0], va, [10] * 3, [0, 1])


@pytest.mark.parametrize("num_words", [8, 21])
@pytest.mark.parametrize("hash_fn", [hash_words, hash_rows])
def test_hashes_of_single_word_changes_always_differ(hash_fn, num_words):
    rng = np.random.default_rng(5)
    words = rng.integers(0, 2**63, (1, num_words), dtype=np.uint64)
    variants = np.repeat(words, 64 * num_words, axis=0)
    for j in range(num_words):
        for bit in range(64):
            variants[j * 64 + bit, j] ^= np.uint64(1) << np.uint64(bit)
    hashes = hash_fn(np.concatenate([words, variants]), seed=1)
    assert len(set(hashes.tolist())) == 1 + 64 * num_words
    # A row and the same row with zero words appended differ (the length is hashed).
    longer = np.concatenate([words, np.zeros((1, 3), np.uint64)], -1)
    assert hash_fn(words, seed=1)[0] != hash_fn(longer, seed=1)[0]
