"""The hand-designed baselines (`azjax.baselines`): optax models and op-language programs.

Tuned SGD linear / logistic regression solves linear and separable tasks, the MLP beats linear on
teacher tasks, training matches a hand-written NumPy loop (per example and in minibatches, early
stop included), tuning picks the rate of the best select mean, results are a function of the key,
and the op-language LINEAR (NEURAL_NET) tuned the same way solves linear (learns teacher) tasks.
"""

import dataclasses
import functools
import math

import jax
import numpy as np
import pytest

from azjax import baselines, keys, tasks
from azjax.program import ComponentSpec, ProgramSpec

F = 4
LINEAR_SELECT = tasks.TaskSpec(
    kind="linear",
    num_train_examples=50,
    num_valid_examples=50,
    feature_size=F,
    num_tasks=4,
    num_train_epochs=2,
)
LINEAR_FINAL = dataclasses.replace(LINEAR_SELECT, param_seeds=(5000,), data_seeds=(15000,))
TEACHER = dict(kind="teacher", num_train_examples=400, num_valid_examples=100, feature_size=F)
TEACHER_SELECT = tasks.TaskSpec(**TEACHER, num_tasks=4)
TEACHER_FINAL = tasks.TaskSpec(**TEACHER, num_tasks=4, param_seeds=(7000,), data_seeds=(17000,))
RATES = (0.001, 0.01, 0.03, 0.1, 0.3)


@functools.cache
def make(spec):
    return tasks.make_tasks(spec)


@functools.cache
def separable(split_seed, num_train=200, num_train_epochs=1):
    """3 binary tasks whose labels are the sign of a fixed linear function of 4 features, with a
    margin around the boundary."""
    x = np.random.default_rng(0).normal(size=(1000, F))
    score = x @ np.array([1.0, -2.0, 0.5, 1.5])
    x, score = x[np.abs(score) > 0.5][:600], score[np.abs(score) > 0.5][:600]
    y = (score > 0).astype(np.float64)
    return tasks.from_arrays(
        x,
        y,
        num_tasks=3,
        eval_type="accuracy",
        split_seed=split_seed,
        num_valid=100,
        num_train=num_train,
        num_train_epochs=num_train_epochs,
    )


@functools.cache
def tuned_linear():
    return baselines.tune(
        jax.random.key(0), "linear", "sgd", make(LINEAR_SELECT), make(LINEAR_FINAL)
    )


def test_tuned_sgd_linear_regression_solves_linear_tasks():
    result = tuned_linear()
    assert result.fitness.shape == (LINEAR_FINAL.num_tasks,)
    assert result.fitness.min() > 0.99 and result.mean > 0.99, result
    assert result.mean == pytest.approx(result.fitness.mean())
    assert result.std == pytest.approx(result.fitness.std())
    assert result.learning_rate in baselines.DEFAULT_LEARNING_RATES


def test_tune_picks_the_rate_of_the_best_select_mean():
    result = tuned_linear()
    rates = baselines.DEFAULT_LEARNING_RATES
    key_select, key_final = keys.split(jax.random.key(0))
    manual = [
        baselines.evaluate(key_select, "linear", "sgd", make(LINEAR_SELECT), [r]).mean()
        for r in rates
    ]
    np.testing.assert_allclose(result.select_mean, manual, atol=1e-6)
    assert result.learning_rate == rates[int(np.argmax(manual))]
    assert max(manual) - min(manual) > 0.3  # The choice matters.
    final = baselines.evaluate(
        key_final, "linear", "sgd", make(LINEAR_FINAL), [result.learning_rate]
    )
    np.testing.assert_allclose(result.fitness, final[0], atol=1e-6)


def numpy_sgd(taskset, info, learning_rate, batch_size, max_abs_error=100.0):
    """Fitness [T] of linear / logistic regression by minibatch SGD, the protocol by hand."""
    classify = info.eval_type == "accuracy"
    E = info.epoch_size
    fitness = []
    for x_tr, y_tr, x_va, y_va in zip(*(np.asarray(a, np.float64) for a in taskset), strict=True):
        w, b, best = np.zeros(x_tr.shape[1]), 0.0, 0.0
        for start in range(0, len(y_tr), E):
            stopped = False
            for i in range(start, start + E, batch_size):
                end = min(i + batch_size, start + E)  # The epoch's last batch may be short.
                x, y = x_tr[i:end], y_tr[i:end]
                pred = x @ w + b
                pred = 1 / (1 + np.exp(-pred)) if classify else pred
                stopped |= not np.all(np.abs(y - pred) <= max_abs_error)
                w, b = (
                    w - learning_rate * (pred - y) @ x / len(y),
                    b - learning_rate * np.mean(pred - y),
                )
            out = x_va @ w + b
            if classify:
                fit = np.mean((out > 0) == (y_va > 0.5))
            else:
                rmse = np.sqrt(np.mean((y_va - out) ** 2))
                fit = (
                    1 - 2 / math.pi * np.arctan(rmse)
                    if np.all(np.abs(y_va - out) <= max_abs_error)
                    else 0
                )
            if stopped:
                break
            best = max(best, fit)
        fitness.append(best)
    return np.array(fitness)


@pytest.mark.parametrize(
    "kind, batch_size, learning_rate, max_abs_error",
    [
        ("rms", 1, 0.05, 100.0),
        ("rms", 7, 0.2, 100.0),
        ("rms", 1, 0.3, 4.0),
        ("rms", 1, 0.5, 100.0),
        ("rms", 1, 3.0, 100.0),
        ("accuracy", 1, 0.3, 100.0),
    ],
)
def test_training_matches_a_hand_written_loop(kind, batch_size, learning_rate, max_abs_error):
    """Per example (B = 1) and in minibatches of 7 (each epoch of 20 ends with a short batch),
    three epochs (two for accuracy). With max_abs_error 4, task 2 stops early in a later epoch;
    lr 0.5 diverges on most tasks after the first epoch, whose fitness stands; lr 3 diverges in
    the first epoch (fitness 0)."""
    if kind == "rms":
        spec = dataclasses.replace(
            LINEAR_SELECT, num_train_examples=20, num_valid_examples=10, num_train_epochs=3
        )
        taskset, info = make(spec)
    else:
        taskset, info = separable(0, num_train=20, num_train_epochs=2)
    got = baselines.evaluate(
        jax.random.key(0),
        "linear",
        "sgd",
        (taskset, info),
        [learning_rate],
        batch_size=batch_size,
        max_abs_error=max_abs_error,
    )[0]
    want = numpy_sgd(taskset, info, learning_rate, batch_size, max_abs_error)
    np.testing.assert_allclose(got, want, atol=2e-5)
    if max_abs_error == 4.0:
        assert 0 < got[2] < numpy_sgd(taskset, info, learning_rate, batch_size)[2] - 0.1
    elif learning_rate == 3.0:
        np.testing.assert_array_equal(got, 0.0)
    elif learning_rate == 0.5:
        assert 0 < got.max() < 0.2
    else:
        assert got.min() > 0.3


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_logistic_regression_separates_a_separable_task(optimizer):
    result = baselines.tune(
        jax.random.key(1), "linear", optimizer, separable(0), separable(1), RATES
    )
    assert result.fitness.min() > 0.9, result


def test_mlp_beats_linear_on_teacher_tasks():
    key = jax.random.key(2)
    select, final = make(TEACHER_SELECT), make(TEACHER_FINAL)
    linear = baselines.tune(key, "linear", "sgd", select, final, RATES)
    mlp = baselines.tune(key, "mlp", "sgd", select, final, RATES, hidden_size=8)
    assert mlp.mean > linear.mean + 0.05, (mlp, linear)
    assert (mlp.fitness > linear.fitness).mean() >= 0.75


def test_results_are_a_function_of_the_key():
    def run(seed):
        return baselines.evaluate(
            jax.random.key(seed), "mlp", "adam", make(TEACHER_SELECT), [0.01, 0.03], batch_size=8
        )

    first = run(0)
    assert first.shape == (2, TEACHER_SELECT.num_tasks) and (first > 0).all()
    np.testing.assert_array_equal(run(0), first)
    assert not np.array_equal(run(1), first)  # Another key, another init.


def test_tuned_linear_program_solves_linear_tasks():
    result = baselines.tune_program(
        jax.random.key(3),
        "LINEAR_ALGORITHM",
        ProgramSpec(),
        make(LINEAR_SELECT),
        [make(LINEAR_FINAL)],
        RATES,
    )
    assert result.fitness.shape == (LINEAR_FINAL.num_tasks,)
    assert result.fitness.min() > 0.99, result
    assert result.learning_rate == RATES[int(np.argmax(result.select_mean))]


def test_tuned_neural_net_program_learns_teacher_tasks():
    """NEURAL_NET in its own spec (frozen components: tune_program adds the ops it uses)."""
    spec = ProgramSpec(
        num_scalars=5,
        num_vectors=9,
        num_matrices=2,
        setup=ComponentSpec(3),
        predict=ComponentSpec(5),
        learn=ComponentSpec(11),
    )
    select, final = make(TEACHER_SELECT), make(TEACHER_FINAL)
    program = baselines.tune_program(jax.random.key(4), "NEURAL_NET", spec, select, final, RATES)
    linear = baselines.tune_program(jax.random.key(4), "LINEAR", spec, select, final, RATES)
    assert program.mean > linear.mean + 0.05, (program, linear)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(model="cnn"), "model"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(batch_size=0), "batch_size"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(learning_rates=[]), "learning_rates"),
        (dict(learning_rates=[0.1, -1.0]), "learning_rates"),
    ],
)
def test_bad_arguments_raise(change, message):
    args = dict(model="mlp", optimizer="sgd", learning_rates=[0.1]) | change
    with pytest.raises(ValueError, match=message):
        baselines.evaluate(jax.random.key(0), collection=make(LINEAR_SELECT), **args)


def test_tune_program_rejects_other_programs():
    with pytest.raises(ValueError, match="LINEAR"):
        baselines.tune_program(
            jax.random.key(0), "NO_OP", ProgramSpec(), make(LINEAR_SELECT), make(LINEAR_FINAL)
        )
