"""The experiment driver: config validation, one-line errors, outputs, and exact kill-and-resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import CACHE_DIR

from azjax import checkpoint, config, experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "run_search_experiment.py")
DEMO = os.path.join(ROOT, "configs", "demo.py")

# A small, fast, deterministic search: two experiments of a few generations each.
TINY = [
    "--config.population_size=40",
    "--config.children_per_generation=10",
    "--config.tournament_size=4",
    "--config.search_tasks.num_tasks=2",
    "--config.search_tasks.num_train_examples=20",
    "--config.search_tasks.num_valid_examples=20",
    "--config.select_tasks.num_tasks=3",
    "--config.select_tasks.num_train_examples=50",
    "--config.final_tasks.num_tasks=3",
    "--config.final_tasks.num_train_examples=50",
    "--config.max_train_steps=60000",
    "--config.max_experiments=2",
    "--config.sufficient_fitness=0",
    "--config.stop_search_at_fitness=0",
    "--config.random_seed=11",
    "--config.progress_every=100",
    "--cpu_devices=1",
]


# Subprocesses share the tests' persistent compile cache (compiles are most of their time).
ENV = dict(os.environ, AZJAX_COMPILATION_CACHE_DIR=CACHE_DIR)


def _run(workdir, *extra, check=True, **kw):
    cmd = [sys.executable, SCRIPT, f"--config={DEMO}", f"--workdir={workdir}", *TINY, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_demo_and_integration_configs_build():
    for name in ("demo", "linear", "nonlinear", "projected_binary"):
        module = {}
        with open(os.path.join(ROOT, "configs", f"{name}.py")) as f:
            exec(compile(f.read(), name, "exec"), module)
        exp = config.build(module["get_config"]())
        assert exp.search.evolution.population_size >= 1
    nonlinear = config.build(module_config("nonlinear"))
    # Predict/Learn are frozen but hold the hand-written net: its ops are allowed, not drawn.
    assert nonlinear.spec.predict.ops == () and 31 in nonlinear.spec.predict.valid_ops
    assert nonlinear.spec.learn.size >= 11
    assert nonlinear.search.evaluation.budget_baseline is not None


def module_config(name):
    module = {}
    with open(os.path.join(ROOT, "configs", f"{name}.py")) as f:
        exec(compile(f.read(), name, "exec"), module)
    return module["get_config"]()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("population_size", 0, "population_size"),
        ("children_per_generation", 5000, "children_per_generation"),
        ("setup_ops", ("SCALAR_SUMM_OP",), "unknown op name"),
        ("allowed_mutation_types", ("SWAP",), "SWAP"),
        ("initial_population", "PERCEPTRON", "initial algorithm"),
        ("fec_num_train_examples", 500, "fec_num_train_examples"),
        ("fitness_combination", "max", "combination"),
        ("max_train_steps", -1, "max_train_steps"),
        ("search_mode", "annealing", "mode"),
    ],
)
def test_bad_configs_fail_with_the_field_named(field, value, message):
    cfg = module_config("demo")
    cfg[field] = value
    with pytest.raises(config.ConfigError, match=message):
        config.build(cfg)


def test_bad_task_config_names_the_collection():
    cfg = module_config("demo")
    cfg.search_tasks.eval_type = "accuracy"
    with pytest.raises(config.ConfigError, match="search_tasks"):
        config.build(cfg)


def test_script_reports_bad_flags_in_one_line(tmp_path):
    proc = _run(tmp_path / "w", "--config.population_size=-3", check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "population_size" in lines[0], proc.stderr
    proc = _run(tmp_path / "w", "--config.no_such_field=3", check=False)
    assert proc.returncode != 0 and "no_such_field" in proc.stderr


# parallel_experiments=2 with 3 experiments: two run together, the third refills a slot.
PARALLEL = ["--config.parallel_experiments=2", "--config.max_experiments=3"]


@pytest.mark.parametrize("extra", [[], PARALLEL], ids=["sequential", "parallel"])
def test_run_writes_outputs_and_kill_resume_is_exact(tmp_path, extra):
    # Uninterrupted reference run.
    ref = _run(tmp_path / "ref", *extra)
    assert "Final evaluation fitness (on unseen data) = " in ref.stdout
    assert "def Predict():" in ref.stdout
    results = json.loads((tmp_path / "ref" / "results.json").read_text())
    assert results["experiments"] == (3 if extra else 2)
    for name in ("best_program.txt", "best_program.json", "log.jsonl", "config.json"):
        assert (tmp_path / "ref" / name).exists()
    events = [
        json.loads(line) for line in (tmp_path / "ref" / "log.jsonl").read_text().splitlines()
    ]
    assert {"progress", "experiment", "final"} <= {e["event"] for e in events}

    # Killed run: checkpoint every generation, SIGKILL once a checkpoint exists, then resume.
    work = tmp_path / "killed"
    cmd = [
        sys.executable,
        SCRIPT,
        f"--config={DEMO}",
        f"--workdir={work}",
        *TINY,
        *extra,
        "--config.checkpoint_every_secs=0",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt = work / "checkpoint.npz"
    deadline = time.time() + 300
    writes = set()  # Distinct checkpoints seen (by modification time).
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            writes.add(ckpt.stat().st_mtime_ns)
            if len(writes) >= 3:  # Past the first checkpoints, somewhere mid-search.
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: make TINY longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = _run(work, *extra, "--config.checkpoint_every_secs=0")
    assert "Resumed from" in resumed.stdout
    final = lambda out: [l for l in out.splitlines() if l.startswith("Final evaluation")]  # noqa: E731
    assert final(resumed.stdout) == final(ref.stdout)
    assert (work / "best_program.txt").read_text() == (
        tmp_path / "ref" / "best_program.txt"
    ).read_text()
    again = json.loads((work / "results.json").read_text())
    assert again["final_fitness"] == results["final_fitness"]
    assert again["individuals"] == results["individuals"]


def test_corrupt_or_mismatched_checkpoint_fails_clearly(tmp_path):
    work = tmp_path / "w"
    _run(work)
    proc = _run(work, "--config.population_size=30", check=False)
    assert proc.returncode == 2 and "population_size" in proc.stderr, proc.stderr
    (work / "checkpoint.npz").write_bytes(b"not a checkpoint")
    proc = _run(work, check=False)
    assert proc.returncode == 2 and "checkpoint" in proc.stderr, proc.stderr


def test_checkpoint_error_is_a_value_error():
    assert issubclass(checkpoint.CheckpointError, ValueError)


def _tiny_config(**overrides):
    """TINY as an in-process config, with overrides."""
    cfg = module_config("demo")
    flat = dict(flag[len("--config.") :].split("=") for flag in TINY if "--config." in flag)
    for path, value in {**flat, **overrides}.items():
        *parents, leaf = path.split(".")
        node = cfg
        for name in parents:
            node = node[name]
        node[leaf] = type(node[leaf])(value)
    return cfg


def _experiment_events(workdir):
    events = [json.loads(line) for line in (workdir / "log.jsonl").read_text().splitlines()]
    return sorted(
        (e["experiment"], e["search_fitness"], e["select_fitness"], e["individuals"])
        for e in events
        if e["event"] == "experiment"
    )


def test_parallel_experiments_are_the_experiments_run_one_by_one(tmp_path):
    """Three experiments, one at a time or two at a time (merged VM calls, a slot refilled):
    each experiment's search, candidate and select score are the same, and so is the result."""
    results, events = {}, {}
    for parallel in (1, 2):
        exp = config.build(_tiny_config(parallel_experiments=parallel, max_experiments=3))
        work = tmp_path / f"p{parallel}"
        results[parallel] = experiment.run(exp, workdir=str(work), log=lambda line: None)
        events[parallel] = _experiment_events(work)
    assert [e[0] for e in events[2]] == [0, 1, 2]
    assert events[1] == events[2]
    assert results[1].final_fitness == results[2].final_fitness
    assert results[1].individuals == results[2].individuals
    assert results[1].counters == results[2].counters
    assert results[2].experiments == 3


def test_parallel_run_stops_at_the_first_sufficient_experiment(tmp_path):
    """Once an experiment's select fitness is sufficient, the others are abandoned: no select
    evaluation for them, but their individuals count."""
    cfg = _tiny_config(parallel_experiments=3, max_experiments=0, sufficient_fitness=0.01)
    lines = []
    result = experiment.run(config.build(cfg), workdir=str(tmp_path), log=lines.append)
    ended = _experiment_events(tmp_path)
    assert len(ended) == 1 and ended[0][2] > 0.01
    assert result.experiments == 3
    assert result.individuals > ended[0][3]  # The abandoned ones' individuals are counted.
    assert any(line.startswith("experiments=0-2, indivs=") for line in lines)


def test_parallel_experiments_must_be_positive():
    cfg = module_config("demo")
    cfg.parallel_experiments = 0
    with pytest.raises(config.ConfigError, match="parallel_experiments"):
        config.build(cfg)
