"""Fixed-size score caches on the device: FEC and structural dedupe (a hash table per experiment).

The original's FEC cache (fec_cache.cc) is an LRU map from a 64-bit fingerprint to (fitness,
count): a hit increments the count and returns the stored fitness; the hit that brings the count to
`forget_every` also erases the entry, so noisy programs are scored afresh now and then; a miss is
evaluated and inserted with count 1, evicting the least recently used entry beyond `capacity`.

Here a table is a set-associative array: `num_sets x WAYS` entries, a key's set chosen by its low
word. A batch (one generation's children) is handled at once:
- `query` finds, for every masked key, whether the table holds it, and groups equal keys within the
  batch (the first occurrence represents the others);
- `update` then applies the batch: each hit key's count grows by its occurrences (erased when it
  reaches `forget_every`), each evaluated missed key is inserted with a count of its occurrences
  (its repeats in the batch are hits on it, as the original's sequential loop would count them).

Deviations from the original's LRU (documented in the README):
- eviction is least-recently-used *within a set* of WAYS entries, not over the whole cache; a
  set holds at most WAYS keys, and if a batch brings more new keys to one set than it has ways,
  the later ones are not inserted;
- a hit in a batch that reaches `forget_every` erases the entry after the batch: its other
  repeats in the same batch still reuse the stored value.
Capacity is rounded up to a multiple of WAYS. Tables are written for one experiment; `jax.vmap`
gives one per experiment.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

WAYS = 8


class Table(NamedTuple):
    """A cache: `keys` uint32 `[S, W, 2]`, `values` float32 `[S, W]`, `counts` int32 `[S, W]`
    (uses since insertion; 0 = empty) and `stamps` int32 `[S, W]` (clock of the last use)."""

    keys: jax.Array
    values: jax.Array
    counts: jax.Array
    stamps: jax.Array

    @property
    def capacity(self) -> int:
        return self.counts.shape[0] * self.counts.shape[1]


def empty(capacity: int, ways: int = WAYS) -> Table:
    """A table of at least `capacity` entries (rounded up to whole sets), all empty."""
    if capacity < 1:
        raise ValueError(f"cache capacity must be >= 1, got {capacity}")
    ways = min(ways, capacity)
    sets = -(-capacity // ways)
    return Table(
        keys=jnp.zeros((sets, ways, 2), jnp.uint32),
        values=jnp.zeros((sets, ways), jnp.float32),
        counts=jnp.zeros((sets, ways), jnp.int32),
        stamps=jnp.zeros((sets, ways), jnp.int32),
    )


class Query(NamedTuple):
    """`query`'s answer for a batch of K keys (all `[K]`).

    hit: the table holds the key (false where not masked). value: the stored value of hits.
    first: index of the key's first masked occurrence in the batch (itself where not masked).
    occurrences: on first occurrences, how many masked entries share the key (else 0).
    set, way: where a hit is stored.
    """

    hit: jax.Array
    value: jax.Array
    first: jax.Array
    occurrences: jax.Array
    set: jax.Array
    way: jax.Array

    @property
    def is_first(self) -> jax.Array:
        return self.occurrences > 0


def group_equal(keys: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Equal keys within a batch: (first occurrence index `[K]`, occurrences on first
    occurrences `[K]`, else 0) among the masked entries of `keys` uint32 `[K, 2]`."""
    K = keys.shape[0]
    mask = jnp.asarray(mask, bool)
    order = jnp.lexsort((keys[:, 0], keys[:, 1], ~mask))  # Stable: the first occurrence leads.
    k, m = keys[order], mask[order]
    new = jnp.concatenate([jnp.ones((1,), bool), jnp.any(k[1:] != k[:-1], axis=-1) | ~m[1:]])
    new = new | ~m
    group = jnp.cumsum(new) - 1
    head = jnp.zeros((K,), jnp.int32).at[group].max(jnp.where(new, jnp.arange(K), 0))
    leader = order[head[group]]
    size = jnp.zeros((K,), jnp.int32).at[group].add(m.astype(jnp.int32))
    first = jnp.zeros((K,), jnp.int32).at[order].set(leader)
    occurrences = jnp.zeros((K,), jnp.int32).at[order].set(jnp.where(new & m, size[group], 0))
    return first, occurrences


def _set_of(table: Table, keys: jax.Array) -> jax.Array:
    return (keys[..., 0] % jnp.uint32(table.counts.shape[0])).astype(jnp.int32)


def query(table: Table, keys: jax.Array, mask: jax.Array) -> Query:
    """Looks up uint32 `[K, 2]` keys where `mask` `[K]`; nothing in the table changes."""
    mask = jnp.asarray(mask, bool)
    first, occurrences = group_equal(keys, mask)
    sets = _set_of(table, keys)
    match = jnp.all(table.keys[sets] == keys[:, None, :], axis=-1) & (table.counts[sets] > 0)
    hit = jnp.any(match, axis=-1) & mask
    way = jnp.argmax(match, axis=-1).astype(jnp.int32)
    value = jnp.where(hit, table.values[sets, way], 0.0)
    return Query(hit, value, first, occurrences, sets, way)


def update(table: Table, q: Query, keys, values, insert, *, clock, forget_every: int) -> Table:
    """Applies a batch queried by `query` (module docstring).

    Args:
      keys: the batch's keys `[K, 2]`; values: float32 `[K]`, the evaluated values of the
        entries to insert; insert: bool `[K]`, first occurrences that missed and were evaluated.
      clock: int32 scalar, the current time (e.g. the generation), later than any earlier call's.
      forget_every: erase an entry once its count reaches this (0 = never).
    """
    S, W = table.counts.shape
    never = jnp.int32(S)  # An out-of-range set: the scatter drops the entry.

    def kept(count):
        return count if not forget_every else jnp.where(count >= forget_every, 0, count)

    hits = q.hit & q.is_first
    at = (jnp.where(hits, q.set, never), q.way)
    counts = table.counts.at[at].set(kept(table.counts[q.set, q.way] + q.occurrences), mode="drop")
    stamps = table.stamps.at[at].set(clock, mode="drop")
    # Victims: per set, empty ways first, then the least recently used; the r-th new key of a set
    # in this batch takes its r-th victim.
    sets = jnp.where(insert, q.set, never)
    order = jnp.argsort(sets, stable=True)
    sorted_sets = sets[order]
    rank_sorted = jnp.arange(sets.shape[0]) - jnp.searchsorted(sorted_sets, sorted_sets)
    rank = jnp.zeros_like(rank_sorted).at[order].set(rank_sorted)
    row = jnp.minimum(q.set, S - 1)
    age = jnp.where(counts[row] > 0, stamps[row], jnp.int32(-1))  # Empty ways first.
    victims = jnp.argsort(age, axis=-1, stable=True).astype(jnp.int32)
    way = jnp.take_along_axis(victims, jnp.minimum(rank, W - 1)[:, None], axis=-1)[:, 0]
    count = kept(q.occurrences)
    ok = insert & (rank < W) & (count > 0)
    at = (jnp.where(ok, q.set, never), way)
    return Table(
        keys=table.keys.at[at].set(keys, mode="drop"),
        values=table.values.at[at].set(values, mode="drop"),
        counts=counts.at[at].set(count, mode="drop"),
        stamps=stamps.at[at].set(clock, mode="drop"),
    )
