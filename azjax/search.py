"""The whole search on the device: E experiments' regularized evolution as one state pytree.

`SearchState` holds everything the experiments' searches carry, with a leading experiment axis
`[E]` on every leaf: the populations (`azjax.evolution`), the score caches and the counters
(`azjax.search_eval`), the keys of the evaluation's random ops, and which experiments are active.
`step` makes one generation of every active experiment: `evolution.ask`, `search_eval.
score_children` (all experiments' VM work pooled), `evolution.tell`. `run` makes up to n
generations in one `lax.while_loop`, stopping early (on the device) as soon as an experiment
`finished` (its best fitness passed `stop_at_fitness`, its train steps reached `max_train_steps`,
or it stagnated), so that the caller can score it and start the next one. n is a traced argument:
n = 1 and n = 50 run the same compiled code, and give the same states bit for bit.

`runner` compiles `run` for a mesh of devices: experiments are split along the mesh (one CPU
device per core on CPU; the local accelerators elsewhere), each device runs its share of the
generation on its own, and only the early-stop flag crosses devices. Results do not depend on the
number of devices: each experiment's search uses only its own state, keys and tasks.

Typical use (see also `azjax.experiment`, which adds select/final evaluation and checkpoints):

    config = search.SearchConfig(evolution=..., tasks=info)
    state = search.init(jax.random.split(key, E), config)
    tasks = search.stack_tasks([taskset] * E)
    run = search.runner(config)
    state = run(state, tasks, 100)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from azjax import evolution, keys, runtime, scoring, search_eval, vm, wide
from azjax.search_eval import Counters, EvaluationConfig, Tables
from azjax.tasks import TaskInfo, TaskSet


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """A search's static configuration.

    evolution: the regularized evolution (its `spec` is the program space).
    tasks: static facts of the search tasks (`azjax.tasks.make_tasks`'s TaskInfo).
    evaluation: how children are scored (caches, FEC, budget, chunking).
    stop_at_fitness: an experiment finishes once its population's best fitness exceeds this
      (0 = never, as the original, which always spends max_train_steps).
    max_train_steps: an experiment finishes once its train steps reach this (0 = never).
    max_individuals: an experiment finishes once it has scored this many individuals, its
      initial population included (0 = never).
    stagnation_individuals: an experiment finishes once its best fitness has not risen for this
      many individuals after its initial population (0 = never; not in the original, which has
      hurdles for the same purpose: spend the budget on searches that progress).
    """

    evolution: evolution.EvolutionConfig
    tasks: TaskInfo
    evaluation: EvaluationConfig = EvaluationConfig()
    stop_at_fitness: float = 0.0
    max_train_steps: int = 0
    max_individuals: int = 0
    stagnation_individuals: int = 0

    def __post_init__(self):
        for name in ("max_train_steps", "max_individuals", "stagnation_individuals"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.evaluation.fec_num_train > self.tasks.epoch_size:
            raise ValueError(
                f"FEC needs {self.evaluation.fec_num_train} training examples per task, but "
                f"the search tasks have {self.tasks.epoch_size}"
            )

    @property
    def spec(self):
        return self.evolution.spec


class SearchState(NamedTuple):
    """E experiments' searches: every leaf has a leading `[E]` axis."""

    population: evolution.PopulationState
    tables: Tables
    counters: Counters
    key: jax.Array  # [E] PRNG keys of the evaluations' random ops.
    active: jax.Array  # bool [E]: running experiments (idle slots change nothing).


def _one(key: jax.Array, config: SearchConfig) -> SearchState:
    k_population, k_eval = keys.split(key)
    return SearchState(
        population=evolution.init(k_population, config.evolution),
        tables=search_eval.empty_tables(config.evaluation, config.tasks.num_tasks),
        counters=Counters.zeros(),
        key=k_eval,
        active=jnp.bool_(True),
    )


@functools.partial(jax.jit, static_argnames=("config",))
def init(keys: jax.Array, config: SearchConfig) -> SearchState:
    """Fresh searches, one per key `[E]` (all active); the keys are consumed."""
    return jax.vmap(lambda k: _one(k, config))(keys)


def stack_tasks(tasksets) -> TaskSet:
    """E experiments' TaskSets of one shape as one, arrays `[E, T, ...]`."""
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *tasksets)


def step(state: SearchState, tasks: TaskSet, config: SearchConfig, *, chunk: int) -> SearchState:
    """One generation of every active experiment (module docstring). `chunk`: programs per VM
    call (`azjax.scoring.programs_per_call`)."""
    ev = config.evolution
    pop = state.population
    with jax.named_scope("S_ask"):
        children, asked = jax.vmap(lambda s: evolution.ask(s, ev))(pop)
    valid = jax.vmap(lambda s: evolution.told(s, ev))(pop) & state.active[:, None]
    keys = jax.vmap(jax.random.split)(state.key)
    fitness, tables, counters = search_eval.score_children(
        state.tables,
        state.counters,
        children,
        valid,
        tasks,
        keys[:, 1],
        pop.generation,
        spec=config.spec,
        info=config.tasks,
        config=config.evaluation,
        chunk=chunk,
    )
    with jax.named_scope("S_tell"):
        told = jax.vmap(lambda s, c, f, m: evolution.tell(s, c, f, ev, mask=m))(
            asked, children, fitness, valid
        )

    def active_only(new, old):  # Idle slots keep their state (tell already wrote nothing).
        mask = state.active.reshape(state.active.shape + (1,) * (new.ndim - 1))
        return jnp.where(mask, new, old)

    scalars = ("cursor", "num_individuals", "generation", "key")
    told = told._replace(**{f: active_only(getattr(told, f), getattr(pop, f)) for f in scalars})
    key = active_only(keys[:, 0], state.key)
    return SearchState(told, tables, counters, key, state.active)


def finished(state: SearchState, config: SearchConfig) -> jax.Array:
    """bool `[E]`: active experiments whose search is over (`SearchConfig`)."""
    pop = state.population
    P = config.evolution.population_size
    scored = pop.num_individuals >= P
    done = jnp.zeros(state.active.shape, bool)
    if config.stop_at_fitness:
        done |= scored & (jnp.max(pop.fitness, axis=-1) > config.stop_at_fitness)
    if config.max_train_steps:
        done |= wide.greater_equal(state.counters.train_steps, config.max_train_steps)
    if config.max_individuals:
        done |= pop.num_individuals >= config.max_individuals
    if config.stagnation_individuals:
        stale = pop.num_individuals - jnp.maximum(pop.best_individual, P)
        done |= scored & (stale >= config.stagnation_individuals)
    return state.active & done


def run(
    state: SearchState,
    tasks: TaskSet,
    num_generations,
    config: SearchConfig,
    *,
    chunk: int,
    axis_name: str | None = None,
) -> SearchState:
    """Up to `num_generations` (traced int) generations, stopping after the first one at whose
    end an experiment `finished` (none if one already has). `axis_name`: under `shard_map`,
    the mesh axis the experiments are split along (the stop is decided across it)."""

    def any_finished(st):
        stop = jnp.any(finished(st, config)).astype(jnp.int32)
        return (jax.lax.psum(stop, axis_name) if axis_name else stop) > 0

    def body(carry):
        i, st, _ = carry
        st = step(st, tasks, config, chunk=chunk)
        return i + 1, st, any_finished(st)

    carry = (jnp.int32(0), state, any_finished(state))
    return jax.lax.while_loop(lambda c: (c[0] < num_generations) & ~c[2], body, carry)[1]


def place(tree, mesh: Mesh | None = None):
    """Puts a state or stacked tasks (leading axis `[E]`) on the mesh, split along E, as
    `runner`'s compiled function takes them (other placements would compile it again)."""
    mesh = runtime.program_mesh() if mesh is None else mesh

    def host(x):  # Through the host: resharding device arrays took seconds on CPU.
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = np.asarray(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return np.asarray(x)

    sharding = NamedSharding(mesh, PartitionSpec(runtime.PROGRAMS_AXIS))
    return jax.device_put(jax.tree.map(host, tree), sharding)


def runner(config: SearchConfig, mesh: Mesh | None = None, chunk: int | None = None):
    """`run(state, tasks, num_generations)` compiled for the mesh's devices (default: all local
    devices, `azjax.runtime.program_mesh`), experiments split along it (E must be a multiple of
    its size). `chunk`: programs per full-evaluation VM call and device (default: the config's,
    capped by `azjax.scoring.programs_per_call`). The state argument is donated: use the
    returned one. Equal arguments give the same compiled function."""
    mesh = runtime.program_mesh() if mesh is None else mesh
    if chunk is None:
        info = config.tasks
        chunk = scoring.programs_per_call(
            config.spec, config.evaluation.chunk_size, info.num_tasks, info.feature_size
        )
    return _runner(config, mesh, chunk)


@functools.cache
def _runner(config: SearchConfig, mesh: Mesh, chunk: int):
    axis = runtime.PROGRAMS_AXIS
    fn = functools.partial(run, config=config, chunk=chunk, axis_name=axis)
    split, whole = PartitionSpec(axis), PartitionSpec()
    mapped = jax.shard_map(
        fn, mesh=mesh, in_specs=(split, split, whole), out_specs=split, check_vma=False
    )
    cpu = mesh.devices.flat[0].platform == "cpu"
    return jax.jit(
        mapped, donate_argnums=(0,), compiler_options=vm.COMPILER_OPTIONS if cpu else None
    )
