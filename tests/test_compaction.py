"""Lane compaction (`azjax.compaction`): program lists, rounds, gather / scatter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import compaction


def test_program_lists_lists_members_in_order_then_count():
    member = np.zeros((5, 3), bool)  # [P, L]
    member[[1, 3, 4], 0] = True
    member[:, 2] = True
    lists = np.asarray(compaction.program_lists(jnp.asarray(member)))
    assert lists.shape == (3, 11)
    np.testing.assert_array_equal(lists[0], [1, 3, 4] + [5] * 7 + [3])
    np.testing.assert_array_equal(lists[1], [5] * 10 + [0])
    np.testing.assert_array_equal(lists[2], [0, 1, 2, 3, 4] + [5] * 5 + [5])


@pytest.mark.parametrize("P, fraction, want", [(128, 1 / 8, 16), (10, 1 / 8, 2), (1, 1 / 8, 1)])
def test_capacity(P, fraction, want):
    assert compaction.capacity(P, fraction) == want


@jax.jit
def _visit(lists_row, x):
    """Adds 1 to every lane of the programs each round visits; cap = 2 programs."""

    def fn(programs, x):
        return compaction.scatter(x, programs, compaction.gather(x, programs) + 1)

    return compaction.for_each_round(lists_row, 2, fn, x)


@pytest.mark.parametrize("members", [[], [2], [0, 3], [0, 1, 4], [0, 1, 2, 3, 4]])
def test_rounds_visit_every_listed_lane_and_no_other(members):
    """Any count, also above the capacity (several rounds): every lane of a listed program (all
    T tasks) is visited exactly once, others never. Lanes `[T, P]`, T = 3."""
    P, T = 5, 3
    member = np.zeros((P, 1), bool)
    member[members, 0] = True
    row = compaction.program_lists(jnp.asarray(member))[0]
    x = jnp.zeros((2, T, P), jnp.float32)  # A leading axis: lanes are last.
    got = np.asarray(_visit(row, x))
    want = np.zeros((2, T, P), np.float32)
    want[..., members] = 1
    np.testing.assert_array_equal(got, want)


def test_gather_clips_and_scatter_drops_out_of_range_programs():
    x = jnp.arange(12, dtype=jnp.float32).reshape(2, 6)
    programs = jnp.asarray([4, 1, 9], jnp.int32)
    np.testing.assert_array_equal(compaction.gather(x, programs), [[4, 1, 5], [10, 7, 11]])
    out = compaction.scatter(x, programs, -jnp.ones((2, 3)))
    want = np.arange(12, dtype=np.float32).reshape(2, 6)
    want[:, [4, 1]] = -1
    np.testing.assert_array_equal(out, want)
