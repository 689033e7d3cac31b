"""The experiment driver: repeated searches, select and final evaluation, checkpoints.

As the original's run_search_experiment (one experiment after another): each experiment gets fresh
task seeds (if `randomize_task_seeds`) and fresh caches, searches until its train steps reach
`max_train_steps` (counted as the original counts them, `azjax.search_eval`) or an azjax stopping
rule ends it (`max_individuals`, `stop_search_at_fitness`, `stagnation_individuals`,
`time_budget_secs`); then the best individual of its final population is scored on its select
tasks, and the best across experiments (later ones win ties) goes to the final evaluation on
unseen tasks.

The searches run on the device (`azjax.search`): `parallel_experiments` = E slots run their
experiments in lockstep, one generation each per step, many steps per host call, and the device
stops as soon as one of them finishes; the host then scores it, starts the next experiment in its
slot, prints progress and checkpoints. Each experiment's search depends only on the seed and its
index, so it is the same search whatever E (and the number of devices) is. The run ends when an
ended experiment's select fitness exceeds `sufficient_fitness` (the others are abandoned, their
individuals counted) or when `max_experiments` have ended.

Everything random flows from `random_seed` through `jax.random` keys, and the whole state (the
device search state and the driver's) is checkpointed atomically between host calls, so a killed
run resumes exactly.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from azjax import checkpoint as checkpoint_lib
from azjax import evaluation, evolution, program_io, runtime, scoring, search, tasks, wide
from azjax import ops as ops_lib
from azjax import program as program_lib
from azjax.config import Experiment
from azjax.program import Program
from azjax.search_eval import Counters

# Config fields that do not change the search's results; a resumed run may change them.
RUNTIME_FIELDS = ("checkpoint_every_secs", "progress_every", "chunk_size", "time_budget_secs")
CHECKPOINT_FORMAT = "azjax.search/4"  # 4: the device search state
COUNTER_FIELDS = Counters._fields
MAX_GENERATIONS_PER_CALL = 1000


class Interrupted(Exception):
    """`run` stopped on SIGINT (Ctrl-C) or SIGTERM after saving its state to `checkpoint`;
    running it again resumes there."""

    def __init__(self, checkpoint: str):
        super().__init__(f"interrupted; saved {checkpoint} (run again to resume)")
        self.checkpoint = checkpoint


@contextlib.contextmanager
def _stop_requests():
    """A flag that SIGINT and SIGTERM set instead of raising (the driver saves and stops at the
    next call boundary); a second SIGINT raises KeyboardInterrupt at once. Only in the main
    thread (elsewhere signals cannot be handled): there the flag is never set."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class RunState(NamedTuple):
    """The driver's checkpointed state (host numpy), beside the device's `search.SearchState`."""

    seed: np.ndarray  # int64 []: the resolved random seed.
    started: np.ndarray  # int64 []: experiments started so far (the next one's index).
    experiments: np.ndarray  # int64 [E]: the experiment in each slot; -1 = idle.
    best_program: Program  # best candidate so far, by select fitness.
    best_select: np.ndarray  # float64 []; -1 before the first experiment ends.
    total_individuals: np.ndarray  # int64 []: of ended experiments.
    elapsed: np.ndarray  # float64 []: wall seconds spent, across resumes (reporting only).
    done: np.ndarray  # bool []: every experiment has ended; only the final evaluation remains.
    counters: np.ndarray  # int64 [len(COUNTER_FIELDS)]: of ended experiments.


class Result(NamedTuple):
    final_fitness: float
    select_fitness: float
    program: Program
    experiments: int  # started (with parallel_experiments > 1, some may have been cut short)
    individuals: int  # of every experiment started
    seconds: float
    counters: dict[str, int]  # summed over experiments (`search_eval.Counters` fields)
    timings: dict[str, float]  # wall seconds in the device search calls and in scoring


def _experiment_key(seed: int, experiment: int):
    return jax.random.fold_in(jax.random.key(seed), experiment)


def _search_specs(exp: Experiment, seed: int, experiment: int):
    """This experiment's search and select task specs (fresh seeds if randomize_task_seeds)."""
    k_search, k_select, _ = jax.random.split(_experiment_key(seed, experiment), 3)
    search_spec, select_spec = exp.search_tasks, exp.select_tasks
    if exp.run.randomize_task_seeds:
        search_spec = tasks.randomize_seeds(k_search, search_spec)
        select_spec = tasks.randomize_seeds(k_select, select_spec)
    return search_spec, select_spec


def experiment_mesh(num_slots: int):
    """The devices the slots are split over: the most local devices that divide `num_slots`."""
    devices = jax.local_devices()
    size = max(d for d in range(1, len(devices) + 1) if num_slots % d == 0)
    return runtime.program_mesh(devices[:size])


@functools.partial(jax.jit, donate_argnums=(0,), static_argnames=("sharding",))
def _set_slot(tree, i, value, *, sharding):
    """`tree` (leading axis `[E]`) with slot i set to `value` (leading axis `[1]`)."""
    out = jax.tree.map(lambda a, b: a.at[i].set(b[0]), tree, value)
    return jax.lax.with_sharding_constraint(out, sharding)


@functools.partial(jax.jit, static_argnames=("config",))
def _summary(state: search.SearchState, config: search.SearchConfig):
    """What the host reads after each call: small per-experiment arrays."""
    pop = state.population
    f = pop.fitness
    return dict(
        finished=search.finished(state, config),
        individuals=pop.num_individuals,
        fitness=jnp.stack([jnp.sum(f, -1), jnp.sum(f * f, -1), jnp.max(f, -1)], -1),
        counters=jnp.stack([getattr(state.counters, k) for k in COUNTER_FIELDS[:-1]], -1).astype(
            jnp.uint32
        ),
        train_steps=state.counters.train_steps,
    )


def _counter_totals(summary, slots) -> np.ndarray:
    """int64 [len(COUNTER_FIELDS)]: the counters of the given slots, summed."""
    small = np.asarray(summary["counters"], np.int64)[slots].sum(0)
    steps = wide.to_int(np.asarray(summary["train_steps"])[slots]).sum()
    return np.concatenate([small, [steps]])


class _Driver:
    """One `run`: the device search state and the host's bookkeeping between calls."""

    def __init__(self, exp: Experiment, workdir: str, log, deadline, metrics, progress_bar):
        self.exp, self.workdir, self.log, self.deadline = exp, workdir, log, deadline
        self.metrics, self.bar = metrics, None
        if progress_bar:
            from tqdm.auto import tqdm  # Only for interactive use.

            budget = exp.run.max_experiments * exp.search.max_train_steps
            self.bar = tqdm(total=budget or None, unit=" steps" if budget else " indiv")
            if log is print:  # Printed lines go above the bar.
                self.log = self.bar.write
        self.ckpt_path = os.path.join(workdir, "checkpoint.npz")
        search_cfg = {k: v for k, v in exp.config.items() if k not in RUNTIME_FIELDS}
        for c in program_lib.COMPONENTS:  # Names or ids: the same op lists.
            search_cfg[f"{c}_ops"] = list(ops_lib.op_ids(exp.config[f"{c}_ops"]))
        self.metadata = {
            "format": CHECKPOINT_FORMAT,
            "config": json.loads(json.dumps(search_cfg, default=list)),
        }
        E = exp.run.parallel_experiments
        self.mesh = experiment_mesh(E)
        self.sharding = NamedSharding(self.mesh, PartitionSpec(runtime.PROGRAMS_AXIS))
        self.runner = search.runner(exp.search, self.mesh)
        self.jsonl = open(os.path.join(workdir, "log.jsonl"), "a")  # noqa: SIM115
        self.slot_started: dict[int, float] = {}
        # Wall seconds in the device search calls (dispatch to results) and in select/final
        # scoring (tasks included); the rest of a run is the host's.
        self.seconds = {"search": 0.0, "scoring": 0.0}

    def emit(self, kind: str, **fields):
        record = {"event": kind, **fields}
        self.jsonl.write(json.dumps(record, default=float) + "\n")
        self.jsonl.flush()
        if self.metrics is not None:
            self.metrics(json.loads(json.dumps(record, default=float)))

    def advance_bar(self, summary) -> None:
        """Moves the progress bar to the train steps (with a budget) or individuals so far."""
        running = np.flatnonzero(self.state.experiments >= 0)
        if self.bar.total:
            done = int(self.state.counters[-1]) + int(_counter_totals(summary, running)[-1])
        else:
            done = int(self.state.total_individuals + summary["individuals"][running].sum())
        self.bar.update(max(0, done - self.bar.n))

    # -- state -----------------------------------------------------------------------------

    def fresh(self, seed: int):
        exp, E = self.exp, self.exp.run.parallel_experiments
        like = self._search_template()
        self.search_state = jax.device_put(like._replace(active=np.zeros(E, bool)), self.sharding)
        self.tasks = self._empty_tasks()
        spec = exp.spec
        empty = Program(
            *(program_lib.empty_component(spec.component(c).size) for c in program_lib.COMPONENTS)
        )
        self.state = RunState(
            seed=np.int64(seed),
            started=np.int64(0),
            experiments=np.full(E, -1, np.int64),
            best_program=empty,
            best_select=np.float64(-1.0),
            total_individuals=np.int64(0),
            elapsed=np.float64(0.0),
            done=np.bool_(False),
            counters=np.zeros(len(COUNTER_FIELDS), np.int64),
        )

    def _search_template(self) -> search.SearchState:
        """An all-zero state of the right shapes (no compile: the slots are started later)."""
        keys = jax.random.split(jax.random.key(0), self.exp.run.parallel_experiments)
        shapes = jax.eval_shape(functools.partial(search.init, config=self.exp.search), keys)

        def zeros(s):
            if jax.dtypes.issubdtype(s.dtype, jax.dtypes.prng_key):
                return jax.random.wrap_key_data(
                    np.zeros(s.shape + jax.random.key_data(keys).shape[1:], np.uint32),
                    impl=jax.random.key_impl(keys),
                )
            return np.zeros(s.shape, s.dtype)

        return jax.tree.map(zeros, shapes)

    def _empty_tasks(self):
        taskset, _ = tasks.make_tasks(self.exp.search_tasks)
        E = self.exp.run.parallel_experiments
        zeros = jax.tree.map(lambda x: np.zeros((E,) + x.shape, np.float32), taskset)
        return jax.device_put(zeros, self.sharding)

    def save(self, t_start: float):
        """Checkpoints the run. Once it is done, the search state (caches and populations, most
        of a checkpoint's size: 100 MB for the demo) is no longer needed: it is saved zeroed and
        compressed, and the checkpoint shrinks to a few hundred KB."""
        state = self.state._replace(elapsed=np.float64(time.time() - t_start))
        search_state = jax.device_get(self.search_state)
        done = bool(state.done)
        if done:
            search_state = jax.tree.map(_zeroed, search_state)
        checkpoint_lib.save_checkpoint(
            self.ckpt_path, {"run": state, "search": search_state}, self.metadata, compress=done
        )

    def resume(self):
        """Loads the checkpoint written by a run of this same config (errors name the
        mismatch) and rebuilds the running experiments' tasks."""
        self.fresh(0)
        like = {"run": self.state, "search": self._search_template()}
        loaded, _ = checkpoint_lib.load_checkpoint(
            self.ckpt_path, like, expected_metadata=self.metadata
        )
        self.state = loaded["run"]
        self.search_state = jax.device_put(loaded["search"], self.sharding)
        for i, experiment in enumerate(self.state.experiments.tolist()):
            if experiment >= 0:
                self._set_tasks(i, experiment)

    def _set_tasks(self, i: int, experiment: int):
        search_spec, _ = _search_specs(self.exp, int(self.state.seed), experiment)
        taskset, _ = tasks.make_tasks(search_spec)
        one = jax.tree.map(lambda x: x[None], taskset)
        self.tasks = _set_slot(self.tasks, i, one, sharding=self.sharding)

    # -- experiments -----------------------------------------------------------------------

    def start_experiments(self) -> None:
        """Starts the next experiments in idle slots (while max_experiments allows)."""
        cap, state = self.exp.run.max_experiments, self.state
        experiments, started = state.experiments.copy(), int(state.started)
        for i in range(len(experiments)):
            if experiments[i] >= 0 or (cap and started >= cap):
                continue
            self._set_tasks(i, started)
            k_init = jax.random.split(_experiment_key(int(state.seed), started), 3)[2]
            one = search.init(k_init[None], self.exp.search)
            self.search_state = _set_slot(self.search_state, i, one, sharding=self.sharding)
            experiments[i] = started
            self.slot_started[i] = time.time()
            started += 1
        self.state = state._replace(experiments=experiments, started=np.int64(started))

    def finish(self, i: int, summary) -> None:
        """Scores slot i's candidate on its select tasks and frees the slot; sets `done` when
        the candidate is sufficient or no experiment is left."""
        exp, state = self.exp, self.state
        experiment = int(state.experiments[i])
        pop = jax.device_get(jax.tree.map(lambda x: x[i], self.search_state.population))
        candidate, search_fitness = jax.device_get(evolution.best_of_population(pop))
        prefix = f"Experiment {experiment}: " if len(state.experiments) > 1 else ""
        self.log(f"{prefix}Search fitness for candidate algorithm = {search_fitness:.6f}")
        _, select = _search_specs(exp, int(state.seed), experiment)
        k_select = jax.random.fold_in(_experiment_key(int(state.seed), experiment), 1)
        select_fitness = self._score(candidate, select, k_select)
        self.log(f"{prefix}Select fitness for candidate algorithm = {select_fitness:.6f}")
        counters = _counter_totals(summary, [i])
        individuals = int(summary["individuals"][i])
        self.emit(
            "experiment",
            experiment=experiment,
            search_fitness=float(search_fitness),
            select_fitness=select_fitness,
            individuals=individuals,
            counters=dict(zip(COUNTER_FIELDS, counters.tolist(), strict=True)),
        )
        if select_fitness >= float(state.best_select):
            state = state._replace(best_program=candidate, best_select=np.float64(select_fitness))
        experiments = state.experiments.copy()
        experiments[i] = -1
        active = _set_slot(self.search_state.active, i, np.zeros(1, bool), sharding=self.sharding)
        self.search_state = self.search_state._replace(active=active)
        sufficient, cap = exp.run.sufficient_fitness, exp.run.max_experiments
        done = (sufficient > 0 and float(state.best_select) > sufficient) or (
            cap > 0 and int(state.started) >= cap and (experiments < 0).all()
        )
        self.state = state._replace(
            experiments=experiments,
            total_individuals=np.int64(state.total_individuals + individuals),
            counters=state.counters + counters,
            done=np.bool_(done),
        )

    def abandon(self, summary) -> None:
        """Ends the still-running experiments unscored (the run is over); their work counts."""
        running = np.flatnonzero(self.state.experiments >= 0)
        self.state = self.state._replace(
            experiments=np.full_like(self.state.experiments, -1),
            total_individuals=np.int64(
                self.state.total_individuals + np.asarray(summary["individuals"])[running].sum()
            ),
            counters=self.state.counters + _counter_totals(summary, running),
            done=np.bool_(True),
        )

    def _score(self, program: Program, spec: tasks.TaskSpec, key) -> float:
        t_score = time.perf_counter()
        groups = scoring.place_collection([tasks.make_tasks(spec)])
        fit = scoring.score(
            program_lib.stack([program]),
            groups,
            key,
            spec=self.exp.spec,
            max_abs_error=self.exp.search.evaluation.max_abs_error,
        )
        self.seconds["scoring"] += time.perf_counter() - t_score
        return float(evaluation.combine(fit, "mean")[0])

    # -- the loop --------------------------------------------------------------------------

    def run_individuals(self, summary) -> int:
        """The run's individuals: the ended experiments' and the running ones'. Progress counts
        these, so that it keeps its cadence when new experiments (at 0) replace ended ones."""
        running = np.asarray(summary["individuals"])[self.state.experiments >= 0]
        return int(self.state.total_individuals) + int(running.sum())

    def running_slots(self) -> int:
        return max(1, int((self.state.experiments >= 0).sum()))

    def progress_interval(self) -> int:
        """Individuals between progress lines: `progress_every` per running experiment, as the
        original prints every `progress_every` individuals of its one experiment."""
        return self.exp.run.progress_every * self.running_slots()

    def generations_until_progress(self, individuals: int, last_print: int) -> int:
        every = self.progress_interval()
        per_generation = self.exp.search.evolution.children_per_generation * self.running_slots()
        if not every:
            return 100
        left = last_print + every - individuals
        return int(min(MAX_GENERATIONS_PER_CALL, max(1, math.ceil(left / per_generation))))

    def progress(self, summary, t_start: float) -> None:
        """A progress line over the running experiments: their individuals, the fitness
        statistics of their populations together, and their work-avoidance counters summed."""
        running = np.flatnonzero(self.state.experiments >= 0)
        P = self.exp.search.evolution.population_size
        stats = np.asarray(summary["fitness"], np.float64)[running]
        mean = stats[:, 0].sum() / (P * len(running))
        variance = max(stats[:, 1].sum() / (P * len(running)) - mean * mean, 0.0)
        f = {"mean": mean, "stdev": math.sqrt(variance), "best": float(stats[:, 2].max())}
        counters = dict(
            zip(COUNTER_FIELDS, _counter_totals(summary, running).tolist(), strict=True)
        )
        elapsed = time.time() - t_start
        n = int(np.asarray(summary["individuals"])[running].sum())
        total = n + int(self.state.total_individuals)
        experiments = self.state.experiments[running].tolist()
        prefix = f"experiments={_span(experiments)}, " if len(self.state.experiments) > 1 else ""
        self.log(
            f"{prefix}indivs={n}, elapsed_secs={int(elapsed)}, mean={f['mean']:.6f}, "
            f"stdev={f['stdev']:.6f}, best fit={f['best']:.6f}, "
            f"indivs/s={total / max(elapsed, 1e-9):.0f}, "
            f"dedupe={counters['dedupe_hits']}, fec={counters['fec_hits']}, "
            f"early_stop={counters['early_stops']}, full={counters['full_evaluations']}"
        )
        self.emit(
            "progress",
            experiments=experiments,
            individuals=n,
            total_individuals=total,
            elapsed=elapsed,
            **f,
            **counters,
            experiment_individuals=np.asarray(summary["individuals"])[running].tolist(),
            experiment_best=stats[:, 2].tolist(),
            experiment_mean=(stats[:, 0] / P).tolist(),
        )

    def loop(self, t_start: float, stop: threading.Event) -> None:
        exp = self.exp
        last_print, last_ckpt = -(10**18), time.time()
        summary = jax.device_get(_summary(self.search_state, exp.search))
        while not bool(self.state.done):
            if stop.is_set():
                self.save(t_start)
                raise Interrupted(self.ckpt_path)
            new = int(self.state.started)
            self.start_experiments()
            if (self.state.experiments < 0).all():  # max_experiments have ended.
                self.state = self.state._replace(done=np.bool_(True))
                break
            if int(self.state.started) > new:
                summary = jax.device_get(_summary(self.search_state, exp.search))
            n = self.generations_until_progress(self.run_individuals(summary), last_print)
            t_call = time.perf_counter()
            self.search_state = self.runner(self.search_state, self.tasks, n)
            summary = jax.device_get(_summary(self.search_state, exp.search))
            self.seconds["search"] += time.perf_counter() - t_call
            if self.bar is not None:
                self.advance_bar(summary)
            every = self.progress_interval()
            if every and self.run_individuals(summary) >= last_print + every:
                last_print = self.run_individuals(summary)
                self.progress(summary, t_start)
            now = time.time()
            past_deadline = self.deadline is not None and now > self.deadline
            budget = exp.run.time_budget_secs
            ending = [
                i
                for i in np.flatnonzero(self.state.experiments >= 0).tolist()
                if summary["finished"][i]
                or past_deadline
                or (budget and now - self.slot_started.setdefault(i, now) > budget)
            ]
            for i in ending:
                self.finish(i, summary)
                if bool(self.state.done):
                    break
            if past_deadline or bool(self.state.done):
                self.abandon(summary)
                break
            # Every call boundary is a consistent state (a resumed run continues exactly), so
            # saving only every checkpoint_every_secs loses at most that much work.
            if time.time() - last_ckpt >= exp.run.checkpoint_every_secs:
                self.save(t_start)
                last_ckpt = time.time()

    def final(self, seconds: float) -> Result:
        state = self.state
        k_final = jax.random.fold_in(jax.random.key(int(state.seed)), 2**31 - 1)
        final = self._score(state.best_program, self.exp.final_tasks, k_final)
        self.log(f"Final evaluation fitness (on unseen data) = {final:.6f}")
        self.log("Algorithm found:")
        self.log(program_io.format_program(state.best_program))
        result = Result(
            final,
            float(state.best_select),
            state.best_program,
            int(state.started),
            int(state.total_individuals),
            seconds,
            dict(zip(COUNTER_FIELDS, state.counters.tolist(), strict=True)),
            dict(self.seconds),
        )
        self.emit(
            "final",
            final_fitness=final,
            select_fitness=result.select_fitness,
            experiments=result.experiments,
            individuals=result.individuals,
            seconds=seconds,
            counters=result.counters,
            timings=result.timings,
        )
        return result


def run(
    exp: Experiment,
    *,
    workdir: str,
    log: Callable[[str], None] = print,
    deadline: float | None = None,
    metrics: Callable[[dict], None] | None = None,
    progress_bar: bool = False,
) -> Result:
    """Runs (or resumes, from workdir/checkpoint.npz) the experiments; writes results to workdir.

    log: receives the printed lines (progress every `progress_every` individuals, experiment
      results, the final evaluation and program).
    deadline: optional `time.time()` after which the running experiments end unscored and no
      further experiment starts (a benchmark's cap; like time_budget_secs, it makes a run
      timing-dependent).
    metrics: receives every record written to log.jsonl, as a dict ("event": "progress",
      "experiment" or "final", and its fields).
    progress_bar: show a tqdm bar, over train steps when max_experiments and max_train_steps
      bound them (with an ETA), else over individuals.
    """
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(exp.config, f, indent=2, default=list)
    driver = _Driver(exp, workdir, log, deadline, metrics, progress_bar)
    checkpoint_lib.remove_stale_temporaries(driver.ckpt_path)
    seed = exp.run.random_seed or int(time.time_ns() % (2**31 - 1)) or 1
    if os.path.exists(driver.ckpt_path):
        try:
            driver.resume()
        except BaseException:  # A refused checkpoint: close the log before the error goes up.
            driver.jsonl.close()
            if driver.bar is not None:
                driver.bar.close()
            raise
        seed = int(driver.state.seed)
        if bool(driver.state.done):
            log(
                f"{driver.ckpt_path}: this run has finished; its final evaluation follows "
                "(start over with --fresh or another --workdir)"
            )
        else:
            running = driver.state.experiments[driver.state.experiments >= 0].tolist()
            log(f"Resumed from {driver.ckpt_path}: experiment {_span(running)}")
    else:
        driver.fresh(seed)
    log(f"Random seed = {seed}")
    t_start = time.time() - float(driver.state.elapsed)
    try:
        with _stop_requests() as stop:
            driver.loop(t_start, stop)
            driver.save(t_start)
        result = driver.final(time.time() - t_start)
    finally:
        driver.jsonl.close()
        if driver.bar is not None:
            driver.bar.close()
    _write_outputs(workdir, result)
    return result


def _zeroed(x):
    """Zeros like `x`; a typed key array stays (it is small and has no zero)."""
    return x if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else np.zeros_like(x)


def _span(experiments) -> str:
    if len(experiments) == 1:
        return str(experiments[0])
    return f"{min(experiments)}-{max(experiments)}" if experiments else "none"


def _write_outputs(workdir: str, result: Result) -> None:
    program_io.save_program(os.path.join(workdir, "best_program.txt"), result.program)
    program_io.save_program(os.path.join(workdir, "best_program.json"), result.program)
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(
            {k: v for k, v in result._asdict().items() if k != "program"},
            f,
            indent=2,
            default=float,
        )
