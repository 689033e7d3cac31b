"""scikit-learn estimators with an evolved algorithm: `AutoMLZeroRegressor`, `AutoMLZeroClassifier`.

`fit(X, y)` searches for a whole learning algorithm (Setup / Predict / Learn programs) that
learns well on your data, then trains the winner on all of it:

1. Tasks (`azjax.tasks.from_arrays`): each of `num_experiments` searches gets `num_tasks`
   random train / valid splits of (X, y), features standardized on each training split;
   optionally (`project_to=F`) the features are first standardized on all of X, then projected
   to F by a Gaussian matrix per task, as the paper's projected tasks. Regression targets are
   standardized; the two classes become labels 0 / 1 (`classes_[1]` is 1).
2. Search (`azjax.search`): regularized evolution over `ops` from `initial_population`, the
   experiments together on the device, until `max_time_secs` (wall clock since fit began,
   compiles included) or `max_individuals` (all experiments together) is spent. The default
   start, "LINEAR", is linear regression trained by SGD (the original's hand-written
   LINEAR_ALGORITHM): evolution tunes and extends it. "RANDOM" searches from scratch, as
   AutoML-Zero's demo; on real data that needs far more than a minute of a CPU.
3. Selection: each experiment's best program ever and the `FINALISTS` fittest of its final
   population are scored (`azjax.scoring.score`) on fresh splits whose training splits are as
   large as X allows, as deployment trains on all of X; the best mean fitness (`fitness_`) wins.
4. Deployment (`azjax.export.to_jax`): the winner runs Setup, then Learn on every example of X
   (in order, `num_train_epochs` passes), with the features transformed as in the tasks (one
   projection, `projection_`, and the standardization fitted on all of X); a finalist whose
   predictions on X are not finite is passed over. `predict` runs Predict on each row from that
   trained memory, independently (as if each were the first validation example), so a
   prediction never depends on the other rows.

Task shapes are rounded down to a few sizes (`_bucket`): fits on data of similar sizes (e.g. the
folds of a cross-validation) reuse the compiled search. Selection and deployment add a few
seconds (compiles) after the search's budget.

A time budget makes the result depend on the machine's speed; `max_individuals` alone (with a
`random_state`) gives the same program on every run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from azjax import (
    datasets,
    evolution,
    experiment,
    export,
    generator,
    mutation,
    program_io,
    scoring,
    search,
    search_eval,
    tasks,
)
from azjax import ops as ops_lib
from azjax import program as program_lib
from azjax.program import ComponentSpec, Program, ProgramSpec

# The demo's six ops (linear regression by SGD is expressible with them), plus scalar sums (a
# bias), vector differences and elementwise vector products.
DEFAULT_OPS: tuple[str, ...] = (
    "SCALAR_CONST_SET_OP",
    "VECTOR_INNER_PRODUCT_OP",
    "SCALAR_DIFF_OP",
    "SCALAR_PRODUCT_OP",
    "SCALAR_VECTOR_PRODUCT_OP",
    "VECTOR_SUM_OP",
    "SCALAR_SUM_OP",
    "VECTOR_DIFF_OP",
    "VECTOR_PRODUCT_OP",
)
MIN_SAMPLES = 4  # Two to train on and two to validate on, at least.
CALL_SECS = 2.0  # Wall time of one device call at most (the time budget's granularity).
FINALISTS = 4  # Per experiment, from its final population (besides its best ever).
_SEED_HIGH = 2**31 - 1


def _bucket(n: int) -> int:
    """The largest m * 2^k <= n with m in 4..7 (n itself below 8): n rounded down by at most 20%
    to one of few sizes, so that similar data sizes share one compiled search."""
    if n < 8:
        return n
    k = n.bit_length() - 3
    return (n >> k) << k


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What a fit derives from the hyperparameters and the data's size (static)."""

    spec: ProgramSpec
    search: search.SearchConfig
    num_experiments: int
    num_train: int
    num_valid: int
    num_train_select: int


class _AutoMLZero(BaseEstimator):
    """The estimators' shared fit / predict (the subclasses set `_eval_type`)."""

    _eval_type = "rms"

    def __init__(
        self,
        *,
        max_time_secs=60.0,
        max_individuals=None,
        ops=DEFAULT_OPS,
        num_scalars=4,
        num_vectors=3,
        num_matrices=1,
        setup_size=10,
        predict_size=2,
        learn_size=8,
        population_size=1000,
        tournament_size=10,
        children_per_generation=250,
        mutate_prob=0.9,
        initial_population="LINEAR",
        num_experiments=8,
        num_tasks=8,
        valid_fraction=0.25,
        max_train_examples=1000,
        num_train_epochs=1,
        project_to=None,
        random_state=None,
        verbose=False,
    ):
        self.max_time_secs = max_time_secs
        self.max_individuals = max_individuals
        self.ops = ops
        self.num_scalars = num_scalars
        self.num_vectors = num_vectors
        self.num_matrices = num_matrices
        self.setup_size = setup_size
        self.predict_size = predict_size
        self.learn_size = learn_size
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.children_per_generation = children_per_generation
        self.mutate_prob = mutate_prob
        self.initial_population = initial_population
        self.num_experiments = num_experiments
        self.num_tasks = num_tasks
        self.valid_fraction = valid_fraction
        self.max_train_examples = max_train_examples
        self.num_train_epochs = num_train_epochs
        self.project_to = project_to
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # A time-bounded search ends after a machine-dependent number of generations.
        tags.non_deterministic = self.max_time_secs is not None
        return tags

    # -- fit ---------------------------------------------------------------------------------

    def _plan(self, n: int) -> _Plan:
        name = type(self).__name__
        if self.max_time_secs is None and self.max_individuals is None:
            raise ValueError(f"{name}: give max_time_secs, max_individuals or both")
        if self.max_time_secs is not None and not self.max_time_secs > 0:
            raise ValueError(f"{name}: max_time_secs must be > 0, got {self.max_time_secs}")
        if self.max_individuals is not None and not self.max_individuals >= 1:
            raise ValueError(f"{name}: max_individuals must be >= 1, got {self.max_individuals}")
        if not 0 < self.valid_fraction < 1:
            raise ValueError(f"{name}: valid_fraction must be in (0, 1), got {self.valid_fraction}")
        if n < MIN_SAMPLES:
            raise ValueError(f"{name} needs at least {MIN_SAMPLES} samples, got n_samples = {n}")
        num_valid = _bucket(max(2, int(n * self.valid_fraction)))
        num_train = _bucket(min(n - num_valid, int(self.max_train_examples)))
        ops = ops_lib.op_ids(self.ops)
        sizes = (int(self.setup_size), int(self.predict_size), int(self.learn_size))
        spec = ProgramSpec(
            num_scalars=int(self.num_scalars),
            num_vectors=int(self.num_vectors),
            num_matrices=int(self.num_matrices),
            **{
                c: ComponentSpec(max(1, s), ops)
                for c, s in zip(program_lib.COMPONENTS, sizes, strict=True)
            },
        )
        initial = generator.canonical_name(str(self.initial_population))
        if initial not in ("RANDOM", "NO_OP"):  # A hand-written model: room for it and its ops.
            model = generator.INITIAL_ALGORITHMS[initial](None, spec, sizes)
            spec = generator.add_required_ops(spec, model)
            spec = spec.replace(
                **{
                    c: spec.component(c)._replace(
                        size=max(spec.component(c).size, int(getattr(model, c).length))
                    )
                    for c in program_lib.COMPONENTS
                }
            )
        evo = evolution.EvolutionConfig(
            spec=spec,
            mutation=mutation.MutationParams(
                allowed_mutation_types=(0, 1, 2), mutate_prob=float(self.mutate_prob)
            ),
            sizes=sizes,
            population_size=int(self.population_size),
            tournament_size=int(self.tournament_size),
            initial_population=initial,
            children_per_generation=min(
                int(self.children_per_generation), int(self.population_size)
            ),
        )
        F = self._feature_size()
        info = tasks.TaskInfo(
            eval_type=self._eval_type,
            epoch_size=num_train,
            num_tasks=int(self.num_tasks),
            feature_size=F,
            num_train_epochs=int(self.num_train_epochs),
        )
        evaluation = search_eval.EvaluationConfig(
            fec_num_train=min(10, num_train), fec_num_valid=min(10, num_valid)
        )
        config = search.SearchConfig(evolution=evo, tasks=info, evaluation=evaluation)
        num_train_select = _bucket(n - num_valid)
        return _Plan(
            spec, config, int(self.num_experiments), num_train, num_valid, num_train_select
        )

    def _feature_size(self) -> int:
        return self.n_features_in_ if self.project_to is None else int(self.project_to)

    def _task_arrays(self, X, y, plan: _Plan, split_seed: int, num_train: int):
        return tasks.from_arrays(
            X,
            y,
            num_tasks=plan.search.tasks.num_tasks,
            eval_type=self._eval_type,
            split_seed=split_seed,
            num_valid=plan.num_valid,
            num_train=num_train,
            project_to=self.project_to,
            num_train_epochs=plan.search.tasks.num_train_epochs,
        )

    def _fit(self, X, y):
        """Fits on validated X [n, d] and task labels y [n] (standardized / 0-1)."""
        start = time.perf_counter()
        n, d = X.shape
        F = self._feature_size()
        if not 1 <= F <= tasks.MAX_FEATURE_SIZE:
            hint = "; set project_to" if self.project_to is None else ""
            raise ValueError(
                f"{type(self).__name__}: the programs' feature size must be 1.."
                f"{tasks.MAX_FEATURE_SIZE}, got {F} (X has {d} features){hint}"
            )
        plan = self._plan(n)
        rng = check_random_state(self.random_state)
        seeds = rng.randint(0, _SEED_HIGH, size=5)
        self.input_scaler_ = None
        if self.project_to is not None:  # Raw features may have any scales: standardize first.
            self.input_scaler_ = datasets.fit_scaler(X)
            X = datasets.transform(X, None, self.input_scaler_).astype(np.float64)
        E = plan.num_experiments
        split_seeds = np.random.SeedSequence(int(seeds[0])).generate_state(E).tolist()
        tasksets = [self._task_arrays(X, y, plan, s, plan.num_train)[0] for s in split_seeds]
        state, history, seconds = self._search(plan, tasksets, jax.random.key(int(seeds[1])), start)
        finalists, fitness = self._select(
            X, y, plan, state, int(seeds[2]), jax.random.key(int(seeds[3]))
        )
        self._deploy(X, y, plan, finalists, fitness, int(seeds[4]))
        self.history_ = history
        self.n_individuals_ = int(np.sum(np.asarray(state.population.num_individuals)))
        self.search_seconds_ = seconds
        return self

    def _search(self, plan: _Plan, tasksets, key, start: float):
        """Runs the experiments until the budget (counted from `start`, a `time.perf_counter`)
        is spent: (final state, history, seconds since start)."""
        config, E = plan.search, plan.num_experiments
        K = config.evolution.children_per_generation
        mesh = experiment.experiment_mesh(E)
        run = search.runner(config, mesh)
        # Placed from the host: resharding device arrays compiles a program per leaf.
        state = jax.device_get(search.init(jax.random.split(key, E), config))
        state = search.place(state, mesh)
        stacked = search.place(jax.tree.map(lambda *x: np.stack(x), *tasksets), mesh)
        deadline = math.inf if self.max_time_secs is None else start + float(self.max_time_secs)
        cap = math.inf if self.max_individuals is None else int(self.max_individuals)
        history, n, per_generation = [], 1, None
        while True:
            t = time.perf_counter()
            state = run(state, stacked, n)
            best = np.asarray(state.population.best_fitness)  # Waits for the device.
            now = time.perf_counter()
            if history:  # The first call compiles.
                per_generation = (now - t) / n
            individuals = int(np.sum(np.asarray(state.population.num_individuals)))
            history.append(
                {
                    "seconds": now - start,
                    "individuals": individuals,
                    "best_fitness": float(best.max()),
                    "experiment_best": best.tolist(),
                }
            )
            if self.verbose:
                print(
                    f"{type(self).__name__}: {now - start:.1f} s, {individuals} individuals, "
                    f"best search fitness {best.max():.6f}"
                )
            left = math.ceil((cap - individuals) / (E * K)) if cap < math.inf else math.inf
            if left <= 0 or now >= deadline:
                break
            if per_generation is None:
                n = 1
            else:
                seconds = min(deadline - now, CALL_SECS)
                if seconds < 0.5 * per_generation:
                    break
                # At most twice the last call: early generations can be cheaper than later ones.
                n = int(max(1, min(left, seconds // per_generation, 2 * n)))
        return state, history, time.perf_counter() - start

    def _select(self, X, y, plan: _Plan, state, split_seed: int, key):
        """The finalists (each experiment's best program ever and the `FINALISTS` fittest of
        its final population) ranked by their mean fitness on fresh splits that train on as
        many examples as possible (as deployment does): (programs in that order, fitness)."""
        pop = jax.device_get(state.population)
        top = np.argsort(-np.asarray(pop.fitness), axis=1, kind="stable")[:, :FINALISTS]
        fittest = jax.tree.map(
            lambda x: np.take_along_axis(
                np.asarray(x), top.reshape(top.shape + (1,) * (np.ndim(x) - 2)), axis=1
            ).reshape((-1,) + np.shape(x)[2:]),
            pop.programs,
        )
        finalists = jax.tree.map(
            lambda a, b: np.concatenate([np.asarray(a), b]), pop.best_program, fittest
        )
        select = self._task_arrays(X, y, plan, split_seed, plan.num_train_select)
        per_task = scoring.score(finalists, scoring.place_collection([select]), key, spec=plan.spec)
        fitness = per_task.mean(axis=1)
        order = np.argsort(-fitness, kind="stable")
        return program_lib.index(finalists, order), fitness[order]

    def _deploy(self, X, y, plan: _Plan, finalists: Program, fitness, seed: int):
        """Trains the best finalist whose predictions on X are finite (else a program that
        predicts 0: the mean, or probability 1/2) on all of X."""
        d, F = X.shape[1], self._feature_size()
        self.projection_ = (
            None if self.project_to is None else datasets.random_projection(seed, d, F)
        )
        self.scaler_ = datasets.fit_scaler(X, self.projection_)
        features = datasets.transform(X, self.projection_, self.scaler_)
        key = jax.random.key(seed)
        empty = Program(
            *(
                program_lib.empty_component(plan.spec.component(c).size)
                for c in program_lib.COMPONENTS
            )
        )
        epochs = plan.search.tasks.num_train_epochs

        def train(program):  # The trained memory, or None if a prediction is not finite.
            algorithm = _algorithm(_Key(program), plan.spec, F, self._eval_type, epochs)
            state = algorithm.fit(algorithm.init(key), features, y.astype(np.float32))
            finite = np.all(np.isfinite(np.asarray(algorithm.predict(state, features))))
            return state if finite else None

        programs = [*program_lib.unstack(finalists), empty]
        attempts = ((i, p, train(p)) for i, p in enumerate(programs))
        i, self.program_, trained = next(a for a in attempts if a[2] is not None)
        self.fitness_ = float(fitness[i]) if i < len(fitness) else math.nan
        self.spec_ = plan.spec
        self.state_ = jax.device_get(trained)
        self.feature_size_ = F

    # -- predict -----------------------------------------------------------------------------

    def _raw_predict(self, X) -> np.ndarray:
        """Predict on each row of X from the trained memory: s1 (regression) or sigmoid(s1)."""
        check_is_fitted(self, "program_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        if self.input_scaler_ is not None:
            X = datasets.transform(X, None, self.input_scaler_).astype(np.float64)
        features = datasets.transform(X, self.projection_, self.scaler_)
        algorithm = _algorithm(
            _Key(self.program_),
            self.spec_,
            self.feature_size_,
            self._eval_type,
            self.num_train_epochs,
        )
        return np.asarray(algorithm.predict(self.state_, features), np.float64)

    def export_python(self) -> str:
        """The fitted program as self-contained NumPy source (`azjax.export.to_python`)."""
        check_is_fitted(self, "program_")
        return export.to_python(self.program_, self.spec_, eval_type=self._eval_type)

    def format_program(self) -> str:
        """The fitted program in the paper's notation (live code only)."""
        check_is_fitted(self, "program_")
        return program_io.format_program(self.program_)


class _Key:
    """A program as a hashable cache key (its bytes)."""

    def __init__(self, program: Program):
        self.program = program
        self._bytes = tuple(
            (np.asarray(x).dtype.str, np.shape(x), np.asarray(x).tobytes())
            for x in jax.tree.leaves(program)
        )

    def __hash__(self):
        return hash(self._bytes)

    def __eq__(self, other):
        return isinstance(other, _Key) and self._bytes == other._bytes


class _Compiled:
    """One program's jitted training and per-example prediction (`azjax.export.to_jax`)."""

    def __init__(self, program, spec, feature_size, eval_type, epochs):
        algorithm = export.to_jax(program, spec, feature_size=feature_size, eval_type=eval_type)
        self.init = algorithm.init
        self.fit = jax.jit(functools.partial(algorithm.fit, epochs=epochs))

        def one(state, x):  # Predict on one row from the trained memory.
            return algorithm.predict(state, x[None])[0]

        self.predict = jax.jit(jax.vmap(one, in_axes=(None, 0)))


@functools.lru_cache(maxsize=64)
def _algorithm(key: _Key, spec, feature_size, eval_type, epochs) -> _Compiled:
    return _Compiled(key.program, spec, feature_size, eval_type, epochs)


class AutoMLZeroRegressor(RegressorMixin, _AutoMLZero):
    """Regression by an evolved algorithm (module docstring). Fitness: 1 - (2/pi) atan(RMSE) on
    the standardized targets.

    Hyperparameters (all keyword arguments, stored unchanged):
      max_time_secs: wall-clock budget of the search in seconds, compiles included (None: none).
      max_individuals: programs to evolve, all experiments together (None: none). At least one
        of the two budgets is needed.
      ops: op names or ids (`azjax.ops`) the programs are built from (all three components).
      num_scalars, num_vectors, num_matrices: the memory (at least 2 / 1 / 1).
      setup_size, predict_size, learn_size: instructions per component (fixed).
      population_size, tournament_size, children_per_generation, mutate_prob: the regularized
        evolution (K children per generation; mutations: alter a parameter, randomize an
        instruction or a component).
      initial_population: "LINEAR" (SGD linear regression, the default), "RANDOM" (from
        scratch), "NO_OP", or another of `azjax.generator.INITIAL_ALGORITHMS`.
      num_experiments: independent searches run together (a multiple of the device count uses
        every device).
      num_tasks: train / valid splits each search scores a program on.
      valid_fraction: share of the examples in a task's validation split.
      max_train_examples: training examples per task at most.
      num_train_epochs: passes over the training examples (search and deployment).
      project_to: F, project the (standardized) features to F by a Gaussian matrix (None: keep
        them; then X must have 1..32 features).
      random_state: seeds the splits, the search and the projection.
      verbose: print the search's progress.

    Fitted attributes: program_ (the winner, `azjax.Program`), fitness_ (its mean fitness on
    fresh splits), spec_ (its `ProgramSpec`), state_ (its trained memory, `azjax.export.State`),
    history_ (per device call: seconds, individuals, best search fitness), n_individuals_,
    search_seconds_, projection_, scaler_, input_scaler_, feature_size_, y_mean_, y_scale_,
    n_features_in_.
    """

    _eval_type = "rms"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True  # A small budget may find no good algorithm.
        return tags

    def fit(self, X, y):
        """Evolves an algorithm on (X [n, d], y [n]) and trains it on all of them."""
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        y = np.asarray(y, np.float64)
        self.y_mean_ = float(np.mean(y))
        scale = float(np.std(y))
        self.y_scale_ = scale if scale > 0 else 1.0
        return self._fit(X, (y - self.y_mean_) / self.y_scale_)

    def predict(self, X):
        """Predictions [n] (memory as after training, per row)."""
        return self._raw_predict(X) * self.y_scale_ + self.y_mean_


class AutoMLZeroClassifier(ClassifierMixin, _AutoMLZero):
    """Binary classification by an evolved algorithm (module docstring); fitness: accuracy.
    Hyperparameters and fitted attributes: as `AutoMLZeroRegressor`, with classes_ instead of
    y_mean_ / y_scale_ (`classes_[1]` is the positive class)."""

    _eval_type = "accuracy"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.classifier_tags.poor_score = True  # A small budget may find no good algorithm.
        return tags

    def fit(self, X, y):
        """Evolves an algorithm on (X [n, d], y [n], two classes) and trains it on all of them."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs 2 classes, got 1 class ({self.classes_[0]!r})"
            )
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {y_type}."
            )
        return self._fit(X, (y == self.classes_[1]).astype(np.float64))

    def predict_proba(self, X):
        """Class probabilities [n, 2] (columns in `classes_` order)."""
        p = self._raw_predict(X)
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X):
        """Predicted classes [n]: `classes_[1]` where its probability is above 1/2."""
        p = self._raw_predict(X)  # Checks that the estimator is fitted first.
        return self.classes_[(p > 0.5).astype(int)]
