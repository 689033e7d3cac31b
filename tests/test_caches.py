"""Tests for azjax.caches: the device score caches' hit, miss, forget and eviction rules."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import caches

BATCH = 8  # Batches are padded to one size (masked), so each table shape compiles once.


def keys_of(ids):
    """64-bit keys uint32 [K, 2] with chosen low words (the set index is low % num_sets)."""
    ids = np.asarray(ids, np.uint32)
    return np.stack([ids, ids * np.uint32(7) + np.uint32(1)], -1)


@functools.partial(jax.jit, static_argnames=("forget_every",))
def _batch(table, keys, values, mask, clock, forget_every):
    q = caches.query(table, keys, mask)
    insert = mask & q.is_first & ~q.hit
    table = caches.update(table, q, keys, values, insert, clock=clock, forget_every=forget_every)
    return table, q


def apply(table, ids, values=None, mask=None, clock=1, forget_every=0):
    """One batch: query, then insert the evaluated first misses. Returns (table, query)."""
    n = len(ids)
    pad = BATCH - n
    keys = np.concatenate([keys_of(ids), np.zeros((pad, 2), np.uint32)])
    mask = np.concatenate(
        [np.ones(n, bool) if mask is None else np.asarray(mask, bool), np.zeros(pad, bool)]
    )
    values = np.concatenate([np.arange(n) if values is None else values, np.zeros(pad)]).astype(
        np.float32
    )
    table, q = _batch(table, keys, values, mask, np.int32(clock), forget_every)
    return table, jax.tree.map(lambda x: np.asarray(x)[:n], q)


def test_insert_hit_and_values():
    table = caches.empty(64)
    table, q = apply(table, [1, 2, 3], values=[0.1, 0.2, 0.3])
    assert not q.hit.any()
    table, q = apply(table, [2, 4, 3], clock=2)
    np.testing.assert_array_equal(q.hit, [True, False, True])
    np.testing.assert_allclose(q.value, [0.2, 0.0, 0.3])


def test_equal_keys_in_one_batch_share_their_first_occurrence():
    table = caches.empty(64)
    table, q = apply(table, [5, 6, 5, 5, 7, 6], mask=[1, 1, 1, 0, 1, 1])
    np.testing.assert_array_equal(q.first, [0, 1, 0, 3, 4, 1])
    np.testing.assert_array_equal(q.occurrences, [2, 2, 0, 0, 1, 0])  # Masked entry 3: none.
    assert int(table.counts.sum()) == 2 + 2 + 1  # Inserted with their occurrences as counts.


def test_forget_every_erases_an_entry_when_its_count_reaches_it():
    table = caches.empty(64)
    table, _ = apply(table, [9], forget_every=4)  # count 1
    table, q = apply(table, [9, 9], clock=2, forget_every=4)  # count 3
    assert q.hit.all()
    table, q = apply(table, [9], clock=3, forget_every=4)  # count 4: the hit erases it.
    assert q.hit.all()
    table, q = apply(table, [9], clock=4, forget_every=4)
    assert not q.hit.any()  # Forgotten: evaluated afresh (and inserted again).
    table, q = apply(table, [9], clock=5, forget_every=4)
    assert q.hit.all()
    table, _ = apply(table, [11] * 5, clock=6, forget_every=4)  # 5 occurrences: never stored.
    _, q = apply(table, [11], clock=7, forget_every=4)
    assert not q.hit.any()


def test_eviction_is_least_recently_used_within_a_set():
    table = caches.empty(4, ways=4)  # One set of 4 ways: LRU over the whole table.
    assert table.capacity == 4
    table, _ = apply(table, [1, 2, 3, 4], clock=1)
    table, q = apply(table, [1], clock=2)  # Touch 1: now 2 is the least recently used.
    table, _ = apply(table, [5], clock=3)
    _, q = apply(table, [1, 2, 3, 4, 5], clock=4)
    np.testing.assert_array_equal(q.hit, [True, False, True, True, True])


def test_more_new_keys_than_ways_in_one_batch_keep_the_first():
    table = caches.empty(2, ways=2)
    table, _ = apply(table, [1, 2, 3, 4], clock=1)
    _, q = apply(table, [1, 2, 3, 4], clock=2)
    np.testing.assert_array_equal(q.hit, [True, True, False, False])


@pytest.mark.parametrize("capacity", [1, 7, 1000])
def test_capacity_rounds_up_to_whole_sets(capacity):
    table = caches.empty(capacity)
    assert capacity <= table.capacity < capacity + caches.WAYS


def test_many_distinct_keys_fill_the_table_and_vmap_over_experiments():
    tables = jax.vmap(lambda _: caches.empty(1000))(jnp.arange(3))
    keys = jax.random.bits(jax.random.key(0), (3, 400, 2), jnp.uint32)
    mask = jnp.ones((3, 400), bool)
    q = jax.vmap(caches.query)(tables, keys, mask)
    tables = jax.vmap(
        lambda t, q, k: caches.update(t, q, k, jnp.ones(400), q.is_first, clock=1, forget_every=0)
    )(tables, q, keys)
    q = jax.vmap(caches.query)(tables, keys, mask)
    assert float(q.hit.mean()) > 0.99  # A few set overflows at most.
    assert np.asarray(tables.counts > 0).sum(axis=(1, 2)).min() > 390


# The original's fec_cache_test.cc cases, on a one-set table (exact LRU), one key per batch.


def insert_and_verify(table, key, fitness, expect_new, clock):
    table, q = apply(table, [key], values=[fitness], clock=clock)
    assert bool(q.hit[0]) == (not expect_new)
    if not expect_new:
        assert float(q.value[0]) == np.float32(fitness)
    return table


def test_inserts_correctly():  # InsertsCorrectly
    table = caches.empty(8, ways=8)
    steps = [(1, True), (2, True), (3, True), (2, False), (4, True), (3, False), (2, False)]
    for clock, (key, new) in enumerate(steps, start=1):
        table = insert_and_verify(table, key, key / 10, new, clock)


def test_discards_by_lru_policy():  # DiscardsByLRUPolicy
    table = caches.empty(5, ways=5)
    for clock, key in enumerate((5, 2, 4, 1, 3, 6, 7), start=1):
        table = insert_and_verify(table, key, key / 10, True, clock)
    _, q = apply(table, [1, 2, 3, 4, 5, 6, 7], clock=9)
    np.testing.assert_array_equal(q.hit, [1, 0, 1, 1, 0, 1, 1])


def test_lru_policy_considers_reinserts():  # LRUPolicyConsidersReinserts
    table = caches.empty(5, ways=5)
    steps = [(5, True), (2, True), (4, True), (1, True), (3, True), (5, False), (4, False)]
    steps += [(6, True), (7, True)]
    for clock, (key, new) in enumerate(steps, start=1):
        table = insert_and_verify(table, key, key / 10, new, clock)
    _, q = apply(table, [1, 2, 3, 4, 5, 6, 7], clock=20)
    np.testing.assert_array_equal(q.hit, [0, 0, 1, 1, 1, 1, 1])
