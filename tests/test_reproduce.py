"""The paper's experiments (scripts/reproduce.py): the backprop reading of a program, Fig. 4's
"only Learn" programs and its ratios, and each experiment's small-budget run and JSON (slow)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import CACHE_DIR

from azjax import config, generator, mutation, program_io
from azjax.program import ComponentSpec, Instruction, ProgramSpec, make_program
from azjax.reproduce import backprop, fig4, runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "reproduce.py")
TINY = os.path.join(ROOT, "tests", "configs")
ENV = dict(os.environ, AZJAX_COMPILATION_CACHE_DIR=CACHE_DIR)

I = Instruction  # noqa: E741
SPEC_NN = ProgramSpec(
    num_scalars=5,
    num_vectors=9,
    num_matrices=2,
    setup=ComponentSpec(21, (56, 63, 64)),
    predict=ComponentSpec(5, (1, 23, 27, 31, 48)),
    learn=ComponentSpec(11, (1, 2, 3, 16, 18, 23, 25, 28, 39)),
)


def test_layer_updates_of_the_hand_written_net_and_regressor():
    nn = backprop.layer_updates(generator.neural_net_algorithm(SPEC_NN, (0, 0, 0)), SPEC_NN)
    assert nn == dict(
        first_layer=["m0"],
        second_layer=["v2"],
        first_layer_learned=True,
        backpropagates=True,
        learn_instructions=11,
    )
    linear = backprop.layer_updates(generator.linear_algorithm(SPEC_NN, (0, 0, 0)), SPEC_NN)
    assert linear["first_layer"] == [] and not linear["backpropagates"]


def test_layer_updates_of_the_papers_fig5_program():
    """The paper's evolved net (Fig. 5): its Learn steps m1 with v2 * v4 (v4: second layer)."""
    program = make_program(
        SPEC_NN,
        setup=[I(64, out=1, consts=(-1e-10, 9e-9)), I(56, out=3, consts=(4.1,))],
        predict=[I(31, 1, 0, 6), I(48, 5, 6, 7), I(27, 7, 4, 1)],
        learn=[
            I(16, 6, 0, 3),  # v3 = heaviside(v6)
            I(2, 0, 1, 1),  # s1 = s0 - s1
            I(3, 1, 3, 2),  # s2 = s1 * s3
            I(18, 2, 3, 2),  # v2 = s2 * v3
            I(25, 2, 4, 3),  # v3 = v2 * v4
            I(28, 3, 0, 0),  # m0 = outer(v3, v0)
            I(39, 1, 0, 1),  # m1 = m1 + m0
            I(23, 2, 4, 4),  # v4 = v2 + v4
        ],
    )
    got = backprop.layer_updates(program, SPEC_NN)
    assert got["first_layer"] == ["m1"] and got["second_layer"] == ["v4"]
    assert got["backpropagates"]


def test_layer_updates_without_the_second_layer_is_not_backprop():
    """A first layer stepped by the error times the features only (no second-layer weights)."""
    program = make_program(
        SPEC_NN,
        predict=[I(31, 0, 0, 3), I(48, 3, 5, 4), I(27, 4, 2, 1)],
        learn=[I(2, 0, 1, 4), I(18, 4, 0, 6), I(28, 6, 0, 1), I(39, 0, 1, 0)],
    )
    got = backprop.layer_updates(program, SPEC_NN)
    assert got["first_layer_learned"] and not got["backpropagates"]


def _fig4_point(name):
    return config.load_config_file(os.path.join(ROOT, "configs", "paper", "fig4.py")).points[name]


@pytest.mark.parametrize("name", ["linear_learn", "affine_learn"])
def test_fig4_only_learn_programs_hold_the_regressors_forward_pass(name):
    exp = config.build(_fig4_point(name))
    spec, evo = exp.spec, exp.search.evolution
    algorithm = generator.affine_algorithm if "affine" in name else generator.linear_algorithm
    model = algorithm(spec, evo.sizes)
    population = generator.make_initial_population(jax.random.key(0), "RANDOM", spec, evo.sizes, 8)
    children = mutation.mutate_batch(jax.random.key(1), population, spec, evo.mutation)
    for programs in (population, children):
        for c in ("setup", "predict"):
            for field in ("code", "consts", "length"):
                got = np.asarray(getattr(getattr(programs, c), field))
                want = np.asarray(getattr(getattr(model, c), field))
                np.testing.assert_array_equal(got, np.broadcast_to(want, got.shape))
    assert len({str(np.asarray(population.learn.code[i])) for i in range(8)}) > 1


@pytest.mark.slow
def test_affine_regressor_fits_affine_tasks_and_linear_does_not():
    point = _fig4_point("affine_full")
    assert fig4.bar_fitness(point, 0.03) > 0.9999  # AFFINE (its bias learned), 1000 examples.
    linear = generator.linear_algorithm(runs.BASELINE_SPEC, (0, 0, 0), 0.03)
    task = runs.task_spec(point.search_tasks)
    assert runs.program_fitness(jax.random.key(0), linear, runs.BASELINE_SPEC, task) < 0.9


def test_fig4_ratio_and_bounds():
    def mode(successes, n):
        return dict(successes=successes, experiments=n, success_rate=successes / n)

    assert fig4._ratio(mode(4, 10), mode(2, 10)) == dict(ratio=2.0, bound=None)
    assert fig4._ratio(mode(0, 10), mode(0, 10)) == dict(ratio=None, bound=None)
    got = fig4._ratio(mode(5, 10), mode(0, 10))  # 95% upper bound of a 0/10 rate: 0.259.
    assert got["ratio"] is None and got["bound"] == pytest.approx(0.5 / (1 - 0.05**0.1))


def test_bad_experiment_and_mismatched_config_are_one_line_errors():
    for args, message in (
        (["--experiment=fig5"], "--experiment"),
        (["--experiment=backprop", f"--config={TINY}/fig4_tiny.py"], "not 'backprop'"),
    ):
        proc = subprocess.run(
            [sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=ROOT, env=ENV
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr


def _reproduce(name, workdir, *extra):
    cmd = [
        sys.executable,
        SCRIPT,
        f"--experiment={name}",
        f"--config={TINY}/{name}_tiny.py",
        f"--workdir={workdir}",
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(os.path.join(workdir, "results.json")) as f:
        summary = json.load(f)
    assert summary["experiment"] == name and summary["machine"]["devices"] >= 1
    with open(os.path.join(workdir, "table.md")) as f:
        assert f.read().strip() in proc.stdout
    return summary, proc.stdout


@pytest.mark.slow
def test_fig4_small_budget_run_and_resume(tmp_path):
    summary, _ = _reproduce("fig4", tmp_path)
    assert set(summary["points"]) == {"linear_learn", "affine_learn"}
    for p in summary["points"].values():
        assert 0.0 < p["bar"] < 1.0
        for m in p["modes"].values():
            assert m["experiments"] == 2
            pairs = zip(m["experiment_individuals"], m["best_search_fitness"], strict=True)
            for n, fit in pairs:  # Successes stop early; the others spend the whole budget.
                assert (fit > p["bar"] and n <= 60) or n == 60
            assert m["individuals"] <= 120 and len(m["individuals_to_success"]) == m["successes"]
    assert os.path.getsize(tmp_path / "fig4.png") > 0
    again, out = _reproduce("fig4", tmp_path)  # A finished run only re-reads its results.
    for name, p in summary["points"].items():
        for mode, m in p["modes"].items():
            m.pop("seconds")  # Wall time, across resumes: the re-read adds its own.
            again["points"][name]["modes"][mode].pop("seconds")
    assert again["points"] == summary["points"]


@pytest.mark.slow
def test_backprop_small_budget_run(tmp_path):
    summary, out = _reproduce("backprop", tmp_path)
    cfg = config.load_config_file(os.path.join(TINY, "backprop_tiny.py"))
    for name, p in summary["points"].items():
        spec = config.build(cfg.points[name]).spec
        assert p["individuals"] == 2 * 60 and len(p["search_fitness"]) == 2
        assert 0.0 <= p["final_fitness"] <= 1.0
        assert set(p["baselines"]) == {"LINEAR", "NEURAL_NET"}
        assert set(p["analysis"]) >= {"first_layer", "backpropagates"}
        program_io.parse_program(p["program"], spec)  # The winner, as text that parses.
    assert "Winner, d1" in out and os.path.getsize(tmp_path / "backprop.png") > 0


@pytest.mark.slow
def test_s10_baseline_small_budget_run(tmp_path):
    data = tmp_path / "digits"
    summary, _ = _reproduce("s10_baseline", tmp_path / "run", f"--config.data_dir={data}")
    assert len(os.listdir(data)) == 45  # Every class pair, data seed 0.
    assert set(summary["variants"]) == {"no_fec", "fec"}
    for v in summary["variants"].values():
        assert v["runs"] == 2 and 0.0 <= v["beats_linear"] <= 1.0
        assert v["select_mean"] == pytest.approx(np.mean(v["select"]))
    base = summary["baselines"]
    assert {"LINEAR", "NEURAL_NET", "logistic regression, SGD", "MLP, Adam"} <= set(base)
    assert all(0.5 <= b["select"] <= 1.0 for b in base.values())
    assert os.path.getsize(tmp_path / "run" / "s10_baseline.png") > 0
