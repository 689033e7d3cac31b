"""`tasks.from_arrays`: tasks from your own examples (splits, projections, checks)."""

import numpy as np
import pytest

from azjax import datasets, tasks


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -50.0]
    return X, X @ [1.0, 0.1, 0.01]


@pytest.fixture(scope="module")
def binary():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 40))
    return X, (np.arange(60) % 3 == 0).astype(float)  # 20 positives, 40 negatives.


def test_shapes_info_and_determinism(regression):
    X, y = regression
    ts, info = tasks.from_arrays(X, y, num_tasks=3, eval_type="rms", split_seed=7)
    assert info == tasks.TaskInfo("rms", 40, 3, 3, 1)
    assert [a.shape for a in ts] == [(3, 40, 3), (3, 40), (3, 10, 3), (3, 10)]
    assert all(a.dtype == np.float32 for a in ts)
    again, _ = tasks.from_arrays(X, y, num_tasks=3, eval_type="rms", split_seed=7)
    other, _ = tasks.from_arrays(X, y, num_tasks=3, eval_type="rms", split_seed=8)
    for a, b, c in zip(ts, again, other, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    assert not np.array_equal(ts.y_valid[0], ts.y_valid[1])  # Each task its own split.


def test_splits_are_disjoint_rows_of_the_data(regression):
    X, y = regression
    ts, info = tasks.from_arrays(
        X, y, num_tasks=2, eval_type="rms", split_seed=0, num_valid=15, num_train=30,
        standardize=False,
    )  # fmt: skip
    assert (info.epoch_size, ts.x_valid.shape[1]) == (30, 15)
    rows = {tuple(np.float32(r)): i for i, r in enumerate(X)}
    for t in range(2):
        train = [rows[tuple(r)] for r in np.asarray(ts.x_train[t])]
        valid = [rows[tuple(r)] for r in np.asarray(ts.x_valid[t])]
        assert len(set(train)) == 30 and len(set(valid)) == 15 and not set(train) & set(valid)
        np.testing.assert_array_equal(ts.y_train[t], np.float32(y[train]))


def test_features_are_standardized_on_each_training_split(regression):
    X, y = regression
    ts, _ = tasks.from_arrays(X, y, num_tasks=2, eval_type="rms", split_seed=0)
    x = np.asarray(ts.x_train, np.float64)
    np.testing.assert_allclose(x.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=1), 1, atol=1e-5)
    assert np.abs(np.asarray(ts.x_valid).mean(axis=1)).max() > 1e-3  # Not refitted on valid.


def test_projection_and_stratified_splits(binary):
    X, y = binary
    ts, info = tasks.from_arrays(
        X, y, num_tasks=4, eval_type="accuracy", split_seed=3, num_valid=12, project_to=5
    )
    assert info.feature_size == 5 and ts.x_train.shape == (4, 48, 5)
    np.testing.assert_allclose(np.asarray(ts.x_train, np.float64).std(axis=1), 1, atol=1e-5)
    assert not np.allclose(ts.x_train[0], ts.x_train[1])  # Own projection per task.
    assert (np.asarray(ts.y_valid).sum(axis=1) == 4).all()  # A third of 12: stratified.
    assert (np.asarray(ts.y_train).sum(axis=1) == 16).all()
    # Each task is the paper's recipe: its split, Gaussian projection, scaler fitted on train.
    seed = int(tasks._split_seeds(3, 4)[2])
    x_tr, x_va, _, _ = datasets.split_examples(X, y, 48, 12, seed)
    projection = datasets.random_projection(seed, 40, 5)
    scaler = datasets.fit_scaler(x_tr, projection)
    np.testing.assert_array_equal(ts.x_valid[2], datasets.transform(x_va, projection, scaler))


def test_epochs_repeat_each_training_split(regression):
    X, y = regression
    one, _ = tasks.from_arrays(X, y, num_tasks=2, eval_type="rms", split_seed=0)
    two, info = tasks.from_arrays(
        X, y, num_tasks=2, eval_type="rms", split_seed=0, num_train_epochs=2
    )
    assert info.num_train_epochs == 2 and two.x_train.shape == (2, 80, 3)
    np.testing.assert_array_equal(two.y_train[:, :40], one.y_train)
    for t in range(2):
        np.testing.assert_array_equal(np.sort(two.y_train[t, 40:]), np.sort(one.y_train[t]))


X_OK = np.arange(40.0).reshape(20, 2)
Y_OK = np.arange(20) % 2


@pytest.mark.parametrize(
    "X, y, kwargs, message",
    [
        (X_OK[:, 0], Y_OK, {}, "X must be 2-D"),
        (X_OK, Y_OK[:-1], {}, r"y must have shape \(20,\)"),
        (np.where(X_OK == 3, np.nan, X_OK), Y_OK, {}, "X has non-finite values"),
        (X_OK, np.where(Y_OK == 1, np.inf, 0), {}, "y has non-finite values"),
        ([["a", "b"]], [1], {}, "must be numeric"),
        (X_OK, Y_OK * 2, {"eval_type": "accuracy"}, "labels must be 0 or 1"),
        (X_OK[:1], Y_OK[:1], {}, "X has 1 example"),
        (X_OK, Y_OK, {"num_train": 15, "num_valid": 6}, "too few for 15 training \\+ 6"),
        (X_OK, Y_OK, {"project_to": 33}, "feature size must be 1..32, got 33"),
        (X_OK, Y_OK, {"project_to": 0}, "project_to must be >= 1"),
        (np.zeros((20, 33)), Y_OK, {}, "got 33 \\(pass project_to"),
        (X_OK, Y_OK, {"eval_type": "mse"}, "eval_type must be one of"),
        (X_OK, Y_OK, {"num_tasks": 0}, "num_tasks must be >= 1"),
        (X_OK, Y_OK, {"split_seed": -1}, "split_seed must be >= 0"),
        (X_OK, (np.arange(20) == 0) * 1.0, {"eval_type": "accuracy"}, "stratified split needs"),
    ],
)
def test_bad_inputs_fail_in_one_line(X, y, kwargs, message):
    args = {"num_tasks": 2, "eval_type": "rms", "split_seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message) as err:
        tasks.from_arrays(X, y, **args)
    assert "\n" not in str(err.value) and str(err.value).startswith("from_arrays: ")
