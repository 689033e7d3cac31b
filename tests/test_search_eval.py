"""The search's device scoring (`azjax.search_eval`): work avoidance, counters, pooling."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_evaluation import (
    LINEAR_TASKS,
    NN_SIZES,
    SPEC_LIN,
    SPEC_NN,
    linear,
    linear_group,
    overlong_linear,
)

from azjax import budget, evaluation, generator, ops, scoring, search_eval, tasks, wide
from azjax import program as program_lib
from azjax.program import ComponentSpec, Instruction, ProgramSpec

# One worker runs this group: its tests share compiled programs and cached runs.
pytestmark = pytest.mark.xdist_group("scoring")

I = Instruction  # noqa: E741
INFO = LINEAR_TASKS.info
# One space for the first two tests (one compile): the demo's, plus the ops their programs use.
SPEC = ProgramSpec(
    setup=ComponentSpec(10, ops.DEMO_OPS, extra_ops=(63,)),
    predict=ComponentSpec(3, ops.DEMO_OPS, extra_ops=(4,)),
    learn=ComponentSpec(8, ops.DEMO_OPS, extra_ops=(64,)),
)
NN = generator.neural_net_algorithm(SPEC_NN, NN_SIZES)
BUDGET = search_eval.EvaluationConfig(
    budget_baseline=tuple(int(c) for c in budget.program_costs(NN))
)


def respec(program):
    """A program of another spec laid out for SPEC."""
    lists = [program_lib.instructions(getattr(program, c)) for c in program_lib.COMPONENTS]
    return program_lib.make_program(SPEC, *lists)


FULL_STEPS = INFO.num_tasks * INFO.epoch_size  # One full run's training steps (10 tasks).
FP_STEPS = INFO.num_tasks * 10  # One fingerprint run's.


@functools.partial(jax.jit, static_argnames=("spec", "config", "chunk"))
def _score(tables, counters, children, valid, tasks_, keys, clock, *, spec, config, chunk):
    return search_eval.score_children(
        tables, counters, children, valid, tasks_, keys, clock,
        spec=spec, info=INFO, config=config, chunk=chunk,
    )  # fmt: skip


class Scorer:
    """E experiments' caches and counters, scoring batches of K children each."""

    def __init__(self, spec, taskset_list, config=None, chunk=16):
        config = search_eval.EvaluationConfig() if config is None else config
        self.spec, self.config, self.chunk = spec, config, chunk
        E = len(taskset_list)
        self.tasks = jax.tree.map(lambda *x: jnp.stack(x), *taskset_list)
        self.tables = jax.vmap(lambda _: search_eval.empty_tables(config, INFO.num_tasks))(
            jnp.arange(E)
        )
        self.counters = jax.vmap(lambda _: search_eval.Counters.zeros())(jnp.arange(E))
        self.clock = 0

    def __call__(self, children, valid, keys):
        """children: per experiment a list of K programs; valid bool [E, K]."""
        self.clock += 1
        batch = jax.tree.map(lambda *x: jnp.stack(x), *[program_lib.stack(c) for c in children])
        fitness, self.tables, self.counters = _score(
            self.tables, self.counters, batch, jnp.asarray(valid), self.tasks, keys,
            jnp.full(len(children), self.clock, jnp.int32),
            spec=self.spec, config=self.config, chunk=self.chunk,
        )  # fmt: skip
        return np.asarray(fitness)

    def counts(self, e=0) -> dict:
        c = jax.device_get(jax.tree.map(lambda x: x[e], self.counters))
        out = {k: int(getattr(c, k)) for k in search_eval.Counters._fields[:-1]}
        out["train_steps"] = int(wide.to_int(c.train_steps))
        return out


def _swapped_product(program):
    """LINEAR with `s3 = s2 * s3` written `s3 = s3 * s2`: other code, same values bit for bit."""
    learn = program_lib.instructions(program.learn)
    learn[1] = learn[1]._replace(in1=learn[1].in2, in2=learn[1].in1)
    return program_lib.make_program(
        SPEC_LIN,
        program_lib.instructions(program.setup),
        program_lib.instructions(program.predict),
        learn,
    )


@pytest.mark.slow  # About 34 s cold, on the scoring worker.
def test_scores_match_score_and_count_budget_dedupe_and_fec_hits():
    scorer = Scorer(SPEC, [linear_group().tasks], BUDGET)
    children = [respec(p) for p in (linear(), linear(0.1), overlong_linear())]
    keys = jax.random.split(jax.random.key(0), 1)
    first = scorer([children], [[True] * 3], keys)[0]
    scored = scoring.score(
        program_lib.stack(children), [linear_group()], jax.random.key(5), spec=SPEC, baseline=NN
    )
    np.testing.assert_allclose(first, evaluation.combine(scored), rtol=0, atol=1e-6)
    assert first[0] > 0.9999 and first[2] == 0.0
    c = scorer.counts()
    assert (c["children"], c["budget_rejected"], c["dedupe_hits"], c["fec_hits"]) == (3, 1, 0, 0)
    assert c["full_evaluations"] == 2
    # Train steps as the original counts them: a fingerprint run for every child, the rejected
    # one included, and full runs (none stops early) for the others.
    assert c["train_steps"] == 3 * FP_STEPS + 2 * FULL_STEPS

    again = scorer([children], [[True] * 3], keys)[0]  # The same children: dedupe hits.
    np.testing.assert_array_equal(again, first)
    c = scorer.counts()
    assert (c["children"], c["budget_rejected"], c["dedupe_hits"], c["fec_hits"]) == (6, 2, 2, 0)
    assert c["full_evaluations"] == 2
    assert c["train_steps"] == 6 * FP_STEPS + 2 * FULL_STEPS  # Each unrun child: its fingerprint.

    # Structurally new, functionally identical children: FEC hits, still no new full evaluation.
    variants = [respec(_swapped_product(p)) for p in (linear(), linear(0.1))] + [children[0]]
    third = scorer([variants], [[True, True, False]], keys)[0]
    np.testing.assert_array_equal(third[:2], first[:2])
    assert third[2] == 0.0  # Not valid: not scored.
    c = scorer.counts()
    assert (c["children"], c["dedupe_hits"], c["fec_hits"], c["full_evaluations"]) == (8, 2, 2, 2)
    assert c["train_steps"] == 8 * FP_STEPS + 2 * FULL_STEPS


@pytest.mark.slow  # About 14 s cold, on the scoring worker.
def test_early_stop_shortcut_and_equal_fingerprints_in_one_batch():
    """A deterministic program that blows up in the FEC pass gets 0 without a full evaluation; a
    random-op program with the very same fingerprint is scored through the FEC entry of the
    first (a repeat within the batch), and a learner is evaluated in full."""
    spec = SPEC
    # s1 = dot(v1, x); s1 = s1 - s1; s1 = s1 / s0 = 0 / 0: NaN at the first example, whatever v1
    # holds, yet v1 (and the Gaussian init that writes it) stays live code.
    nan_predict = [I(27, 1, 0, 1), I(2, 1, 1, 1), I(4, 1, 0, 1)]
    deterministic = program_lib.make_program(spec, [], nan_predict, [])
    noisy = program_lib.make_program(spec, [I(63, 0, 0, 1, (0.0, 1.0, 0.0))], nan_predict, [])
    learner = program_lib.make_program(
        spec, [I(63, 0, 0, 1, (0.0, 1.0, 0.0))], [I(27, 1, 0, 1)], []
    )
    scorer = Scorer(spec, [linear_group().tasks], BUDGET)
    fitness = scorer(
        [[deterministic, noisy, learner]], [[True] * 3], jax.random.split(jax.random.key(0), 1)
    )[0]
    np.testing.assert_array_equal(fitness[:2], 0.0)
    assert fitness[2] > 0.0
    c = scorer.counts()
    assert c["early_stops"] == 1 and c["fec_hits"] == 1 and c["full_evaluations"] == 1
    # Steps: each NaN program stops at its first step on each task in its fingerprint run; the
    # deterministic one is charged that again for the shortcut; the learner runs in full.
    assert c["train_steps"] == 2 * INFO.num_tasks + INFO.num_tasks + FP_STEPS + FULL_STEPS


def _seeded_tasks(seed):
    spec = tasks.TaskSpec(
        kind="linear", num_train_examples=100, num_valid_examples=100, num_tasks=10,
        param_seeds=(seed,), data_seeds=(seed + 7,),
    )  # fmt: skip
    return tasks.make_tasks(spec)[0]


@pytest.mark.slow  # Its own two-experiment compile: about 25 s on 2 cores.
def test_pooled_experiments_get_their_own_results_and_counters():
    """Three experiments scored together (pooled VM calls, their own tasks and caches, one VM
    chunk) get the fitness and counters each gets alone (several chunks of 7 programs)."""
    spec = ProgramSpec()
    together = Scorer(spec, [_seeded_tasks(s) for s in (1, 2, 3)], chunk=64)
    alone = [Scorer(spec, [_seeded_tasks(s)], chunk=7) for s in (1, 2, 3)]
    for g in range(3):  # Each batch repeats programs of the previous ones: cache hits.
        fresh = generator.make_initial_population(jax.random.key(g), "RANDOM", spec, (6, 2, 5), 24)
        fresh = program_lib.unstack(jax.device_get(fresh))
        children = [fresh[4 * e : 4 * e + 11] + [linear()] for e in range(3)]
        valid = np.ones((3, 12), bool)
        valid[2, :] = g != 1  # Experiment 2 is idle in generation 1: nothing scored.
        keys = jax.random.split(jax.random.key(10 + g), 3)
        got = together(children, valid, keys)
        for e, scorer in enumerate(alone):
            if valid[e].any():
                np.testing.assert_array_equal(
                    got[e], scorer([children[e]], valid[e : e + 1], keys[e : e + 1])[0]
                )
            else:
                np.testing.assert_array_equal(got[e], 0.0)
    for e, scorer in enumerate(alone):
        assert together.counts(e) == scorer.counts()
        assert together.counts(e)["fec_hits"] + together.counts(e)["dedupe_hits"] > 0
    assert got[:, -1].min() > 0.99  # LINEAR learns every experiment's tasks.
