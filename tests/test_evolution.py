"""Batched regularized evolution: K=1 is the original steady state; selection; search progress."""

import jax
import numpy as np
import pytest

from azjax import evaluator as evaluator_lib
from azjax import evolution, mutation, tasks
from azjax import program as program_lib
from azjax.program import ProgramSpec

SPEC = ProgramSpec()  # The demo's search space: 4/3/1 memory, sizes 10/2/8, six ops.
MUTATION = mutation.MutationParams(
    allowed_mutation_types=("ALTER_PARAM", "RANDOMIZE_INSTRUCTION", "RANDOMIZE_COMPONENT_FUNCTION"),
    mutate_prob=0.9,
)


@pytest.fixture(scope="module")
def groups():
    spec = tasks.TaskSpec(kind="linear", num_train_examples=20, num_valid_examples=20, num_tasks=2)
    return evaluator_lib.place_collection(
        [tasks.make_tasks(spec)], fec_num_train=10, fec_num_valid=10
    )


def _evaluator(groups):
    return evaluator_lib.SearchEvaluator(groups, config=evaluator_lib.EvaluatorConfig(spec=SPEC))


def _config(P, K, **kw):
    return evolution.EvolutionConfig(
        spec=SPEC,
        mutation=MUTATION,
        sizes=(10, 2, 8),
        population_size=P,
        tournament_size=4,
        children_per_generation=K,
        **kw,
    )


def _plain_steady_state(state, evaluate, config, num_steps):
    """The original's loop, one child at a time, written out plainly (REFERENCE.md §7.1)."""
    programs = state.programs
    fitness = state.fitness.copy()
    key = state.key
    P = config.population_size
    for step in range(num_steps):
        key, k_children, k_eval = jax.random.split(key, 3)
        k_select, k_mutate = jax.random.split(k_children)
        ranks = evolution.fitness_ranks(fitness)
        contestants = np.asarray(jax.random.randint(k_select, (1, config.tournament_size), 0, P))[0]
        winner = contestants[np.argmax(ranks[contestants])]
        parent = program_lib.index(programs, winner)
        child = mutation.mutate(jax.random.split(k_mutate, 1)[0], parent, SPEC, MUTATION)
        child = jax.tree_util.tree_map(lambda x: np.asarray(x)[None], child)
        child_fitness = evaluate(child, k_eval)[0]
        slot = step % P
        programs = jax.tree_util.tree_map(
            lambda pop, c, s=slot: np.concatenate([pop[:s], c, pop[s + 1 :]]), programs, child
        )
        fitness[slot] = child_fitness
    return programs, fitness


def test_k1_equals_plain_steady_state(groups):
    config = _config(12, 1)
    state = evolution.init(jax.random.key(3), _evaluator(groups).evaluate, config)
    plain_programs, plain_fitness = _plain_steady_state(
        state, _evaluator(groups).evaluate, config, 30
    )
    evaluate = _evaluator(groups).evaluate
    for _ in range(30):
        state = evolution.step(state, evaluate, config)
    np.testing.assert_array_equal(state.fitness, plain_fitness)
    for a, b in zip(
        jax.tree_util.tree_leaves(state.programs),
        jax.tree_util.tree_leaves(plain_programs),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert int(state.num_individuals) == 12 + 30 and int(state.cursor) == 30 % 12


def test_tournament_first_seen_max_wins_and_draws_with_replacement():
    ranks = np.array([0, 3, 3, 1], np.int32)
    winners = np.asarray(evolution.tournament(jax.random.key(0), ranks, 2000, 2))
    assert set(winners) <= {0, 1, 2, 3}
    assert (winners != 0).mean() > 0.5  # Selection pressure.
    # Rank 3 is shared by 1 and 2: both win sometimes (whichever was drawn first).
    assert {1, 2} <= set(winners)
    # With a tournament of 1, the winner is a uniform draw (with replacement).
    single = np.asarray(evolution.tournament(jax.random.key(1), ranks, 4000, 1))
    np.testing.assert_allclose(np.bincount(single, minlength=4) / 4000, 0.25, atol=0.03)
    assert evolution.fitness_ranks(np.array([0.5, 0.1, 0.5, 0.9])).tolist() == [1, 0, 1, 2]


def test_generation_replaces_the_oldest(groups):
    config = _config(10, 4)
    state = evolution.init(jax.random.key(0), _evaluator(groups).evaluate, config)
    evaluate = _evaluator(groups).evaluate
    state = evolution.step(state, evaluate, config)
    assert int(state.cursor) == 4 and int(state.generation) == 1
    state = evolution.step(state, evaluate, config)
    state = evolution.step(state, evaluate, config)
    assert int(state.cursor) == 2  # 12 children into 10 slots: wrapped around.
    assert int(state.num_individuals) == 22


def test_random_search_mode_draws_fresh_programs(groups):
    config = _config(8, 8, mode="random")
    state = evolution.init(jax.random.key(0), _evaluator(groups).evaluate, config)
    children = evolution.make_children(jax.random.key(1), state, config)
    assert not np.array_equal(children.learn.code, state.programs.learn.code)
    assert children.learn.code.shape == state.programs.learn.code.shape


def test_config_errors():
    with pytest.raises(ValueError, match="children_per_generation"):
        _config(10, 11)
    with pytest.raises(ValueError, match="mode"):
        _config(10, 2, mode="annealing")
    with pytest.raises(ValueError, match="initial algorithm"):
        _config(10, 2, initial_population="PERCEPTRON")


def test_short_demo_search_improves_fitness(groups):
    config = _config(60, 15)
    evaluate = _evaluator(groups).evaluate
    state = evolution.init(jax.random.key(7), evaluate, config)
    start = evolution.population_stats(state)
    for _ in range(40):
        state = evolution.step(state, evaluate, config)
    end = evolution.population_stats(state)
    assert end["mean"] > start["mean"] + 0.02
    assert end["best"] >= start["best"]
    assert state.best_fitness >= end["best"]


@pytest.mark.parametrize("mode", ["evolution", "random"])
def test_proposals_for_several_populations_are_each_populations_own(groups, mode):
    """`propose` on 3 populations at once (one vmapped call, concurrent experiments) gives each
    the children `make_children` gives it alone, with the keys `step` threads."""
    config = _config(12, 5, mode=mode)
    states = [
        evolution.init(jax.random.key(s), _evaluator(groups).evaluate, config) for s in (1, 2, 3)
    ]
    together = evolution.propose(states, config)
    for state, (children, k_eval, key) in zip(states, together, strict=True):
        expect_key, k_children, expect_eval = jax.random.split(state.key, 3)
        alone = evolution.make_children(k_children, state, config)
        jax.tree.map(np.testing.assert_array_equal, children, alone)
        np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(expect_key))
        np.testing.assert_array_equal(jax.random.key_data(k_eval), jax.random.key_data(expect_eval))
