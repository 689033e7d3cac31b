"""The device search (`azjax.search`): n generations per call, compiles, devices, stopping."""

import dataclasses
import functools

import jax
import numpy as np
import pytest
from test_experiment import _tiny_config

from azjax import config as config_lib
from azjax import runtime, search, tasks

# One worker runs this group: its tests share compiled programs and cached runs.
pytestmark = pytest.mark.xdist_group("tiny_search")

E = 2
# The search of test_experiment's TINY runs with two slots: the same compiled runner serves both.
CONFIG = config_lib.build(_tiny_config(parallel_experiments=E)).search
TASKS = _tiny_config().search_tasks
TASKS = tasks.TaskSpec(**TASKS.to_dict())


def config(**kw):
    return dataclasses.replace(CONFIG, **kw)


@functools.cache
def stacked_tasks():
    specs = [tasks.randomize_seeds(jax.random.key(e), TASKS) for e in range(E)]
    return search.stack_tasks([tasks.make_tasks(s)[0] for s in specs])


def fresh(mesh=None, active=(True, True)):
    state = search.init(jax.random.split(jax.random.key(3), E), CONFIG)
    state = state._replace(active=np.asarray(active))
    return search.place(state, mesh), search.place(stacked_tasks(), mesh)


def leaves_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_generations_per_call_do_not_change_the_results():
    run = search.runner(CONFIG)
    one, tasks_ = fresh()
    for _ in range(9):
        one = run(one, tasks_, 1)
    many, tasks_ = fresh()
    many = run(many, tasks_, 4)
    many = run(many, tasks_, 5)
    leaves_equal(one, many)
    assert np.asarray(one.population.generation).tolist() == [9, 9]
    assert np.asarray(one.population.num_individuals).tolist() == [90, 90]
    counters = jax.device_get(one.counters)
    assert (counters.children == 90).all() and (counters.full_evaluations > 0).all()


def test_one_compile_for_any_number_of_running_experiments():
    run = search.runner(CONFIG)
    before = run._cache_size()  # Earlier tests may have compiled it (for other placements too).
    for active in [(True, True), (True, False), (False, True), (False, False)]:
        state, tasks_ = fresh(active=active)
        state = run(state, tasks_, 2)
        generations = np.asarray(state.population.generation)
        np.testing.assert_array_equal(generations, np.where(active, 2, 0))  # Idle: untouched.
    # The runner's own compiles (other tests' and threads' compiles do not count here).
    assert run._cache_size() <= before + 1


@pytest.mark.slow
def test_results_do_not_depend_on_the_number_of_devices():
    assert len(jax.devices()) >= 2, "conftest asks for two CPU devices"
    results = []
    for devices in (jax.devices()[:1], jax.devices()[:2]):
        mesh = runtime.program_mesh(devices)
        state, tasks_ = fresh(mesh)
        results.append(jax.device_get(search.runner(CONFIG, mesh)(state, tasks_, 6)))
    leaves_equal(*results)


@pytest.mark.slow  # A search run to its first finish: about 20 s cold.
def test_run_stops_on_the_device_when_an_experiment_finishes():
    cfg = config(stop_at_fitness=0.2)
    run = search.runner(cfg)
    state, tasks_ = fresh()
    state = run(state, tasks_, 1000)
    done = np.asarray(search.finished(state, cfg))
    assert done.any()
    generations = int(np.asarray(state.population.generation).max())
    assert generations < 1000
    # Stepping it once less had finished nothing: the loop stopped at the first finish.
    before, tasks_ = fresh()
    before = run(before, tasks_, generations - 1)
    assert not np.asarray(search.finished(before, cfg)).any()
    assert (np.asarray(state.population.fitness).max(-1)[done] > 0.2).all()


def test_finished_rules():
    """stop_at_fitness (once the initial population is scored), max_train_steps (a 64-bit
    count), stagnation_individuals (after the initial population), max_individuals; idle slots
    never finish."""
    state, _ = fresh(active=(True, False))
    state = jax.device_get(state)
    pop = state.population._replace(
        num_individuals=np.array([40, 40], np.int32),
        best_individual=np.array([40, 40], np.int32),
        fitness=np.full((E, 40), 0.5, np.float32),
    )
    state = state._replace(population=pop)
    finished = jax.jit(search.finished, static_argnums=1)
    assert not np.asarray(finished(state, config(stop_at_fitness=0.5))).any()
    np.testing.assert_array_equal(finished(state, config(stop_at_fitness=0.4)), [True, False])
    early = state._replace(population=pop._replace(num_individuals=np.array([30, 30], np.int32)))
    assert not np.asarray(finished(early, config(stop_at_fitness=0.4))).any()
    steps = np.array([[5, 1], [5, 1]], np.uint32)  # 2^32 + 5
    counted = state._replace(counters=state.counters._replace(train_steps=steps))
    np.testing.assert_array_equal(
        finished(counted, config(max_train_steps=2**32 + 5)), [True, False]
    )
    assert not np.asarray(finished(counted, config(max_train_steps=2**32 + 6))).any()
    stale = state._replace(population=pop._replace(num_individuals=np.array([70, 70], np.int32)))
    np.testing.assert_array_equal(finished(stale, config(stagnation_individuals=30)), [True, False])
    assert not np.asarray(finished(stale, config(stagnation_individuals=31))).any()
    np.testing.assert_array_equal(finished(stale, config(max_individuals=70)), [True, False])
    assert not np.asarray(finished(stale, config(max_individuals=71))).any()
