"""Fitness of whole populations on task collections, chunked, sharded and with work avoidance.

`score` is the plain evaluation (REFERENCE.md §4.7): every program on every task, mean (or median)
over tasks. `SearchEvaluator` is what the search calls for each batch of children. It avoids work
in three stages, each counted:
  1. dead-code elimination (`azjax.pruning`) then structural dedupe: a child whose pruned program
     (and train budget) equals one already scored reuses that score;
  2. FEC as the original (§8): a cheap first VM pass on the first 10 train + 10 valid examples of
     each task gives a fingerprint per (program, task); a program whose fingerprints on all tasks
     equal a cached program's reuses its fitness (one cache key per program, see `__init__`);
  3. only the remaining children get the full evaluation.
Both caches are LRU with the original's forget rule (`azjax.fec.FECCache`), so noisy (random-op)
programs are re-evaluated every `forget_every` hits.

VM calls run on fixed-shape chunks of programs (padded with NO_OP programs, power-of-two buckets,
so compiles stay few), each split over the devices of a 1-D mesh with `shard_map`.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from azjax import budget as budget_lib
from azjax import evaluation, fec, program_io, pruning, runtime, vm
from azjax import ops as ops_lib
from azjax import program as program_lib
from azjax.program import Program, ProgramSpec
from azjax.tasks import TaskInfo, TaskSet

FEC_SEED = 235732282  # The original re-seeds its FEC generator to this before every fingerprint.


@dataclasses.dataclass(frozen=True)
class EvaluatorConfig:
    """Static evaluation settings.

    fec_num_train / fec_num_valid: FEC fingerprint examples per task (0 disables FEC).
    budget_factor: the train budget's threshold factor (used when a baseline program is given).
    chunk_size: programs per device and VM call at most (lanes = programs x tasks; ~2-4k lanes is
      the sweet spot on CPU, VM_DESIGN.md §4.1); calls are also capped by memory, see
      `programs_per_call`.
    """

    spec: ProgramSpec
    max_abs_error: float = evaluation.MAX_ABS_ERROR
    combination: str = "mean"
    fec_num_train: int = 10
    fec_num_valid: int = 10
    fec_cache_size: int = 100_000
    fec_forget_every: int = 100
    dedupe: bool = True
    budget_factor: float = 2.0
    chunk_size: int = 256

    def __post_init__(self):
        if self.combination not in ("mean", "median"):
            raise ValueError(f"combination must be 'mean' or 'median', got {self.combination!r}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.fec_num_train < 0 or self.fec_num_valid < 0:
            raise ValueError("fec_num_train and fec_num_valid must be >= 0")


class TaskGroup(NamedTuple):
    """One task spec's tasks, replicated on the mesh, with their positions in the collection.

    `fec_tasks` are the same tasks cut to the FEC fingerprint's first examples (None: no FEC).
    """

    tasks: TaskSet
    fec_tasks: TaskSet | None
    info: TaskInfo
    index: np.ndarray  # int [T]: task indices within the collection (FEC keys include them).
    mesh: Mesh


def place_collection(collection, *, mesh=None, fec_num_train=0, fec_num_valid=0) -> list[TaskGroup]:
    """Replicates each (TaskSet, TaskInfo) of a collection on the mesh and numbers its tasks."""
    mesh = runtime.program_mesh() if mesh is None else mesh
    groups, start = [], 0
    for tasks, info in collection:
        fec = None
        if fec_num_train:
            fec = runtime.replicate(
                tasks._replace(
                    x_train=tasks.x_train[:, :fec_num_train],
                    y_train=tasks.y_train[:, :fec_num_train],
                    x_valid=tasks.x_valid[:, :fec_num_valid],
                    y_valid=tasks.y_valid[:, :fec_num_valid],
                ),
                mesh,
            )
        index = np.arange(start, start + info.num_tasks)
        groups.append(TaskGroup(runtime.replicate(tasks, mesh), fec, info, index, mesh))
        start += info.num_tasks
    return groups


# Lanes x memory floats per device and VM call at most, so that the slot loop's working set (the
# memory and one instruction's candidates) stays in a core's caches. Measured on one core of the
# 2-core machine, T = 10: the full op set (S/V/M 4/3/2, F = 4: 48 floats per lane) ran at 301
# cand/s in calls of 256 programs, 416 in calls of 128 and 432 in calls of 64; the demo's memory
# (32 floats per lane) is flat from 128 to 256 programs and slower at 512.
LANE_FLOATS = 96 * 1024


def programs_per_call(config: EvaluatorConfig, num_tasks: int, feature_size: int) -> int:
    """Programs per device and VM call: `config.chunk_size`, lowered to a power of 2 that keeps
    lanes x memory floats per lane within `LANE_FLOATS` (at least 1)."""
    spec, F = config.spec, feature_size
    floats = spec.num_scalars + spec.num_vectors * F + spec.num_matrices * F * F
    fit = max(1, LANE_FLOATS // (num_tasks * floats))
    return min(config.chunk_size, 1 << (fit.bit_length() - 1))


def _bucket(n: int, chunk_size: int) -> int:
    """Programs per device per VM call for n programs: a power of 2, at most chunk_size.

    Few distinct shapes keep compiles few (and the persistent cache keeps them across runs).
    """
    size = 1
    while size < min(n, chunk_size):
        size *= 2
    return min(size, chunk_size)


@functools.cache
def _sharded_evaluate(mesh: Mesh, spec, eval_type, epoch_size, max_abs_error, record, stacked):
    """`evaluation.evaluate_lanes` over a population split along the mesh's program axis.

    `shard_map`: each device scores its own programs on all tasks; no communication, one compile.
    `stacked`: the tasks hold one set per concurrent experiment, picked per program by task ids.
    """
    fn = functools.partial(
        evaluation.evaluate_lanes,
        spec=spec,
        eval_type=eval_type,
        epoch_size=epoch_size,
        max_abs_error=max_abs_error,
        record=record,
    )
    split, whole = PartitionSpec(runtime.PROGRAMS_AXIS), PartitionSpec()
    in_specs = (split, whole, split) + ((split,) if stacked else ())
    cpu = mesh.devices.flat[0].platform == "cpu"
    return jax.jit(
        jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=split, check_vma=False),
        compiler_options=vm.COMPILER_OPTIONS if cpu else None,  # XLA:CPU options.
    )


def run_chunked(
    population: Program, group: TaskGroup, seeds, *, config, fec=False, task_ids=None
) -> evaluation.LaneResult:
    """`evaluation.evaluate_lanes` over a population of any size, in padded fixed-shape chunks.

    Each chunk is split over the mesh's devices (one CPU device per core, see azjax.runtime).
    `fec`: run the FEC fingerprint pass (the first examples only, recording errors).
    seeds: uint32 `[P, T]`. task_ids: int `[P]` for a stacked group (`stack_groups`).
    Returns numpy arrays `[P, T]` (and `[P, T, n]` records).
    """
    return dispatch_chunked(population, group, seeds, config=config, fec=fec, task_ids=task_ids)()


def dispatch_chunked(
    population: Program, group: TaskGroup, seeds, *, config, fec=False, task_ids=None
):
    """`run_chunked` without waiting: the VM calls are dispatched (JAX runs them asynchronously)
    and the returned function waits for them and gives `run_chunked`'s result."""
    P, info = program_lib.population_size(population), group.info
    tasks = group.fec_tasks if fec else group.tasks
    epoch_size = config.fec_num_train if fec else info.epoch_size
    chunk = programs_per_call(config, info.num_tasks, tasks.x_train.shape[-1])
    # Calls under MIN_LANES lanes per device cost their fixed overhead anyway: padding them up
    # saves the compiles of the smallest shapes (a cold demo run compiled 6 of them).
    smallest = _bucket(-(-MIN_LANES // info.num_tasks), chunk)
    if task_ids is not None:
        # Merged calls of concurrent experiments are large; fewer shapes (each costs a trace and
        # a lowering in every process, even with the compile cache warm) beat tighter padding.
        smallest = max(smallest, chunk // 4)
    sizes = [group.mesh.size * b for b in _chunk_sizes(P, group.mesh.size, chunk, smallest)]
    pad = sum(sizes) - P

    def padded(x):
        x = np.asarray(x)
        return np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])

    args = [jax.tree_util.tree_map(padded, population), padded(np.asarray(seeds, np.uint32))]
    if task_ids is not None:
        args.append(padded(np.asarray(task_ids, np.int32)))
    evaluate = _sharded_evaluate(
        group.mesh,
        config.spec,
        info.eval_type,
        epoch_size,
        config.max_abs_error,
        fec,
        task_ids is not None,
    )
    outs = [evaluate(chunk[0], tasks, *chunk[1:]) for chunk in _split(args, sizes)]
    return lambda: jax.tree_util.tree_map(
        lambda *xs: np.concatenate([np.asarray(x) for x in xs])[:P], *outs
    )


# A VM call's fixed cost (loop and kernel overheads) in programs per device: measured on the demo,
# a call on n programs per device costs about as much as CALL_COST + n programs' lanes.
CALL_COST = 16
MIN_LANES = 64  # Per device and call; below this a call is all overhead.


def _chunk_sizes(n: int, num_devices: int, chunk_size: int, smallest: int = 1) -> list[int]:
    """Programs per device of each VM call for n programs (each a `_bucket` size >= smallest).

    Full chunks first; a remainder that would leave the last call mostly padding is split off
    into a smaller call when that is cheaper by the `CALL_COST` model (e.g. 137 programs on 2
    devices: calls of 128 and 16 program slots instead of one of 256).
    """
    sizes, left = [], n
    while left > 0:
        size = max(smallest, _bucket(-(-left // num_devices), chunk_size))
        half = size // 2
        if num_devices * size > left and half >= smallest and num_devices * half < left:
            rest = _bucket(-(-(left - num_devices * half) // num_devices), chunk_size)
            if 2 * CALL_COST + half + max(smallest, rest) < CALL_COST + size:
                size = half
        sizes.append(size)
        left -= num_devices * size
    return sizes


def train_counts(population: Program, group: TaskGroup, baseline: Program | None, factor: float):
    """Training examples each program gets on this group: all, or 0 when over the train budget."""
    n = group.info.epoch_size * group.info.num_train_epochs
    if baseline is None:
        return np.full(program_lib.population_size(population), n, np.int64)
    return np.asarray(budget_lib.train_examples(population, baseline, n, factor), np.int64)


def score(population: Program, groups, key, *, config: EvaluatorConfig, baseline=None, check=True):
    """Full evaluation, no caches: per-task fitness `[P, T_total]` (numpy). The key is consumed.

    `check`: validate the programs first (a clear `ProgramError` for bad opcodes, addresses or
    shapes instead of undefined VM behaviour); the search skips it for its own children.
    """
    if check:
        program_io.validate(population, config.spec, batched=True)
    return _score(population, groups, key, config=config, baseline=baseline)[0]


class VMRequest(NamedTuple):
    """A VM pass an evaluation needs: `programs` on `groups[group]` (the FEC pass if `fec`)."""

    programs: Program
    group: int
    seeds: np.ndarray  # uint32 [P, T]
    fec: bool


def drive(steps, groups, config: EvaluatorConfig):
    """Runs a generator of `VMRequest`s (`SearchEvaluator.steps`) to its return value, each
    request in its own `run_chunked` call (`ConcurrentEvaluator` merges several instead)."""
    try:
        request = next(steps)
        while True:
            result = run_chunked(
                request.programs,
                groups[request.group],
                request.seeds,
                config=config,
                fec=request.fec,
            )
            request = steps.send(result)
    except StopIteration as stop:
        return stop.value


def _score(population: Program, groups, key, *, config: EvaluatorConfig, baseline=None):
    """`score` without the check, also returning the training steps executed `[P, T_total]`."""
    steps = _score_steps(population, groups, key, baseline=baseline, factor=config.budget_factor)
    return drive(steps, groups, config)


def _score_steps(population: Program, groups, key, *, baseline, factor: float):
    """`_score` as a generator of `VMRequest`s (see `drive`)."""
    P = program_lib.population_size(population)
    fitness, steps = [], []
    for j, group in enumerate(groups):
        seeds = evaluation.lane_seeds(key, P, group.info.num_tasks, stream=j)
        counts = train_counts(population, group, baseline, factor)
        fit = np.zeros((P, group.info.num_tasks))
        done = np.zeros((P, group.info.num_tasks), np.int64)
        run = np.flatnonzero(counts > 0)
        if run.size:
            result = yield VMRequest(program_lib.index(population, run), j, seeds[run], False)
            fit[run], done[run] = result.fitness, result.train_steps
        fitness.append(fit)
        steps.append(done)
    return np.concatenate(fitness, axis=1), np.concatenate(steps, axis=1)


class Prepared(NamedTuple):
    """`SearchEvaluator.prepare`'s output for K children."""

    counts: np.ndarray  # int [K, G]: training examples per task group (0 = over the budget).
    programs: Program  # [K]: pruned when dedupe is on, else the children.
    hashes: np.ndarray | None  # uint64 [K]: structural hashes of the pruned programs.


@dataclasses.dataclass
class Counters:
    """What each work-avoidance stage saved, and `train_steps`: the training steps the original
    would have spent on the same children (REFERENCE.md §4.2, §8.2), which the experiment's
    max_train_steps budget is measured in.

    The original runs the FEC fingerprint on every child and the full evaluation on each missed
    task, counting each executed step (up to and including an early-stopping one). Children the
    search never runs are charged what the original would have run: a dedupe hit its fingerprint
    run at full length (or, without FEC, its full training), an early-stop shortcut the steps its
    fingerprint run took (the full run stops at the same step).
    """

    children: int = 0
    dedupe_hits: int = 0
    budget_rejected: int = 0
    fec_hits: int = 0
    early_stops: int = 0
    full_evaluations: int = 0
    train_steps: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class SearchEvaluator:
    """Scores batches of children with DCE + dedupe, FEC and full evaluation (module docstring).

    Holds the two host-side LRU caches and the counters: mutable by design, like the original's
    FECCache; `state_arrays` / `load_state_arrays` make it part of a checkpoint.
    """

    def __init__(
        self, groups, *, config: EvaluatorConfig, baseline: Program | None = None, num_tasks=None
    ):
        """`num_tasks`: tasks per program, for sizing the FEC cache (default: the groups'; a
        placeholder without groups, e.g. a checkpoint template, passes it)."""
        for g in groups:
            if config.fec_num_train and g.fec_tasks is None:
                raise ValueError(
                    "FEC is on: place the search tasks with place_collection(..., "
                    "fec_num_train=..., fec_num_valid=...)"
                )
            if config.fec_num_train and g.info.epoch_size < config.fec_num_train:
                raise ValueError(
                    f"FEC needs {config.fec_num_train} training examples per task, but a search "
                    f"task spec has only {g.info.epoch_size}"
                )
        self.groups, self.config, self.baseline = groups, config, baseline
        self.structural = fec.FECCache(config.fec_cache_size, config.fec_forget_every)
        # Deviation (README): the FEC cache is keyed per program, by the fingerprints of all its
        # tasks, not per (program, task). A program hits when it would hit on every task, which
        # is how the original's per-task entries are used but for rare partial hits (~1% of
        # lookups in the demo; those now get a full evaluation); cache_size still counts
        # (program, task) fingerprints, so the cache remembers as many programs as the original's.
        # One key instead of T cuts the host's cache work T-fold.
        per_program = self.num_tasks if num_tasks is None else num_tasks
        self.fec = fec.FECCache(
            max(2, config.fec_cache_size // max(1, per_program)), config.fec_forget_every
        )
        self.counters = Counters()

    @property
    def num_tasks(self) -> int:
        return sum(g.info.num_tasks for g in self.groups)

    def evaluate(self, children: Program, key) -> np.ndarray:
        """Combined fitness `[K]` of K children (numpy). The key is consumed."""
        return drive(self.steps(children, key), self.groups, self.config)

    def prepare(self, children: Program) -> Prepared:
        """The per-child work that needs no cache: train counts, and with dedupe the pruned
        programs and their structural hashes. `ConcurrentEvaluator` does it once for all
        experiments' children (they share config, baseline and task shapes)."""
        cfg = self.config
        counts = np.stack(
            [train_counts(children, g, self.baseline, cfg.budget_factor) for g in self.groups], 1
        )
        if not cfg.dedupe:
            return Prepared(counts, children, None)
        pruned = pruning.prune(children, cfg.spec)
        return Prepared(counts, pruned, pruning.program_hashes(pruned, train_counts=counts))

    def steps(self, children: Program, key, prepared: Prepared | None = None):
        """`evaluate` as a generator of `VMRequest`s (see `drive`, `ConcurrentEvaluator`);
        `prepared`: `prepare(children)` when the caller has it."""
        cfg, K = self.config, program_lib.population_size(children)
        counts, programs, hashes = self.prepare(children) if prepared is None else prepared
        self.counters.children += K
        fitness = np.zeros(K)
        todo = np.flatnonzero(counts.sum(1) > 0)
        self.counters.budget_rejected += K - todo.size
        self.counters.train_steps += (K - todo.size) * self.num_tasks * cfg.fec_num_train
        if todo.size == 0:
            return fitness
        candidates = program_lib.index(programs, todo)
        if cfg.dedupe:
            hashes = hashes[todo]
            hit, cached = self.structural.lookup(hashes)
            fitness[todo[hit]] = cached[hit]
            first, inverse = fec.unique_misses(hashes, hit)
            repeat = np.ones(todo.size, bool)
            repeat[first] = False
            self.counters.dedupe_hits += int(repeat.sum())
            self.counters.train_steps += int(self._unrun_steps(counts[todo[repeat]]).sum())
            values = yield from self._evaluate_unique(
                program_lib.index(candidates, first), counts[todo[first]], key, pruned=True
            )
            fitness[todo[~hit]] = values[inverse]
            self.structural.insert(hashes[first], values)
        else:
            fitness[todo] = yield from self._evaluate_unique(candidates, counts[todo], key)
        return fitness

    def _unrun_steps(self, counts) -> np.ndarray:
        """Steps `[n]` charged for n children scored without running (`Counters`)."""
        if self.config.fec_num_train:
            return np.full(len(counts), self.num_tasks * self.config.fec_num_train, np.int64)
        sizes = [g.info.num_tasks for g in self.groups]
        return (np.asarray(counts, np.int64) * np.asarray(sizes, np.int64)).sum(1)

    def _evaluate_unique(self, programs: Program, counts, key, pruned=False) -> np.ndarray:
        """FEC then full evaluation of distinct programs; combined fitness `[U]`.

        The programs run pruned and, where no random op makes slot positions matter, compacted
        and sorted by length, so each VM chunk stops at its longest live component.
        """
        cfg = self.config
        if program_lib.population_size(programs) == 0:
            return np.zeros(0)
        if not pruned:
            programs = pruning.prune(programs, cfg.spec)
        programs, order = compact(programs, cfg.spec)
        counts = counts[order]
        fitness = np.empty(len(order))
        fitness[order] = yield from self._evaluate_sorted(programs, counts, key)
        return fitness

    def _evaluate_sorted(self, programs: Program, counts, key) -> np.ndarray:
        cfg = self.config
        U, T = program_lib.population_size(programs), self.num_tasks
        per_task = np.zeros((U, T))
        hit, cached = np.zeros(U, bool), np.zeros(U)
        need = np.ones((U, T), bool)
        if cfg.fec_num_train:
            prints, stopped, fec_steps = yield from self._fingerprints(programs, counts)
            keys = fec.hash_rows(prints, seed=fec.FEC_SEED)  # One key per program: see __init__.
            hit, cached = self.fec.lookup(keys)
            need[hit] = False
            self.counters.fec_hits += int(hit.sum())
            # A deterministic program whose fingerprint run stopped early (NaN or |err| > 100 in
            # its first training examples) stops at the same step in the full evaluation, in the
            # first epoch: fitness 0, exactly, without running it (REFERENCE.md §4.1).
            dead = need & stopped & ~_has_random_ops(programs)[:, None]
            self.counters.early_stops += int((need.any(1) & ~(need & ~dead).any(1)).sum())
            self.counters.train_steps += int(fec_steps[dead].sum())
            need &= ~dead
        run = np.flatnonzero(need.any(1))
        self.counters.full_evaluations += run.size
        if run.size:
            full, steps = yield from _score_steps(
                program_lib.index(programs, run),
                self.groups,
                key,
                baseline=self.baseline,
                factor=cfg.budget_factor,
            )
            per_task[run] = np.where(need[run], full, per_task[run])
            self.counters.train_steps += int(steps[need[run]].sum())
        fitness = np.where(hit, cached, evaluation.combine(per_task, cfg.combination))
        if cfg.fec_num_train:  # One insert: it resolves equal fingerprints within the batch.
            self.fec.insert(keys[~hit], fitness[~hit])
        return fitness

    def _fingerprints(self, programs: Program, counts):
        """FEC fingerprints `[U, T]` from the first-pass errors (REFERENCE.md §8.2), whether each
        lane's training stopped early in that pass, and the steps it ran (all `[U, T]`)."""
        cfg, U = self.config, program_lib.population_size(programs)
        prints, stopped, steps = [], [], []
        for j, g in enumerate(self.groups):
            seeds = np.full((U, g.info.num_tasks), FEC_SEED, np.uint32)
            res = yield VMRequest(programs, j, seeds, True)
            # Errors after an early stop are NaN, so the records also say when training stopped.
            prints.append(
                fec.fingerprint(res.train_errors, res.valid_errors, counts[:, j], g.index)
            )
            stopped.append(~(res.train_errors <= cfg.max_abs_error).all(-1))
            steps.append(res.train_steps)
        self.counters.train_steps += int(sum(s.sum() for s in steps))
        cat = lambda xs: np.concatenate(xs, axis=1)  # noqa: E731
        return cat(prints), cat(stopped), cat(steps)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The caches and counters as flat numpy arrays (for checkpoints)."""
        out = {f"structural/{k}": v for k, v in self.structural.state_arrays().items()}
        out.update({f"fec/{k}": v for k, v in self.fec.state_arrays().items()})
        out.update(
            {f"counters/{k}": np.asarray(v, np.int64) for k, v in self.counters.as_dict().items()}
        )
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        def pick(prefix):
            return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}

        self.structural = fec.FECCache.from_state_arrays(pick("structural/"))
        self.fec = fec.FECCache.from_state_arrays(pick("fec/"))
        self.counters = Counters(**{k: int(v) for k, v in pick("counters/").items()})


def stack_groups(collections) -> list[TaskGroup]:
    """E placed collections of the same shapes (`place_collection`, one per experiment) as one:
    each group's tasks with a leading `[E]` axis, for `run_chunked(..., task_ids=...)`."""
    first = collections[0]
    for c in collections[1:]:
        if [g.info for g in c] != [g.info for g in first]:
            raise ValueError("stack_groups: the experiments' task collections differ in shape")

    def stacked(j, field):
        sets = [getattr(c[j], field) for c in collections]
        if sets[0] is None:
            return None
        return runtime.replicate(
            jax.tree_util.tree_map(lambda *xs: jax.numpy.stack(xs), *sets), first[j].mesh
        )

    return [
        g._replace(tasks=stacked(j, "tasks"), fec_tasks=stacked(j, "fec_tasks"))
        for j, g in enumerate(first)
    ]


class ConcurrentEvaluator:
    """Scores the children of E concurrent experiments, each with its own `SearchEvaluator`
    (tasks, caches, counters), in merged VM calls: the experiments' `steps` requests of one kind
    run as one chunked call on the stacked task sets. Every experiment gets the results its own
    `evaluate` would give (lane seeds and tasks are per program); the calls are fewer and larger,
    which is what the VM is fast at. The experiments form `STREAMS` streams whose calls take
    turns, so the host's work for one overlaps the VM's for another. One evaluator simply runs
    its own `evaluate`.
    """

    STREAMS = 2

    def __init__(self, evaluators):
        self.evaluators = list(evaluators)
        self.config = self.evaluators[0].config
        if len(self.evaluators) > 1:
            self.groups = stack_groups([ev.groups for ev in self.evaluators])

    def evaluate(self, children, keys) -> list:
        """Fitness `[K_e]` (numpy) per experiment; None entries (idle experiments) are skipped."""
        if len(self.evaluators) == 1:
            return [None if children[0] is None else self.evaluators[0].evaluate(*children, *keys)]
        results = [None] * len(self.evaluators)
        running = [e for e, c in enumerate(children) if c is not None]
        if not running:
            return results
        # The cache-free per-child work, once for all experiments' children (NumPy does large
        # batches for much less per child than 32 small ones).
        prepared = self.evaluators[running[0]].prepare(_concatenate([children[e] for e in running]))
        sizes = [program_lib.population_size(children[e]) for e in running]
        steps = {
            e: self.evaluators[e].steps(children[e], keys[e], part)
            for e, part in zip(running, _split(prepared, sizes), strict=True)
        }
        pending = {}

        def advance(e, value):
            try:
                pending[e] = steps[e].send(value)
            except StopIteration as stop:
                results[e] = stop.value
                pending.pop(e, None)

        def dispatch(stream):
            """Dispatches one merged call for the stream's pending requests of one kind;
            returns the function that waits for it and advances those experiments (or None)."""
            mine = {e: pending[e] for e in stream if e in pending}
            if not mine:
                return None
            group, fec = min((r.group, r.fec) for r in mine.values())
            slots = [e for e, r in mine.items() if (r.group, r.fec) == (group, fec)]
            requests = [mine[e] for e in slots]
            sizes = [len(r.seeds) for r in requests]
            programs = _concatenate([r.programs for r in requests])
            order = by_length(programs)  # Each request is sorted; the merged batch is not.
            wait = dispatch_chunked(
                program_lib.index(programs, order),
                self.groups[group],
                np.concatenate([r.seeds for r in requests])[order],
                config=self.config,
                fec=fec,
                task_ids=np.repeat(np.asarray(slots, np.int32), sizes)[order],
            )

            def finish():
                inverse = np.argsort(order)
                result = jax.tree_util.tree_map(lambda x: x[inverse], wait())
                for e, part in zip(slots, _split(result, sizes), strict=True):
                    advance(e, part)

            return finish

        # Two streams of experiments take turns: while the VM runs one stream's call, the host
        # does the other's work (pruning, hashing, caches), so host and VM time overlap.
        streams = [list(steps)[i :: self.STREAMS] for i in range(self.STREAMS)]
        queue = collections.deque()
        for stream in streams:
            for e in stream:
                advance(e, None)
            queue.append((stream, dispatch(stream)))
        while queue:
            stream, finish = queue.popleft()
            if finish is None:
                continue
            finish()
            queue.append((stream, dispatch(stream)))
        return results


def _concatenate(trees):
    """Pytrees of numpy arrays concatenated along their leading axis."""
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *trees)


def _split(tree, sizes) -> list:
    """The inverse of `_concatenate`: consecutive leading-axis pieces of the given sizes."""
    starts = np.cumsum([0] + list(sizes))
    return [
        jax.tree_util.tree_map(lambda x, a=a, b=b: x[a:b], tree)
        for a, b in zip(starts[:-1], starts[1:], strict=True)
    ]


_RANDOM_OPS = np.array([op.is_random for op in ops_lib.OPS])


def _has_random_ops(programs: Program) -> np.ndarray:
    """bool `[P]`: the program uses a random-init op (its evaluations differ by seed)."""
    return np.any(
        [
            _RANDOM_OPS[np.asarray(getattr(programs, c).code)[..., 0]].any(-1)
            for c in program_lib.COMPONENTS
        ],
        axis=0,
    )


def compact(programs: Program, spec: ProgramSpec) -> tuple[Program, np.ndarray]:
    """Moves each component's non-NO_OP instructions to the front and sorts programs by length.

    A component whose allowed ops include a random op is left in place: its draws are keyed by
    slot (`azjax.rng`). Returns the reordered programs and `order`, with result i = input order[i].
    """
    comps = []
    for c in program_lib.COMPONENTS:
        comp = getattr(programs, c)
        if any(ops_lib.OPS[i].is_random for i in spec.component(c).valid_ops):
            comps.append(comp)
            continue
        live = np.asarray(comp.code)[..., 0] != 0
        slot_order = np.argsort(~live, axis=-1, kind="stable")[..., None]
        code = np.take_along_axis(np.asarray(comp.code), slot_order, axis=-2)
        consts = np.take_along_axis(np.asarray(comp.consts), slot_order, axis=-2)
        comps.append(program_lib.Component(code, consts, live.sum(-1).astype(np.int32)))
    order = by_length(Program(*comps))
    return program_lib.index(Program(*comps), order), order


def by_length(programs: Program) -> np.ndarray:
    """The order that sorts programs by their live lengths, so a VM chunk of neighbours stops
    near each one's last live slot: by the per-example cost first (Predict runs in training and
    validation, Learn in training: 2 x Predict + Learn), then by Setup (run once)."""
    setup, predict, learn = (
        np.where(live, np.arange(1, live.shape[-1] + 1), 0).max(-1)
        for live in (
            np.asarray(getattr(programs, c).code)[..., 0] != 0 for c in program_lib.COMPONENTS
        )
    )
    return np.lexsort((setup, 2 * predict + learn))
