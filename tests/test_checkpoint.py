"""Tests for azjax.checkpoint: exact round trips, atomic writes, and one clear error per failure."""

import json
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import caches
from azjax.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class Inner(NamedTuple):
    code: np.ndarray
    consts: np.ndarray


class State(NamedTuple):
    population: Inner
    fitness: jax.Array
    key: jax.Array
    keys: jax.Array
    extra: dict
    generation: int


CONFIG = {"population_size": 8, "tournament_size": 3, "search": {"ops": [1, 2], "lr": 0.01}}


def make_state(seed=0):
    rng = np.random.default_rng(seed)
    consts = rng.normal(size=(8, 5, 3)).astype(np.float32)
    consts[0, 0] = (np.nan, -0.0, np.inf)
    return State(
        population=Inner(rng.integers(0, 65, (8, 5, 4)).astype(np.int32), consts),
        fitness=jnp.asarray(rng.random(8).astype(np.float32)),
        key=jax.random.key(seed),
        keys=jax.random.split(jax.random.key(seed + 1, impl="rbg"), 3),
        extra={
            "hashes": rng.integers(0, 2**63, 4, dtype=np.uint64),
            "flags": np.array([True, False]),
        },
        generation=seed + 17,
    )


def assert_same(a, b):
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert type(x) is type(y) or (isinstance(x, jax.Array) and isinstance(y, jax.Array))
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert x.dtype == y.dtype
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()  # Bitwise (NaN, -0.0 included).


def test_round_trip_exact(tmp_path):
    path = tmp_path / "ckpt.npz"
    state = make_state()
    save_checkpoint(path, state, CONFIG)
    restored, metadata = load_checkpoint(path, make_state(5), expected_metadata=CONFIG)
    assert_same(state, restored)
    assert metadata == json.loads(json.dumps(CONFIG))
    assert isinstance(restored.fitness, jax.Array) and isinstance(restored.generation, int)
    # The restored keys continue the same random streams.
    for k in ("key", "keys"):
        a = jax.random.uniform(jax.random.fold_in(getattr(state, k).reshape(-1)[0], 3))
        b = jax.random.uniform(jax.random.fold_in(getattr(restored, k).reshape(-1)[0], 3))
        assert a == b
    assert str(restored.keys.dtype) == "key<rbg>"


def test_cache_table_round_trip(tmp_path):
    table = caches.empty(16)
    keys = jnp.stack([jnp.arange(20, dtype=jnp.uint32)] * 2, -1)
    q = caches.query(table, keys, jnp.ones(20, bool))
    table = caches.update(
        table, q, keys, jnp.linspace(0, 1, 20), q.is_first, clock=3, forget_every=5
    )
    save_checkpoint(tmp_path / "fec.npz", {"fec": table}, {})
    restored, _ = load_checkpoint(tmp_path / "fec.npz", {"fec": caches.empty(16)})
    assert_same({"fec": table}, restored)
    assert int(restored["fec"].counts.sum()) == 16  # 20 keys, 16 entries: full.


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, make_state(0), CONFIG)
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, make_state(1), CONFIG)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # No temporary file left behind.
    restored, _ = load_checkpoint(path, make_state(3))
    assert_same(make_state(0), restored)


def test_overwrite_replaces(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, make_state(0), CONFIG)
    save_checkpoint(path, make_state(1), CONFIG)
    assert_same(make_state(1), load_checkpoint(path, make_state(0))[0])
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def expect_error(match, path, like=None, expected=None):
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path, make_state() if like is None else like, expected)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_and_malformed_files(tmp_path):
    expect_error("does not exist", tmp_path / "nope.npz")
    expect_error("is not a file", tmp_path)
    text = tmp_path / "text.npz"
    text.write_text("hello, not a zip file")
    expect_error("truncated or corrupt", text)
    npy = tmp_path / "array.npz"
    with npy.open("wb") as f:
        np.save(f, np.zeros(3))
    expect_error("is not an .npz file", npy)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    expect_error("not an azjax checkpoint", other)


def test_truncated_and_corrupt(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, make_state(), CONFIG)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    expect_error("truncated or corrupt", truncated)
    # Flip a byte inside leaf data: zip's CRC check or our sha256 catches it.
    corrupt = tmp_path / "corrupt.npz"
    offset = data.index(np.asarray(make_state().population.consts).tobytes()[:16]) + 40
    corrupt.write_bytes(data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :])
    expect_error("corrupt", corrupt)
    # A well-formed zip whose leaf does not match the recorded sha256.
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["leaf_0"] = arrays["leaf_0"] + 1
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **arrays)
    expect_error(r"is corrupt: leaf 0 \.population\.code fails its sha256 check", tampered)


def test_format_version_mismatch(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, make_state(), CONFIG)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(str(arrays["metadata"]))
    header["format_version"] = 99
    arrays["metadata"] = np.array(json.dumps(header))
    np.savez(path, **arrays)
    expect_error("has format version 99, but this code reads version 1", path)


def test_structure_shape_dtype_and_key_mismatch(tmp_path):
    path = tmp_path / "ckpt.npz"
    state = make_state()
    save_checkpoint(path, state, CONFIG)
    expect_error("different state structure", path, like=state[:5])
    expect_error("different state structure", path, like=state._replace(extra={"hashes": 0}))
    smaller = state._replace(fitness=jnp.zeros(4, jnp.float32))
    expect_error(
        r"leaf 2 \.fitness has shape \(8,\) float32, but this run expects \(4,\) float32",
        path,
        like=smaller,
    )
    wrong_dtype = state._replace(population=state.population._replace(code=np.zeros((8, 5, 4))))
    expect_error(r"\.population\.code has shape \(8, 5, 4\) int32, .* float64", path, wrong_dtype)
    wrong_impl = state._replace(keys=jax.random.split(jax.random.key(0), 3))
    expect_error(r"\.keys has shape \(3,\) key<rbg>, .* \(3,\) key<fry>", path, wrong_impl)
    expect_error(
        r"\.key has shape \(\) key<fry>, .* \(\) uint32", path, state._replace(key=np.uint32(0))
    )


def test_metadata_mismatch_names_the_key(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, make_state(), dict(CONFIG, population_size=1000))
    message = expect_error("population_size", path, expected=dict(CONFIG, population_size=100))
    assert message == (
        f"checkpoint {path} was written with config population_size=1000, "
        "but this run has population_size=100"
    )
    nested = dict(CONFIG, population_size=1000, search={"ops": [1, 2], "lr": 0.02})
    expect_error(r"config search\.lr=0\.01, but this run has search\.lr=0\.02", path, None, nested)
    fewer = {k: v for k, v in CONFIG.items() if k != "tournament_size"}
    expect_error(
        "but this run has no tournament_size", path, None, {**fewer, "population_size": 1000}
    )
    more = dict(CONFIG, population_size=1000, seed=3)
    expect_error("written with config no seed, but this run has seed=3", path, None, more)
    # Tuples and lists compare equal (JSON), NaN equals NaN.
    save_checkpoint(path, make_state(), {"ops": (1, 2), "x": float("nan")})
    load_checkpoint(path, make_state(), {"ops": [1, 2], "x": float("nan")})


def test_bad_metadata_and_leaves_on_save(tmp_path):
    path = tmp_path / "ckpt.npz"
    with pytest.raises(CheckpointError, match="not JSON-serializable"):
        save_checkpoint(path, make_state(), {"f": object()})
    with pytest.raises(CheckpointError, match=r"leaf \['x'\] is not a numeric array"):
        save_checkpoint(path, {"x": np.array([object()])}, {})
    assert not path.exists() and os.listdir(tmp_path) == []
    with pytest.raises(CheckpointError, match="directory .* does not exist"):
        save_checkpoint(tmp_path / "missing" / "ckpt.npz", make_state(), {})
