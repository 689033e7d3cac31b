"""Tests for azjax.tasks: seeds, generators, epoch streams, unit tasks, projected binary tasks."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import datasets, tasks
from azjax.tasks import TaskSpec

E, EV, F = 12, 6, 4


def _spec(kind="linear", **kw):
    kw = {"num_train_examples": E, "num_valid_examples": EV, "feature_size": F, **kw}
    return TaskSpec(kind=kind, **kw)


# ---------------------------------------------------------------------------------------------
# Seeds.


def test_expand_seeds_defaults_and_quirk():
    params, data = tasks.expand_seeds(_spec(num_tasks=12))
    assert params == [1001, 1012, 1010, 1000, 1006, 1008, 1007, 1003, 1004, 1005, 1006, 1007]
    assert data == [
        11001,
        11012,
        11010,
        11000,
        11006,
        11008,
        11007,
        11003,
        11004,
        11005,
        11006,
        11007,
    ]
    # The original's quirk: task 10 repeats task 4's (param, data) pair.
    assert (params[10], data[10]) == (params[4], data[4]) == (1006, 11006)


def test_expand_seeds_listed_and_wraparound():
    spec = _spec(num_tasks=4, param_seeds=(5, 9), data_seeds=(2**32 - 2,))
    assert tasks.expand_seeds(spec) == ([5, 9, 10, 11], [2**32 - 2, 2**32 - 1, 0, 1])
    # The demo's final collection (docs/ops.md).
    final = _spec(
        num_tasks=100,
        num_train_examples=1000,
        num_valid_examples=100,
        data_seeds=(1000000,),
        param_seeds=(2000000,),
    )
    params, data = tasks.expand_seeds(final)
    assert params == list(range(2000000, 2000100)) and data == list(range(1000000, 1000100))
    # Fewer tasks than listed seeds uses a prefix.
    assert tasks.expand_seeds(_spec(num_tasks=1, param_seeds=(7, 8))) == ([7], [11001])


def test_randomize_seeds(key):
    spec = _spec(num_tasks=5, param_seeds=(1,), data_seeds=(2,))
    a, b = tasks.randomize_seeds(key, spec), tasks.randomize_seeds(key, spec)
    other = tasks.randomize_seeds(jax.random.key(1), spec)
    assert a == b and a != other
    assert len(a.param_seeds) == len(a.data_seeds) == 5
    assert all(1 <= s < 2**32 - 1 for s in a.param_seeds + a.data_seeds)
    assert a.param_seeds != a.data_seeds
    assert all(type(s) is int for s in a.param_seeds)
    assert dataclasses.replace(a, param_seeds=(1,), data_seeds=(2,)) == spec
    specs = tasks.randomize_collection_seeds(key, [spec, spec])
    assert specs[0].param_seeds != specs[1].param_seeds


# ---------------------------------------------------------------------------------------------
# Generators.


def test_linear_deterministic_seed_dependent_and_batch_independent():
    spec = _spec(num_tasks=2, param_seeds=(10, 11), data_seeds=(21, 21))
    ts, _ = tasks.make_tasks(spec)
    again, _ = tasks.make_tasks(spec)
    for a, b in zip(ts, again, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ts.x_train[0], ts.x_train[1])  # Same data seed.
    np.testing.assert_array_equal(ts.x_valid[0], ts.x_valid[1])
    assert not np.array_equal(ts.y_train[0], ts.y_train[1])  # Different param seeds.
    assert not np.array_equal(ts.x_train[0, :EV], ts.x_valid[0])  # Valid follows train.
    # A task depends only on its seeds, not on the batch it is built in.
    alone, _ = tasks.make_tasks(dataclasses.replace(spec, num_tasks=1, param_seeds=(11,)))
    for a, b in zip(alone, ts, strict=True):
        np.testing.assert_array_equal(a[0], b[1])


def test_linear_labels_are_u_dot_x():
    ts, info = tasks.make_tasks(_spec(num_tasks=2, param_seeds=(3, 3), data_seeds=(4, 5)))
    assert info.eval_type == "rms"
    u = np.asarray(tasks.linear_weights(jnp.uint32(3), F), np.float64)
    for t in range(2):
        for x, y in ((ts.x_train[t], ts.y_train[t]), (ts.x_valid[t], ts.y_valid[t])):
            np.testing.assert_allclose(y, np.asarray(x, np.float64) @ u, rtol=1e-5, atol=1e-5)
        # The weights are recoverable from the data alone, and shared by the two data seeds.
        fit, *_ = np.linalg.lstsq(np.asarray(ts.x_train[t], np.float64), ts.y_train[t], rcond=None)
        np.testing.assert_allclose(fit, u, rtol=1e-4, atol=1e-4)
    assert not np.array_equal(ts.x_train[0], ts.x_train[1])  # Different data seeds.
    x = np.asarray(ts.x_train).reshape(-1)
    assert abs(x.mean()) < 0.5 and 0.6 < x.std() < 1.4  # N(0, 1) features.


def test_affine_labels_are_u_dot_x_plus_a_bias_per_param_seed():
    spec = _spec("affine", num_tasks=3, param_seeds=(3, 3, 6), data_seeds=(4, 5, 4))
    ts, _ = tasks.make_tasks(spec)
    linear, _ = tasks.make_tasks(_spec(num_tasks=3, param_seeds=(3, 3, 6), data_seeds=(4, 5, 4)))
    np.testing.assert_array_equal(ts.x_train, linear.x_train)  # The linear task's x and u...
    bias = np.asarray(ts.y_train) - np.asarray(linear.y_train)
    valid_bias = np.asarray(ts.y_valid) - np.asarray(linear.y_valid)
    for t in range(3):  # ... plus one bias a per task, in train and valid alike.
        np.testing.assert_allclose(bias[t], bias[t, 0], atol=1e-5)
        np.testing.assert_allclose(valid_bias[t], bias[t, 0], atol=1e-5)
    assert bias[0, 0] == pytest.approx(bias[1, 0], abs=1e-5)  # a comes from the param seed.
    assert abs(bias[0, 0] - bias[2, 0]) > 1e-3 and abs(bias[0, 0]) > 1e-3
    with pytest.raises(ValueError, match="must be 'rms'"):
        _spec("affine", eval_type="accuracy")


def test_teacher_zeroed_weights_and_labels():
    spec = _spec("teacher", num_tasks=2, param_seeds=(7, 8))
    ts, _ = tasks.make_tasks(spec)
    for t, seed in enumerate((7, 8)):
        m, u = (np.asarray(a, np.float64) for a in tasks.teacher_weights(jnp.uint32(seed), F))
        assert np.all(m[[0, 2]] == 0) and np.all(m[[1, 3]] != 0)
        assert u[0] == u[2] == 0 and np.all(u[[1, 3]] != 0)
        for x, y in ((ts.x_train[t], ts.y_train[t]), (ts.x_valid[t], ts.y_valid[t])):
            expected = np.maximum(np.asarray(x, np.float64) @ m.T, 0) @ u
            np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
        assert np.count_nonzero(ts.y_train[t]) > E // 2
    # F = 2: only row / entry 0 exists to zero.
    m, u = tasks.teacher_weights(jnp.uint32(1), 2)
    assert np.all(m[0] == 0) and np.all(m[1] != 0) and u[0] == 0 and u[1] != 0


def test_epoch_stream():
    one, _ = tasks.make_tasks(_spec(num_tasks=2))
    three, info = tasks.make_tasks(_spec(num_tasks=2, num_train_epochs=3))
    assert three.x_train.shape == (2, 3 * E, F) and three.y_train.shape == (2, 3 * E)
    assert info.epoch_size == E and info.num_train_epochs == 3
    np.testing.assert_array_equal(three.x_valid, one.x_valid)
    for t in range(2):
        x, y = np.asarray(three.x_train[t]), np.asarray(three.y_train[t])
        np.testing.assert_array_equal(x[:E], one.x_train[t])  # Epoch 0 in natural order.
        np.testing.assert_array_equal(y[:E], one.y_train[t])
        for k in (1, 2):
            ex, ey = x[k * E : (k + 1) * E], y[k * E : (k + 1) * E]
            order = np.argsort(ey)
            np.testing.assert_array_equal(ey[order], np.sort(one.y_train[t]))
            np.testing.assert_array_equal(
                ex[order], np.asarray(one.x_train[t])[np.argsort(one.y_train[t])]
            )
            assert not np.array_equal(ex, x[:E])
        assert not np.array_equal(x[E : 2 * E], x[2 * E :])
    assert not np.array_equal(three.x_train[0, E:], three.x_train[1, E:])
    order = np.asarray(tasks.epoch_order(jnp.uint32(5), epoch_size=6, num_epochs=3))
    assert order.dtype == np.int32 and order.shape == (18,)
    np.testing.assert_array_equal(order[:6], np.arange(6))
    for k in (1, 2):
        np.testing.assert_array_equal(np.sort(order[6 * k : 6 * k + 6]), np.arange(6))


@pytest.mark.parametrize("kind", ["zeros", "ones", "increment"])
def test_unit_tasks(kind):
    ts, info = tasks.make_tasks(_spec(kind, num_tasks=2, increment=0.5, eval_type="accuracy"))
    assert info.eval_type == "accuracy"
    for x, y, n in ((ts.x_train, ts.y_train, E), (ts.x_valid, ts.y_valid, EV)):
        value = {"zeros": np.zeros(n), "ones": np.ones(n), "increment": 0.5 * np.arange(n)}[kind]
        np.testing.assert_array_equal(y, np.broadcast_to(value, (2, n)))
        np.testing.assert_array_equal(x, np.broadcast_to(value[:, None], (2, n, F)))


def test_fixed_task_and_its_stream():
    spec = TaskSpec(
        kind="fixed",
        feature_size=2,
        num_train_examples=3,
        num_valid_examples=1,
        num_train_epochs=2,
        fixed_x_train=[[1, 2], [3, 4], [5, 6]],
        fixed_y_train=[1, 2, 3],
        fixed_x_valid=[[7, 8]],
        fixed_y_valid=[9],
    )
    assert spec.fixed_x_train == ((1.0, 2.0), (3.0, 4.0), (5.0, 6.0))
    ts, _ = tasks.make_tasks(spec)
    np.testing.assert_array_equal(ts.y_train[0, :3], [1, 2, 3])
    np.testing.assert_array_equal(np.sort(ts.y_train[0, 3:]), [1, 2, 3])
    np.testing.assert_array_equal(ts.x_train[0, :, 0] + 1, ts.x_train[0, :, 1])
    np.testing.assert_array_equal(ts.x_train[0, :, 0], 2 * ts.y_train[0] - 1)
    np.testing.assert_array_equal(ts.x_valid, [[[7, 8]]])
    np.testing.assert_array_equal(ts.y_valid, [[9]])


@pytest.mark.parametrize("kind", ["linear", "teacher", "zeros", "ones", "increment"])
def test_taskset_contract(kind):
    ts, info = tasks.make_tasks(_spec(kind, num_tasks=2, num_train_epochs=3))
    assert info == tasks.TaskInfo("rms", E, 2, F, 3)
    hash(info)
    shapes = [(2, 3 * E, F), (2, 3 * E), (2, EV, F), (2, EV)]
    assert [a.shape for a in ts] == shapes
    assert all(a.dtype == jnp.float32 for a in ts)
    assert len(jax.tree.leaves((ts, info))) == 4  # TaskInfo is static, not a leaf.
    total = jax.jit(lambda t, i: sum(jnp.sum(a) for a in t) + i.epoch_size)(ts, info)
    assert np.isfinite(total)
    one = tasks.single_task(ts, info, 1)
    assert (one.index, one.epoch_size, one.eval_type) == (1, E, "rms")
    for got, full in zip(one[1:5], ts, strict=True):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, full[1])
    with pytest.raises(ValueError, match="task index 2"):
        tasks.single_task(ts, info, 2)


def test_make_collection():
    specs = [_spec(num_tasks=2), _spec("zeros")]
    (ts_a, info_a), (ts_b, info_b) = tasks.make_collection(specs)
    assert info_a.num_tasks == 2 and info_b.num_tasks == 1
    np.testing.assert_array_equal(ts_a.x_train, tasks.make_tasks(specs[0])[0].x_train)
    with pytest.raises(ValueError, match="non-empty"):
        tasks.make_collection([])
    with pytest.raises(ValueError, match=r"specs\[1\]"):
        tasks.make_collection([specs[0], "linear"])


# ---------------------------------------------------------------------------------------------
# Validation.

_PB = {
    "kind": "projected_binary",
    "eval_type": "accuracy",
    "dataset_dir": "/d",
    "dataset_name": "digits",
}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "cubic"}, "kind"),
        ({"feature_size": 0}, "feature_size"),
        ({"feature_size": 33}, "feature_size"),
        ({"feature_size": 4.0}, "feature_size"),
        ({"num_train_examples": 0}, "num_train_examples"),
        ({"num_valid_examples": 0}, "num_valid_examples"),
        ({"num_train_epochs": 0}, "num_train_epochs"),
        ({"num_tasks": True}, "num_tasks"),
        ({"param_seeds": (-1,)}, "param_seeds"),
        ({"data_seeds": (2**32,)}, "data_seeds"),
        ({"param_seeds": 5}, "param_seeds"),
        ({"eval_type": "mse"}, "eval_type"),
        ({"eval_type": "accuracy"}, "eval_type"),
        ({"kind": "teacher", "eval_type": "accuracy"}, "eval_type"),
        ({"kind": "increment", "increment": math.nan}, "increment"),
        ({**_PB, "eval_type": "rms"}, "eval_type"),
        ({**_PB, "dataset_dir": None}, "dataset_dir"),
        ({**_PB, "dataset_name": "svhn"}, "dataset_name"),
        ({**_PB, "positive_class": 1}, "positive_class"),
        ({**_PB, "positive_class": 2, "negative_class": 1}, "positive_class"),
        ({**_PB, "positive_class": 0, "negative_class": 10}, "negative_class"),
        ({**_PB, "held_out_pairs": ((1, 1),)}, "held_out_pairs"),
        ({**_PB, "held_out_pairs": ((1, 2, 3),)}, "held_out_pairs"),
        (
            {**_PB, "held_out_pairs": tuple((i, j) for i in range(10) for j in range(i + 1, 10))},
            "held_out_pairs",
        ),
        ({**_PB, "max_supported_data_seed": 0}, "max_supported_data_seed"),
        ({**_PB, "min_supported_data_seed": -1}, "min_supported_data_seed"),
        ({"kind": "fixed", "fixed_x_train": [[0.0] * F] * E}, "fixed_y_train"),
        ({"kind": "fixed", "fixed_x_train": [[0.0] * 3] * E}, "fixed_x_train"),
        ({"kind": "fixed", "fixed_x_train": [[0.0] * F, [0.0]]}, "fixed_x_train"),
        ({"kind": "increment", "increment": "1"}, "increment"),
    ],
)
def test_spec_validation(kwargs, field):
    with pytest.raises(ValueError, match=f"TaskSpec.{field}"):
        _spec(**kwargs)


def test_spec_normalizes_to_hashable_tuples():
    spec = _spec(param_seeds=[np.int64(3)], num_tasks=np.int32(2))
    assert spec.param_seeds == (3,) and type(spec.param_seeds[0]) is int
    assert type(spec.num_tasks) is int
    hash(spec)
    held = TaskSpec(**_PB, num_train_examples=1, num_valid_examples=1, held_out_pairs=[[5, 0]])
    assert held.held_out_pairs == ((5, 0),)
    # All 45 pairs minus one held out in reversed order.
    assert (0, 5) not in tasks.allowed_pairs(held.held_out_pairs)
    assert len(tasks.allowed_pairs(held.held_out_pairs)) == 44


# ---------------------------------------------------------------------------------------------
# Projected binary tasks, from real digits files.


def _pb_spec(digits_dir, **kw):
    return TaskSpec(
        **{
            **_PB,
            "dataset_dir": digits_dir,
            "num_train_examples": 50,
            "num_valid_examples": 10,
            "feature_size": F,
            "max_supported_data_seed": 2,
            **kw,
        }
    )


def _file(digits_dir, seed):
    return datasets.load_binary_dataset(
        f"{digits_dir}/binary_digits-pos_0-neg_1-dim_{F}-seed_{seed}.npz",
        feature_size=F,
        num_train=50,
        num_valid=10,
    )


def test_projected_binary_with_classes(digits_dir):
    spec = _pb_spec(
        digits_dir, positive_class=0, negative_class=1, num_tasks=2, data_seeds=(11001,)
    )
    assert tasks.binary_file_choice(spec, [11001, 11002]) == [(0, 1, 1), (0, 1, 0)]
    ts, info = tasks.make_tasks(spec)
    assert info.eval_type == "accuracy" and ts.x_train.shape == (2, 50, F)
    for t, seed in enumerate((1, 0)):
        for got, want in zip(ts, _file(digits_dir, seed), strict=True):
            np.testing.assert_array_equal(got[t], want)
    assert set(np.unique(ts.y_train).tolist()) == {0.0, 1.0}


def test_projected_binary_pair_selection(digits_dir):
    others = tuple(p for p in tasks.allowed_pairs(()) if p != (0, 1))
    spec = _pb_spec(digits_dir, held_out_pairs=tuple(p[::-1] for p in others), num_tasks=400)
    choices = tasks.binary_file_choice(spec, tasks.expand_seeds(spec)[1])
    assert {c[:2] for c in choices} == {(0, 1)} and {c[2] for c in choices} == {0, 1}
    ts, _ = tasks.make_tasks(spec)
    for t, (_, _, seed) in enumerate(choices[:10]):
        np.testing.assert_array_equal(ts.x_valid[t], _file(digits_dir, seed).x_valid)
    # Without classes: pairs are uniform over the non-held-out ones, seeds over [min, max).
    recommended = ((4, 6), (3, 5), (8, 9), (3, 8), (0, 9), (2, 9), (1, 8), (3, 6), (0, 5))
    wide = _pb_spec(
        digits_dir,
        held_out_pairs=tuple(p[::-1] for p in recommended),
        min_supported_data_seed=3,
        max_supported_data_seed=7,
    )
    choices = tasks.binary_file_choice(wide, list(range(1000, 1400)))
    pairs = {c[:2] for c in choices}
    assert not pairs & set(recommended) and len(pairs) == 36
    assert {c[2] for c in choices} == {3, 4, 5, 6}
    assert choices == tasks.binary_file_choice(wide, list(range(1000, 1400)))


def test_projected_binary_missing_file_and_wrong_size(digits_dir):
    spec = _pb_spec(digits_dir, positive_class=2, negative_class=3)
    with pytest.raises(ValueError, match=r"pos_2-neg_3.*prepare_datasets\.py"):
        tasks.make_tasks(spec)
    with pytest.raises(ValueError, match="has 100 train examples, the task asks for 101"):
        tasks.make_tasks(
            _pb_spec(digits_dir, positive_class=0, negative_class=1, num_train_examples=101)
        )
