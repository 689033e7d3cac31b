"""Shared test setup: two CPU devices (so sharded paths run), a persistent compile cache."""

import os

import jax
import numpy as np
import pytest

from azjax import runtime

CACHE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
runtime.set_xla_flags()  # Before the backend starts, as scripts do (runtime.configure).
jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def np_rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """Projected binary digits files (classes 0 vs 1, F = 4, seeds 0-1), made from scikit-learn's
    bundled digits: real images, nothing downloaded."""
    from azjax import datasets

    out = tmp_path_factory.mktemp("binary_digits")
    images, labels = datasets.read_digits()
    datasets.prepare_binary_datasets(
        images,
        labels,
        out_dir=str(out),
        dataset_name="digits",
        class_ids=[0, 1],
        min_data_seed=0,
        max_data_seed=2,
        num_train=100,
        num_valid=20,
        num_test=20,
        projected_dim=4,
    )
    return str(out)
