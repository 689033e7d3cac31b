"""The experiment driver: repeated searches, select and final evaluation (REFERENCE.md §7.4).

Per experiment: optionally fresh task seeds, a new FEC cache, a search (regularized evolution or
random search) until `max_train_steps` (counted as the original counts them: every child's FEC
fingerprint run and each missed task's full run, step by step; children the search scores without
running are charged what the original would have run, see `azjax.evaluator.Counters`), then the
best individual of the final population is scored on the select tasks; the best across experiments
(later ones win ties) goes to the final evaluation on unseen tasks. Everything random flows from
`random_seed` through `jax.random` keys, and the whole state is checkpointed atomically at
generation boundaries, so a killed run resumes exactly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from azjax import checkpoint as checkpoint_lib
from azjax import evaluation, evolution, program_io, tasks
from azjax import evaluator as evaluator_lib
from azjax import program as program_lib
from azjax.config import Experiment
from azjax.program import Program

# Config fields that do not change the search's results; a resumed run may change them.
RUNTIME_FIELDS = ("checkpoint_every_secs", "progress_every", "chunk_size", "time_budget_secs")
CHECKPOINT_FORMAT = "azjax.search/2"  # 2: one FEC cache key per program
_COUNTER_FIELDS = tuple(f.name for f in dataclasses.fields(evaluator_lib.Counters))


class RunState(NamedTuple):
    """The driver's checkpointed state between generations."""

    seed: np.ndarray  # int64 []: the resolved random seed.
    experiment: np.ndarray  # int64 []: index of the current experiment.
    population: evolution.PopulationState
    steps_at_start: np.ndarray  # int64 []: evaluator train steps when this experiment began.
    best_program: Program  # best candidate so far, by select fitness.
    best_select: np.ndarray  # float64 []; -1 before the first experiment ends.
    total_individuals: np.ndarray  # int64 []
    elapsed: np.ndarray  # float64 []: wall seconds spent, across resumes (reporting only).
    done: np.ndarray  # bool []: every experiment has ended; only the final evaluation remains.
    counters: np.ndarray  # int64 [len(Counters)]: work-avoidance counters of ended experiments.


class Result(NamedTuple):
    final_fitness: float
    select_fitness: float
    program: Program
    experiments: int
    individuals: int
    seconds: float
    counters: dict[str, int]  # summed over experiments (evaluator_lib.Counters fields)


def _experiment_key(seed: int, experiment: int):
    return jax.random.fold_in(jax.random.key(seed), experiment)


def _search_specs(exp: Experiment, seed: int, experiment: int):
    """This experiment's search and select task specs (fresh seeds if randomize_task_seeds)."""
    k_search, k_select, _ = jax.random.split(_experiment_key(seed, experiment), 3)
    search, select = exp.search_tasks, exp.select_tasks
    if exp.config["randomize_task_seeds"]:
        search = tasks.randomize_seeds(k_search, search)
        select = tasks.randomize_seeds(k_select, select)
    return search, select


def run(
    exp: Experiment,
    *,
    workdir: str,
    log: Callable[[str], None] = print,
    deadline: float | None = None,
) -> Result:
    """Runs (or resumes, from workdir/checkpoint.npz) the experiments; writes results to workdir.

    deadline: optional `time.time()` after which the current experiment's search ends and no
    further experiment starts (a benchmark's cap; like time_budget_secs, it makes a run
    timing-dependent).
    """
    os.makedirs(workdir, exist_ok=True)
    cfg = exp.config
    ckpt_path = os.path.join(workdir, "checkpoint.npz")
    search_cfg = {k: v for k, v in cfg.items() if k not in RUNTIME_FIELDS}
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "config": json.loads(json.dumps(search_cfg, default=list)),
    }
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, default=list)
    jsonl = open(os.path.join(workdir, "log.jsonl"), "a")  # noqa: SIM115

    def emit(kind: str, **fields):
        jsonl.write(json.dumps({"event": kind, **fields}, default=float) + "\n")
        jsonl.flush()

    seed = int(cfg["random_seed"]) or int(time.time_ns() % (2**31 - 1)) or 1
    state, evaluator = None, None
    if os.path.exists(ckpt_path):
        state, evaluator = _resume(exp, ckpt_path, seed, metadata)
        seed = int(state.seed)
        if bool(state.done):
            log(
                f"{ckpt_path}: this run has finished; its final evaluation follows "
                "(start over with --fresh or another --workdir)"
            )
        else:
            log(
                f"Resumed from {ckpt_path}: experiment {int(state.experiment)}, "
                f"{int(state.population.num_individuals)} individuals"
            )
    log(f"Random seed = {seed}")
    t_start = time.time() - (float(state.elapsed) if state is not None else 0.0)
    last_ckpt = time.time()

    def save(st: RunState, ev):
        st = st._replace(elapsed=np.float64(time.time() - t_start))
        arrays = {k: v for k, v in ev.state_arrays().items()}
        checkpoint_lib.save_checkpoint(ckpt_path, {"run": st, "evaluator": arrays}, metadata)

    while state is None or not bool(state.done):
        if state is None or evaluator is None:  # A new experiment.
            experiment = 0 if state is None else int(state.experiment)
            state, evaluator = _start_experiment(exp, seed, experiment, state, log)
            save(state, evaluator)
        experiment = int(state.experiment)
        pop, t_exp = state.population, time.time()
        last_print = int(pop.num_individuals)
        _print_progress(log, emit, pop, evaluator, t_start, experiment)
        stop_at = float(cfg["stop_search_at_fitness"])
        while True:
            steps = evaluator.counters.train_steps - int(state.steps_at_start)
            if steps >= int(cfg["max_train_steps"]) and int(cfg["max_train_steps"]) > 0:
                break
            if cfg["time_budget_secs"] and time.time() - t_exp > cfg["time_budget_secs"]:
                break
            if deadline is not None and time.time() > deadline:
                break
            if stop_at and evolution.population_stats(pop)["best"] > stop_at:
                break
            pop = evolution.step(pop, evaluator.evaluate, exp.evolution)
            state = state._replace(population=pop)
            if int(pop.num_individuals) >= last_print + int(cfg["progress_every"]):
                last_print = int(pop.num_individuals)
                _print_progress(log, emit, pop, evaluator, t_start, experiment)
            if time.time() - last_ckpt >= cfg["checkpoint_every_secs"]:
                save(state, evaluator)
                last_ckpt = time.time()
        state, done = _finish_experiment(exp, state, seed, evaluator, log, emit)
        if done or (deadline is not None and time.time() > deadline):
            state = state._replace(done=np.bool_(True))
            save(state, _placeholder_evaluator(exp))
            break
        state = state._replace(experiment=np.int64(experiment + 1))
        evaluator = None
    result = _final(exp, state, time.time() - t_start, log, emit)
    _write_outputs(workdir, result)
    jsonl.close()
    return result


def _placeholder_evaluator(exp):
    return evaluator_lib.SearchEvaluator(
        [], config=exp.evaluator, baseline=exp.baseline, num_tasks=exp.search_tasks.num_tasks
    )


def _search_groups(exp, search_spec):
    return evaluator_lib.place_collection(
        [tasks.make_tasks(search_spec)],
        fec_num_train=exp.evaluator.fec_num_train,
        fec_num_valid=exp.evaluator.fec_num_valid,
    )


def _start_experiment(exp, seed, experiment, prev: RunState | None, log):
    search, _ = _search_specs(exp, seed, experiment)
    groups = _search_groups(exp, search)
    ev = evaluator_lib.SearchEvaluator(groups, config=exp.evaluator, baseline=exp.baseline)
    k_init = jax.random.split(_experiment_key(seed, experiment), 3)[2]
    pop = evolution.init(k_init, ev.evaluate, exp.evolution)
    if prev is None:
        prev = RunState(
            seed=np.int64(seed),
            experiment=np.int64(0),
            population=pop,
            steps_at_start=np.int64(0),
            best_program=pop.best_program,
            best_select=np.float64(-1.0),
            total_individuals=np.int64(0),
            elapsed=np.float64(0.0),
            done=np.bool_(False),
            counters=np.zeros(len(_COUNTER_FIELDS), np.int64),
        )
    return prev._replace(
        experiment=np.int64(experiment), population=pop, steps_at_start=np.int64(0)
    ), ev


def _finish_experiment(exp, state: RunState, seed, ev, log, emit):
    cfg, experiment = exp.config, int(state.experiment)
    candidate, search_fitness = evolution.best_of_population(state.population)
    log(f"Search fitness for candidate algorithm = {search_fitness:.6f}")
    _, select = _search_specs(exp, seed, experiment)
    groups = evaluator_lib.place_collection([tasks.make_tasks(select)])
    k_select = jax.random.fold_in(_experiment_key(seed, experiment), 1)
    fit = evaluator_lib.score(
        program_lib.stack([candidate]), groups, k_select, config=exp.evaluator
    )
    select_fitness = float(evaluation.combine(fit, "mean")[0])
    log(f"Select fitness for candidate algorithm = {select_fitness:.6f}")
    emit(
        "experiment",
        experiment=experiment,
        search_fitness=search_fitness,
        select_fitness=select_fitness,
        individuals=int(state.population.num_individuals),
        counters=ev.counters.as_dict(),
    )
    if select_fitness >= float(state.best_select):
        state = state._replace(best_program=candidate, best_select=np.float64(select_fitness))
    counters = np.asarray([ev.counters.as_dict()[k] for k in _COUNTER_FIELDS], np.int64)
    state = state._replace(
        total_individuals=np.int64(state.total_individuals + state.population.num_individuals),
        counters=state.counters + counters,
    )
    sufficient = float(cfg["sufficient_fitness"])
    done = (sufficient > 0 and float(state.best_select) > sufficient) or (
        int(cfg["max_experiments"]) > 0 and experiment + 1 >= int(cfg["max_experiments"])
    )
    return state, done


def _final(exp, state: RunState, seconds, log, emit) -> Result:
    groups = evaluator_lib.place_collection([tasks.make_tasks(exp.final_tasks)])
    k_final = jax.random.fold_in(jax.random.key(int(state.seed)), 2**31 - 1)
    fit = evaluator_lib.score(
        program_lib.stack([state.best_program]), groups, k_final, config=exp.evaluator
    )
    final = float(evaluation.combine(fit, "mean")[0])
    log(f"Final evaluation fitness (on unseen data) = {final:.6f}")
    log("Algorithm found:")
    log(program_io.format_program(state.best_program))
    result = Result(
        final,
        float(state.best_select),
        state.best_program,
        int(state.experiment) + 1,
        int(state.total_individuals),
        seconds,
        dict(zip(_COUNTER_FIELDS, state.counters.tolist(), strict=True)),
    )
    emit(
        "final",
        final_fitness=final,
        select_fitness=result.select_fitness,
        experiments=result.experiments,
        individuals=result.individuals,
        seconds=seconds,
        counters=result.counters,
    )
    return result


def _print_progress(log, emit, pop, ev, t_start, experiment):
    stats = evolution.population_stats(pop)
    elapsed = time.time() - t_start
    c = ev.counters
    n = int(pop.num_individuals)
    log(
        f"indivs={n}, elapsed_secs={int(elapsed)}, mean={stats['mean']:.6f}, "
        f"stdev={stats['stdev']:.6f}, best fit={stats['best']:.6f}, "
        f"indivs/s={n / max(elapsed, 1e-9):.0f}, dedupe={c.dedupe_hits}, fec={c.fec_hits}, "
        f"early_stop={c.early_stops}, full={c.full_evaluations}"
    )
    emit("progress", experiment=experiment, individuals=n, elapsed=elapsed, **stats, **c.as_dict())


def _resume(exp, path, seed, metadata):
    """Loads a checkpoint written by `run` for this same config; errors name the mismatch."""
    like_pop = evolution.PopulationState(
        programs=_empty_population(exp),
        fitness=np.zeros(exp.evolution.population_size),
        cursor=np.int64(0),
        key=jax.random.key(0),
        num_individuals=np.int64(0),
        generation=np.int64(0),
        best_program=program_lib.index(_empty_population(exp), 0),
        best_fitness=np.float64(0),
    )
    like_run = RunState(
        seed=np.int64(0),
        experiment=np.int64(0),
        population=like_pop,
        steps_at_start=np.int64(0),
        best_program=like_pop.best_program,
        best_select=np.float64(0),
        total_individuals=np.int64(0),
        elapsed=np.float64(0),
        done=np.bool_(False),
        counters=np.zeros(len(_COUNTER_FIELDS), np.int64),
    )
    like_ev = _placeholder_evaluator(exp).state_arrays()
    loaded, _ = checkpoint_lib.load_checkpoint(
        path, {"run": like_run, "evaluator": like_ev}, expected_metadata=metadata
    )
    state = loaded["run"]
    if bool(state.done):
        return state, None
    search, _ = _search_specs(exp, int(state.seed), int(state.experiment))
    groups = _search_groups(exp, search)
    ev = evaluator_lib.SearchEvaluator(groups, config=exp.evaluator, baseline=exp.baseline)
    ev.load_state_arrays(loaded["evaluator"])
    return state, ev


def _empty_population(exp) -> Program:
    spec, P = exp.spec, exp.evolution.population_size
    return Program(
        *(program_lib.empty_component(spec.component(c).size, (P,)) for c in program_lib.COMPONENTS)
    )


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
