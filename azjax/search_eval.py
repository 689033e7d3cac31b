"""The search's scoring of a generation's children on the device, with work avoidance.

`score_children` scores the K children of each of E experiments (each on its own tasks, with its
own caches and counters) inside the jitted generation step, in stages, each counted:
  1. the train budget: a child far costlier than the baseline trains on no example (fitness 0);
  2. dead-code elimination and compaction (`azjax.device_pruning`), then structural dedupe: a
     child whose pruned program equals one already scored reuses that score
     (`azjax.caches`; programs with random ops only when FEC is on, which reuses their scores
     anyway: without FEC the original scores every such child afresh);
  3. FEC as the original (`azjax.fec`): a first VM pass on the first examples of each task gives
     a fingerprint; a program whose fingerprint is cached reuses that fitness;
  4. the early-stop shortcut: a deterministic program whose fingerprint run stopped early (NaN or
     |error| > max_abs_error) on a task stops at the same step in the full run: fitness 0 there;
  5. only the rest gets the full evaluation.
Equal keys within a generation are scored once. The VM passes pool the work of all experiments:
the programs to run, sorted by their live length, go through the VM in fixed-size chunks in a
`fori_loop`, each chunk a batch of lanes (program, task) with every program on its own
experiment's tasks. No result depends on the pooling: the VM's results do not depend on the
batch a lane runs in.

Train steps are counted as the original counts them (every executed step of the fingerprint run
and of the full runs, an early-stopping step included), and a child scored without running is
charged what the original would have run: a dedupe hit its fingerprint run at full length (or,
without FEC, its full training), an early-stop shortcut its fingerprint run's steps twice.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from azjax import budget, caches, device_pruning, evaluation, fec, hashing, wide
from azjax.program import Program, ProgramSpec
from azjax.tasks import TaskInfo, TaskSet


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """How the search scores children (static).

    fec_num_train / fec_num_valid: FEC fingerprint examples per task (0 disables FEC).
    fec_cache_size: fingerprints the FEC cache holds, counted per (program, task) as the
      original's; the cache keeps one entry per program, so it holds fec_cache_size / T programs.
    dedupe_cache_size: programs the structural dedupe cache holds (0 disables dedupe).
    budget_baseline: the train budget's baseline costs (setup, train), from
      `azjax.budget.program_costs`; None = no budget. budget_factor: its threshold factor.
    chunk_size: programs per full-evaluation VM call (and device); calls are also capped by
      memory (`azjax.scoring.programs_per_call`). Fingerprint calls take FINGERPRINT_CHUNKS times
      as many programs (their runs are 10x shorter, so a call's fixed cost weighs more).
    """

    max_abs_error: float = evaluation.MAX_ABS_ERROR
    combination: str = "mean"
    fec_num_train: int = 10
    fec_num_valid: int = 10
    fec_cache_size: int = 100_000
    fec_forget_every: int = 100
    dedupe_cache_size: int = 100_000
    budget_baseline: tuple[int, int] | None = None
    budget_factor: float = budget.DEFAULT_FACTOR
    chunk_size: int = 64

    def __post_init__(self):
        if self.combination not in ("mean", "median"):
            raise ValueError(f"combination must be 'mean' or 'median', got {self.combination!r}")
        for name in ("fec_num_train", "fec_num_valid", "dedupe_cache_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if bool(self.fec_num_train) != bool(self.fec_num_valid):
            raise ValueError("fec_num_train and fec_num_valid must both be 0 (no FEC) or > 0")
        if self.fec_num_train and self.fec_cache_size < 1:
            raise ValueError(f"fec_cache_size must be >= 1, got {self.fec_cache_size}")
        if self.fec_forget_every < 0 or self.fec_forget_every == 1:
            raise ValueError(
                f"fec_forget_every must be 0 (never) or > 1, got {self.fec_forget_every}"
            )
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")


class Counters(NamedTuple):
    """What each stage did, per experiment (int32 scalars), and `train_steps`, the training
    steps the original would have spent (a 64-bit count, `azjax.wide`)."""

    children: jax.Array
    budget_rejected: jax.Array
    dedupe_hits: jax.Array
    fec_hits: jax.Array
    early_stops: jax.Array
    full_evaluations: jax.Array
    train_steps: jax.Array  # uint32 [2]

    @classmethod
    def zeros(cls) -> Counters:
        zero = jnp.int32(0)
        return cls(*([zero] * 6), jnp.zeros(2, jnp.uint32))


class Tables(NamedTuple):
    """One experiment's caches (`azjax.caches`); a disabled stage has a 1-entry table."""

    dedupe: caches.Table
    fec: caches.Table


def empty_tables(config: EvaluationConfig, num_tasks: int) -> Tables:
    fec_size = max(1, config.fec_cache_size // num_tasks) if config.fec_num_train else 1
    return Tables(caches.empty(max(1, config.dedupe_cache_size)), caches.empty(fec_size))


FINGERPRINT_CHUNKS = 4


def _combine(per_task: jax.Array, mode: str) -> jax.Array:
    """Fitness over tasks `[..., T] -> [...]`, in a fixed order of float32 operations."""
    T = per_task.shape[-1]
    if mode == "median":  # The original's upper median.
        return jnp.sort(per_task, axis=-1)[..., T // 2]
    total = per_task[..., 0]
    for t in range(1, T):
        total = total + per_task[..., t]
    return total / T


def _pooled(fn, programs: Program, mask: jax.Array, cost: jax.Array, chunk: int):
    """`fn(programs [C], index [C])` over the masked programs of a flat batch `[N]`, in chunks of
    C = chunk sorted by `cost` (padding: index N and all-NO_OP programs); returns fn's outputs
    scattered to `[N, ...]` (zeros where not masked)."""
    N = mask.shape[0]
    n = jnp.sum(mask, dtype=jnp.int32)
    order = jnp.argsort(jnp.where(mask, cost, jnp.iinfo(jnp.int32).max), stable=True)
    order = jnp.where(jnp.arange(N) < n, order, N).astype(jnp.int32)
    padded = jnp.concatenate([order, jnp.full((chunk,), N, jnp.int32)])

    def take(index):
        return jax.tree.map(
            lambda x: jnp.take(x, index, axis=0, mode="fill", fill_value=0), programs
        )

    shapes = jax.eval_shape(fn, take(padded[:chunk]), padded[:chunk])
    out = jax.tree.map(lambda s: jnp.zeros((N,) + s.shape[1:], s.dtype), shapes)

    def body(i, out):
        index = jax.lax.dynamic_slice_in_dim(padded, i * chunk, chunk)
        result = fn(take(index), index)
        return jax.tree.map(lambda o, r: o.at[index].set(r, mode="drop"), out, result)

    return jax.lax.fori_loop(0, (n + chunk - 1) // chunk, body, out)


def _cost(programs: Program) -> jax.Array:
    """A sort key `[...]` for VM chunks: per-example cost (2 Predict + Learn), then Setup."""
    lengths = device_pruning.live_lengths(programs)
    return (2 * lengths[..., 1] + lengths[..., 2]) * (lengths.shape[-1] + 64) + lengths[..., 0]


def score_children(
    tables: Tables,
    counters: Counters,
    children: Program,
    valid: jax.Array,
    tasks: TaskSet,
    keys: jax.Array,
    clock: jax.Array,
    *,
    spec: ProgramSpec,
    info: TaskInfo,
    config: EvaluationConfig,
    chunk: int,
) -> tuple[jax.Array, Tables, Counters]:
    """Scores E experiments' children: (fitness float32 `[E, K]`, tables, counters).

    Args:
      tables, counters: per experiment, leading axis `[E]`.
      children: programs `[E, K]`; valid: bool `[E, K]`, the children to score (others get 0 and
        change nothing).
      tasks: each experiment's search tasks, arrays `[E, T, ...]`; info: their static facts.
      keys: `[E]` PRNG keys for the random ops' lane seeds (consumed).
      clock: int32 `[E]`, each experiment's generation (the caches' time).
      chunk: programs per full-evaluation VM call (fingerprint calls: FINGERPRINT_CHUNKS x).
    """
    cfg = config
    E, K = valid.shape
    T = info.num_tasks
    num_train = info.epoch_size * info.num_train_epochs
    fec_on = cfg.fec_num_train > 0
    counts = jnp.full((E, K), num_train, jnp.int32)
    if cfg.budget_baseline is not None:
        counts = budget.device_train_examples(
            children, cfg.budget_baseline, num_train, cfg.budget_factor
        )
    runnable = valid & (counts > 0)
    with jax.named_scope("S_prune"):
        programs = device_pruning.compact(device_pruning.prune(children, spec), spec)
    random = device_pruning.has_random_ops(programs)
    query = jax.vmap(caches.query)
    update = jax.vmap(
        lambda t, q, k, v, i, c: caches.update(
            t, q, k, v, i, clock=c, forget_every=cfg.fec_forget_every
        )
    )

    def first_of(values, q):  # Each entry's value at its key's first occurrence.
        return jnp.take_along_axis(values, q.first, axis=1)

    # Stage 2: structural dedupe.
    unique = runnable
    if cfg.dedupe_cache_size:
        dedupable = runnable & (~random | fec_on)
        with jax.named_scope("S_dedupe_query"):
            skeys = hashing.program_keys(programs)
            dq = query(tables.dedupe, skeys, dedupable)
        unique = runnable & ~(dedupable & (dq.hit | ~dq.is_first))

    flat = lambda x: x.reshape((E * K,) + x.shape[2:])  # noqa: E731
    flat_programs = jax.tree.map(flat, programs)
    task_ids = jnp.repeat(jnp.arange(E, dtype=jnp.int32), K)
    cost = flat(_cost(programs))

    def vm_pass(mask, run_tasks, seeds, epoch_size, record, finish):
        size = chunk * FINGERPRINT_CHUNKS if record else chunk

        def fn(progs, index):
            result = evaluation.evaluate_lanes(
                progs,
                run_tasks,
                jnp.take(seeds, index, axis=0, mode="fill", fill_value=0),
                jnp.take(task_ids, index, mode="fill", fill_value=0),
                spec=spec,
                eval_type=info.eval_type,
                epoch_size=epoch_size,
                max_abs_error=cfg.max_abs_error,
                record=record,
            )
            return finish(result)

        with jax.named_scope("S_vm_" + ("fp" if record else "full")):
            out = _pooled(fn, flat_programs, flat(mask), cost, size)
        return jax.tree.map(lambda x: x.reshape((E, K) + x.shape[1:]), out)

    # Stages 3-4: FEC and the early-stop shortcut.
    run, need, fp_steps = unique, jnp.broadcast_to(unique[..., None], (E, K, T)), None
    if fec_on:
        fec_tasks = TaskSet(
            tasks.x_train[:, :, : cfg.fec_num_train],
            tasks.y_train[:, :, : cfg.fec_num_train],
            tasks.x_valid[:, :, : cfg.fec_num_valid],
            tasks.y_valid[:, :, : cfg.fec_num_valid],
        )

        def fingerprint(r):
            stopped = ~jnp.all(r.train_errors <= cfg.max_abs_error, axis=-1)
            return fec.fingerprint(r.train_errors, r.valid_errors), stopped, r.train_steps

        fec_seeds = jnp.full((E * K, T), fec.FEC_SEED, jnp.uint32)
        fkeys, stopped, fp_steps = vm_pass(
            unique, fec_tasks, fec_seeds, cfg.fec_num_train, True, fingerprint
        )
        with jax.named_scope("S_fec_query"):
            fq = query(tables.fec, fkeys, unique)
        run = unique & fq.is_first & ~fq.hit
        dead = run[..., None] & stopped & ~random[..., None]
        need = run[..., None] & ~dead
    full = run & jnp.any(need, axis=-1)

    # Stage 5: the full evaluation.
    seeds = jax.vmap(lambda k: evaluation.lane_seeds(k, K, T, xp=jnp))(keys)
    fit_t, steps_t = vm_pass(
        full,
        tasks,
        seeds.reshape(E * K, T),
        info.epoch_size,
        False,
        lambda r: (r.fitness, r.train_steps),
    )
    fitness = _combine(jnp.where(need, fit_t, 0.0), cfg.combination)
    if fec_on:
        fitness = jnp.where(run, fitness, jnp.where(fq.hit, fq.value, first_of(fitness, fq)))
        with jax.named_scope("S_fec_update"):
            fec_table = update(tables.fec, fq, fkeys, fitness, run, clock)
        tables = tables._replace(fec=fec_table)
    if cfg.dedupe_cache_size:
        fitness = jnp.where(unique, fitness, jnp.where(dq.hit, dq.value, first_of(fitness, dq)))
        insert = dedupable & dq.is_first & ~dq.hit
        with jax.named_scope("S_dedupe_update"):
            tables = tables._replace(
                dedupe=update(tables.dedupe, dq, skeys, fitness, insert, clock)
            )
    fitness = jnp.where(runnable, fitness, 0.0)

    # Counters and train steps (module docstring).
    def total(x):
        return jnp.sum(x, axis=tuple(range(1, x.ndim)), dtype=jnp.int32)

    reused = runnable & ~unique
    rejected = valid & ~runnable
    fec_steps_each = T * cfg.fec_num_train
    steps = total(rejected) * fec_steps_each + total(jnp.where(need, steps_t, 0))
    steps += total(reused) * fec_steps_each if fec_on else total(jnp.where(reused, counts, 0)) * T
    if fec_on:
        steps += total(jnp.where(unique[..., None], fp_steps, 0))
        steps += total(jnp.where(dead, fp_steps, 0))
    counters = Counters(
        children=counters.children + total(valid),
        budget_rejected=counters.budget_rejected + total(rejected),
        dedupe_hits=counters.dedupe_hits + total(reused),
        fec_hits=counters.fec_hits + total(unique & ~run),
        early_stops=counters.early_stops + total(run & ~full),
        full_evaluations=counters.full_evaluations + total(full),
        train_steps=wide.add(counters.train_steps, wide.from_u32(steps)),
    )
    return fitness, tables, counters
