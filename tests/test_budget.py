"""The train budget (docs/ops.md) against hand-summed costs from the op table."""

import numpy as np
import pytest

from azjax import budget, ops
from azjax.program import Instruction as I
from azjax.program import ProgramSpec, make_component, make_program, stack

SPEC = ProgramSpec(num_scalars=5, num_vectors=9, num_matrices=2)
SIZE = 40  # slot capacity of every component in these tests

# NEURAL_NET_ALGORITHM (docs/ops.md), 3 / 5 / 11 instructions.
NN_SETUP = [
    I(63, out=2, consts=(0.0, 0.1)),
    I(64, out=0, consts=(0.0, 0.1)),
    I(56, out=3, consts=(0.01,)),
]
NN_PREDICT = [I(31, 0, 0, 3), I(23, 3, 1, 3), I(48, 3, 5, 4), I(27, 4, 2, 1), I(1, 1, 2, 1)]
NN_LEARN = [
    I(2, 0, 1, 4),
    I(3, 3, 4, 4),
    I(1, 2, 4, 2),
    I(18, 4, 4, 6),
    I(23, 2, 6, 2),
    I(18, 4, 2, 7),
    I(16, 3, 0, 8),
    I(25, 8, 7, 7),
    I(23, 1, 7, 1),
    I(28, 7, 0, 1),
    I(39, 0, 1, 0),
]
# Hand-summed from the cost column of docs/ops.md (typed from the table, not read from ops).
NN_SETUP_COST = 77483018 + 277690384 + 3691108
NN_PREDICT_COST = 9310002 + 4701519 + 3974229 + 4294617 + 4703759
NN_LEARN_COST = (
    (5102027 + 4418347 + 4703759 + 3705015 + 4701519 + 3705015 + 3965743 + 4504555 + 4701519)
    + 9833707
    + 5579381
)
NO_OP_COST = 3013921


def _program(setup=(), predict=(), learn=()):
    spec = SPEC.replace(
        setup=SPEC.setup._replace(size=SIZE),
        predict=SPEC.predict._replace(size=SIZE),
        learn=SPEC.learn._replace(size=SIZE),
    )
    return make_program(spec, setup, predict, learn)


NN = _program(NN_SETUP, NN_PREDICT, NN_LEARN)


@pytest.mark.parametrize("op", ops.OPS, ids=[o.name for o in ops.OPS])
def test_single_op_cost_is_its_table_entry(op):
    comp = make_component([I(op.id)], 3)
    assert budget.component_cost(comp.code, comp.length) == op.cost
    assert budget.OP_COSTS[op.id] == op.cost


def test_costs_match_the_table():
    setup, train = budget.program_costs(NN)
    assert setup == NN_SETUP_COST == 358864510
    assert train == NN_PREDICT_COST + NN_LEARN_COST
    spot = make_component([I(1), I(27), I(64), I(0)], 6)
    assert budget.component_cost(spot.code, spot.length) == 4703759 + 4294617 + 277690384 + 3013921


def test_only_slots_below_length_count():
    # The same instructions in 5 or 40 slots cost the same: padding past `length` does not exist.
    small, large = make_component(NN_PREDICT, 5), make_component(NN_PREDICT, SIZE)
    cost = budget.component_cost
    assert cost(small.code, small.length) == cost(large.code, large.length) == NN_PREDICT_COST
    # Explicit NO_OP instructions inside `length` count (the original counts every instruction):
    # the baseline padded to, e.g., setup size_init 10 pays for 7 NO_OPs.
    padded = make_component(NN_SETUP + [I(0)] * 7, 10)
    assert cost(padded.code, padded.length) == NN_SETUP_COST + 7 * NO_OP_COST
    # Garbage past `length` is ignored too.
    code = large.code.copy()
    code[10:] = (64, 0, 0, 0)
    assert cost(code, large.length) == NN_PREDICT_COST


def test_component_cost_is_batched():
    comps = [make_component([I(1)] * k, 6) for k in range(4)]
    code = np.stack([c.code for c in comps]).reshape(2, 2, 6, 4)
    length = np.stack([c.length for c in comps]).reshape(2, 2)
    np.testing.assert_array_equal(
        budget.component_cost(code, length), [[0, 4703759], [2 * 4703759, 3 * 4703759]]
    )


def test_nn_sized_programs_are_accepted_and_long_ones_rejected():
    n = 1000
    linear = _program([I(56, out=2)], [I(27, 1, 0, 1)], [I(2, 0, 1, 3), I(3, 2, 3, 3)])
    heavy_learn = NN_LEARN + [I(64, out=1, consts=(0.0, 1.0))] * 10  # ~10 x the NN's train cost
    heavy = _program(NN_SETUP, NN_PREDICT, heavy_learn)
    heavy_setup = _program(NN_SETUP * 13, NN_PREDICT, NN_LEARN)  # big Setup, paid only once
    empty = _program(NN_SETUP)  # C_t == 0: the original CHECK-fails, we give 0 examples
    population = stack([NN, linear, heavy, heavy_setup, empty])
    got = budget.train_examples(population, NN, n)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [n, n, 0, n, 0])
    # A big Setup is rejected when there are few examples to amortize it over.
    np.testing.assert_array_equal(budget.train_examples(population, NN, 1), [1, 1, 0, 0, 0])
    # One unbatched program gives a 0-d answer.
    assert budget.train_examples(heavy, NN, n) == 0 and budget.train_examples(NN, NN, n) == n


def test_threshold_is_inclusive_at_the_factor():
    # Every component doubled costs exactly 2x the baseline: accepted at factor 2 (<=). One more
    # NO_OP in Learn tips it over; a slightly larger factor accepts it again.
    double = _program(NN_SETUP * 2, NN_PREDICT * 2, NN_LEARN * 2)
    over = _program(NN_SETUP * 2, NN_PREDICT * 2, NN_LEARN * 2 + [I(0)])
    population = stack([double, over])
    np.testing.assert_array_equal(budget.train_examples(population, NN, 100), [100, 0])
    np.testing.assert_array_equal(budget.train_examples(population, NN, 100, 2.1), [100, 100])
    np.testing.assert_array_equal(budget.train_examples(population, NN, 100, 1.99), [0, 0])


def test_bad_input_raises():
    comp = make_component([I(1)], 3)
    with pytest.raises(ValueError, match="shape"):
        budget.component_cost(comp.code[:, :3], comp.length)
    with pytest.raises(ValueError, match="length shape"):
        budget.component_cost(comp.code, np.array([1, 1]))
    code = comp.code.copy()
    code[0, 0] = 65
    with pytest.raises(ValueError, match=r"op ids \[65\]"):
        budget.component_cost(code, comp.length)
