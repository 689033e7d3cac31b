"""Functional equivalence checking (FEC): fingerprints of short runs and an LRU score cache.

As in the original (REFERENCE.md §8, fec_cache.cc, fec_hashing.cc): each (program, task) is first
run on a few training and validation examples; the exact error values, the task index and the
number of training examples about to be used are hashed into a 64-bit fingerprint, and programs
with equal fingerprints share one full evaluation through an LRU cache whose entries are forgotten
after `forget_every` uses. Host-side NumPy, vectorized over the population.

Deviations (REFERENCE.md §12.5 is the original's behaviour): the hash is our own 64-bit mix (the
original's std::hash + Jenkins mix is not reproducible across platforms anyway); the counts of
recorded train and valid errors are hashed too, so "stopped after 3 steps" never collides with
"3 train errors + the first valid error".
"""

from __future__ import annotations

import collections
import functools

import numpy as np

FEC_SEED = 42  # the original's WellMixedHash seed.

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_CANONICAL_NAN = {np.dtype(np.float32): 0x7FC00000, np.dtype(np.float64): 0x7FF8000000000000}


def _fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer: a bijection on uint64 with full avalanche."""
    x = x ^ (x >> np.uint64(33))
    x = x * _M1
    x = x ^ (x >> np.uint64(33))
    x = x * _M2
    return x ^ (x >> np.uint64(33))


def hash_words(words, seed: int) -> np.ndarray:
    """Chains uint64 `words [..., W]` into one uint64 hash per row: shape [...].

    Each step h <- fmix64(h ^ w_j) + golden is a bijection in h and in w_j, so two rows that
    differ in exactly one word always hash differently; more changes collide with ~2^-64 odds.
    """
    words = np.asarray(words, np.uint64)
    h = np.full(words.shape[:-1], np.uint64(seed), np.uint64)
    with np.errstate(over="ignore"):
        h = _fmix64(h + _GOLDEN)
        for j in range(words.shape[-1]):
            h = _fmix64(h ^ words[..., j]) + _GOLDEN
    return h


HASH_CHAINS = 8  # Chains hashed side by side in `hash_rows`: few, short NumPy passes.


def hash_rows(words, seed: int) -> np.ndarray:
    """Like `hash_words` (uint64 `[..., W]` -> `[...]`), in a few NumPy passes however long W.

    `hash_words` chains words one NumPy pass each; here each word is first XORed with a key for
    its position, the row (zero-padded) is cut into `HASH_CHAINS` chains hashed side by side,
    and their hashes are summed mod 2^64 and hashed again with W. Every step is a bijection in
    any single word, so changing one word still always changes the hash.
    """
    words = np.asarray(words, np.uint64)
    num_words = words.shape[-1]
    length = -(-num_words // HASH_CHAINS)
    pad = np.zeros(words.shape[:-1] + (HASH_CHAINS * length - num_words,), np.uint64)
    chains = np.concatenate([words, pad], -1).reshape(words.shape[:-1] + (HASH_CHAINS, length))
    chains ^= _position_keys((HASH_CHAINS, length), seed)
    total = hash_words(chains, seed=seed).sum(-1, dtype=np.uint64)  # Wraps silently.
    return hash_words(np.stack([total, np.full_like(total, num_words)], -1), seed=seed)


@functools.lru_cache(maxsize=16)
def _position_keys(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Distinct pseudo-random uint64 keys, one per word position: uint64 `shape`."""
    positions = np.arange(np.prod(shape), dtype=np.uint64).reshape(shape + (1,))
    keys = hash_words(positions, seed=~seed & 2**64 - 1)
    keys.flags.writeable = False
    return keys


def _error_words(errors: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Bit patterns of `errors [P, T, n]`, entries past `counts [P, T]` and NaNs canonical."""
    errors = np.asarray(errors)
    if errors.dtype not in _CANONICAL_NAN:
        errors = errors.astype(np.float32)
    nan_bits = _CANONICAL_NAN[errors.dtype]
    uint = np.uint32 if errors.dtype == np.float32 else np.uint64
    recorded = np.arange(errors.shape[-1]) < counts[..., None]
    errors = np.where(errors == 0, errors.dtype.type(0), errors)  # -0.0 -> +0.0
    bits = np.ascontiguousarray(errors).view(uint).astype(np.uint64)
    return np.where(recorded & ~np.isnan(errors), bits, np.uint64(nan_bits))


def fingerprint(
    train_errors,
    valid_errors,
    train_counts,
    task_index,
    *,
    num_train_errors=None,
    num_valid_errors=None,
) -> np.ndarray:
    """FEC fingerprints of a population on T tasks (REFERENCE.md §8.2).

    Args:
      train_errors: float [P, T, n_tr], |label - s1| of the fingerprint run's training steps.
      valid_errors: float [P, T, n_va], its validation errors (0/1 for classification).
      train_counts: int [P] or [P, T], the number of training examples the full evaluation is
        about to use (after the train budget).
      task_index: int [T], each task's position in the evaluator's task list.
      num_train_errors, num_valid_errors: int [P, T], how many leading entries were recorded
        (fewer after an early stop); default all. Entries past the count are ignored. Padding
        the unrecorded entries with NaN and leaving the counts at their default is equally
        unambiguous, since a recorded error is never NaN (a NaN error stops the run).

    Values are hashed bitwise in their own precision (float32 or float64); every NaN hashes as
    one canonical NaN and -0.0 as +0.0. Returns uint64 [P, T], deterministic across runs.
    """
    train_errors, valid_errors = np.asarray(train_errors), np.asarray(valid_errors)
    if train_errors.ndim != 3 or valid_errors.ndim != 3:
        raise ValueError(
            f"train_errors and valid_errors must be [P, T, n], got shapes "
            f"{train_errors.shape} and {valid_errors.shape}"
        )
    pt = train_errors.shape[:2]
    if valid_errors.shape[:2] != pt:
        raise ValueError(f"valid_errors shape {valid_errors.shape} does not match train {pt}")

    def counts(value, default, name):
        value = np.full(pt, default) if value is None else np.asarray(value)
        if value.shape != pt:
            raise ValueError(f"{name} must have shape {pt}, got {value.shape}")
        if (value < 0).any() or (value > default).any():
            raise ValueError(f"{name} must lie in [0, {default}]")
        return value.astype(np.int64)

    n_train = counts(num_train_errors, train_errors.shape[2], "num_train_errors")
    n_valid = counts(num_valid_errors, valid_errors.shape[2], "num_valid_errors")
    train_counts = np.asarray(train_counts, np.int64)
    if train_counts.shape == pt[:1]:
        train_counts = train_counts[:, None]
    elif train_counts.shape != pt:
        raise ValueError(f"train_counts must have shape {pt[:1]} or {pt}, got {train_counts.shape}")
    task_index = np.asarray(task_index, np.int64)
    if task_index.shape != pt[1:]:
        raise ValueError(f"task_index must have shape {pt[1:]}, got {task_index.shape}")
    tail = np.stack(np.broadcast_arrays(n_train, n_valid, task_index[None, :], train_counts), -1)
    words = np.concatenate(
        [
            _error_words(train_errors, n_train),
            _error_words(valid_errors, n_valid),
            tail.astype(np.uint64),
        ],
        axis=-1,
    )
    return hash_rows(words, seed=FEC_SEED)


def unique_misses(hashes, hit) -> tuple[np.ndarray, np.ndarray]:
    """Which lookups to evaluate: (first index of each distinct missed hash [U], map [K_miss]).

    `hashes[miss][inverse]` pairs every missed position (in order, `miss = ~hit`) with its
    representative `first[inverse]`, so `fitness[miss] = evaluated[inverse]`.
    """
    hashes, hit = np.asarray(hashes, np.uint64), np.asarray(hit, bool)
    miss = np.flatnonzero(~hit)
    _, first, inverse = np.unique(hashes[miss], return_index=True, return_inverse=True)
    return miss[first], inverse.reshape(-1)


class FECCache:
    """LRU map fingerprint -> (fitness, count), with the original's hit and forget rule.

    Batched calling pattern (one batch = K fingerprints, e.g. a generation's P x T):

        hit, fitness = cache.lookup(h)                 # hits answered in order
        todo, inverse = unique_misses(h, hit)          # evaluate each missed hash once
        fitness[~hit] = evaluate(todo)[inverse]
        cache.insert(h[~hit], fitness[~hit])

    `lookup` handles the K hashes sequentially (a hit may forget its entry, making a later equal
    hash in the same batch miss) and never inserts. `insert` inserts the first occurrence of each
    hash with count 1 and treats later occurrences in the same call as hits on it (count += 1,
    forget rule, hit/miss counters corrected), which is what a sequential run would have done.
    Only the relative LRU order of a batch's hits and inserts differs from a sequential run.
    """

    def __init__(self, cache_size: int = 100_000, forget_every: int = 100):
        if cache_size <= 1:
            raise ValueError(f"FEC cache_size must be > 1, got {cache_size}")
        if forget_every != 0 and forget_every <= 1:
            raise ValueError(f"FEC forget_every must be 0 (never) or > 1, got {forget_every}")
        self.cache_size = int(cache_size)
        self.forget_every = int(forget_every)
        # hash -> (fitness, count): tuples of numbers, which Python's cyclic GC stops tracking
        # (a list per entry made every full collection walk millions of them).
        self._entries: collections.OrderedDict[int, tuple] = collections.OrderedDict()
        self.hits = self.misses = self.evictions = self.forgets = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return int(key) in self._entries

    def _hit(self, key: int, entry: tuple) -> float:
        """Counts a hit on `entry` (cached under `key`): most recently used, forget rule."""
        value, count = entry[0], entry[1] + 1
        if self.forget_every and count >= self.forget_every:
            del self._entries[key]
            self.forgets += 1
        else:
            self._entries[key] = (value, count)
            self._entries.move_to_end(key)  # The end is the most recently used.
        self.hits += 1
        return value

    def lookup(self, hashes) -> tuple[np.ndarray, np.ndarray]:
        """Looks up uint64 [K] in order. Returns (hit bool [K], fitness float64 [K]; 0 on miss)."""
        keys = np.asarray(hashes, np.uint64).reshape(-1).tolist()
        hit, fitness = [False] * len(keys), [0.0] * len(keys)
        get = self._entries.get
        for i, key in enumerate(keys):
            entry = get(key)
            if entry is not None:
                hit[i], fitness[i] = True, self._hit(key, entry)
        self.misses += len(keys) - sum(hit)
        return np.array(hit, bool), np.array(fitness, np.float64)

    def insert(self, hashes, fitness) -> None:
        """Inserts evaluated misses (uint64 [K], float [K]) and evicts the LRU entries."""
        hashes = np.asarray(hashes, np.uint64).reshape(-1)
        fitness = np.asarray(fitness, np.float64).reshape(-1)
        if hashes.shape != fitness.shape:
            raise ValueError(f"insert: {hashes.shape[0]} hashes but {fitness.shape[0]} fitnesses")
        entries, fresh = self._entries, set()
        for key, value in zip(hashes.tolist(), fitness.tolist(), strict=True):
            if key in fresh:  # A repeat of a miss of this batch: a hit on the entry just inserted.
                self.misses -= 1
                entry = entries.get(key)
                if entry is not None:
                    self._hit(key, entry)
                else:  # Forgotten by an earlier repeat: the sequential run would re-evaluate.
                    self.misses += 1
                    entries[key] = (value, 1)
                continue
            if key in entries:
                raise ValueError(f"insert: hash {key:#018x} is already cached (look it up first)")
            fresh.add(key)
            entries[key] = (value, 1)
        for _ in range(len(entries) - self.cache_size):
            entries.popitem(last=False)
            self.evictions += 1

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Fixed-shape arrays (padded to cache_size, LRU first) for checkpoints."""
        size = len(self._entries)
        keys = np.zeros(self.cache_size, np.uint64)
        fitness = np.zeros(self.cache_size, np.float64)
        counts = np.zeros(self.cache_size, np.int64)
        if size:
            keys[:size] = np.fromiter(self._entries.keys(), np.uint64, size)
            fitness[:size] = [e[0] for e in self._entries.values()]
            counts[:size] = [e[1] for e in self._entries.values()]
        return dict(
            keys=keys,
            fitness=fitness,
            counts=counts,
            size=np.asarray(size, np.int64),
            counters=np.array([self.hits, self.misses, self.evictions, self.forgets], np.int64),
            config=np.array([self.cache_size, self.forget_every], np.int64),
        )

    @classmethod
    def from_state_arrays(cls, arrays) -> FECCache:
        """The inverse of `state_arrays` (exact)."""
        cache_size, forget_every = (int(x) for x in np.asarray(arrays["config"]))
        cache = cls(cache_size, forget_every)
        size = int(arrays["size"])
        if not 0 <= size <= cache_size or np.shape(arrays["keys"]) != (cache_size,):
            raise ValueError(f"FEC state: size {size} or keys shape inconsistent with {cache_size}")
        keys = np.asarray(arrays["keys"], np.uint64)[:size].tolist()
        fitness = np.asarray(arrays["fitness"], np.float64)[:size].tolist()
        counts = np.asarray(arrays["counts"], np.int64)[:size].tolist()
        cache._entries = collections.OrderedDict(
            (k, (f, c)) for k, f, c in zip(keys, fitness, counts, strict=True)
        )
        if len(cache._entries) != size:
            raise ValueError("FEC state: duplicate keys")
        cache.hits, cache.misses, cache.evictions, cache.forgets = (
            int(x) for x in np.asarray(arrays["counters"])
        )
        return cache
