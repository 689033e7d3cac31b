"""Hand-designed baselines on azjax's tasks, learning rate tuned (docs/baselines.md).

Two families, both scored by the evaluation protocol of docs/ops.md and compared on equal terms
with evolved programs:

- optax models (`evaluate`, `tune`): `linear` (linear regression, or logistic regression on
  "accuracy" tasks) and `mlp` (one ReLU hidden layer), trained by optax `sgd` or `adam` on each
  task's training stream in order, one example at a time (batch_size 1, the paper's protocol) or
  in minibatches. Pure JAX: one jitted call vmaps over learning rates and tasks.
- op-language programs (`tune_program`): the hand-written LINEAR and NEURAL_NET of
  `azjax.generator`, scored by `azjax.scoring.score` like any evolved program.

Shapes: K learning rates, T tasks, N = epochs x E training examples, Ev validation examples,
F features, H hidden units, B batch size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from azjax import evaluation, generator, keys, scoring
from azjax import program as program_lib
from azjax.program import ProgramSpec
from azjax.tasks import TaskInfo, TaskSet

__all__ = [
    "DEFAULT_LEARNING_RATES",
    "MODELS",
    "OPTIMIZERS",
    "PROGRAMS",
    "TuneResult",
    "evaluate",
    "tune",
    "tune_program",
]

MODELS: tuple[str, ...] = ("linear", "mlp")
OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd}
PROGRAMS = {
    "AFFINE": generator.affine_algorithm,
    "LINEAR": generator.linear_algorithm,
    "NEURAL_NET": generator.neural_net_algorithm,
}
DEFAULT_LEARNING_RATES: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)
_HIGHEST = jax.lax.Precision.HIGHEST  # float32 products on accelerators too (no TF32).


class TuneResult(NamedTuple):
    """A tuned baseline: the chosen `learning_rate`, `select_mean` `[K]` (mean fitness on the
    select tasks of each candidate rate), the final tasks' `fitness` `[T_final]` with the chosen
    rate, and its `mean` and `std` (population standard deviation)."""

    learning_rate: float
    select_mean: np.ndarray
    fitness: np.ndarray
    mean: float
    std: float


def _init(key, model, feature_size, hidden_size, dtype):
    """Parameters: linear weights [F] and bias zero; mlp hidden weights [H, F] and output
    weights [H] ~ N(0, 0.1^2) (NEURAL_NET's init scale), biases zero."""
    if model == "linear":
        return {"w": jnp.zeros(feature_size, dtype), "b": jnp.zeros((), dtype)}
    H, F = hidden_size, feature_size
    normal = generator.bits_normal(keys.key_bits(key, (H * (F + 1),))).astype(dtype)
    normal = generator.DEFAULT_INIT_SCALE * normal
    return {
        "w1": normal[: H * F].reshape(H, F),
        "b1": jnp.zeros(H, dtype),
        "w2": normal[H * F :],
        "b2": jnp.zeros((), dtype),
    }


def _output(params, x):
    """The model's output (the logit for classification) of examples x [..., F] -> [...]."""
    if "w1" in params:
        x = jax.nn.relu(jnp.matmul(x, params["w1"].T, precision=_HIGHEST) + params["b1"])
        return jnp.matmul(x, params["w2"], precision=_HIGHEST) + params["b2"]
    return jnp.matmul(x, params["w"], precision=_HIGHEST) + params["b"]


def _loss(params, x, y, mask, classify):
    """Mean loss over the batch's real examples (mask [B]) and the predictions [B]: squared error
    / 2 and the output, or binary cross-entropy and the sigmoid. Either way the gradient with
    respect to the output is prediction - y, the op-language algorithms' update."""
    out = _output(params, x)
    if classify:
        losses, pred = optax.sigmoid_binary_cross_entropy(out, y), jax.nn.sigmoid(out)
    else:
        losses, pred = 0.5 * (out - y) ** 2, out
    weights = mask.astype(out.dtype)
    return jnp.sum(weights * losses) / jnp.sum(weights), pred


def _valid_fitness(params, x, y, classify, max_abs_error):
    """One validation pass's fitness []: accuracy at sigmoid 0.5, or 1 - (2/pi) atan(RMSE) and 0
    when an error is NaN or above max_abs_error."""
    out = _output(params, x)
    if classify:
        wrong = (y > 0.5) != (jax.nn.sigmoid(out) > 0.5)
        return 1.0 - jnp.mean(wrong.astype(out.dtype))
    err = y - out
    fit = evaluation.flip_and_squash(jnp.sqrt(jnp.mean(err * err)))
    return jnp.where(jnp.all(jnp.abs(err) <= max_abs_error), fit, 0.0)


class _Setup(NamedTuple):
    """What is trained and how (static): model, optimizer, batch size B, hidden size H (None for
    linear) and the early-stop threshold."""

    model: str
    optimizer: str
    batch_size: int
    hidden_size: int | None
    max_abs_error: float


def _train(key, learning_rate, task, info: TaskInfo, setup: _Setup):
    """Fitness [] of the model trained on one task (arrays without T) by the protocol: the
    training stream in order, in batches of B (the last of an epoch may be short); early stop
    when a training error |y - prediction| is NaN or above max_abs_error; validation after each
    epoch; the best pass before the stop."""
    x_train, y_train, x_valid, y_valid = task
    classify = info.eval_type == evaluation.ACCURACY
    E, F, B = info.epoch_size, x_train.shape[-1], setup.batch_size
    num_batches = -(-E // B)

    def batches(a):  # [N, ...] -> [epochs, num_batches, B, ...], zero padded.
        a = a.reshape((-1, E) + a.shape[1:])
        a = jnp.pad(a, [(0, 0), (0, num_batches * B - E)] + [(0, 0)] * (a.ndim - 2))
        return a.reshape((a.shape[0], num_batches, B) + a.shape[2:])

    opt = OPTIMIZERS[setup.optimizer](learning_rate)

    def step(carry, batch):
        params, opt_state, stopped = carry
        x, y, mask = batch
        (_, pred), grads = jax.value_and_grad(_loss, has_aux=True)(params, x, y, mask, classify)
        stopped = stopped | jnp.any(mask & ~(jnp.abs(y - pred) <= setup.max_abs_error))
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, stopped), None

    def epoch(carry, data):
        params, opt_state, stopped, best = carry
        (params, opt_state, stopped), _ = jax.lax.scan(step, (params, opt_state, stopped), data)
        fit = _valid_fitness(params, x_valid, y_valid, classify, setup.max_abs_error)
        best = jnp.where(stopped, best, jnp.maximum(best, fit))
        return (params, opt_state, stopped, best), None

    params = _init(key, setup.model, F, setup.hidden_size, x_train.dtype)
    init = (params, opt.init(params), jnp.bool_(False), jnp.zeros((), x_train.dtype))
    data = (batches(x_train), batches(y_train), batches(jnp.ones(y_train.shape, bool)))
    (*_, best), _ = jax.lax.scan(epoch, init, data)
    return best


@functools.partial(jax.jit, static_argnames="setup")
def _fitness(key, learning_rates, tasks: TaskSet, info: TaskInfo, setup: _Setup):
    """Fitness [K, T] of learning rates [K] on a TaskSet [T]; task t's init comes from the key's
    split t, the same for every rate."""
    train = functools.partial(_train, info=info, setup=setup)
    per_task = jax.vmap(train, in_axes=(0, None, 0))
    task_keys = keys.split(key, tasks.x_train.shape[0])
    return jax.vmap(per_task, in_axes=(None, 0, None))(task_keys, learning_rates, tasks)


def _collection(tasks) -> list[tuple[TaskSet, TaskInfo]]:
    """One (TaskSet, TaskInfo) pair or a sequence of them (`tasks.make_collection`) -> a list."""
    if len(tasks) == 2 and isinstance(tasks[1], TaskInfo):
        return [tuple(tasks)]
    return list(tasks)


def _learning_rates(learning_rates) -> np.ndarray:
    """The candidate rates as float64 [K], checked: non-empty, finite, positive."""
    rates = np.asarray(learning_rates, np.float64)
    if rates.ndim != 1 or rates.size == 0 or not np.all(np.isfinite(rates) & (rates > 0)):
        raise ValueError(
            f"learning_rates must be a non-empty 1-D sequence of positive numbers, got {rates}"
        )
    return rates


def evaluate(
    key: jax.Array,
    model: str,
    optimizer: str,
    collection,
    learning_rates: Sequence[float],
    *,
    batch_size: int = 1,
    hidden_size: int | None = None,
    max_abs_error: float = evaluation.MAX_ABS_ERROR,
) -> np.ndarray:
    """Per-task fitness `[K, T_total]` of `model` trained by `optimizer` with each learning rate.

    Args:
      key: a `jax.random` key (consumed): group j of the collection draws its mlp inits from
        `keys.split(key, num_groups)[j]`, the same for every learning rate.
      model: "linear" or "mlp". optimizer: "sgd" or "adam".
      collection: a (TaskSet, TaskInfo) pair or a sequence of them (`tasks.make_collection`);
        the fitness columns follow its tasks in order.
      learning_rates: [K] positive rates.
      batch_size: B >= 1 training examples per update (1: the paper's per-example SGD).
      hidden_size: H of the mlp (default F, as NEURAL_NET's F x F hidden layer).
      max_abs_error: the protocol's early-stop threshold on training errors.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if hidden_size is not None and hidden_size < 1:
        raise ValueError(f"hidden_size must be >= 1, got {hidden_size}")
    rates = jnp.asarray(_learning_rates(learning_rates), jnp.float32)
    collection = _collection(collection)
    fitness = []
    for group_key, (taskset, info) in zip(
        keys.split(key, len(collection)), collection, strict=True
    ):
        hidden = (hidden_size or info.feature_size) if model == "mlp" else None
        setup = _Setup(model, optimizer, batch_size, hidden, float(max_abs_error))
        fitness.append(np.asarray(_fitness(group_key, rates, taskset, info, setup)))
    return np.concatenate(fitness, axis=1)


def _tuned(rates, select_fitness, final_fitness) -> TuneResult:
    """The rate of the best select mean (the first on ties; select_fitness [K, T_select]) and
    `final_fitness(k)` `[T_final]` of rate k."""
    select_mean = select_fitness.mean(axis=1)
    k = int(np.argmax(select_mean))
    fitness = np.asarray(final_fitness(k), np.float64)
    return TuneResult(
        float(rates[k]), select_mean, fitness, float(fitness.mean()), float(fitness.std())
    )


def tune(
    key: jax.Array,
    model: str,
    optimizer: str,
    select,
    final,
    learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
    **kwargs,
) -> TuneResult:
    """`model` trained by `optimizer` with the learning rate of the best mean fitness on the
    `select` tasks, scored on the `final` tasks (collections as in `evaluate`).

    The key (consumed) is split in two (`keys.split`): the first scores the select tasks, the
    second the final ones. kwargs: `evaluate`'s batch_size, hidden_size and max_abs_error.
    """
    rates = _learning_rates(learning_rates)
    key_select, key_final = keys.split(key)
    select_fitness = evaluate(key_select, model, optimizer, select, rates, **kwargs)
    return _tuned(
        rates,
        select_fitness,
        lambda k: evaluate(key_final, model, optimizer, final, rates[k : k + 1], **kwargs)[0],
    )


def tune_program(
    key: jax.Array,
    name: str,
    spec: ProgramSpec,
    select,
    final,
    learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
    *,
    max_abs_error: float = evaluation.MAX_ABS_ERROR,
    mesh=None,
) -> TuneResult:
    """The hand-written program `name` ("LINEAR", "AFFINE" or "NEURAL_NET"; the original's enum
    names accepted) with the learning rate of the best mean fitness on the `select` tasks, scored
    on the `final` tasks by `scoring.score` (collections as in `evaluate`, placed on `mesh`,
    default `runtime.program_mesh()`).

    `spec` gives the memory and slot capacities (the program's own length, never padded); the
    ops the program uses are added to its op lists. The key (consumed) is split in two
    (`keys.split`): the select tasks' lane seeds come from the first, the final ones' from the
    second.
    """
    name = generator.canonical_name(name)
    if name not in PROGRAMS:
        raise ValueError(f"tune_program: name must be one of {sorted(PROGRAMS)}, got {name!r}")
    rates = _learning_rates(learning_rates)
    programs = [PROGRAMS[name](spec, (0, 0, 0), float(rate)) for rate in rates]
    spec = generator.add_required_ops(spec, programs[0])
    key_select, key_final = keys.split(key)

    def fitness(programs, groups, key):
        groups = scoring.place_collection(_collection(groups), mesh=mesh)
        population = program_lib.stack(programs)
        return scoring.score(population, groups, key, spec=spec, max_abs_error=max_abs_error)

    return _tuned(
        rates,
        fitness(programs, select, key_select),
        lambda k: fitness(programs[k : k + 1], final, key_final)[0],
    )
