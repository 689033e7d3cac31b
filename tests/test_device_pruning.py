"""Tests for azjax.device_pruning: the device's dead-code elimination equals the host's."""

import jax
import numpy as np
import pytest
from test_pruning import SPEC, random_population

from azjax import device_pruning, generator, pruning
from azjax import ops as ops_lib
from azjax.program import COMPONENTS, ComponentSpec, ProgramSpec

SPECS = {
    "demo": ProgramSpec(),
    "all_ops": SPEC,  # 5/9/2 memory, every op, 6/6/12 slots.
    "wide": ProgramSpec(  # 60 addresses: the host's bitmask needs one full word.
        num_scalars=20,
        num_vectors=20,
        num_matrices=20,
        setup=ComponentSpec(4, ops_lib.ALL_OPS),
        predict=ComponentSpec(5, ops_lib.ALL_OPS),
        learn=ComponentSpec(7, ops_lib.ALL_OPS),
    ),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_device_pruning_equals_host_pruning_on_random_programs(name):
    spec = SPECS[name]
    population = random_population(np.random.default_rng(4), 600, spec)
    host = pruning.prune(population, spec)
    device = jax.device_get(device_pruning.prune(population, spec))
    for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(device), strict=True):
        np.testing.assert_array_equal(np.asarray(b), a)
    keep = jax.device_get(device_pruning.live_instructions(population, spec))
    expected = pruning.live_instructions(population, spec)
    for c in COMPONENTS:
        np.testing.assert_array_equal(keep[c], expected[c])
    dropped = sum(
        (np.asarray(getattr(population, c).code) != getattr(host, c).code).sum() for c in COMPONENTS
    )
    assert dropped > 100  # Random programs carry dead code: the comparison is not vacuous.


def test_prune_takes_any_leading_shape():
    spec = SPECS["demo"]
    population = generator.make_initial_population(
        jax.random.key(1), "RANDOM", spec, (10, 2, 8), 12
    )
    flat = device_pruning.prune(population, spec)
    grid = device_pruning.prune(
        jax.tree.map(lambda x: x.reshape((3, 4) + x.shape[1:]), population), spec
    )
    for a, b in zip(jax.tree.leaves(flat), jax.tree.leaves(grid), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b).reshape(a.shape))


def test_compact_moves_live_code_forward_except_where_random_ops_are_allowed():
    spec = ProgramSpec(
        setup=ComponentSpec(4, (56, 63)),  # Gaussian vector init: slot positions matter.
        predict=ComponentSpec(3, (27,)),
        learn=ComponentSpec(4, (2, 3, 18, 23)),
    )
    population = generator.make_initial_population(jax.random.key(2), "RANDOM", spec, (4, 3, 4), 64)
    pruned = device_pruning.prune(population, spec)
    compacted = jax.device_get(device_pruning.compact(pruned, spec))
    pruned = jax.device_get(pruned)
    np.testing.assert_array_equal(compacted.setup.code, pruned.setup.code)  # Left in place.
    for c in ("predict", "learn"):
        before, after = getattr(pruned, c), getattr(compacted, c)
        live = before.code[..., 0] != 0
        np.testing.assert_array_equal(after.length, live.sum(-1))
        for p in range(64):
            np.testing.assert_array_equal(after.code[p, : live[p].sum()], before.code[p][live[p]])
            assert not after.code[p, live[p].sum() :].any()
    lengths = np.asarray(device_pruning.live_lengths(compacted))
    np.testing.assert_array_equal(lengths[:, 2], compacted.learn.length)
    assert np.asarray(device_pruning.has_random_ops(compacted)).any()
    assert not np.asarray(
        device_pruning.has_random_ops(compacted._replace(setup=compacted.learn))
    ).any()
