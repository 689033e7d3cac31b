"""Tests for azjax.pruning: dead-code elimination keeps fitness, hand-written liveness cases."""

import numpy as np
import pytest

from azjax import ops as ops_lib
from azjax.program import (
    COMPONENTS,
    Component,
    ComponentSpec,
    Instruction,
    Program,
    ProgramSpec,
    index,
    make_program,
    stack,
)
from azjax.pruning import live_instructions, prune

I = Instruction  # noqa: E741
SPEC = ProgramSpec(
    num_scalars=5,
    num_vectors=9,
    num_matrices=2,
    setup=ComponentSpec(6, ops_lib.ALL_OPS),
    predict=ComponentSpec(6, ops_lib.ALL_OPS),
    learn=ComponentSpec(12, ops_lib.ALL_OPS),
)

LINEAR = dict(
    setup=[I(56, out=2, consts=(0.01,))],  # s2 = 0.01
    predict=[I(27, 1, 0, 1)],  # s1 = dot(v1, v0)
    learn=[I(2, 0, 1, 3), I(3, 2, 3, 3), I(18, 3, 0, 2), I(23, 1, 2, 1)],  # SGD on v1
)

NEURAL_NET = dict(  # docs/ops.md, NEURAL_NET_ALGORITHM.
    setup=[
        I(63, out=2, consts=(0.0, 0.1)), I(64, out=0, consts=(0.0, 0.1)),
        I(56, out=3, consts=(0.01,)),
    ],
    predict=[I(31, 0, 0, 3), I(23, 3, 1, 3), I(48, 3, 5, 4), I(27, 4, 2, 1), I(1, 1, 2, 1)],
    learn=[
        I(2, 0, 1, 4), I(3, 3, 4, 4), I(1, 2, 4, 2), I(18, 4, 4, 6), I(23, 2, 6, 2),
        I(18, 4, 2, 7), I(16, 3, out=8), I(25, 8, 7, 7), I(23, 1, 7, 1), I(28, 7, 0, 1),
        I(39, 0, 1, 0),
    ],
)  # fmt: skip


def live(lists, spec=SPEC):
    """Live masks (within `length`) of one hand-written program, as lists of bools."""
    program = make_program(spec, **lists)
    keep = live_instructions(stack([program]), spec)
    return {c: keep[c][0, : len(lists.get(c, ()))].tolist() for c in COMPONENTS}


def test_linear_regression_keeps_everything():
    program = make_program(SPEC, **LINEAR)
    pruned = prune(program, SPEC)
    for c in COMPONENTS:
        for a, b in zip(getattr(program, c), getattr(pruned, c), strict=True):
            np.testing.assert_array_equal(a, b)


def test_neural_net_keeps_everything():
    assert all(all(v) for v in live(NEURAL_NET).values())


def test_write_never_read_is_dropped():
    lists = dict(LINEAR, predict=LINEAR["predict"] + [I(3, 2, 2, 4)])  # s4 = s2 * s2: unread.
    assert live(lists)["predict"] == [True, False]


def test_write_overwritten_before_read_is_dropped():
    # Predict writes s3, but Learn overwrites s3 before reading it: dead across the boundary.
    lists = dict(LINEAR, predict=[I(3, 2, 2, 3)] + LINEAR["predict"])
    assert live(lists)["predict"] == [False, True]
    # Setup writes s2 twice: the first write is dead.
    lists = dict(LINEAR, setup=[I(56, out=2, consts=(0.5,))] + LINEAR["setup"])
    assert live(lists)["setup"] == [False, True]


def test_setup_value_read_in_learn_feeding_predict_is_kept():
    # s2 (learning rate) is only read by Learn, which updates v1, which Predict reads.
    assert live(LINEAR) == dict(setup=[True], predict=[True], learn=[True] * 4)
    # Without the Learn update of v1, the learning rate is dead.
    lists = dict(LINEAR, learn=LINEAR["learn"][:3])
    assert live(lists) == dict(setup=[False], predict=[True], learn=[False] * 3)


def test_chain_learn_to_predict_and_predict_to_predict():
    lists = dict(
        setup=[],
        predict=[I(27, 1, 0, 1), I(1, 1, 3, 1), I(5, 4, out=3), I(5, 1, out=4)],
        learn=[I(19, 0, out=2), I(23, 1, 2, 1)],  # v2 = bcast(s0); v1 = v1 + v2
    )
    # s4 = |s1| is read by the next Predict (through s3 = |s4|).
    assert live(lists) == dict(setup=[], predict=[True] * 4, learn=[True, True])
    # Learn overwrites s3 before the next training Predict, so the last write of s3 reaches a
    # read only through consecutive validation Predicts: still live.
    lists = dict(
        predict=[I(27, 1, 0, 1), I(1, 1, 3, 1), I(5, 1, out=3)],
        learn=[I(5, 0, out=3), I(18, 3, 0, 2), I(23, 1, 2, 1)],
    )
    assert live(lists) == dict(setup=[], predict=[True] * 3, learn=[True] * 3)


def test_predict_output_read_by_learn_only_is_kept():
    lists = dict(predict=[I(27, 1, 0, 1), I(5, 1, out=3)], learn=[I(18, 3, 0, 2), I(23, 1, 2, 1)])
    assert live(lists) == dict(setup=[], predict=[True, True], learn=[True, True])


def test_label_and_features_are_not_live_across_boundaries():
    lists = dict(
        setup=[I(56, out=0, consts=(3.0,)), I(19, 0, out=0)],  # writes s0, v0: overwritten.
        predict=[I(1, 0, 0, 0), I(27, 1, 0, 1), I(23, 1, 1, 0)],  # s0, v0 writes: reset.
        learn=[I(18, 0, 0, 2), I(23, 1, 2, 1), I(23, 0, 0, 0)],  # v1 += s0 * v0; v0 = v0 + v0
    )
    live_ = dict(setup=[False, False], predict=[False, True, False], learn=[True, True, False])
    assert live(lists) == live_
    # Within a component a write to v0 is visible to later reads.
    lists = dict(predict=[I(23, 0, 0, 0), I(27, 0, 0, 1)])
    assert live(lists)["predict"] == [True, True]


def test_const_set_partial_write_keeps_earlier_writer():
    setup = [I(19, 2, out=1), I(57, out=1, consts=(0.3, 0.5))]  # v1 = bcast(s2); v1[i] = 0.5
    lists = dict(setup=setup, predict=[I(27, 1, 0, 1)])
    assert live(lists)["setup"] == [True, True]
    lists = dict(setup=[I(19, 2, out=1), I(19, 3, out=1)], predict=[I(27, 1, 0, 1)])
    assert live(lists)["setup"] == [False, True]  # A full overwrite kills the earlier writer.
    setup = [I(64, out=1, consts=(0.0, 1.0)), I(58, out=1, consts=(0.1, 0.9, 2.0))]
    lists = dict(setup=setup, predict=[I(31, 1, 0, 2), I(27, 2, 2, 1)])
    assert live(lists)["setup"] == [True, True]


def random_population(rng, num_programs, spec, ops=ops_lib.ALL_OPS):
    """Random programs (any op, any in-range address, outputs s0/v0 included, garbage in unused
    fields, random lengths), NumPy only."""
    comps = []
    for c in COMPONENTS:
        size = spec.component(c).size
        op = rng.choice(np.asarray(ops), (num_programs, size))
        fields = [op]
        for f in ("in1", "in2", "out"):
            kind = np.array([getattr(o, f) for o in ops_lib.OPS])[op]
            bank = np.select(
                [kind == 1, kind == 2, kind == 3],
                [spec.num_scalars, spec.num_vectors, spec.num_matrices],
                3,
            )
            fields.append((rng.random(op.shape) * bank).astype(np.int32))
        code = np.stack(fields, -1).astype(np.int32)
        consts = rng.uniform(-1, 1, (num_programs, size, 3)).astype(np.float32)
        consts[..., :2] = np.abs(consts[..., :2])  # Index fractions in [0, 1); stdev >= 0.
        length = rng.integers(0, size + 1, num_programs).astype(np.int32)
        pad = np.arange(size) >= length[:, None]
        code[pad], consts[pad] = 0, 0
        comps.append(Component(code, consts, length))
    return Program(*comps)


@pytest.mark.parametrize("eval_type", ["rms", "accuracy"])
def test_pruning_never_changes_fitness(eval_type):
    reference = pytest.importorskip("azjax.reference")  # The NumPy executable specification.
    rng = np.random.default_rng(7 if eval_type == "rms" else 8)
    spec = ProgramSpec(
        num_scalars=4, num_vectors=3, num_matrices=2, setup=ComponentSpec(5),
        predict=ComponentSpec(4), learn=ComponentSpec(5),
    )  # fmt: skip
    # Tame ops (no exp/reciprocal blow-ups) for half the programs, so most of them survive training.
    tame = [o.id for o in ops_lib.OPS if o.id not in (4, 6, 9, 13, 14, 20, 26, 30, 42)]
    parts = [random_population(rng, 60, spec, tame), random_population(rng, 60, spec)]
    population = Program(
        *(
            Component(*(np.concatenate([getattr(q, c)[f] for q in parts]) for f in range(3)))
            for c in COMPONENTS
        )
    )
    pruned = prune(population, spec)
    label = (lambda v: (v > 0).astype(np.float32)) if eval_type == "accuracy" else (lambda v: v)
    x_train = rng.normal(size=(4, 4)).astype(np.float32)
    x_train = np.concatenate([x_train, x_train[::-1]])  # 2 epochs of 4 examples.
    x_valid = rng.normal(size=(3, 4)).astype(np.float32)
    task = reference.SingleTask(
        x_train, label(x_train.sum(1)), x_valid, label(x_valid.sum(1)), 4, eval_type
    )
    informative, removed = 0, 0
    for p in range(120):
        a = reference.evaluate(index(population, p), task, spec=spec, seed=p)
        b = reference.evaluate(index(pruned, p), task, spec=spec, seed=p)
        assert a.fitness == b.fitness, p
        assert a.stopped_early == b.stopped_early, p
        np.testing.assert_array_equal(a.train_errors, b.train_errors)
        np.testing.assert_array_equal(a.valid_errors, b.valid_errors)
        informative += a.fitness > 0 and len(np.unique(a.train_errors)) > 1
        removed += sum(
            int((getattr(population, c).code[p, :, 0] != getattr(pruned, c).code[p, :, 0]).sum())
            for c in COMPONENTS
        )
    assert informative >= 40  # The comparison is not vacuous ...
    assert removed >= 300  # ... and pruning did remove code.


def test_idempotent_and_padding_invariant():
    rng = np.random.default_rng(0)
    population = random_population(rng, 200, SPEC)
    once = prune(population, SPEC)
    twice = prune(once, SPEC)
    for c in COMPONENTS:
        a, b, orig = getattr(once, c), getattr(twice, c), getattr(population, c)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(a.length, orig.length)
        pad = np.arange(SPEC.component(c).size) >= orig.length[:, None]
        assert not a.code[pad].any() and not a.consts[pad].any()
        assert a.code.dtype == np.int32 and a.consts.dtype == np.float32
        # A row is either kept verbatim (op, out, used inputs) or all zero.
        kept = a.code[..., 0] != 0
        np.testing.assert_array_equal(a.code[..., 0][kept], orig.code[..., 0][kept])
        np.testing.assert_array_equal(a.code[..., 3][kept], orig.code[..., 3][kept])
        assert not a.code[~kept].any() and not a.consts[~kept].any()
    # Batched and unbatched agree.
    single = prune(index(population, 3), SPEC)
    for c in COMPONENTS:
        for x, y in zip(getattr(single, c), getattr(index(once, 3), c), strict=True):
            np.testing.assert_array_equal(x, y)


def test_canonicalize_zeroes_unused_fields():
    lists = dict(predict=[I(5, 2, 3, 1, consts=(0.5, 0.25, 1.0))])  # s1 = |s2|, junk in2/consts
    program = make_program(SPEC, **lists)
    code = prune(program, SPEC).predict.code[0]
    np.testing.assert_array_equal(code, [5, 2, 0, 1])
    assert not prune(program, SPEC).predict.consts.any()
    raw = prune(program, SPEC, canonicalize=False).predict
    np.testing.assert_array_equal(raw.code[0], [5, 2, 3, 1])
    np.testing.assert_array_equal(raw.consts[0], [0.5, 0.25, 1.0])
    set_op = make_program(SPEC, predict=[I(57, 4, 4, 1, consts=(0.5, 0.25, 1.0)), I(27, 1, 0, 1)])
    pruned = prune(set_op, SPEC).predict
    np.testing.assert_array_equal(pruned.code[0], [57, 0, 0, 1])
    np.testing.assert_array_equal(pruned.consts[0], [0.5, 0.25, 0.0])


def test_bad_programs_raise():
    program = make_program(SPEC, **LINEAR)
    bad = program._replace(learn=program.learn._replace(code=program.learn.code.copy()))
    bad.learn.code[2, 3] = 9  # v9 in a 9-vector bank.
    with pytest.raises(ValueError, match="learn: program 0 slot 2 field out = 9 .* vector bank"):
        prune(bad, SPEC)
    bad.learn.code[2] = (70, 0, 0, 0)
    with pytest.raises(ValueError, match="learn: program 0 slot 2 has unknown op id 70"):
        prune(bad, SPEC)


def oracle_live(program):
    """Per-program liveness with Python sets of (kind, address), straight from the pruning
    module docstring: {component: [bool] * L}. Slow and obviously correct."""
    codes = {
        c: [tuple(int(x) for x in row) for row in getattr(program, c).code] for c in COMPONENTS
    }
    reset = {(ops_lib.Kind.SCALAR, 0), (ops_lib.Kind.VECTOR, 0)}  # s0, v0: written by the harness

    def backward(code, live_out):
        live, keep = set(live_out), [False] * len(code)
        for i in reversed(range(len(code))):
            op, in1, in2, out = code[i]
            spec_ = ops_lib.OPS[op]
            if spec_.out == ops_lib.Kind.NONE or (spec_.out, out) not in live:
                continue
            keep[i] = True
            if spec_.data not in (ops_lib.Data.CONST_VECTOR, ops_lib.Data.CONST_MATRIX):
                live.discard((spec_.out, out))
            live |= {(k, a) for k, a in ((spec_.in1, in1), (spec_.in2, in2)) if k}
        return keep, live

    in_predict, in_learn = set(), set()
    while True:
        out_predict = {(ops_lib.Kind.SCALAR, 1)} | ((in_predict | in_learn) - reset)
        keep_predict, new_in_predict = backward(codes["predict"], out_predict)
        keep_learn, new_in_learn = backward(codes["learn"], new_in_predict - reset)
        if (new_in_predict, new_in_learn) == (in_predict, in_learn):
            break
        in_predict, in_learn = new_in_predict, new_in_learn
    keep_setup, _ = backward(codes["setup"], in_predict - reset)
    return dict(setup=keep_setup, predict=keep_predict, learn=keep_learn)


@pytest.mark.parametrize("banks", [(20, 20, 20), (40, 20, 10)])  # 60 bits; 70 bits: 2 words.
def test_liveness_matches_set_oracle_and_renaming(banks):
    rng = np.random.default_rng(sum(banks))
    small = random_population(rng, 300, SPEC)  # SPEC: 5 scalars, 9 vectors, 2 matrices.
    keep = live_instructions(small, SPEC)
    # Rename the addresses into the top of bigger banks (s0, s1 and v0 stay): liveness must not
    # change, and the highest bits of the sets get used.
    spec = SPEC.replace(num_scalars=banks[0], num_vectors=banks[1], num_matrices=banks[2])
    s, v, m = banks
    renames = {
        ops_lib.Kind.SCALAR: np.array([0, 1, s - 1, s - 2, s - 3]),
        ops_lib.Kind.VECTOR: np.array([0] + [v - 1 - i for i in range(8)]),
        ops_lib.Kind.MATRIX: np.array([m - 1, m - 2]),
    }
    comps = []
    for c in COMPONENTS:
        comp = getattr(small, c)
        code = comp.code.copy()
        for field, name in ((1, "in1"), (2, "in2"), (3, "out")):
            kind = np.array([getattr(o, name) for o in ops_lib.OPS])[code[..., 0]]
            addr = code[..., field].copy()
            for k, rename in renames.items():
                code[..., field] = np.where(
                    kind == k, rename[np.minimum(addr, len(rename) - 1)], addr
                )
        comps.append(comp._replace(code=code))
    big = Program(*comps)
    keep_big = live_instructions(big, spec)
    num_live = 0
    for p in range(300):
        expected = oracle_live(index(small, p))
        for c in COMPONENTS:
            np.testing.assert_array_equal(keep[c][p], expected[c], err_msg=f"{c} {p}")
            np.testing.assert_array_equal(keep_big[c][p], expected[c], err_msg=f"{c} {p}")
            num_live += sum(expected[c])
    assert num_live >= 300  # Not vacuous.
