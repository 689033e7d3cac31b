"""Shared test setup: float32 VM, tiny default sizes, a persistent compile cache for speed."""

import os

import jax
import numpy as np
import pytest

jax.config.update(
    "jax_compilation_cache_dir", os.path.join(os.path.dirname(__file__), "..", ".jax_cache")
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def np_rng():
    return np.random.default_rng(0)
