"""The experiment driver: repeated searches, select and final evaluation (REFERENCE.md §7.4).

Per experiment: optionally fresh task seeds, a new FEC cache, a search (regularized evolution or
random search) until `max_train_steps` (counted as the original counts them: every child's FEC
fingerprint run and each missed task's full run, step by step; children the search scores without
running are charged what the original would have run, see `azjax.evaluator.Counters`), then the
best individual of the final population is scored on the select tasks; the best across experiments
(later ones win ties) goes to the final evaluation on unseen tasks. Everything random flows from
`random_seed` through `jax.random` keys, and the whole state is checkpointed atomically at
generation boundaries, so a killed run resumes exactly.

`parallel_experiments` = E > 1 runs E experiments at a time in lockstep (see `run`); E = 1 is the
original's one after another.
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
CHECKPOINT_FORMAT = "azjax.search/3"  # 2: one FEC cache key per program; 3: parallel slots
_COUNTER_FIELDS = tuple(f.name for f in dataclasses.fields(evaluator_lib.Counters))


class Slot(NamedTuple):
    """One of the `parallel_experiments` experiments running at a time."""

    experiment: np.ndarray  # int64 []: its index; -1 = idle (no experiment left to start).
    population: evolution.PopulationState


class RunState(NamedTuple):
    """The driver's checkpointed state between generations."""

    seed: np.ndarray  # int64 []: the resolved random seed.
    started: np.ndarray  # int64 []: experiments started so far (the next one's index).
    slots: tuple[Slot, ...]  # parallel_experiments of them.
    best_program: Program  # best candidate so far, by select fitness.
    best_select: np.ndarray  # float64 []; -1 before the first experiment ends.
    total_individuals: np.ndarray  # int64 []: of ended experiments.
    elapsed: np.ndarray  # float64 []: wall seconds spent, across resumes (reporting only).
    done: np.ndarray  # bool []: every experiment has ended; only the final evaluation remains.
    counters: np.ndarray  # int64 [len(Counters)]: work-avoidance counters of ended experiments.


class Result(NamedTuple):
    final_fitness: float
    select_fitness: float
    program: Program
    experiments: int  # started (with parallel_experiments > 1, some may have been cut short)
    individuals: int  # of every experiment started
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

    With `parallel_experiments` = E > 1, E experiments run at a time in lockstep (one generation
    each per step, their evaluations merged into shared VM calls, `ConcurrentEvaluator`); a slot
    whose experiment ends starts the next one. Each experiment's search is the one it would be
    on its own (its keys and tasks depend only on the seed and its index). The run ends when an
    ended experiment's select fitness exceeds `sufficient_fitness`, abandoning the others
    (counted in the individuals and counters), or when `max_experiments` have ended.

    deadline: optional `time.time()` after which the running experiments' searches end and no
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
    if os.path.exists(ckpt_path):
        state, evaluators = _resume(exp, ckpt_path, metadata)
        seed = int(state.seed)
        if bool(state.done):
            log(
                f"{ckpt_path}: this run has finished; its final evaluation follows "
                "(start over with --fresh or another --workdir)"
            )
        else:
            running = [int(s.experiment) for s in state.slots if int(s.experiment) >= 0]
            log(
                f"Resumed from {ckpt_path}: experiment {_span(running)}, "
                f"{sum(_individuals(state))} individuals"
            )
    else:
        state = _fresh_state(exp, seed)
        evaluators = [None] * len(state.slots)
    log(f"Random seed = {seed}")
    t_start = time.time() - float(state.elapsed)
    last_ckpt = time.time()
    t_exp = {}  # slot -> wall time its experiment started (or resumed), for time_budget_secs

    def save(st: RunState, evs):
        st = st._replace(elapsed=np.float64(time.time() - t_start))
        arrays = {
            f"{i}/{k}": v
            for i, ev in enumerate(evs)
            for k, v in (ev or _placeholder_evaluator(exp)).state_arrays().items()
        }
        checkpoint_lib.save_checkpoint(ckpt_path, {"run": st, "evaluator": arrays}, metadata)

    together, last_print = None, -1
    stop_at = float(cfg["stop_search_at_fitness"])
    max_steps = int(cfg["max_train_steps"])
    while not bool(state.done):
        state, evaluators, new = _start_experiments(exp, state, evaluators)
        if new or together is None:
            together = evaluator_lib.ConcurrentEvaluator(
                [ev or _placeholder_evaluator(exp, exp_tasks=True) for ev in evaluators]
            )
        if new:
            populations = _initialize(exp, state, new, together, seed)
            state = state._replace(
                slots=tuple(
                    s._replace(population=populations.get(i, s.population))
                    for i, s in enumerate(state.slots)
                )
            )
        now = time.time()
        for i in new:
            t_exp[i] = now
        active = [i for i, s in enumerate(state.slots) if int(s.experiment) >= 0]
        if not active:  # max_experiments have ended.
            state = state._replace(done=np.bool_(True))
            break
        if sum(_individuals(state)) >= last_print + int(cfg["progress_every"]) or new:
            last_print = sum(_individuals(state))
            _print_progress(log, emit, state, evaluators, t_start)
        past_deadline = deadline is not None and now > deadline
        ending = []
        for i in active:
            pop = state.slots[i].population
            steps = evaluators[i].counters.train_steps
            if (
                past_deadline
                or (max_steps > 0 and steps >= max_steps)
                or (
                    cfg["time_budget_secs"]
                    and now - t_exp.setdefault(i, now) > cfg["time_budget_secs"]
                )
                or (stop_at and evolution.population_stats(pop)["best"] > stop_at)
            ):
                ending.append(i)
        for i in ending:
            state = _finish_experiment(exp, state, i, seed, evaluators[i], log, emit)
            evaluators[i] = None
            if bool(state.done):
                break
        if past_deadline or bool(state.done):
            state = _abandon(state, evaluators)._replace(done=np.bool_(True))
            break
        if ending:
            continue  # Start the next experiments in the freed slots before stepping.
        state = _step_together(exp, state, together, active)
        # Every iteration boundary is a consistent state (a resumed run continues exactly), so
        # saving only every checkpoint_every_secs loses at most that much work.
        if time.time() - last_ckpt >= cfg["checkpoint_every_secs"]:
            save(state, evaluators)
            last_ckpt = time.time()
    save(state, [None] * len(state.slots))
    result = _final(exp, state, time.time() - t_start, log, emit)
    _write_outputs(workdir, result)
    jsonl.close()
    return result


def _span(experiments) -> str:
    if len(experiments) == 1:
        return str(experiments[0])
    return f"{min(experiments)}-{max(experiments)}" if experiments else "none"


def _individuals(state: RunState) -> list[int]:
    """Individuals of ended experiments, then of each running one."""
    return [int(state.total_individuals)] + [
        int(s.population.num_individuals) for s in state.slots if int(s.experiment) >= 0
    ]


def _placeholder_evaluator(exp, exp_tasks=False):
    """An idle slot's evaluator: empty caches; with `exp_tasks`, on experiment 0's tasks (an
    idle slot still takes part in the stacked task sets, so the VM's shapes stay fixed)."""
    groups = _search_groups(exp, exp.search_tasks) if exp_tasks else []
    return evaluator_lib.SearchEvaluator(
        groups, config=exp.evaluator, baseline=exp.baseline, num_tasks=exp.search_tasks.num_tasks
    )


def _search_groups(exp, search_spec):
    return evaluator_lib.place_collection(
        [tasks.make_tasks(search_spec)],
        fec_num_train=exp.evaluator.fec_num_train,
        fec_num_valid=exp.evaluator.fec_num_valid,
    )


def _fresh_state(exp, seed) -> RunState:
    idle = Slot(experiment=np.int64(-1), population=_empty_population_state(exp))
    return RunState(
        seed=np.int64(seed),
        started=np.int64(0),
        slots=(idle,) * int(exp.config["parallel_experiments"]),
        best_program=idle.population.best_program,
        best_select=np.float64(-1.0),
        total_individuals=np.int64(0),
        elapsed=np.float64(0.0),
        done=np.bool_(False),
        counters=np.zeros(len(_COUNTER_FIELDS), np.int64),
    )


def _start_experiments(exp, state: RunState, evaluators):
    """Starts the next experiments in idle slots (while max_experiments allows); returns the
    state, the evaluators and the slots started (their populations still to be initialized)."""
    cap = int(exp.config["max_experiments"])
    slots, new, started = list(state.slots), [], int(state.started)
    for i, s in enumerate(slots):
        if int(s.experiment) >= 0 or (cap and started >= cap):
            continue
        search, _ = _search_specs(exp, int(state.seed), started)
        evaluators[i] = evaluator_lib.SearchEvaluator(
            _search_groups(exp, search), config=exp.evaluator, baseline=exp.baseline
        )
        slots[i] = s._replace(experiment=np.int64(started))
        new.append(i)
        started += 1
    return state._replace(slots=tuple(slots), started=np.int64(started)), evaluators, new


def _initialize(exp, state: RunState, new, together, seed) -> dict:
    """The initial populations of the slots in `new` (slot -> PopulationState), evaluated
    together."""
    parts, children, keys = {}, [None] * len(state.slots), [None] * len(state.slots)
    for i in new:
        k_init = jax.random.split(_experiment_key(seed, int(state.slots[i].experiment)), 3)[2]
        parts[i] = evolution.initial_programs(k_init, exp.evolution)
        children[i], keys[i] = parts[i][0], parts[i][1]
    fitness = together.evaluate(children, keys)
    return {
        i: evolution.from_evaluated(programs, fitness[i], key, exp.evolution)
        for i, (programs, _, key) in parts.items()
    }


def _step_together(exp, state: RunState, together, active) -> RunState:
    """One generation of every running experiment, their children evaluated together."""
    slots = list(state.slots)
    # Idle slots propose too (their children are dropped): one compiled shape for any number of
    # running experiments (each new count cost a trace and a compile of the vmapped mutation).
    proposed = evolution.propose([s.population for s in slots], exp.evolution)
    proposals = {i: proposed[i] for i in active}
    children = [proposals[i][0] if i in proposals else None for i in range(len(slots))]
    keys = [proposals[i][1] if i in proposals else None for i in range(len(slots))]
    fitness = together.evaluate(children, keys)
    for i, (kids, _, key) in proposals.items():
        pop = evolution.accept(slots[i].population, kids, fitness[i], key, exp.evolution)
        slots[i] = slots[i]._replace(population=pop)
    return state._replace(slots=tuple(slots))


def _finish_experiment(exp, state: RunState, i, seed, ev, log, emit) -> RunState:
    """Scores slot i's candidate on its select tasks and frees the slot; sets `done` when the
    candidate is sufficient or no experiment is left."""
    cfg, slot = exp.config, state.slots[i]
    experiment = int(slot.experiment)
    candidate, search_fitness = evolution.best_of_population(slot.population)
    prefix = f"Experiment {experiment}: " if len(state.slots) > 1 else ""
    log(f"{prefix}Search fitness for candidate algorithm = {search_fitness:.6f}")
    _, select = _search_specs(exp, seed, experiment)
    groups = evaluator_lib.place_collection([tasks.make_tasks(select)])
    k_select = jax.random.fold_in(_experiment_key(seed, experiment), 1)
    fit = evaluator_lib.score(
        program_lib.stack([candidate]), groups, k_select, config=exp.evaluator
    )
    select_fitness = float(evaluation.combine(fit, "mean")[0])
    log(f"{prefix}Select fitness for candidate algorithm = {select_fitness:.6f}")
    emit(
        "experiment",
        experiment=experiment,
        search_fitness=search_fitness,
        select_fitness=select_fitness,
        individuals=int(slot.population.num_individuals),
        counters=ev.counters.as_dict(),
    )
    if select_fitness >= float(state.best_select):
        state = state._replace(best_program=candidate, best_select=np.float64(select_fitness))
    state = _add_totals(state, slot, ev)
    slots = list(state.slots)
    slots[i] = slot._replace(experiment=np.int64(-1))
    sufficient = float(cfg["sufficient_fitness"])
    cap = int(cfg["max_experiments"])
    done = (sufficient > 0 and float(state.best_select) > sufficient) or (
        cap > 0 and int(state.started) >= cap and all(int(s.experiment) < 0 for s in slots)
    )
    return state._replace(slots=tuple(slots), done=np.bool_(done))


def _add_totals(state: RunState, slot: Slot, ev) -> RunState:
    counters = np.asarray([ev.counters.as_dict()[k] for k in _COUNTER_FIELDS], np.int64)
    return state._replace(
        total_individuals=np.int64(state.total_individuals + slot.population.num_individuals),
        counters=state.counters + counters,
    )


def _abandon(state: RunState, evaluators) -> RunState:
    """Ends the still-running experiments without scoring them (the run is over); their work
    counts in the totals."""
    slots = list(state.slots)
    for i, s in enumerate(slots):
        if int(s.experiment) >= 0:
            state = _add_totals(state, s, evaluators[i])
            slots[i] = s._replace(experiment=np.int64(-1))
    return state._replace(slots=tuple(slots))


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
        int(state.started),
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


def _print_progress(log, emit, state: RunState, evaluators, t_start):
    """A progress line over the running experiments: their individuals, the fitness statistics
    of their populations together, and their work-avoidance counters summed."""
    running = [i for i, s in enumerate(state.slots) if int(s.experiment) >= 0]
    f = evolution.fitness_stats(
        np.concatenate([state.slots[i].population.fitness for i in running])
    )
    counters = {
        k: sum(evaluators[i].counters.as_dict()[k] for i in running) for k in _COUNTER_FIELDS
    }
    elapsed = time.time() - t_start
    n = sum(_individuals(state)[1:])
    experiments = [int(state.slots[i].experiment) for i in running]
    prefix = f"experiments={_span(experiments)}, " if len(state.slots) > 1 else ""
    log(
        f"{prefix}indivs={n}, elapsed_secs={int(elapsed)}, mean={f['mean']:.6f}, "
        f"stdev={f['stdev']:.6f}, best fit={f['best']:.6f}, "
        f"indivs/s={sum(_individuals(state)) / max(elapsed, 1e-9):.0f}, "
        f"dedupe={counters['dedupe_hits']}, fec={counters['fec_hits']}, "
        f"early_stop={counters['early_stops']}, full={counters['full_evaluations']}"
    )
    emit(
        "progress",
        experiments=experiments,
        individuals=n,
        elapsed=elapsed,
        **f,
        **counters,
    )


def _empty_population_state(exp) -> evolution.PopulationState:
    """A population of NO_OP programs: an idle slot's, and the checkpoint template's."""
    spec, P = exp.spec, exp.evolution.population_size
    programs = Program(
        *(program_lib.empty_component(spec.component(c).size, (P,)) for c in program_lib.COMPONENTS)
    )
    return evolution.PopulationState(
        programs=programs,
        fitness=np.zeros(P),
        cursor=np.int64(0),
        key=jax.random.key(0),
        num_individuals=np.int64(0),
        generation=np.int64(0),
        best_program=program_lib.index(programs, 0),
        best_fitness=np.float64(0),
    )


def _resume(exp, path, metadata):
    """Loads a checkpoint written by `run` for this same config; errors name the mismatch.
    Returns the state and the running experiments' evaluators (None for idle slots)."""
    like_run = _fresh_state(exp, 0)
    like_ev = {
        f"{i}/{k}": v
        for i in range(len(like_run.slots))
        for k, v in _placeholder_evaluator(exp).state_arrays().items()
    }
    loaded, _ = checkpoint_lib.load_checkpoint(
        path, {"run": like_run, "evaluator": like_ev}, expected_metadata=metadata
    )
    state, evaluators = loaded["run"], []
    for i, slot in enumerate(state.slots):
        if int(slot.experiment) < 0:
            evaluators.append(None)
            continue
        search, _ = _search_specs(exp, int(state.seed), int(slot.experiment))
        ev = evaluator_lib.SearchEvaluator(
            _search_groups(exp, search), config=exp.evaluator, baseline=exp.baseline
        )
        prefix = f"{i}/"
        ev.load_state_arrays(
            {k[len(prefix) :]: v for k, v in loaded["evaluator"].items() if k.startswith(prefix)}
        )
        evaluators.append(ev)
    return state, evaluators


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
