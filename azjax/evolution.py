"""Regularized (aging) evolution as pure functions of a device state: init, ask, tell.

The original (paper §3; regularized_evolution.cc) is steady state: per step, one tournament (T
indices drawn with replacement, the fittest wins, the first drawn on ties), one mutated child,
evaluated, replacing the oldest individual. Here each generation `ask`s for K children at once
(K tournaments on the current population, the winners mutated), the caller scores them, and
`tell` puts them in the K oldest slots. K = 1 is exactly the original; larger K fills the VM's
batches. The dynamics change with K: a generation's tournaments cannot pick each other's
children, so selection lags by up to K/P of a population turnover.

The initial population is scored through the same loop: `init` draws the P initial programs,
and the first ceil(P / K) generations `ask` for them, K at a time (`told` marks which of a
partial last batch count), as the original's Init evaluates its slots in order.

Everything is written for one experiment and is jit-, vmap- and scan-friendly: several
experiments are `jax.vmap` of these functions over a leading axis of the state. A user with their
own fitness function drives the loop directly (`children, state = ask(state, config)`, score them,
`state = tell(state, children, fitness, config)`); `azjax.search` adds the built-in evaluation.

Random search (`mode="random"`) asks for fresh random programs instead of mutated winners.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from azjax import generator, keys, mutation
from azjax.program import COMPONENTS, Program, ProgramSpec

MODES = ("evolution", "random")


@dataclasses.dataclass(frozen=True)
class EvolutionConfig:
    """Regularized-evolution settings (static, hashable).

    `sizes`: the initial component sizes (the original's *_size_init); None takes the spec's
    component sizes.
    """

    spec: ProgramSpec
    mutation: mutation.MutationParams
    sizes: tuple[int, int, int] | None = None
    population_size: int = 1000
    tournament_size: int = 10
    children_per_generation: int = 250
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
        if self.sizes is None:
            sizes = tuple(self.spec.component(c).size for c in COMPONENTS)
            object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))


class PopulationState(NamedTuple):
    """One experiment's population and bookkeeping (device arrays).

    Slots are overwritten cyclically from `cursor`, so the slots at `cursor...` hold the oldest.
    """

    programs: Program  # [P]
    fitness: jax.Array  # float32 [P]
    cursor: jax.Array  # int32 []: the next slot to replace.
    num_individuals: jax.Array  # int32 []: children told so far (the initial ones included).
    generation: jax.Array  # int32 []: tells so far.
    key: jax.Array  # typed PRNG key, advanced by every ask.
    best_program: Program  # The fittest individual ever told (unbatched).
    best_fitness: jax.Array  # float32 []; -inf before the first tell.
    best_individual: jax.Array  # int32 []: num_individuals when best_fitness last rose.


def init(key: jax.Array, config: EvolutionConfig) -> PopulationState:
    """A population of P initial programs, not yet scored (the first generations ask for them).
    The key is consumed."""
    k_init, key = keys.split(key)
    programs = generator.make_initial_population(
        k_init, config.initial_population, config.spec, config.sizes, config.population_size
    )
    programs = jax.tree.map(jnp.asarray, programs)
    zero = jnp.int32(0)
    return PopulationState(
        programs=programs,
        fitness=jnp.zeros(config.population_size, jnp.float32),
        cursor=zero,
        num_individuals=zero,
        generation=zero,
        key=key,
        best_program=jax.tree.map(lambda x: x[0], programs),
        best_fitness=jnp.float32(-jnp.inf),
        best_individual=zero,
    )


def tournament(key: jax.Array, fitness: jax.Array, num_children: int, tournament_size: int):
    """Indices `[K]` of K tournament winners among `fitness` `[P]`: T draws with replacement,
    the fittest wins, the first drawn on ties."""
    P = fitness.shape[0]
    contestants = generator.bits_below(keys.key_bits(key, (num_children, tournament_size)), P)
    best = jnp.argmax(fitness[contestants], axis=1)
    return jnp.take_along_axis(contestants, best[:, None], axis=1)[:, 0]


def initializing(state: PopulationState, config: EvolutionConfig) -> jax.Array:
    """bool []: the initial programs are still being scored."""
    return state.num_individuals < config.population_size


def told(state: PopulationState, config: EvolutionConfig) -> jax.Array:
    """bool `[K]`: which of the children `ask` returns `tell` will keep (all of them, except in
    a partial last batch of initial programs)."""
    P, K = config.population_size, config.children_per_generation
    left = P - state.num_individuals
    return jnp.where(initializing(state, config), jnp.arange(K) < left, True)


def _slots(state: PopulationState, config: EvolutionConfig) -> jax.Array:
    K, P = config.children_per_generation, config.population_size
    return (state.cursor + jnp.arange(K)) % P


def ask(state: PopulationState, config: EvolutionConfig) -> tuple[Program, PopulationState]:
    """K children `[K]` and the state with its key advanced: the next initial programs while
    initializing, else mutated tournament winners (fresh random programs in random mode)."""
    K = config.children_per_generation
    key, k_children = keys.split(state.key)
    if config.mode == "random":
        new = generator.make_initial_population(k_children, "RANDOM", config.spec, config.sizes, K)
    else:
        k_select, k_mutate = keys.split(k_children)
        winners = tournament(k_select, state.fitness, K, config.tournament_size)
        parents = jax.tree.map(lambda x: x[winners], state.programs)
        new = mutation.mutate_batch(k_mutate, parents, config.spec, config.mutation)
    initial = jax.tree.map(lambda x: x[_slots(state, config)], state.programs)
    first = initializing(state, config)
    children = jax.tree.map(lambda a, b: jnp.where(first, a, b), initial, new)
    return children, state._replace(key=key)


def tell(
    state: PopulationState,
    children: Program,
    fitness: jax.Array,
    config: EvolutionConfig,
    *,
    mask: jax.Array | None = None,
) -> PopulationState:
    """The scored children (`ask`'s, fitness float `[K]`; NaN counts as -inf) replace the
    oldest individuals. `mask` bool `[K]`: only these children count (default: all)."""
    P = config.population_size
    fitness = jnp.asarray(fitness, jnp.float32)
    fitness = jnp.where(jnp.isnan(fitness), -jnp.inf, fitness)
    keep = told(state, config) if mask is None else told(state, config) & mask
    position = jnp.cumsum(keep) - 1  # Kept children fill the oldest slots, in order.
    slots = jnp.where(keep, (state.cursor + position) % P, P)  # Out of range: dropped.
    n = jnp.sum(keep, dtype=jnp.int32)
    candidates = jnp.where(keep, fitness, -jnp.inf)
    best = jnp.argmax(candidates)
    better = candidates[best] > state.best_fitness
    individuals = state.num_individuals + n
    return state._replace(
        programs=jax.tree.map(
            lambda pop, kids: pop.at[slots].set(kids, mode="drop"), state.programs, children
        ),
        fitness=state.fitness.at[slots].set(fitness, mode="drop"),
        cursor=(state.cursor + n) % P,
        num_individuals=individuals,
        generation=state.generation + 1,
        best_program=jax.tree.map(
            lambda old, kids: jnp.where(better, kids[best], old), state.best_program, children
        ),
        best_fitness=jnp.where(better, candidates[best], state.best_fitness),
        best_individual=jnp.where(better, individuals, state.best_individual),
    )


def best_of_population(state: PopulationState) -> tuple[Program, jax.Array]:
    """The original's candidate: the population's fittest individual (the first on ties)."""
    i = jnp.argmax(state.fitness)
    return jax.tree.map(lambda x: x[i], state.programs), state.fitness[i]
