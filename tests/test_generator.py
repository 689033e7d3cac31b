"""Tests for azjax.generator: hand-written algorithms (docs/ops.md), random ones (§2.2)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from azjax import generator, ops
from azjax import program as P
from azjax.program import COMPONENTS, ComponentSpec, Instruction, ProgramSpec

try:
    from azjax.program_io import validate
except ImportError:  # program_io is written concurrently; fall back to small range checks.
    validate = None

Kind, Data = ops.Kind, ops.Data
I = Instruction  # noqa: E741

# The nonlinear integration test's search space (docs/ops.md): only Setup evolves.
NONLINEAR = ProgramSpec(
    num_scalars=5,
    num_vectors=9,
    num_matrices=2,
    setup=ComponentSpec(7, (63, 64)),
    predict=ComponentSpec(5, ()),
    learn=ComponentSpec(12, ()),
)
# Every op everywhere, small odd banks so address ranges are non-trivial.
ALL = ProgramSpec(
    num_scalars=5,
    num_vectors=4,
    num_matrices=3,
    setup=ComponentSpec(6, ops.ALL_OPS),
    predict=ComponentSpec(3, ops.ALL_OPS),
    learn=ComponentSpec(4, ops.ALL_OPS),
)

# docs/ops.md, transcribed independently of generator.py.
LINEAR_LISTS = dict(
    setup=[I(56, 0, 0, 2, (0.01, 0, 0))],
    predict=[I(27, 1, 0, 1)],
    learn=[I(2, 0, 1, 3), I(3, 2, 3, 3), I(18, 3, 0, 2), I(23, 1, 2, 1)],
)
NN_LISTS = dict(
    setup=[I(63, 0, 0, 2, (0.0, 0.1, 0)), I(64, 0, 0, 0, (0.0, 0.1, 0)), I(56, 0, 0, 3, (0.01,))],
    predict=[I(31, 0, 0, 3), I(23, 3, 1, 3), I(48, 3, 5, 4), I(27, 4, 2, 1), I(1, 1, 2, 1)],
    learn=[
        I(2, 0, 1, 4),
        I(3, 3, 4, 4),
        I(1, 2, 4, 2),
        I(18, 4, 4, 6),
        I(23, 2, 6, 2),
        I(18, 4, 2, 7),  # Uses the already-updated v2.
        I(16, 3, 0, 8),
        I(25, 8, 7, 7),
        I(23, 1, 7, 1),
        I(28, 7, 0, 1),
        I(39, 0, 1, 0),
    ],
)


def _expect(lists, sizes):
    """Instruction lists padded with NO_OPs to `sizes`, consts as float32 values."""
    out = {}
    for c, n in zip(COMPONENTS, sizes, strict=True):
        rows = list(lists.get(c, [])) + [I(0)] * max(0, n - len(lists.get(c, [])))
        out[c] = [
            r._replace(consts=tuple(float(np.float32(x)) for x in (tuple(r.consts) + (0,) * 3)[:3]))
            for r in rows
        ]
    return out


def _instructions(program):
    return {c: P.instructions(getattr(program, c)) for c in COMPONENTS}


@pytest.mark.parametrize(
    "fn, lists, sizes",
    [
        (generator.linear_algorithm, LINEAR_LISTS, (1, 1, 4)),
        (generator.linear_algorithm, LINEAR_LISTS, (5, 3, 7)),
        (generator.neural_net_algorithm, NN_LISTS, (2, 1, 4)),
        (generator.neural_net_algorithm, NN_LISTS, (7, 5, 12)),
        (
            generator.damaged_neural_net_algorithm,
            dict(NN_LISTS, setup=NN_LISTS["setup"][2:]),
            (2, 1, 4),
        ),
        (generator.no_op_algorithm, {}, (3, 0, 2)),
    ],
)
def test_hand_written_algorithms_are_the_reference_lists(fn, lists, sizes):
    spec = NONLINEAR
    program = fn(spec, sizes)
    assert _instructions(program) == _expect(lists, sizes)  # Padded, never truncated.
    for c in COMPONENTS:
        comp = getattr(program, c)
        assert comp.code.dtype == np.int32 and comp.consts.dtype == np.float32
        assert not comp.code[int(comp.length) :].any() and not comp.consts[int(comp.length) :].any()
    # A mapping works as well as a sequence.
    assert _instructions(fn(spec, dict(zip(COMPONENTS, sizes, strict=True)))) == _expect(
        lists, sizes
    )


def test_hyperparameters_land_in_the_constants():
    lin = generator.linear_algorithm(NONLINEAR, (0, 0, 0), learning_rate=0.5)
    assert P.instructions(lin.setup)[0].consts[0] == 0.5
    nn = generator.neural_net_algorithm(
        NONLINEAR, (0, 0, 0), learning_rate=0.25, first_init=0.5, final_init=2.0
    )
    setup = P.instructions(nn.setup)
    assert setup[0].op == 63 and setup[0].consts[:2] == (0.0, 2.0)  # Output weights v2.
    assert setup[1].op == 64 and setup[1].consts[:2] == (0.0, 0.5)  # Hidden weights m0.
    assert setup[2].consts[0] == 0.25


def test_hand_written_errors():
    small = NONLINEAR.replace(learn=ComponentSpec(10, ()))
    with pytest.raises(ValueError, match="learn needs 11 instructions"):
        generator.neural_net_algorithm(small, (2, 1, 4))
    with pytest.raises(ValueError, match="setup needs 8"):
        generator.linear_algorithm(NONLINEAR, (8, 1, 4))
    with pytest.raises(ValueError, match="NEURAL_NET needs at least 5 scalar / 9 vector"):
        generator.neural_net_algorithm(ProgramSpec(setup=ComponentSpec(10, ())), (0, 0, 0))
    with pytest.raises(ValueError, match="LINEAR needs at least 4 scalar"):
        generator.linear_algorithm(ProgramSpec(num_scalars=3), (0, 0, 0))
    with pytest.raises(ValueError, match="3 ints"):
        generator.no_op_algorithm(NONLINEAR, (1, 2))
    with pytest.raises(ValueError, match="unknown component"):
        generator.no_op_algorithm(NONLINEAR, {"setpu": 1})
    with pytest.raises(ValueError, match=">= 0"):
        generator.no_op_algorithm(NONLINEAR, (1, -1, 0))


def test_required_ops_extend_frozen_components():
    nn = generator.neural_net_algorithm(NONLINEAR, (2, 1, 4))
    used = generator.required_ops(nn)
    assert used["setup"] == {56, 63, 64}
    assert used["predict"] == {1, 23, 27, 31, 48}
    assert used["learn"] == {1, 2, 3, 16, 18, 23, 25, 28, 39}
    spec = generator.add_required_ops(NONLINEAR, nn)
    for c in COMPONENTS:
        assert used[c] <= set(spec.component(c).valid_ops)
        assert spec.component(c).ops == NONLINEAR.component(c).ops  # Still frozen / unchanged.
    assert spec.setup.extra_ops == (56,)
    assert generator.add_required_ops(spec, nn) == spec  # Idempotent.
    # Batched programs work too.
    pop = generator.make_initial_population(jax.random.key(0), "NEURAL_NET", spec, (2, 1, 4), 3)
    assert generator.required_ops(pop) == used
    if validate is not None:
        validate(nn, spec)
        validate(pop, spec, batched=True)
        with pytest.raises(ValueError, match="not allowed"):
            validate(nn, NONLINEAR)


def test_registry_and_initial_population():
    key = jax.random.key(1)
    spec = generator.add_required_ops(
        NONLINEAR.replace(predict=ComponentSpec(5, (27,)), learn=ComponentSpec(12, (2, 3))),
        generator.neural_net_algorithm(NONLINEAR, (0, 0, 0)),
    )
    assert set(generator.INITIAL_ALGORITHMS) == {
        "NO_OP",
        "RANDOM",
        "LINEAR",
        "AFFINE",
        "NEURAL_NET",
        "DAMAGED_NEURAL_NET",
    }
    for name, canonical in [
        ("NEURAL_NET_ALGORITHM", "NEURAL_NET"),
        ("integration_test_damaged_neural_net_algorithm", "DAMAGED_NEURAL_NET"),
        ("random", "RANDOM"),
    ]:
        assert generator.canonical_name(name) == canonical
    with pytest.raises(ValueError, match="unknown initial algorithm"):
        generator.make_initial_population(key, "LINEAR_REGRESSION", spec, (1, 1, 1), 2)
    with pytest.raises(ValueError, match="population_size"):
        generator.make_initial_population(key, "NO_OP", spec, (1, 1, 1), 0)

    sizes = (3, 2, 5)
    for name in ("NO_OP", "LINEAR", "AFFINE", "NEURAL_NET", "DAMAGED_NEURAL_NET"):
        pop = generator.make_initial_population(key, name, spec, sizes, 4)
        single = generator.INITIAL_ALGORITHMS[name](key, spec, sizes)
        for c in COMPONENTS:
            for leaf_pop, leaf in zip(getattr(pop, c), getattr(single, c), strict=True):
                assert leaf_pop.shape == (4,) + np.shape(leaf)
                np.testing.assert_array_equal(leaf_pop, np.broadcast_to(leaf, leaf_pop.shape))
        if validate is not None:
            validate(pop, spec, batched=True)

    pop = generator.make_initial_population(key, "RANDOM", spec, sizes, 50)
    for c, n in zip(COMPONENTS, sizes, strict=True):
        comp = getattr(pop, c)
        np.testing.assert_array_equal(comp.length, n)
        assert not np.asarray(comp.code)[:, n:].any()
        assert len({np.asarray(comp.code)[i].tobytes() for i in range(50)}) > 40  # Independent.
        assert set(np.unique(comp.code[:, :n, 0])) <= set(spec.component(c).ops)
    if validate is not None:
        validate(pop, spec, batched=True)
    # Frozen components of RANDOM keep their NO_OPs.
    pop = generator.make_initial_population(key, "RANDOM", NONLINEAR, (2, 3, 1), 5)
    np.testing.assert_array_equal(pop.predict.length, 3)
    assert not np.asarray(pop.predict.code).any() and not np.asarray(pop.learn.code).any()
    assert np.asarray(pop.setup.code)[:, :2, 0].all()


@functools.partial(jax.jit, static_argnames=("spec", "component", "n"))
def _draw(key, spec, component, n):
    return jax.vmap(lambda k: generator.random_instruction(k, spec, component))(
        jax.random.split(key, n)
    )


def _check_instructions(code, consts, spec, allowed):
    """Range checks of §1.3 and §2.2 on drawn instructions code [N, 4], consts [N, 3]."""
    code, consts = np.asarray(code), np.asarray(consts)
    assert code.dtype == np.int32 and consts.dtype == np.float32
    assert set(np.unique(code[:, 0])) <= set(allowed)
    for op_id in np.unique(code[:, 0]):
        op = ops.OPS[op_id]
        rows, c = code[code[:, 0] == op_id], consts[code[:, 0] == op_id]
        for col, kind in ((1, op.in1), (2, op.in2)):
            if kind == Kind.NONE:
                assert not rows[:, col].any()
            else:
                assert rows[:, col].min() >= 0 and rows[:, col].max() < spec.bank_size(kind)
        if op.out == Kind.NONE:
            assert not rows[:, 3].any()
        else:
            lo, hi = spec.out_range(op.out)
            assert rows[:, 3].min() >= lo and rows[:, 3].max() < hi
            if op.out in (Kind.SCALAR, Kind.VECTOR):
                assert rows[:, 3].min() >= 1  # s0 / v0 are never written.
        lows, highs = {
            Data.NONE: ((0, 0, 0), (0, 0, 0)),
            Data.CONST_SCALAR: ((-1, 0, 0), (1, 0, 0)),
            Data.CONST_VECTOR: ((0, -1, 0), (1, 1, 0)),
            Data.CONST_MATRIX: ((0, 0, -1), (1, 1, 1)),
            Data.UNIFORM: ((-1, -1, 0), (1, 1, 0)),
            Data.GAUSSIAN: ((-1, 0, 0), (1, 1, 0)),
        }[op.data]
        for j in range(3):
            if lows[j] == highs[j]:
                assert not c[:, j].any()
            else:
                assert c[:, j].min() >= lows[j] and c[:, j].max() < highs[j]
        if op.data == Data.CONST_SCALAR:
            assert c[:, 0].min() > -1  # Open interval.


def test_random_instruction_ranges_and_op_frequencies():
    n = 20000
    code, consts = _draw(jax.random.key(2), ALL, "setup", n)
    _check_instructions(code, consts, ALL, ops.ALL_OPS)
    counts = np.bincount(np.asarray(code[:, 0]), minlength=ops.NUM_OPS)
    assert stats.chisquare(counts).pvalue > 1e-4  # Uniform over the 65 ops.
    # Addresses are uniform over their ranges: scalar outputs over [1, 5), vector inputs [0, 4).
    code = np.asarray(code)
    s_out = code[[ops.OPS[o].out == Kind.SCALAR for o in code[:, 0]], 3]
    assert stats.chisquare(np.bincount(s_out, minlength=5)[1:]).pvalue > 1e-4
    v_in = code[[ops.OPS[o].in1 == Kind.VECTOR for o in code[:, 0]], 1]
    assert stats.chisquare(np.bincount(v_in, minlength=4)).pvalue > 1e-4
    # Constants: U(-1,1) means ~0, U[0,1) means ~0.5; uniform-set bounds are not sorted.
    consts = np.asarray(consts)
    for op_id, col, mean in [(56, 0, 0.0), (57, 0, 0.5), (58, 2, 0.0), (62, 1, 0.5), (60, 1, 0.0)]:
        x = consts[code[:, 0] == op_id, col]
        assert abs(x.mean() - mean) < 5 * np.sqrt(1 / 3 / len(x))
    uni = consts[np.isin(code[:, 0], (59, 60, 61))]
    assert 0.4 < np.mean(uni[:, 0] > uni[:, 1]) < 0.6


def test_duplicates_weight_ops_and_errors():
    spec = ProgramSpec(predict=ComponentSpec(2, (1, 1, 27)))
    code, consts = _draw(jax.random.key(3), spec, "predict", 6000)
    _check_instructions(code, consts, spec, (1, 27))
    frac = np.mean(np.asarray(code[:, 0]) == 1)
    assert abs(frac - 2 / 3) < 5 * np.sqrt(2 / 9 / 6000)
    with pytest.raises(ValueError, match="frozen"):
        generator.random_instruction(jax.random.key(0), NONLINEAR, "learn")
    with pytest.raises(ValueError, match="unknown component"):
        generator.random_instruction(jax.random.key(0), NONLINEAR, "train")
    with pytest.raises(ValueError, match="no vector address is writable"):
        generator.random_instruction(
            jax.random.key(0), ProgramSpec(num_vectors=1, setup=ComponentSpec(2, (23,))), "setup"
        )


def test_random_component_traced_length_and_padding():
    fn = jax.jit(lambda k, n: generator.random_component(k, ALL, "setup", n))
    for n in (0, 3, 6):
        comp = fn(jax.random.key(n), n)
        assert int(comp.length) == n
        assert not np.asarray(comp.code)[n:].any() and not np.asarray(comp.consts)[n:].any()
        _check_instructions(comp.code[:n], comp.consts[:n], ALL, ops.ALL_OPS)
    with pytest.raises(ValueError, match="slot capacity"):
        generator.random_component(jax.random.key(0), ALL, "setup", 7)
    # Deterministic for a key; different keys differ.
    a, b = fn(jax.random.key(5), 6), fn(jax.random.key(5), 6)
    np.testing.assert_array_equal(a.code, b.code)
    assert not np.array_equal(a.code, fn(jax.random.key(6), 6).code)


def test_bits_helpers_stay_in_range():
    bits = jnp.asarray([0, 1, 2**31, 2**32 - 1], jnp.uint32)
    u = generator.bits_uniform(bits)
    assert float(u.min()) == 0.0 and float(u.max()) < 1.0
    uo = generator.bits_uniform(bits, open_low=True)
    assert float(uo.min()) > 0.0 and float(uo.max()) < 1.0
    np.testing.assert_array_equal(generator.bits_below(bits, 3), [0, 0, 1, 2])
    np.testing.assert_array_equal(generator.bits_below(bits, 0), 0)
    assert np.isfinite(np.asarray(generator.bits_normal(bits))).all()
