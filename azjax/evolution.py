"""Regularized (aging) evolution, batched (REFERENCE.md §7.1; paper §3).

The original is steady state: per step, one tournament (T indices with replacement, the fittest
wins, the first seen on ties), one mutated child, evaluated, replacing the oldest individual. Here
each generation draws K tournaments on the current population, mutates the K winners, evaluates
the K children in one batch, and replaces the K oldest. K = 1 is exactly the original algorithm;
larger K is what fills the VM's batches. The dynamics change with K: the K tournaments of a
generation cannot pick each other's children, so selection lags by up to K/P of a population turn
over (with K = P/10, a child's earliest possible reuse is one generation = 10% of a turnover later).
`scripts/benchmark_search.py --children_per_generation=...` measures the effect on time-to-solve.

Random search (`mode="random"`) uses the same loop with fresh random programs as children.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from azjax import generator, mutation
from azjax import program as program_lib
from azjax.program import Program, ProgramSpec

MODES = ("evolution", "random")


@dataclasses.dataclass(frozen=True)
class EvolutionConfig:
    """Regularized-evolution settings (static). `sizes`: initial component sizes (size_init)."""

    spec: ProgramSpec
    mutation: mutation.MutationParams
    sizes: tuple[int, int, int]
    population_size: int = 1000
    tournament_size: int = 10
    children_per_generation: int = 100
    initial_population: str = "RANDOM"
    mode: str = "evolution"

    def __post_init__(self):
        P, K, T = self.population_size, self.children_per_generation, self.tournament_size
        if P < 1:
            raise ValueError(f"population_size must be >= 1, got {P}")
        if not 1 <= K <= P:
            raise ValueError(
                f"children_per_generation must be in [1, population_size={P}], got {K}"
            )
        if T < 1:
            raise ValueError(f"tournament_size must be >= 1, got {T}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        generator.canonical_name(self.initial_population)  # Raises on unknown names.


class PopulationState(NamedTuple):
    """The evolving population and its bookkeeping (host numpy, except the typed PRNG key).

    Slots are overwritten cyclically from `cursor`, so the slots at `cursor...` hold the oldest.
    """

    programs: Program  # [P]
    fitness: np.ndarray  # float64 [P]
    cursor: np.ndarray  # int64 []: the next slot to replace.
    key: jax.Array  # typed PRNG key, advanced every generation.
    num_individuals: np.ndarray  # int64 []
    generation: np.ndarray  # int64 []
    best_program: Program  # the best individual ever evaluated (unbatched).
    best_fitness: np.ndarray  # float64 []


def _to_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def init(key, evaluate, config: EvolutionConfig) -> PopulationState:
    """Builds and evaluates the initial population. `evaluate(programs, key) -> fitness [K]`."""
    programs, k_eval, key = initial_programs(key, config)
    return from_evaluated(programs, evaluate(programs, k_eval), key, config)


def initial_programs(key, config: EvolutionConfig):
    """The initial population's programs `[P]`, the key to evaluate them with, and the key the
    population state continues with (`init` = this, an evaluation, then `from_evaluated`)."""
    k_init, k_eval, key = jax.random.split(key, 3)
    return _to_numpy(_initial_population(k_init, config=config)), k_eval, key


def from_evaluated(programs: Program, fitness, key, config: EvolutionConfig) -> PopulationState:
    fitness = np.asarray(fitness, np.float64)
    best = int(np.argmax(fitness))
    return PopulationState(
        programs=programs,
        fitness=fitness,
        cursor=np.int64(0),
        key=key,
        num_individuals=np.int64(config.population_size),
        generation=np.int64(0),
        best_program=program_lib.index(programs, best),
        best_fitness=np.float64(fitness[best]),
    )


def tournament(key, ranks, num_children: int, tournament_size: int) -> jax.Array:
    """Indices `[K]` of K tournament winners: T draws with replacement, the first-seen max wins.

    `ranks` int32 `[P]` order the fitnesses exactly (equal fitness, equal rank), so selection is
    decided in float64 even though the device computes in 32 bits.
    """
    P = ranks.shape[0]
    contestants = jax.random.randint(key, (num_children, tournament_size), 0, P)
    return contestants[jnp.arange(num_children), jnp.argmax(ranks[contestants], axis=1)]


def fitness_ranks(fitness: np.ndarray) -> np.ndarray:
    """Dense int32 ranks of float64 fitnesses (ties share a rank)."""
    return np.unique(fitness, return_inverse=True)[1].astype(np.int32).reshape(-1)


@functools.partial(jax.jit, static_argnames=("config",))
def _select_and_mutate(key, programs, ranks, *, config):
    k_select, k_mutate = jax.random.split(key)
    winners = tournament(k_select, ranks, config.children_per_generation, config.tournament_size)
    parents = jax.tree_util.tree_map(lambda x: x[winners], programs)
    return mutation.mutate_batch(k_mutate, parents, config.spec, config.mutation)


@functools.partial(jax.jit, static_argnames=("config",))
def _propose_many(keys, programs, ranks, *, config):
    """`propose` vmapped over E populations: keys `[E]`, programs `[E, P]`, ranks `[E, P]`."""

    def one(key, programs, ranks):
        key, k_children, k_eval = jax.random.split(key, 3)
        if config.mode == "random":
            return _random_children(k_children, config=config), k_eval, key
        return _select_and_mutate(k_children, programs, ranks, config=config), k_eval, key

    children, k_evals, nexts = jax.vmap(one)(keys, programs, ranks)
    return children, jax.random.key_data(k_evals), jax.random.key_data(nexts)


@functools.partial(jax.jit, static_argnames=("config",))
def _initial_population(key, *, config):
    return generator.make_initial_population(
        key, config.initial_population, config.spec, config.sizes, config.population_size
    )


@functools.partial(jax.jit, static_argnames=("config",))
def _random_children(key, *, config):
    K = config.children_per_generation
    return generator.make_initial_population(key, "RANDOM", config.spec, config.sizes, K)


def make_children(key, state: PopulationState, config: EvolutionConfig) -> Program:
    """K children: mutated tournament winners, or fresh random programs in random-search mode."""
    if config.mode == "random":
        return _to_numpy(_random_children(key, config=config))
    ranks = fitness_ranks(state.fitness)
    return _to_numpy(_select_and_mutate(key, state.programs, ranks, config=config))


def step(state: PopulationState, evaluate, config: EvolutionConfig) -> PopulationState:
    """One generation: K children evaluated together replace the K oldest individuals."""
    ((children, k_eval, key),) = propose([state], config)
    return accept(state, children, evaluate(children, k_eval), key, config)


def propose(states, config: EvolutionConfig) -> list:
    """For each population: its generation's K children (`make_children`), the key to evaluate
    them with and the population's next key (`step` = this, an evaluation, then `accept`).
    Several populations (concurrent experiments) share one device call; each gets exactly the
    children it would get alone."""
    keys = jnp.stack([s.key for s in states])
    programs = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *(s.programs for s in states))
    ranks = np.stack([fitness_ranks(s.fitness) for s in states])
    children, k_evals, nexts = _to_numpy(_propose_many(keys, programs, ranks, config=config))
    # Keys rebuilt from host words: indexing a device array of typed keys is an eager dispatch
    # (~0.25 ms each, two per population and generation).
    wrap = functools.partial(jax.random.wrap_key_data, impl=jax.random.key_impl(keys))
    return [
        (jax.tree_util.tree_map(lambda x, e=e: x[e], children), wrap(k_evals[e]), wrap(nexts[e]))
        for e in range(len(states))
    ]


def accept(state: PopulationState, children, fitness, key, config) -> PopulationState:
    """The evaluated children replace the K oldest individuals."""
    fitness = np.asarray(fitness, np.float64)
    K, P = config.children_per_generation, config.population_size
    slots = (int(state.cursor) + np.arange(K)) % P
    programs = jax.tree_util.tree_map(
        lambda pop, kids: _replace_rows(pop, slots, kids), state.programs, children
    )
    all_fitness = state.fitness.copy()
    all_fitness[slots] = fitness
    best = int(np.argmax(fitness))
    better = fitness[best] > state.best_fitness
    return PopulationState(
        programs=programs,
        fitness=all_fitness,
        cursor=np.int64((int(state.cursor) + K) % P),
        key=key,
        num_individuals=np.int64(state.num_individuals + K),
        generation=np.int64(state.generation + 1),
        best_program=program_lib.index(children, best) if better else state.best_program,
        best_fitness=np.float64(fitness[best]) if better else state.best_fitness,
    )


def _replace_rows(pop: np.ndarray, slots: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = np.array(pop, copy=True)
    out[slots] = rows
    return out


def best_of_population(state: PopulationState) -> tuple[Program, float]:
    """The original's candidate: the population's fittest individual (the first on ties)."""
    i = int(np.argmax(state.fitness))
    return program_lib.index(state.programs, i), float(state.fitness[i])


def population_stats(state: PopulationState) -> dict[str, float]:
    """mean, stdev (population, as the original) and best fitness of the current population."""
    return fitness_stats(state.fitness)


def fitness_stats(f: np.ndarray) -> dict[str, float]:
    """`population_stats` of any fitness array (e.g. several populations' together)."""
    return {
        "mean": float(f.mean()),
        "stdev": float(np.sqrt(max(f.var(), 0.0))),
        "best": float(f.max()),
    }
