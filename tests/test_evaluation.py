"""Batched evaluation (`azjax.evaluation`, `azjax.scoring`) against the reference protocol.

Random programs over the full op set (random ops included) on linear, teacher and projected-binary
digits tasks must score what `azjax.reference.evaluate` scores with the same lane seeds; the
"switch" engine must agree with the VM; the hand-written algorithms must learn; NaN/inf programs
score 0 in isolation; the train budget and `score` are checked end to end; and the FEC records
match `reference.fec_errors`.
"""

import functools

import jax
import numpy as np
import pytest

from azjax import (
    budget,
    device_pruning,
    evaluation,
    generator,
    ops,
    pruning,
    scoring,
    switch_vm,
    tasks,
)
from azjax import program as program_lib
from azjax import reference as ref
from azjax.program import ComponentSpec, Instruction, ProgramSpec

# One worker runs this group: its tests share compiled programs and cached runs.
pytestmark = pytest.mark.xdist_group("scoring")

I = Instruction  # noqa: E741
F = 4
TOL = 1e-4  # |VM fitness - reference fitness|

# Random programs over all 65 ops in every component.
SPEC_RICH = ProgramSpec(
    num_scalars=4,
    num_vectors=4,
    num_matrices=2,
    setup=ComponentSpec(4, ops.ALL_OPS),
    predict=ComponentSpec(4, ops.ALL_OPS),
    learn=ComponentSpec(4, ops.ALL_OPS),
)
P_RICH = 96

# The demo's space (4/3/1 addresses, 10/2/8 slots, the six demo ops), plus MATRIX_GAUSSIAN_SET as
# an extra Learn op: an expensive instruction for the train budget test.
SPEC_LIN = ProgramSpec(learn=ComponentSpec(8, ops.DEMO_OPS, extra_ops=(64,)))
LINEAR_SIZES = (1, 1, 4)
# The demo's linear tasks (run_demo.sh): F = 4, 100 train, 100 valid, 10 tasks, default seeds.
LINEAR_TASKS = tasks.TaskSpec(
    kind="linear", num_train_examples=100, num_valid_examples=100, feature_size=F, num_tasks=10
)
TEACHER_TASKS = tasks.TaskSpec(
    kind="teacher", num_train_examples=1000, num_valid_examples=100, feature_size=F, num_tasks=4
)
# LINEAR's default learning rate (0.01) is too slow to converge in 100 SGD steps (fitness ~0.47);
# 0.15 reaches RMSE < 1.6e-4 on every demo task.
LEARNING_RATE = 0.15

# NEURAL_NET's address space (5/9/2) and exact component sizes (3/5/11).
NN_SIZES = (3, 5, 11)


def _nn_spec() -> ProgramSpec:
    spec = ProgramSpec(
        num_scalars=5,
        num_vectors=9,
        num_matrices=2,
        setup=ComponentSpec(NN_SIZES[0]),
        predict=ComponentSpec(NN_SIZES[1]),
        learn=ComponentSpec(NN_SIZES[2]),
    )
    for program in (
        generator.neural_net_algorithm(spec, NN_SIZES),
        generator.linear_algorithm(spec, NN_SIZES),
    ):
        spec = generator.add_required_ops(spec, program)
    return spec


SPEC_NN = _nn_spec()


# ------------------------------------------------------------------------------------------------
# Helpers.


@functools.cache
def big_tasks(kind):
    """The demo's linear tasks or the teacher tasks (TaskSet, TaskInfo)."""
    return tasks.make_tasks(LINEAR_TASKS if kind == "linear" else TEACHER_TASKS)


@functools.cache
def rich_population(seed):
    pop = generator.make_initial_population(
        jax.random.key(seed), "RANDOM", SPEC_RICH, (4, 4, 4), P_RICH
    )
    return jax.tree.map(np.asarray, pop)


def evaluate(population, taskset, info, seeds, spec, **kw):
    return evaluation.evaluate_lanes(
        population,
        taskset,
        np.asarray(seeds, np.uint32),
        spec=spec,
        eval_type=info.eval_type,
        epoch_size=info.epoch_size,
        **kw,
    )


def reference_results(population, taskset, info, seeds, spec, lanes, dtype=np.float32):
    """{(p, t): reference EvalResult} for the given lanes, with the VM's lane seeds."""
    out = {}
    for p, t in lanes:
        program = program_lib.index(population, p)
        task = tasks.single_task(taskset, info, t)
        out[p, t] = ref.evaluate(program, task, spec=spec, seed=seeds[p, t], dtype=dtype)
    return out


def _same_run(a: ref.EvalResult, b: ref.EvalResult) -> bool:
    close = functools.partial(np.allclose, rtol=1e-4, atol=1e-5)
    return (
        abs(a.fitness - b.fitness) <= TOL
        and a.train_errors.shape == b.train_errors.shape
        and a.valid_errors.shape == b.valid_errors.shape
        and close(a.train_errors, b.train_errors)
        and close(a.valid_errors, b.valid_errors)
    )


def assert_matches_reference(population, taskset, info, seeds, spec, fitness, steps=None):
    """VM fitness == reference fitness (|diff| <= TOL) on every (program, task) lane, and the
    training steps executed (`steps` `[P, T]`, if given) == the reference's where the runs agree.

    A lane may differ only when it is ill-conditioned: the reference's own run (fitness and error
    trajectory) changes between float32 and float64 memory (chaotic programs, e.g. iterated tan,
    or cos(1/x) of a vanishing x). Those must stay rare. Returns the reference fitness [P, T].
    """
    P, T = fitness.shape
    lanes = [(p, t) for p in range(P) for t in range(T)]
    runs = reference_results(population, taskset, info, seeds, spec, lanes)
    want = np.array([[runs[p, t].fitness for t in range(T)] for p in range(P)])
    bad = [tuple(x) for x in np.argwhere(np.abs(fitness - want) > TOL)]
    f64 = reference_results(population, taskset, info, seeds, spec, bad, dtype=np.float64)
    unexplained = [
        (p, t, float(fitness[p, t]), float(want[p, t]), f64[p, t].fitness)
        for p, t in bad
        if _same_run(runs[p, t], f64[p, t])
    ]
    assert not unexplained, f"(program, task, vm, ref32, ref64): {unexplained}"
    assert len(bad) <= 0.03 * P * T, bad
    if steps is not None:  # Executed steps: the passed checks, plus a stopping one.
        ran = np.array(
            [
                [len(runs[p, t].train_errors) + runs[p, t].stopped_early for t in range(T)]
                for p in range(P)
            ]
        )
        ok = np.abs(fitness - want) <= TOL
        np.testing.assert_array_equal(np.asarray(steps)[ok], ran[ok])
        assert 0 < (ran < taskset.x_train.shape[1]).sum() < P * T  # Some lanes stop early.
    return want


def small_tasks(kind, digits_dir=None):
    """2 tasks, 2 epochs of 10 train examples, 20 valid (numpy): small enough for the reference.

    An epoch of 10 makes the VM's record=True errors (first epoch, first validation pass) the FEC
    fingerprint inputs that `reference.fec_errors` computes. Digits tasks come from make_tasks;
    linear and teacher tasks are cut from the big task sets of the tests below (each new shape
    costs the task generator seconds of compile), their second epoch a permutation per task.
    """
    if kind == "projected_binary":
        spec = tasks.TaskSpec(
            kind=kind,
            num_train_examples=10,
            num_train_epochs=2,
            num_valid_examples=20,
            feature_size=F,
            num_tasks=2,
            dataset_dir=digits_dir,
            dataset_name="digits",
            positive_class=0,
            negative_class=1,
            eval_type="accuracy",
            max_supported_data_seed=2,
        )
        taskset, info = tasks.make_tasks(spec)
        return jax.tree.map(np.asarray, taskset), info
    big = jax.tree.map(np.asarray, big_tasks(kind)[0])
    r = np.random.default_rng(0)
    order = np.stack([np.concatenate([np.arange(10), r.permutation(10)]) for _ in range(2)])
    taskset = tasks.TaskSet(
        x_train=np.take_along_axis(big.x_train[:2], order[:, :, None], axis=1),
        y_train=np.take_along_axis(big.y_train[:2], order, axis=1),
        x_valid=big.x_valid[:2, :20],
        y_valid=big.y_valid[:2, :20],
    )
    info = tasks.TaskInfo(
        eval_type="rms", epoch_size=10, num_tasks=2, feature_size=F, num_train_epochs=2
    )
    return taskset, info


def assert_records_match_fec_errors(population, taskset, info, seeds, spec, result):
    """record=True errors == reference.fec_errors (first 10 train, first 10 valid examples).

    The VM records the error of the step that stops a run (then NaN, for training); the reference
    does not record it. So runs that stop early are compared up to the stopping step, and the
    VM's stopping error must be NaN or above max_abs_error. Returns the number of full runs.
    """
    train_rec, valid_rec = np.asarray(result.train_errors), np.asarray(result.valid_errors)
    P, T = train_rec.shape[:2]
    assert train_rec.shape[2] == info.epoch_size * info.num_train_epochs
    assert valid_rec.shape[2] == taskset.x_valid.shape[1]
    close = functools.partial(np.allclose, rtol=1e-4, atol=1e-5)
    full_runs, ill = 0, []
    for p in range(P):
        program = program_lib.index(population, p)
        for t in range(T):
            task = tasks.single_task(taskset, info, t)
            tr, va = ref.fec_errors(program, task, spec=spec, seed=seeds[p, t])
            got_tr, got_va = train_rec[p, t, :10], valid_rec[p, t, :10]
            if not (close(got_tr[: len(tr)], tr) and close(got_va[: len(va)], va)):
                # Allowed only when float32 rounding alone changes the reference's errors.
                tr64, va64 = ref.fec_errors(
                    program, task, spec=spec, seed=seeds[p, t], dtype=np.float64
                )
                same = len(tr64) == len(tr) and len(va64) == len(va)
                assert not (same and close(tr64, tr) and close(va64, va)), (p, t, got_tr, tr)
                ill.append((p, t))
                continue
            if len(tr) < 10:  # Training stopped at step len(tr): recorded, then NaN.
                failing = got_tr[len(tr)]
                assert np.isnan(failing) or failing > evaluation.MAX_ABS_ERROR
                assert np.isnan(train_rec[p, t, len(tr) + 1 :]).all()
                assert np.isnan(valid_rec[p, t]).all()
            elif len(va) < 10:  # Validation stopped: the stopping error is NaN or too big.
                failing = got_va[len(va)]
                assert np.isnan(failing) or failing > evaluation.MAX_ABS_ERROR
            else:
                full_runs += 1
    assert len(ill) <= 0.03 * P * T, ill
    return full_runs


# ------------------------------------------------------------------------------------------------
# VM == reference on random programs.


@pytest.mark.parametrize(
    "kind, pop_seed",
    [("linear", 0), ("teacher", 1), pytest.param("projected_binary", 2, marks=pytest.mark.slow)],
)
def test_random_programs_score_as_the_reference(kind, pop_seed, digits_dir):
    """96 random programs x 2 tasks x 2 epochs per kind: fitness and FEC records."""
    population = rich_population(pop_seed)
    taskset, info = small_tasks(kind, digits_dir)
    assert taskset.x_train.shape == (2, 20, F)
    seeds = evaluation.lane_seeds(jax.random.key(pop_seed), P_RICH, info.num_tasks)
    result = evaluate(population, taskset, info, seeds, SPEC_RICH, record=True)
    fitness = np.asarray(result.fitness)
    assert fitness.shape == (P_RICH, 2)
    want = assert_matches_reference(
        population, taskset, info, seeds, SPEC_RICH, fitness, steps=result.train_steps
    )
    # The comparison has teeth: many lanes learn something, with many different scores.
    assert (want > 0).mean() > 0.5
    assert len(np.unique(np.round(want, 5))) >= (4 if kind == "projected_binary" else 40)
    full_runs = assert_records_match_fec_errors(population, taskset, info, seeds, SPEC_RICH, result)
    assert full_runs > P_RICH // 2
    if kind == "linear":
        # Programs with random ops depend on the lane seed (same compiled call, new seeds).
        other = evaluation.lane_seeds(jax.random.key(99), P_RICH, info.num_tasks)
        refit = evaluate(population, taskset, info, other, SPEC_RICH, record=True).fitness
        assert 0 < (np.abs(np.asarray(refit) - fitness) > TOL).sum() < P_RICH


# ------------------------------------------------------------------------------------------------
# Hand-written algorithms, NaN/inf programs, the budget and the evaluator (through run_chunked).

POISON = {
    # s1 = s3 * s3 with s3 = 3e38: inf on the first Predict.
    "inf": program_lib.make_program(SPEC_LIN, [I(56, out=3, consts=(3e38,))], [I(3, 3, 3, 1)]),
    # s1 = inf - inf: NaN on the first Predict.
    "nan": program_lib.make_program(
        SPEC_LIN, [I(56, out=3, consts=(3e38,))], [I(3, 3, 3, 2), I(2, 2, 2, 1)]
    ),
    # LINEAR with learning rate 10: SGD diverges after a few steps, NaN/inf in every bank.
    "diverging": generator.linear_algorithm(SPEC_LIN, LINEAR_SIZES, 10.0),
}


@functools.cache
def linear_group():
    collection = [big_tasks("linear")]
    (group,) = scoring.place_collection(collection)
    return group


def run_lin(programs, seed=0):
    """Fitness [P, 10] of SPEC_LIN programs on the demo's linear tasks, via run_chunked."""
    population = program_lib.stack(programs)
    seeds = evaluation.lane_seeds(jax.random.key(seed), len(programs), LINEAR_TASKS.num_tasks)
    return scoring.run_chunked(population, linear_group(), seeds, spec=SPEC_LIN).fitness


def linear(learning_rate=LEARNING_RATE):
    return generator.linear_algorithm(SPEC_LIN, LINEAR_SIZES, learning_rate)


def test_linear_algorithm_solves_the_demo_tasks():
    fitness = run_lin([linear(), linear(0.01)])
    assert fitness.shape == (2, 10)
    assert fitness[0].min() > 0.9999  # The demo's success threshold, on every task.
    assert 0.3 < fitness[1].mean() < 0.99  # lr 0.01: learning, but not there in 100 steps.


def test_valid_predictions_are_the_algorithms_outputs_on_held_out_examples():
    """LINEAR's validation predictions after training: close to the labels, and the fitness is
    the best epoch's 1 - (2/pi) atan(RMSE) of exactly these predictions (one epoch here)."""
    taskset, info = big_tasks("linear")
    population = program_lib.stack([linear(), linear(0.01)])
    seeds = evaluation.lane_seeds(jax.random.key(0), 2, info.num_tasks)
    result = evaluate(population, taskset, info, seeds, SPEC_LIN, predictions=True)
    pred = np.asarray(result.valid_predictions, np.float64)
    y = np.asarray(taskset.y_valid, np.float64)
    assert pred.shape == (2, info.num_tasks, y.shape[-1])
    assert np.abs(pred[0] - y).max() < 1e-3
    rmse = np.sqrt(((pred - y) ** 2).mean(-1))
    np.testing.assert_allclose(1 - 2 / np.pi * np.arctan(rmse), result.fitness, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(result.train_steps), LINEAR_TASKS.num_train_examples)


def test_programs_outside_the_spec_score_nan_not_a_wrong_fitness():
    """An op missing from its component's list (the VM would not compute it) or an address past
    the memory (the VM would clip it) scores NaN; the other lanes are untouched."""
    sin = ops.op_ids(["SCALAR_SIN_OP"])[0]
    good = linear()
    outside_op = good._replace(
        predict=program_lib.make_component([I(sin, 1, 0, 1)], SPEC_LIN.predict.size)
    )
    code = np.array(good.learn.code)
    code[0, 3] = 7  # An output scalar address past the spec's 4.
    outside_memory = good._replace(learn=good.learn._replace(code=code))
    population = program_lib.stack([good, outside_op, outside_memory])
    np.testing.assert_array_equal(evaluation.in_spec(population, SPEC_LIN), [True, False, False])
    fitness = run_lin([good, outside_op, outside_memory])
    assert fitness[0].min() > 0.9999 and np.isnan(fitness[1:]).all()


@pytest.mark.parametrize("poison", sorted(POISON))
def test_nan_inf_programs_score_zero_without_affecting_other_lanes(poison):
    clean = run_lin([linear(), linear(0.05)])
    mixed = run_lin([linear(), POISON[poison]])
    np.testing.assert_array_equal(mixed[0], clean[0])
    np.testing.assert_array_equal(mixed[1], 0.0)
    assert clean[1].min() > 0.5


def random_programs(r, spec, sizes, num_programs):
    """Random programs drawn with NumPy: ops uniform over each component's allowed ops."""
    programs = []
    for _ in range(num_programs):
        lists = []
        for c, size in zip(program_lib.COMPONENTS, sizes, strict=True):
            allowed = [i for i in spec.component(c).valid_ops if i != ops.NO_OP]
            instrs = []
            for _ in range(size):
                op = ops.OPS[r.choice(allowed)]
                addr = [0, 0, 0]
                for f, kind in enumerate((op.in1, op.in2, op.out)):
                    if kind:
                        lo, hi = spec.out_range(kind) if f == 2 else (0, spec.bank_size(kind))
                        addr[f] = int(r.integers(lo, hi))
                instrs.append(I(op.id, *addr, tuple(r.uniform(0.0, 1.0, 3))))
            lists.append(instrs)
        programs.append(program_lib.make_program(spec, *lists))
    return programs


def test_switch_engine_scores_as_the_vm():
    """LINEAR and 3 random programs (gaussian-set ops in Learn) on the demo's 10 linear tasks."""
    programs = [linear()] + random_programs(np.random.default_rng(3), SPEC_LIN, (3, 2, 6), 3)
    fit_vm = run_lin(programs, seed=4)  # The VM, through scoring.run_chunked.
    taskset, info = linear_group().tasks, linear_group().info
    seeds = evaluation.lane_seeds(jax.random.key(4), len(programs), info.num_tasks)
    population = program_lib.stack(programs)
    fit_sw = np.asarray(
        evaluate(population, taskset, info, seeds, SPEC_LIN, engine=switch_vm.ENGINE).fitness
    )
    np.testing.assert_allclose(fit_sw, fit_vm, rtol=0, atol=1e-6)
    assert (fit_vm[1:] > 0).mean() > 0.5 and len(np.unique(fit_vm[1:])) > 10


def test_neural_net_beats_linear_on_teacher_tasks():
    taskset, info = big_tasks("teacher")
    programs = [
        generator.linear_algorithm(SPEC_NN, NN_SIZES),
        generator.linear_algorithm(SPEC_NN, NN_SIZES, 0.1),
        generator.neural_net_algorithm(SPEC_NN, NN_SIZES),
    ]
    population = program_lib.stack(programs)
    seeds = evaluation.lane_seeds(jax.random.key(0), 3, 4)
    fitness = np.asarray(evaluate(population, taskset, info, seeds, SPEC_NN).fitness)
    assert (fitness[2] > fitness[:2].max(axis=0)).all(), fitness
    assert fitness[2].mean() > fitness[:2].mean(axis=1).max() + 0.1
    # The network's random init (gaussian Setup ops) matches the reference's, lane seed and all.
    (want,) = reference_results(population, taskset, info, seeds, SPEC_NN, [(2, 0)]).values()
    assert abs(want.fitness - fitness[2, 0]) <= TOL and not want.stopped_early


def overlong_linear():
    """LINEAR plus one (dead) MATRIX_GAUSSIAN_SET in Learn: 277.7M cost units per step."""
    lin = program_lib.instructions(linear().learn)
    return program_lib.make_program(
        SPEC_LIN,
        program_lib.instructions(linear().setup),
        program_lib.instructions(linear().predict),
        lin + [I(64, out=0, consts=(0.0, 1.0))],
    )


def test_train_budget_rejects_an_overlong_program_and_score_gives_it_zero():
    baseline = generator.neural_net_algorithm(SPEC_NN, NN_SIZES)
    population = program_lib.stack([linear(), linear(0.1), overlong_linear()])
    n = LINEAR_TASKS.num_train_examples
    np.testing.assert_array_equal(budget.train_examples(population, baseline, n), [n, n, 0])
    groups = [linear_group()]
    key = jax.random.key(1)
    unlimited = scoring.score(population, groups, key, spec=SPEC_LIN)
    limited = scoring.score(population, groups, key, spec=SPEC_LIN, baseline=baseline)
    assert unlimited.shape == limited.shape == (3, 10)
    assert unlimited[2].min() > 0.9999  # The extra instruction is dead: as good as LINEAR...
    np.testing.assert_array_equal(limited[2], 0.0)  # ...but over budget.
    np.testing.assert_array_equal(limited[:2], unlimited[:2])


def test_pruning_and_compaction_never_change_vm_fitness():
    """Dead-code elimination (in place) and compaction (live code moved to the front, deterministic
    programs only) give bit-identical VM fitness to the unpruned programs ."""
    spec = ProgramSpec()  # The demo space: no random ops, so compaction applies everywhere.
    population = jax.tree.map(
        np.asarray,
        generator.make_initial_population(jax.random.key(5), "RANDOM", spec, (10, 2, 8), 128),
    )
    group = linear_group()
    seeds = evaluation.lane_seeds(jax.random.key(0), 128, LINEAR_TASKS.num_tasks)
    plain = scoring.run_chunked(population, group, seeds, spec=spec).fitness
    pruned = pruning.prune(population, spec)
    removed = sum(
        (getattr(population, c).code[..., 0] != getattr(pruned, c).code[..., 0]).sum()
        for c in program_lib.COMPONENTS
    )
    assert removed > 500  # Random programs carry plenty of dead code.
    np.testing.assert_array_equal(
        scoring.run_chunked(pruned, group, seeds, spec=spec).fitness, plain
    )
    compacted = jax.device_get(device_pruning.compact(pruned, spec))
    np.testing.assert_array_equal(
        scoring.run_chunked(compacted, group, seeds, spec=spec).fitness, plain
    )
    assert len(np.unique(plain.mean(1))) > 20


@pytest.mark.parametrize("num_devices", [1, 2, 4])
def test_chunk_sizes_cover_every_program_with_few_padded_calls(num_devices):
    """VM calls: power-of-2 sizes up to chunk_size, covering n programs; a large remainder is
    padded in one call, a small one split off (137 on 2 devices: 128 + 16 slots, not 256)."""
    for n in range(1, 1200):
        sizes = scoring._chunk_sizes(n, num_devices, 256)
        slots = num_devices * np.asarray(sizes)
        assert all(s & (s - 1) == 0 and 1 <= s <= 256 for s in sizes), (n, sizes)
        assert n <= slots.sum() and slots[:-1].sum() < n, (n, sizes)  # every call holds programs
        assert slots.sum() < 2 * n + num_devices, (n, sizes)
    assert scoring._chunk_sizes(137, 2, 256) == [64, 8]
    assert scoring._chunk_sizes(57, 2, 256) == [32]
    assert scoring._chunk_sizes(1000, 2, 256) == [256, 256]
    assert scoring._chunk_sizes(130, 2, 256, smallest=8) == [64, 8]  # not [64, 1]
    assert scoring._chunk_sizes(3, 2, 256, smallest=8) == [8]


def test_programs_per_call_caps_lanes_by_memory():
    """The demo's memory keeps 256 programs per call; larger memories get fewer, as a power of
    2; chunk_size still caps it; one program is the floor."""

    def per_call(s, v, m, num_tasks, feature_size, chunk_size=256):
        return scoring.programs_per_call(ProgramSpec(s, v, m), chunk_size, num_tasks, feature_size)

    assert per_call(4, 3, 1, 10, 4) == 256  # The demo: 32 floats per lane.
    assert per_call(4, 3, 2, 10, 4) == 128  # The full-op-set benchmark: 48.
    assert per_call(5, 9, 2, 1, 4) == 256  # The nonlinear config: 73 floats, 1 task.
    assert per_call(20, 20, 20, 1, 16) == 16  # Projected binary at F = 16: 5,460 floats.
    assert per_call(4, 3, 1, 10, 4, chunk_size=100) == 100
    assert per_call(20, 20, 20, 100, 32) == 1


def test_lane_seeds_are_distinct_per_lane_and_stream_and_repeatable():
    key = jax.random.key(5)
    seeds = evaluation.lane_seeds(key, 40, 3)
    assert seeds.shape == (40, 3) and seeds.dtype == np.uint32
    assert len(np.unique(seeds)) == seeds.size
    np.testing.assert_array_equal(seeds, evaluation.lane_seeds(key, 40, 3))
    other = evaluation.lane_seeds(key, 40, 3, stream=1)
    assert not np.isin(other, seeds).any()
    assert not np.isin(evaluation.lane_seeds(jax.random.key(6), 40, 3), seeds).any()
