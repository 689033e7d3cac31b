"""Frozen components with fixed instructions (`ComponentSpec.fixed`): the VM runs them as
straight-line code, and that must score exactly as its general slot loop does."""

import jax
import numpy as np
import pytest
from test_experiment import module_config

from azjax import config, device_pruning, evaluation, generator, ops, tasks
from azjax import program as program_lib
from azjax.program import ComponentSpec, ProgramSpec

SIZES = (5, 6, 8)
SPEC = ProgramSpec(4, 4, 3, *(ComponentSpec(n, ops.ALL_OPS) for n in SIZES))
NUM_PROGRAMS, NUM_FIXED = 12, 3


def _fixed_spec(program, components):
    """SPEC with `components` frozen to `program`'s instructions."""
    changes = {}
    for c in components:
        fixed = tuple(program_lib.instructions(getattr(program, c)))
        changes[c] = ComponentSpec(SPEC.component(c).size, (), ops.ALL_OPS, fixed)
    return SPEC.replace(**changes)


def _with(population, program, components):
    """`population` with `components` replaced by `program`'s."""
    n = program_lib.population_size(population)
    changes = {
        c: jax.tree.map(lambda x: np.broadcast_to(x, (n, *x.shape)), getattr(program, c))
        for c in components
    }
    return population._replace(**changes)


def _evaluate(population, taskset, info, seeds, spec):
    return evaluation.evaluate_lanes(
        population,
        taskset,
        seeds,
        spec=spec,
        eval_type=info.eval_type,
        epoch_size=info.epoch_size,
        record=True,
    )


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.array_equal(a.view(np.int32), b.view(np.int32))


@pytest.mark.parametrize(
    "F, seed",
    [
        pytest.param(1, 0, marks=pytest.mark.slow),
        (4, 1),
        pytest.param(8, 2, marks=pytest.mark.slow),
        pytest.param(16, 3, marks=pytest.mark.slow),
    ],
)
def test_fixed_components_score_as_the_general_vm(F, seed):
    """Random programs over all 65 ops; Predict and Learn (and Setup on odd seeds) fixed to one
    program's. Fitness, train steps and the FEC records agree bit for bit."""
    key_pop, key_seeds, key_tasks = jax.random.split(jax.random.key(seed), 3)
    population = jax.tree.map(
        np.asarray,
        generator.make_initial_population(key_pop, "RANDOM", SPEC, SIZES, NUM_PROGRAMS),
    )
    task_spec = tasks.TaskSpec(
        kind="linear", num_train_examples=12, num_valid_examples=6, feature_size=F, num_tasks=2
    )
    taskset, info = tasks.make_tasks(tasks.randomize_seeds(key_tasks, task_spec))
    frozen = ("predict", "learn") + (("setup",) if seed % 2 else ())
    variants = [
        _with(population, program_lib.index(population, k), frozen) for k in range(NUM_FIXED)
    ]
    seeds = evaluation.lane_seeds(key_seeds, NUM_PROGRAMS, info.num_tasks)
    general = _evaluate(
        program_lib.stack([p for v in variants for p in program_lib.unstack(v)]),
        taskset,
        info,
        np.concatenate([seeds] * NUM_FIXED),
        SPEC,
    )
    finite = 0
    for k, variant in enumerate(variants):
        spec = _fixed_spec(program_lib.index(population, k), frozen)
        got = _evaluate(variant, taskset, info, seeds, spec)
        rows = slice(k * NUM_PROGRAMS, (k + 1) * NUM_PROGRAMS)
        for field in ("fitness", "train_steps", "train_errors", "valid_errors"):
            assert _same_bits(getattr(got, field), getattr(general, field)[rows]), (k, field)
        finite += int(np.isfinite(np.asarray(got.train_errors)).sum())
    assert finite > 0  # Not every lane blew up at once.


def test_a_program_that_does_not_hold_the_fixed_code_is_not_in_spec():
    """evaluate_lanes scores such programs NaN (tested with the other out-of-spec programs in
    test_evaluation.py)."""
    demo = ProgramSpec()
    sizes = tuple(demo.component(c).size for c in program_lib.COMPONENTS)
    population = jax.tree.map(
        np.asarray,
        generator.make_initial_population(jax.random.key(5), "RANDOM", demo, sizes, 4),
    )
    program = program_lib.index(population, 0)
    fixed = tuple(program_lib.instructions(program.learn))
    spec = demo.replace(learn=ComponentSpec(demo.learn.size, (), ops.DEMO_OPS, fixed))
    population = _with(population, program, ("learn",))
    consts = population.learn.consts.copy()
    consts[2, 0, 0] += 1.0  # Program 2's Learn differs in one constant.
    population = population._replace(learn=population.learn._replace(consts=consts))
    np.testing.assert_array_equal(evaluation.in_spec(population, spec), [True, True, False, True])


def test_the_nonlinear_config_fixes_predict_and_learn_and_pruning_keeps_them():
    exp = config.build(module_config("nonlinear"))
    spec = exp.search.evolution.spec
    model = generator.damaged_neural_net_algorithm(spec, exp.search.evolution.sizes)
    assert spec.setup.fixed is None
    for c in ("predict", "learn"):
        assert spec.component(c).fixed == tuple(program_lib.instructions(getattr(model, c)))
    batch = jax.tree.map(lambda x: np.asarray(x)[None], model)
    pruned = device_pruning.compact(device_pruning.prune(batch, spec), spec)
    for c in ("predict", "learn"):
        np.testing.assert_array_equal(getattr(pruned, c).code, getattr(batch, c).code)
    assert bool(evaluation.in_spec(pruned, spec)[0])


def test_fixed_instructions_are_validated():
    bad = program_lib.Instruction(ops.op_ids(["SCALAR_SUM_OP"])[0], 1, 9, 2)  # s9: no such.
    with pytest.raises(ValueError, match="out of memory"):
        SPEC.replace(learn=ComponentSpec(8, (), ops.ALL_OPS, (bad,)))
    with pytest.raises(ValueError, match="empty op list"):
        SPEC.replace(learn=ComponentSpec(8, ops.ALL_OPS, (), ()))
