"""Regularized evolution as init/ask/tell: K = 1 is the original steady state; selection; ask and
tell with a user's own fitness under jit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import evolution, generator, keys, mutation
from azjax import program as program_lib
from azjax.program import ProgramSpec

SPEC = ProgramSpec()  # The demo's search space: 4/3/1 memory, sizes 10/2/8, six ops.
MUTATION = mutation.MutationParams(
    allowed_mutation_types=("ALTER_PARAM", "RANDOMIZE_INSTRUCTION", "RANDOMIZE_COMPONENT_FUNCTION"),
    mutate_prob=0.9,
)


def _config(P, K, **kw):
    return evolution.EvolutionConfig(
        spec=SPEC,
        mutation=MUTATION,
        population_size=P,
        tournament_size=4,
        children_per_generation=K,
        **kw,
    )


def toy_fitness(programs):
    """A deterministic objective of programs `[K]`: Setup's first constants near 3.0."""
    return -jnp.abs(jnp.sum(programs.setup.consts[..., 0], axis=-1) - 3.0)


@functools.partial(jax.jit, static_argnames=("config",))
def evolve(state, config, num_generations):
    """`num_generations` of ask, score with `toy_fitness`, tell, under one jit (a loop)."""

    def generation(_, state):
        children, state = evolution.ask(state, config)
        return evolution.tell(state, children, toy_fitness(children), config)

    return jax.lax.fori_loop(0, num_generations, generation, state)


_mutate = jax.jit(mutation.mutate, static_argnums=(2, 3))


def _plain_steady_state(key, config, num_steps):
    """The original's loop, one child at a time, written out plainly (with the same draws)."""
    P, T = config.population_size, config.tournament_size
    k_init, key = keys.split(key)
    programs = jax.device_get(
        generator.make_initial_population(k_init, "RANDOM", SPEC, config.sizes, P)
    )
    fitness = np.zeros(P, np.float32)
    for step in range(num_steps):
        key, k_children = keys.split(key)
        if step < P:  # Init: the initial programs are scored in order.
            child = program_lib.index(programs, step)
        else:
            k_select, k_mutate = keys.split(k_children)
            contestants = np.asarray(generator.bits_below(keys.key_bits(k_select, (1, T)), P))[0]
            winner = contestants[np.argmax(fitness[contestants])]
            (k_child,) = keys.split(k_mutate, 1)
            parent = program_lib.index(programs, winner)
            child = jax.device_get(_mutate(k_child, parent, SPEC, MUTATION))
        slot = step % P
        f = -abs(np.float32(np.sum(child.setup.consts[:, 0], dtype=np.float32)) - np.float32(3.0))
        programs = jax.tree.map(
            lambda pop, c, s=slot: np.concatenate([pop[:s], np.asarray(c)[None], pop[s + 1 :]]),
            programs,
            child,
        )
        fitness[slot] = f
    return programs, fitness


@pytest.mark.slow  # About 10 s cold: the default suite stays under 4 minutes.
def test_k1_equals_plain_steady_state():
    config = _config(12, 1)
    state = evolve(evolution.init(jax.random.key(3), config), config, 40)
    programs, fitness = _plain_steady_state(jax.random.key(3), config, 40)
    np.testing.assert_array_equal(np.asarray(state.fitness), fitness)
    for a, b in zip(jax.tree.leaves(state.programs), jax.tree.leaves(programs), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert int(state.num_individuals) == 40 and int(state.cursor) == 40 % 12
    assert float(state.best_fitness) >= fitness.max()


def test_tournament_first_seen_max_wins_and_draws_with_replacement():
    fitness = jnp.array([0.0, 3.0, 3.0, 1.0])
    winners = np.asarray(evolution.tournament(jax.random.key(0), fitness, 2000, 2))
    assert set(winners) <= {0, 1, 2, 3}
    assert (winners != 0).mean() > 0.5  # Selection pressure.
    assert {1, 2} <= set(winners)  # Equal fitness: whichever was drawn first.
    single = np.asarray(evolution.tournament(jax.random.key(1), fitness, 4000, 1))
    np.testing.assert_allclose(np.bincount(single, minlength=4) / 4000, 0.25, atol=0.03)


_ask = jax.jit(evolution.ask, static_argnums=1)
_tell = jax.jit(evolution.tell, static_argnums=3)
_told = jax.jit(evolution.told, static_argnums=1)


def test_initial_population_is_asked_for_first_then_the_oldest_are_replaced():
    config = _config(10, 4)
    state = evolution.init(jax.random.key(0), config)
    initial = jax.device_get(state.programs)
    asked = []
    for generation in range(3):  # 4 + 4 + 2 initial programs (a partial last batch).
        children, state = _ask(state, config)
        keep = np.asarray(_told(state, config))
        assert keep.sum() == (4 if generation < 2 else 2)
        asked.append(jax.device_get(children.learn.code)[keep])
        state = _tell(state, children, jnp.arange(4.0) + generation, config)
    np.testing.assert_array_equal(np.concatenate(asked), initial.learn.code)
    assert int(state.cursor) == 0 and int(state.num_individuals) == 10
    for _ in range(3):
        children, state = _ask(state, config)
        state = _tell(state, children, jnp.zeros(4), config)
    assert int(state.cursor) == 2  # 12 children into 10 slots: wrapped around.
    assert int(state.num_individuals) == 22 and int(state.generation) == 6
    # A masked tell keeps only the masked children, in the oldest slots in order.
    children, state = _ask(state, config)
    state = _tell(state, children, jnp.ones(4), config, mask=jnp.array([0, 1, 0, 1], bool))
    assert int(state.cursor) == 4 and int(state.num_individuals) == 24


def test_random_search_mode_asks_for_fresh_programs():
    config = _config(8, 8, mode="random")
    state = evolve(evolution.init(jax.random.key(0), config), config, 1)
    children, _ = _ask(state, config)
    assert not np.array_equal(
        np.asarray(children.learn.code), np.asarray(state.programs.learn.code)
    )


def test_config_errors_and_sizes_default_to_the_spec():
    with pytest.raises(ValueError, match="children_per_generation"):
        _config(10, 11)
    with pytest.raises(ValueError, match="mode"):
        _config(10, 2, mode="annealing")
    with pytest.raises(ValueError, match="initial algorithm"):
        _config(10, 2, initial_population="PERCEPTRON")
    assert _config(10, 2).sizes == (10, 2, 8)


@pytest.mark.slow  # About 10 s cold: the default suite stays under 4 minutes.
def test_ask_and_tell_with_a_users_fitness_improve_a_toy_objective_under_jit():
    config = _config(60, 15)
    state = evolve(evolution.init(jax.random.key(7), config), config, 4)  # The initial population.
    start = float(jnp.mean(state.fitness))
    state = evolve(state, config, 60)
    assert float(jnp.mean(state.fitness)) > start + 0.5
    assert float(state.best_fitness) > -0.05
    assert float(state.best_fitness) >= float(jnp.max(state.fitness))
    best, fit = evolution.best_of_population(state)
    assert float(fit) == float(jnp.max(state.fitness))
    # NaN fitness counts as the worst.
    children, state = _ask(state, config)
    state = _tell(state, children, jnp.full(15, jnp.nan), config)
    assert float(jnp.min(state.fitness)) == -jnp.inf
