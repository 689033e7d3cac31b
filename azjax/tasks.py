"""Task collections: the datasets algorithms are trained and validated on (docs/ops.md).

A `TaskSpec` describes `num_tasks` tasks of one kind; `make_tasks` builds them as one `TaskSet`
pytree with a leading task axis `T`, plus the static `TaskInfo`. A collection is a list of specs,
as the original's `TaskCollection`. Every task is a pure function of its (param seed, data seed):
the same seeds give the same task in any batch. `from_arrays` builds tasks from your own examples
(random train / valid splits, optionally randomly projected as the paper's projected tasks).

Shapes: T tasks, E unique training examples (one epoch), N = num_train_epochs * E training steps,
Ev validation examples, F features.

Deviation from the original: the random streams are `jax.random` (threefry) keyed by the seeds,
not mt19937, so the numbers differ while the distributions and structure are the same. The
original's mt19937 seed offsets are reused as `fold_in` salts so each stream stays separate.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from azjax import datasets

KINDS: tuple[str, ...] = (
    "linear",
    "affine",
    "teacher",
    "projected_binary",
    "zeros",
    "ones",
    "increment",
    "fixed",
)
EVAL_TYPES: tuple[str, ...] = ("rms", "accuracy")
MAX_FEATURE_SIZE = 32  # The original instantiates F in {2, 4, 8, 16, 32}; we allow 1..32.
# The original's kMinNumTrainExamples: the evaluator requires this many training examples per
# task during search. TaskSpec itself only needs >= 1 so that unit tests can use tiny tasks.
MIN_NUM_TRAIN_EXAMPLES_FOR_SEARCH = 10
DEFAULT_PARAM_SEEDS: tuple[int, ...] = (1001, 1012, 1010, 1000, 1006, 1008, 1007, 1003)
DEFAULT_DATA_SEEDS: tuple[int, ...] = (11001, 11012, 11010, 11000, 11006, 11008, 11007, 11003)
SEED_LIMIT = 2**32  # Seeds are uint32, as the original's RandomSeedT.

# The original's mt19937 seed offsets (task_util.h), used here as fold_in salts.
_LINEAR_DATA_SALT, _LINEAR_PARAM_SALT = 939723201, 997958712
_TEACHER_DATA_SALT, _TEACHER_PARAM_SALT = 865546086, 174299604
_EPOCH_SALT = 3274582109
_PAIR_SALT = 856572777
_AFFINE_BIAS_SALT = 371146231  # azjax's own: the original has no affine tasks.
_TEACHER_ZEROED = (0, 2)  # Hidden units whose weights the teacher zeroes (rows of M, entries of u).
_HIGHEST = jax.lax.Precision.HIGHEST  # Exact float32 labels on accelerators too (no TF32).


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """`num_tasks` tasks of one kind (the original's TaskSpec, docs/ops.md).

    Fields (kind-specific ones are ignored by other kinds):
      kind: one of KINDS. eval_type: "rms" or "accuracy" ("linear", "affine" and "teacher"
        need "rms", "projected_binary" needs "accuracy").
      feature_size: F, 1..32. num_train_examples (E) and num_valid_examples (Ev): >= 1 (search
        needs MIN_NUM_TRAIN_EXAMPLES_FOR_SEARCH, checked by the evaluator).
      num_train_epochs: passes over the E examples. num_tasks: T.
      param_seeds, data_seeds: first seeds, expanded by `expand_seeds`.
      increment: step of the "increment" kind.
      dataset_dir, dataset_name, positive_class, negative_class, held_out_pairs,
        min_supported_data_seed, max_supported_data_seed: "projected_binary" (§5.2); the files
        come from scripts/prepare_datasets.py.
      fixed_x_train [E][F], fixed_y_train [E], fixed_x_valid [Ev][F], fixed_y_valid [Ev]: "fixed".
    """

    kind: str
    num_train_examples: int
    num_valid_examples: int
    feature_size: int = 4
    num_train_epochs: int = 1
    num_tasks: int = 1
    param_seeds: tuple[int, ...] = ()
    data_seeds: tuple[int, ...] = ()
    eval_type: str = "rms"
    increment: float = 1.0
    dataset_dir: str | None = None
    dataset_name: str | None = None
    positive_class: int | None = None
    negative_class: int | None = None
    held_out_pairs: tuple[tuple[int, int], ...] = ()
    min_supported_data_seed: int = 0
    max_supported_data_seed: int = 10
    fixed_x_train: tuple[tuple[float, ...], ...] = ()
    fixed_y_train: tuple[float, ...] = ()
    fixed_x_valid: tuple[tuple[float, ...], ...] = ()
    fixed_y_valid: tuple[float, ...] = ()

    @property
    def info(self) -> TaskInfo:
        """The static facts of the tasks this spec makes."""
        return TaskInfo(
            eval_type=self.eval_type,
            epoch_size=self.num_train_examples,
            num_tasks=self.num_tasks,
            feature_size=self.feature_size,
            num_train_epochs=self.num_train_epochs,
        )

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"TaskSpec.kind must be one of {KINDS}, got {self.kind!r}")
        self._int("feature_size", 1, MAX_FEATURE_SIZE + 1)
        for name in ("num_train_examples", "num_valid_examples", "num_train_epochs", "num_tasks"):
            self._int(name, 1)
        for name in ("param_seeds", "data_seeds"):
            self._set(
                name,
                tuple(
                    _as_int(f"TaskSpec.{name}", s, 0, SEED_LIMIT)
                    for s in _as_tuple(name, getattr(self, name))
                ),
            )
        if self.eval_type not in EVAL_TYPES:
            raise ValueError(
                f"TaskSpec.eval_type must be one of {EVAL_TYPES}, got {self.eval_type!r}"
            )
        needed = dict(linear="rms", affine="rms", teacher="rms", projected_binary="accuracy")
        needed = needed.get(self.kind)
        if needed is not None and self.eval_type != needed:
            raise ValueError(
                f"TaskSpec.eval_type must be {needed!r} for kind {self.kind!r}, "
                f"got {self.eval_type!r}"
            )
        increment = self.increment
        if isinstance(increment, bool) or not isinstance(increment, (int, float, np.number)):
            raise ValueError(f"TaskSpec.increment must be a number, got {increment!r}")
        if not math.isfinite(increment):
            raise ValueError(f"TaskSpec.increment must be finite, got {increment}")
        self._set("increment", float(increment))
        if self.kind == "projected_binary":
            self._check_projected_binary()
        if self.kind == "fixed":
            self._check_fixed()

    def _set(self, name, value):
        object.__setattr__(self, name, value)

    def _int(self, name, low, high=None):
        self._set(name, _as_int(f"TaskSpec.{name}", getattr(self, name), low, high))

    def _check_projected_binary(self):
        if not isinstance(self.dataset_dir, str | os.PathLike) or not os.fspath(self.dataset_dir):
            raise ValueError(
                "TaskSpec.dataset_dir (the folder of prepared files) is required for kind "
                f"'projected_binary', got {self.dataset_dir!r}"
            )
        self._set("dataset_dir", os.fspath(self.dataset_dir))
        if self.dataset_name not in datasets.DATASET_NAMES:
            raise ValueError(
                f"TaskSpec.dataset_name must be one of {datasets.DATASET_NAMES} "
                f"for kind 'projected_binary', got {self.dataset_name!r}"
            )
        classes = (self.positive_class, self.negative_class)
        if (classes[0] is None) != (classes[1] is None):
            raise ValueError(
                "TaskSpec.positive_class and TaskSpec.negative_class: give both or "
                f"neither, got {classes}"
            )
        if classes[0] is not None:
            for name in ("positive_class", "negative_class"):
                self._int(name, 0, datasets.NUM_CLASSES)
            if self.positive_class >= self.negative_class:
                # Files exist only with the smaller id as the positive class (§5.3).
                raise ValueError(
                    f"TaskSpec.positive_class must be smaller than negative_class, got {classes}"
                )
        pairs = []
        for pair in _as_tuple("held_out_pairs", self.held_out_pairs):
            pair = _as_tuple("held_out_pairs", pair)
            ints = tuple(
                _as_int("TaskSpec.held_out_pairs", c, 0, datasets.NUM_CLASSES) for c in pair
            )
            if len(ints) != 2 or ints[0] == ints[1]:
                raise ValueError(
                    f"TaskSpec.held_out_pairs entries must be two distinct class ids, got {pair}"
                )
            pairs.append(ints)
        self._set("held_out_pairs", tuple(pairs))
        self._int("min_supported_data_seed", 0, SEED_LIMIT)
        self._int("max_supported_data_seed", self.min_supported_data_seed + 1, SEED_LIMIT)
        if classes[0] is None and not allowed_pairs(self.held_out_pairs):
            raise ValueError("TaskSpec.held_out_pairs holds out all 45 class pairs")

    def _check_fixed(self):
        for split, size in (("train", self.num_train_examples), ("valid", self.num_valid_examples)):
            x_name, y_name = f"fixed_x_{split}", f"fixed_y_{split}"
            try:
                x = np.asarray(getattr(self, x_name), np.float64)
                y = np.asarray(getattr(self, y_name), np.float64)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"TaskSpec.{x_name} / {y_name}: not numeric arrays ({err})"
                ) from err
            if x.shape != (size, self.feature_size):
                raise ValueError(
                    f"TaskSpec.{x_name} must have shape {(size, self.feature_size)} "
                    f"(num_{split}_examples, feature_size), got {x.shape}"
                )
            if y.shape != (size,):
                raise ValueError(f"TaskSpec.{y_name} must have shape {(size,)}, got {y.shape}")
            self._set(x_name, tuple(tuple(float(v) for v in row) for row in x))
            self._set(y_name, tuple(float(v) for v in y))


def _as_int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value >= high):
        upper = "" if high is None else f" and < {high}"
        raise ValueError(f"{name} must be >= {low}{upper}, got {value}")
    return int(value)


def _as_tuple(name, value):
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        raise ValueError(f"TaskSpec.{name} must be a sequence, got {value!r}")
    return tuple(value)


class TaskSet(NamedTuple):
    """T tasks. x_train [T, N, F] and y_train [T, N] are the training stream in epoch order;
    x_valid [T, Ev, F], y_valid [T, Ev]. All float32."""

    x_train: jax.Array
    y_train: jax.Array
    x_valid: jax.Array
    y_valid: jax.Array


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """Static facts about a TaskSet: a pytree with no leaves, so it passes through jit as static."""

    eval_type: str
    epoch_size: int
    num_tasks: int
    feature_size: int
    num_train_epochs: int


class SingleTask(NamedTuple):
    """One task as NumPy arrays, for the reference interpreter. Shapes as TaskSet without T."""

    index: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    epoch_size: int
    eval_type: str


def expand_seeds(spec: TaskSpec) -> tuple[list[int], list[int]]:
    """(param seeds, data seeds) of the spec's tasks, as the original's FillTasksFromTaskSpec.

    Task i takes the i-th listed seed while there is one, else the previous seed + 1 (uint32
    wrap-around). Empty lists use DEFAULT_*_SEEDS, which therefore continue 1004, 1005, ...
    after eight tasks (the original's quirk, kept).
    """
    return (
        _expand(spec.param_seeds or DEFAULT_PARAM_SEEDS, spec.num_tasks),
        _expand(spec.data_seeds or DEFAULT_DATA_SEEDS, spec.num_tasks),
    )


def _expand(first: Sequence[int], num_tasks: int) -> list[int]:
    seeds: list[int] = []
    for i in range(num_tasks):
        seeds.append(first[i] if i < len(first) else (seeds[-1] + 1) % SEED_LIMIT)
    return seeds


def randomize_seeds(key: jax.Array, spec: TaskSpec) -> TaskSpec:
    """The spec with `num_tasks` fresh param and data seeds, uniform in [1, 2^32 - 1).

    The counterpart of --randomize_task_seeds (§5.1). The key is consumed.
    """
    param_seeds, data_seeds = _random_seeds(key, spec.num_tasks)
    return dataclasses.replace(
        spec,
        param_seeds=tuple(int(s) for s in param_seeds),
        data_seeds=tuple(int(s) for s in data_seeds),
    )


@functools.partial(jax.jit, static_argnames="num_tasks")
def _random_seeds(key, num_tasks):
    """Two uint32 [num_tasks] seed lists, uniform in [1, 2^32 - 1)."""
    key_param, key_data = jax.random.split(key)
    low, high = jnp.uint32(1), jnp.uint32(SEED_LIMIT - 1)
    return tuple(
        jax.random.randint(k, (num_tasks,), low, high, jnp.uint32) for k in (key_param, key_data)
    )


def randomize_collection_seeds(key: jax.Array, specs: Sequence[TaskSpec]) -> list[TaskSpec]:
    """`randomize_seeds` on every spec of a collection, one subkey each. The key is consumed."""
    keys = jax.random.split(key, len(specs))
    return [randomize_seeds(k, spec) for k, spec in zip(keys, specs, strict=True)]


# ----------------------------------------------------------------------------------------------
# Generators of one task, pure functions of the seeds (uint32 scalars).


@functools.partial(jax.jit, static_argnames="feature_size")
def linear_weights(param_seed: jax.typing.ArrayLike, feature_size: int) -> jax.Array:
    """u ~ N(0, 1)^F [F] of the linear task with this param seed."""
    key = jax.random.fold_in(jax.random.key(param_seed), _LINEAR_PARAM_SALT)
    return jax.random.normal(key, (feature_size,), jnp.float32)


@functools.partial(jax.jit, static_argnames="feature_size")
def teacher_weights(
    param_seed: jax.typing.ArrayLike, feature_size: int
) -> tuple[jax.Array, jax.Array]:
    """(M [F, F], u [F]) ~ N(0, 1) of the teacher task, rows 0, 2 of M and u[0], u[2] zeroed."""
    key_m, key_u = jax.random.split(
        jax.random.fold_in(jax.random.key(param_seed), _TEACHER_PARAM_SALT)
    )
    keep = ~jnp.isin(jnp.arange(feature_size), jnp.asarray(_TEACHER_ZEROED))
    m = jax.random.normal(key_m, (feature_size, feature_size), jnp.float32)
    u = jax.random.normal(key_u, (feature_size,), jnp.float32)
    return jnp.where(keep[:, None], m, 0.0), jnp.where(keep, u, 0.0)


def _features(data_seed, salt, num_examples, feature_size):
    key = jax.random.fold_in(jax.random.key(data_seed), salt)
    return jax.random.normal(key, (num_examples, feature_size), jnp.float32)


def linear_task(param_seed, data_seed, *, num_train, num_valid, feature_size):
    """x ~ N(0, 1) [E + Ev, F] (train then valid), y = u . x. Returns x_tr, y_tr, x_va, y_va."""
    x = _features(data_seed, _LINEAR_DATA_SALT, num_train + num_valid, feature_size)
    y = jnp.matmul(x, linear_weights(param_seed, feature_size), precision=_HIGHEST)
    return x[:num_train], y[:num_train], x[num_train:], y[num_train:]


def affine_task(param_seed, data_seed, *, num_train, num_valid, feature_size):
    """The paper's affine regression (§4.1; the original's code has none): the linear task's
    x and u, y = u . x + a with a ~ N(0, 1) drawn from the param seed."""
    x_tr, y_tr, x_va, y_va = linear_task(
        param_seed, data_seed, num_train=num_train, num_valid=num_valid, feature_size=feature_size
    )
    key = jax.random.fold_in(jax.random.key(param_seed), _AFFINE_BIAS_SALT)
    a = jax.random.normal(key, (), jnp.float32)
    return x_tr, y_tr + a, x_va, y_va + a


def teacher_task(param_seed, data_seed, *, num_train, num_valid, feature_size):
    """x ~ N(0, 1), y = u . relu(M x) with `teacher_weights`. Returns x_tr, y_tr, x_va, y_va."""
    x = _features(data_seed, _TEACHER_DATA_SALT, num_train + num_valid, feature_size)
    m, u = teacher_weights(param_seed, feature_size)
    hidden = jax.nn.relu(jnp.matmul(x, m.T, precision=_HIGHEST))
    y = jnp.matmul(hidden, u, precision=_HIGHEST)
    return x[:num_train], y[:num_train], x[num_train:], y[num_train:]


_REGRESSION = {"linear": linear_task, "affine": affine_task, "teacher": teacher_task}


@functools.partial(jax.jit, static_argnames=("kind", "num_train", "num_valid", "feature_size"))
def _regression_tasks(param_seeds, data_seeds, *, kind, num_train, num_valid, feature_size):
    """vmap of a regression generator over seeds [T]."""
    task = functools.partial(
        _REGRESSION[kind], num_train=num_train, num_valid=num_valid, feature_size=feature_size
    )
    return jax.vmap(task)(param_seeds, data_seeds)


@functools.partial(jax.jit, static_argnames=("epoch_size", "num_epochs"))
def epoch_order(data_seed: jax.typing.ArrayLike, *, epoch_size: int, num_epochs: int) -> jax.Array:
    """int32 [num_epochs * epoch_size]: 0..E-1, then one permutation per later epoch.

    The permutations come from the data seed (the original's GenerateEpochs, §4.3).
    """
    key = jax.random.fold_in(jax.random.key(data_seed), _EPOCH_SALT)
    first = jnp.arange(epoch_size, dtype=jnp.int32)
    if num_epochs == 1:
        return first
    later = jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(key, k), first))(
        jnp.arange(1, num_epochs)
    )
    return jnp.concatenate([first, later.reshape(-1)])


@functools.partial(jax.jit, static_argnames="num_epochs")
def _epoch_stream(x, y, data_seeds, *, num_epochs):
    """x [T, E, F], y [T, E] -> the training streams [T, num_epochs * E, ...] in epoch order."""
    order = jax.vmap(functools.partial(epoch_order, epoch_size=x.shape[1], num_epochs=num_epochs))(
        data_seeds
    )
    return jnp.take_along_axis(x, order[:, :, None], axis=1), jnp.take_along_axis(y, order, axis=1)


# ----------------------------------------------------------------------------------------------
# Building a TaskSet.


def _unit_tasks(spec: TaskSpec, num_tasks: int):
    """zeros / ones / increment / fixed, identical for every task (numpy, float32)."""
    e, ev, f = spec.num_train_examples, spec.num_valid_examples, spec.feature_size
    if spec.kind == "fixed":
        splits = [
            np.asarray(getattr(spec, f"fixed_{n}"), np.float32)
            for n in ("x_train", "y_train", "x_valid", "y_valid")
        ]
    else:
        splits = []
        for n in (e, ev):
            if spec.kind == "increment":  # Example k is all k * inc, counted per split.
                y = np.arange(n, dtype=np.float64) * spec.increment
            else:
                y = np.full(n, 1.0 if spec.kind == "ones" else 0.0)
            splits += [np.repeat(y[:, None], f, axis=1).astype(np.float32), y.astype(np.float32)]
    return [np.broadcast_to(a, (num_tasks, *a.shape)) for a in splits]


def allowed_pairs(held_out_pairs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The class pairs (i, j), i < j over 0..9, minus `held_out_pairs` (in either order)."""
    held = {tuple(sorted(p)) for p in held_out_pairs}
    n = datasets.NUM_CLASSES
    return [(i, j) for i in range(n) for j in range(i + 1, n) if (i, j) not in held]


def binary_file_choice(spec: TaskSpec, data_seeds: Sequence[int]) -> list[tuple[int, int, int]]:
    """(positive class, negative class, file seed) of each data seed (§5.2)."""
    low, high = spec.min_supported_data_seed, spec.max_supported_data_seed
    if spec.positive_class is not None:
        return [
            (spec.positive_class, spec.negative_class, low + d % (high - low)) for d in data_seeds
        ]
    pairs = allowed_pairs(spec.held_out_pairs)
    pair_ids, seeds = _draw_files(
        jnp.asarray(data_seeds, jnp.uint32), len(pairs), jnp.uint32(low), jnp.uint32(high)
    )
    return [(*pairs[int(p)], int(s)) for p, s in zip(pair_ids, seeds, strict=True)]


@jax.jit
def _draw_files(data_seeds, num_pairs, low, high):
    """Pair index in [0, num_pairs) and file seed in [low, high) per data seed [T]."""

    def draw(data_seed):
        key_pair, key_seed = jax.random.split(
            jax.random.fold_in(jax.random.key(data_seed), _PAIR_SALT)
        )
        pair = jax.random.randint(key_pair, (), 0, num_pairs)
        return pair, jax.random.randint(key_seed, (), low, high, jnp.uint32)

    return jax.vmap(draw)(data_seeds)


def _binary_tasks(spec: TaskSpec, data_seeds: Sequence[int]):
    """Reads each task's prepared file (each distinct file once)."""
    cache: dict[str, datasets.BinaryDataset] = {}
    loaded = []
    for pos, neg, seed in binary_file_choice(spec, data_seeds):
        path = os.path.join(
            spec.dataset_dir,
            datasets.binary_file_name(spec.dataset_name, pos, neg, spec.feature_size, seed),
        )
        if path not in cache:
            cache[path] = datasets.load_binary_dataset(
                path,
                feature_size=spec.feature_size,
                num_train=spec.num_train_examples,
                num_valid=spec.num_valid_examples,
            )
        loaded.append(cache[path])
    return [np.stack(arrays) for arrays in zip(*loaded, strict=True)]


def make_tasks(spec: TaskSpec) -> tuple[TaskSet, TaskInfo]:
    """Builds the spec's T tasks. Returns (TaskSet with leading axis T, TaskInfo)."""
    param_seeds, data_seeds = expand_seeds(spec)
    if spec.kind in _REGRESSION:
        x_tr, y_tr, x_va, y_va = _regression_tasks(
            jnp.asarray(param_seeds, jnp.uint32),
            jnp.asarray(data_seeds, jnp.uint32),
            kind=spec.kind,
            num_train=spec.num_train_examples,
            num_valid=spec.num_valid_examples,
            feature_size=spec.feature_size,
        )
    elif spec.kind == "projected_binary":
        x_tr, y_tr, x_va, y_va = _binary_tasks(spec, data_seeds)
    else:
        x_tr, y_tr, x_va, y_va = _unit_tasks(spec, spec.num_tasks)
    x_tr, y_tr = jnp.asarray(x_tr, jnp.float32), jnp.asarray(y_tr, jnp.float32)
    if spec.num_train_epochs > 1:
        x_tr, y_tr = _epoch_stream(
            x_tr, y_tr, jnp.asarray(data_seeds, jnp.uint32), num_epochs=spec.num_train_epochs
        )
    taskset = TaskSet(x_tr, y_tr, jnp.asarray(x_va, jnp.float32), jnp.asarray(y_va, jnp.float32))
    return taskset, spec.info


def make_collection(specs: Sequence[TaskSpec]) -> list[tuple[TaskSet, TaskInfo]]:
    """One (TaskSet, TaskInfo) per spec of a collection (the original's TaskCollection)."""
    if isinstance(specs, TaskSpec) or not specs:
        raise ValueError("make_collection needs a non-empty sequence of TaskSpec")
    for i, spec in enumerate(specs):
        if not isinstance(spec, TaskSpec):
            raise ValueError(
                f"make_collection: specs[{i}] is a {type(spec).__name__}, not a TaskSpec"
            )
    return [make_tasks(spec) for spec in specs]


def single_task(taskset: TaskSet, info: TaskInfo, i: int) -> SingleTask:
    """Task `i` of a TaskSet as NumPy arrays (x_train [N, F], y_train [N], x_valid, y_valid)."""
    if not 0 <= i < info.num_tasks:
        raise ValueError(f"task index {i} out of range for {info.num_tasks} tasks")
    arrays = (np.asarray(a[i]) for a in taskset)
    return SingleTask(i, *arrays, epoch_size=info.epoch_size, eval_type=info.eval_type)


# ----------------------------------------------------------------------------------------------
# Tasks from your own arrays.


def _split_seeds(split_seed: int, num_tasks: int) -> np.ndarray:
    """uint32 [num_tasks]: each task's seed of its split (and projection), from `split_seed`."""
    return np.random.SeedSequence(split_seed).generate_state(num_tasks)


def _check_arrays(X, y, *, eval_type: str) -> tuple[np.ndarray, np.ndarray]:
    """(X float64 [n, d], y float64 [n]) checked: numeric, 2-D / 1-D of matching length, finite,
    labels 0 / 1 for "accuracy". Raises a one-line ValueError naming the problem."""
    name = "from_arrays"
    if eval_type not in EVAL_TYPES:
        raise ValueError(f"{name}: eval_type must be one of {EVAL_TYPES}, got {eval_type!r}")
    try:
        X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: X and y must be numeric arrays ({err})") from err
    if X.ndim != 2:
        raise ValueError(f"{name}: X must be 2-D [examples, features], got shape {X.shape}")
    if y.shape != X.shape[:1]:
        raise ValueError(
            f"{name}: y must have shape {X.shape[:1]} (one label per row of X), got {y.shape}"
        )
    for array, label in ((X, "X"), (y, "y")):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name}: {label} has non-finite values (NaN or inf)")
    if eval_type == "accuracy" and not np.all((y == 0) | (y == 1)):
        raise ValueError(
            f"{name}: labels must be 0 or 1 for eval_type 'accuracy', got {np.unique(y)[:5]}"
        )
    return X, y


def from_arrays(
    X,
    y,
    *,
    num_tasks: int,
    eval_type: str,
    split_seed: int,
    num_valid: int | None = None,
    num_train: int | None = None,
    project_to: int | None = None,
    standardize: bool = True,
    num_train_epochs: int = 1,
) -> tuple[TaskSet, TaskInfo]:
    """Tasks from your own examples: each a random train / valid split of (X, y).

    Task t draws its own split (stratified by label for "accuracy", as the original's projected
    datasets) from a seed derived from (`split_seed`, t), so the same arguments give the same
    tasks. With `project_to=F` its features are multiplied by its own Gaussian random projection
    [d, F] (`azjax.datasets.random_projection`); with `standardize` (the default) they are then
    standardized with the mean and standard deviation of its training split
    (`azjax.datasets.fit_scaler`): the paper's recipe for its projected binary tasks. Labels are
    used as they are: scale regression targets yourself (errors above 100 stop an algorithm's
    training).

    Args:
      X: [n, d] features; y: [n] labels (0 / 1 for "accuracy").
      num_tasks: T >= 1. eval_type: "rms" (regression) or "accuracy" (binary classification).
      split_seed: an integer in [0, 2^32): the splits' and projections' seed.
      num_valid: validation examples per task (default: a fifth of n, at least 1).
      num_train: training examples per task (default: all the others).
      project_to: F, 1..32, or None to keep the d features (then d must be 1..32).
      standardize: standardize features on each task's training split.
      num_train_epochs: passes over the training split (later epochs reshuffled per task).

    Returns:
      (TaskSet with leading axis T, TaskInfo).

    Raises:
      ValueError (one line) for bad shapes, non-finite values, labels other than 0 / 1 for
      "accuracy", too few examples, or F outside 1..32.
    """
    X, y = _check_arrays(X, y, eval_type=eval_type)
    n, d = X.shape
    num_tasks = _as_int("from_arrays: num_tasks", num_tasks, 1)
    split_seed = _as_int("from_arrays: split_seed", split_seed, 0, SEED_LIMIT)
    num_train_epochs = _as_int("from_arrays: num_train_epochs", num_train_epochs, 1)
    F = d if project_to is None else _as_int("from_arrays: project_to", project_to, 1)
    if not 1 <= F <= MAX_FEATURE_SIZE:
        hint = " (pass project_to=F to project them)" if project_to is None else ""
        raise ValueError(
            f"from_arrays: the feature size must be 1..{MAX_FEATURE_SIZE}, got {F}{hint}"
        )
    if n < 2:
        raise ValueError(f"from_arrays: X has {n} example(s); need at least 2 (train and valid)")
    if num_valid is None:
        num_valid = max(1, n // 5)
    num_valid = _as_int("from_arrays: num_valid", num_valid, 1)
    if num_train is None:
        num_train = max(1, n - num_valid)
    num_train = _as_int("from_arrays: num_train", num_train, 1)
    if num_train + num_valid > n:
        raise ValueError(
            f"from_arrays: X has {n} examples, too few for {num_train} training + {num_valid} "
            "validation examples per task"
        )
    stratify = eval_type == "accuracy"
    if stratify:
        smallest = int(min(np.sum(y == 0), np.sum(y == 1)))
        if smallest < 2 or min(num_train, num_valid) < 2:
            raise ValueError(
                "from_arrays: a stratified split needs both classes with at least 2 examples "
                f"and at least 2 training and 2 validation examples, got {smallest} examples "
                f"in the rarer class and {num_train} / {num_valid} per task"
            )
    splits = []
    for seed in _split_seeds(split_seed, num_tasks).tolist():
        x_tr, x_va, y_tr, y_va = datasets.split_examples(
            X, y, num_train, num_valid, seed, stratify=stratify
        )
        projection = None if project_to is None else datasets.random_projection(seed, d, F)
        if standardize:
            scaler = datasets.fit_scaler(x_tr, projection)
            x_tr, x_va = (datasets.transform(x, projection, scaler) for x in (x_tr, x_va))
        elif projection is not None:
            x_tr, x_va = x_tr @ projection, x_va @ projection
        splits.append((x_tr, y_tr, x_va, y_va))
    x_tr, y_tr, x_va, y_va = (np.stack(a).astype(np.float32) for a in zip(*splits, strict=True))
    x_tr, y_tr = jnp.asarray(x_tr), jnp.asarray(y_tr)
    if num_train_epochs > 1:
        seeds = jnp.asarray(_split_seeds(split_seed, num_tasks), jnp.uint32)
        x_tr, y_tr = _epoch_stream(x_tr, y_tr, seeds, num_epochs=num_train_epochs)
    info = TaskInfo(
        eval_type=eval_type,
        epoch_size=num_train,
        num_tasks=num_tasks,
        feature_size=F,
        num_train_epochs=num_train_epochs,
    )
    return TaskSet(x_tr, y_tr, jnp.asarray(x_va), jnp.asarray(y_va)), info
