"""Atomic, exact checkpoints of a state pytree plus JSON metadata.

A checkpoint is one .npz file: the pytree's leaves as `leaf_0 .. leaf_{n-1}` and a `metadata`
entry holding a JSON string (format version, tree structure, each leaf's key path, shape, dtype
and sha256, and the caller's metadata, e.g. the run config). Typed PRNG key arrays are stored as
their `jax.random.key_data` and re-wrapped with their recorded implementation on load, so a
resumed run continues the same random stream. The file is written to a temporary file in the same
directory, fsynced, then renamed over the target with `os.replace`: a crash never leaves a partial
checkpoint, and the previous checkpoint stays intact until the new one is complete.

Loading is strict: any problem raises `CheckpointError` naming the file; nothing is silently
reset to a fresh state.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

FORMAT_VERSION = 1
_METADATA = "metadata"


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read, or does not match this run."""


def _is_key(leaf) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _leaf_info(leaf) -> dict[str, Any]:
    """Logical shape/dtype of a leaf (a key array's own shape, not its key data's)."""
    if _is_key(leaf):
        return dict(
            shape=list(leaf.shape), dtype=str(leaf.dtype), key_impl=str(jax.random.key_impl(leaf))
        )
    arr = np.asarray(leaf)
    return dict(shape=list(arr.shape), dtype=str(arr.dtype), key_impl=None)


def _leaf_data(leaf) -> np.ndarray:
    return np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)


def _sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _canonical(value) -> Any:
    """The JSON round trip of a value (tuples become lists), as stored in a checkpoint."""
    return json.loads(json.dumps(value))


def _flatten_dict(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten_dict(v, name + "."))
        else:
            out[name] = v
    return out


def _fmt(value) -> str:
    return json.dumps(value) if isinstance(value, str | list | dict) else str(value)


def save_checkpoint(path, state, metadata: dict | None = None, *, compress: bool = False) -> None:
    """Atomically writes `state` (any pytree of arrays) and JSON-serializable `metadata`.

    Args:
      path: the checkpoint file (conventionally `*.npz`); its directory must exist.
      state: a pytree (NamedTuples, dicts, lists, ...) of NumPy/JAX arrays, typed PRNG key
        arrays and Python scalars.
      metadata: dict of JSON-serializable values (e.g. the run config), returned by load.
      compress: zip-deflate the arrays (slower to write; `load_checkpoint` reads both).
    """
    path = os.fspath(path)
    try:
        user = _canonical(metadata or {})
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: metadata is not JSON-serializable: {e}") from e
    with_path, treedef = jax.tree_util.tree_flatten_with_path(state)
    arrays, leaves = {}, []
    for i, (key_path, leaf) in enumerate(with_path):
        info = _leaf_info(leaf)
        data = _leaf_data(leaf)
        if data.dtype == object:
            raise CheckpointError(
                f"checkpoint {path}: leaf {jax.tree_util.keystr(key_path)} is not a numeric array"
            )
        arrays[f"leaf_{i}"] = data
        leaves.append(dict(path=jax.tree_util.keystr(key_path), sha256=_sha256(data), **info))
    header = dict(format_version=FORMAT_VERSION, treedef=str(treedef), leaves=leaves, user=user)
    arrays[_METADATA] = np.array(json.dumps(header))
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CheckpointError(f"checkpoint {path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp creates 0600.
            (np.savez_compressed if compress else np.savez)(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # Make the rename itself durable (not supported on every platform).
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(path) -> list[str]:
    """Deletes the temporary files a write of `path` killed mid-way left behind (`save_checkpoint`
    writes `.tmp-<name>-*` beside it, then renames); returns their paths. Call it when no other
    process writes that checkpoint."""
    path = os.fspath(path)
    directory, prefix = os.path.dirname(os.path.abspath(path)), ".tmp-" + os.path.basename(path)
    stale = (
        []
        if not os.path.isdir(directory)
        else sorted(
            os.path.join(directory, n) for n in os.listdir(directory) if n.startswith(prefix + "-")
        )
    )
    for name in stale:
        os.remove(name)
    return stale


def _read(path: str) -> tuple[dict, list[np.ndarray]]:
    """Reads the header and leaf arrays, checking integrity; raises CheckpointError."""
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        with open(path, "rb") as f:  # Our own handle: np.load leaks it on a bad zip.
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise CheckpointError(f"checkpoint {path} is not an .npz file")
            with npz:
                if _METADATA not in npz.files:
                    raise CheckpointError(
                        f"checkpoint {path} is not an azjax checkpoint (no metadata)"
                    )
                header = json.loads(str(npz[_METADATA]))
                version = header.get("format_version")
                if version != FORMAT_VERSION:
                    raise CheckpointError(
                        f"checkpoint {path} has format version {version}, "
                        f"but this code reads version {FORMAT_VERSION}"
                    )
                arrays = [npz[f"leaf_{i}"] for i in range(len(header["leaves"]))]
    except CheckpointError:
        raise
    except Exception as e:  # zipfile, zlib, npy-format and JSON errors: all mean a bad file.
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {reason}") from e
    for i, (info, arr) in enumerate(zip(header["leaves"], arrays, strict=True)):
        if _sha256(arr) != info["sha256"]:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: leaf {i} {info['path']} fails its sha256 check"
            )
    return header, arrays


def _restore_leaf(arr: np.ndarray, info: dict, like_leaf):
    if info["key_impl"] is not None:
        return jax.random.wrap_key_data(jnp.asarray(arr), impl=info["key_impl"])
    if isinstance(like_leaf, jax.Array):
        return jnp.asarray(arr)
    if isinstance(like_leaf, np.ndarray):
        return arr
    if isinstance(like_leaf, np.generic):
        return arr[()]
    return arr.item() if isinstance(like_leaf, bool | int | float | complex) else arr


def load_checkpoint(path, like, expected_metadata: dict | None = None) -> tuple[Any, dict]:
    """Reads a checkpoint written by `save_checkpoint`.

    Args:
      path: the checkpoint file.
      like: a template pytree with the same structure, leaf shapes and dtypes (values unused),
        e.g. a freshly initialised state; leaves come back as the template's array type.
      expected_metadata: if given, every (nested, dotted) key of it and of the stored metadata
        must agree, e.g. the run config, so that a resume never mixes configurations.

    Returns:
      (state, metadata): the restored pytree and the stored metadata dict.

    Raises:
      CheckpointError: a one-line message naming the file, for a missing, truncated or corrupt
        file, a format version mismatch, a structure/shape/dtype mismatch with `like`, or a
        metadata mismatch.
    """
    path = os.fspath(path)
    header, arrays = _read(path)
    metadata = header["user"]
    if expected_metadata is not None:  # First: a config mismatch explains a shape mismatch.
        _check_metadata(path, metadata, expected_metadata)
    like_with_path, treedef = jax.tree_util.tree_flatten_with_path(like)
    if str(treedef) != header["treedef"]:
        raise CheckpointError(
            f"checkpoint {path} holds a different state structure: "
            f"saved {header['treedef']}, this run expects {treedef}"
        )
    for i, ((key_path, like_leaf), info) in enumerate(
        zip(like_with_path, header["leaves"], strict=True)
    ):
        want = _leaf_info(like_leaf)
        if (want["shape"], want["dtype"]) != (info["shape"], info["dtype"]):
            raise CheckpointError(
                f"checkpoint {path} leaf {i} {jax.tree_util.keystr(key_path)} has shape "
                f"{tuple(info['shape'])} {info['dtype']}, but this run expects "
                f"{tuple(want['shape'])} {want['dtype']}"
            )
        if want["key_impl"] != info["key_impl"]:
            raise CheckpointError(
                f"checkpoint {path} leaf {i} {jax.tree_util.keystr(key_path)} holds "
                f"{info['key_impl']} keys, but this run uses {want['key_impl']}"
            )
    leaves = [
        _restore_leaf(arr, info, like_leaf)
        for arr, info, (_, like_leaf) in zip(arrays, header["leaves"], like_with_path, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, leaves), metadata


def _check_metadata(path: str, stored: dict, expected: dict) -> None:
    try:
        expected = _canonical(expected)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"expected metadata for {path} is not JSON-serializable: {e}") from e
    have, want = _flatten_dict(stored), _flatten_dict(expected)
    missing = object()
    for key in list(want) + [k for k in have if k not in want]:
        a, b = have.get(key, missing), want.get(key, missing)
        if a is missing or b is missing or json.dumps(a) != json.dumps(b):
            was = "no " + key if a is missing else f"{key}={_fmt(a)}"
            now = "no " + key if b is missing else f"{key}={_fmt(b)}"
            raise CheckpointError(
                f"checkpoint {path} was written with config {was}, but this run has {now}"
            )
