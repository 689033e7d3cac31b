"""The experiment driver: config validation, one-line errors, outputs, and exact kill-and-resume."""

import functools
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
from conftest import CACHE_DIR

from azjax import checkpoint, config, experiment, ops

# One worker runs this group: its tests share compiled programs and cached runs.
pytestmark = pytest.mark.xdist_group("tiny_search")

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
    for name in ("demo", "full_ops", "linear", "nonlinear", "projected_binary"):
        exp = config.build(module_config(name))
        assert exp.search.evolution.population_size >= 1
    nonlinear = config.build(module_config("nonlinear"))
    # Predict/Learn are frozen but hold the hand-written net: its ops are allowed, not drawn.
    assert nonlinear.spec.predict.ops == () and 31 in nonlinear.spec.predict.valid_ops
    assert nonlinear.spec.learn.size >= 11
    assert nonlinear.search.evaluation.budget_baseline is not None


def module_config(name):
    return config.load_config_file(os.path.join(ROOT, "configs", f"{name}.py"))


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


@pytest.mark.slow  # Seven script runs, about 16 s cold.
def test_script_reports_bad_flags_in_one_line(tmp_path):
    proc = _run(tmp_path / "w", "--config.population_size=-3", check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "population_size" in lines[0], proc.stderr
    for flag, message in [
        ("--config.populaton_size=3", "did you mean population_size"),
        ("--config=configs/nope.py", "No such file"),
        ("--config.max_abs_error=0", "max_abs_error must be > 0"),
        ("--config.num_scalars=100000", "num_scalars must be in [1, 100]"),
    ]:
        proc = _run(tmp_path / "w", flag, check=False)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    # A dataset file that is not there (read when the tasks are made, after the config).
    proc = _run(
        tmp_path / "w",
        "--config.search_tasks.kind=projected_binary",
        f"--config.search_tasks.dataset_dir={tmp_path}",
        "--config.search_tasks.dataset_name=digits",
        "--config.search_tasks.eval_type=accuracy",
        check=False,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "no such dataset file" in lines[0], lines
    readonly = tmp_path / "file"
    readonly.write_text("a file, not a directory")
    proc = _run(readonly / "w", check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and str(readonly) in lines[0], proc.stderr


# parallel_experiments=2 with 3 experiments: two run together, the third refills a slot.
PARALLEL = dict(parallel_experiments=2, max_experiments=3)


def _flags(overrides: dict) -> list[str]:
    return [f"--config.{k}={v}" for k, v in overrides.items()]


@functools.cache
def _reference(extra_items: tuple):
    """An uninterrupted run of TINY (+ extra), in this process; (result, workdir, printed lines)."""
    workdir = tempfile.mkdtemp(prefix="azjax_ref_")
    lines = []
    result = experiment.run(
        config.build(_tiny_config(**dict(extra_items))), workdir=workdir, log=lines.append
    )
    return result, workdir, lines


def _script(workdir, extra: dict, *flags):
    cmd = [sys.executable, SCRIPT, f"--config={DEMO}", f"--workdir={workdir}", *TINY]
    cmd += [*_flags(extra), "--config.checkpoint_every_secs=0", *flags]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_checkpoints(proc, ckpt, count: int):
    deadline = time.time() + 300
    writes = set()  # Distinct checkpoints seen (by modification time).
    while time.time() < deadline and proc.poll() is None and len(writes) < count:
        if ckpt.exists():
            writes.add(ckpt.stat().st_mtime_ns)
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be stopped: make TINY longer"


def _resume(workdir, extra: dict):
    lines = []
    cfg = _tiny_config(**extra, checkpoint_every_secs=0)
    result = experiment.run(config.build(cfg), workdir=str(workdir), log=lines.append)
    assert any(line.startswith("Resumed from") for line in lines)
    return result


def _assert_same_run(result, workdir, reference):
    ref, ref_dir, _ = reference
    assert result.final_fitness == ref.final_fitness and result.individuals == ref.individuals
    assert result.counters == ref.counters
    assert (workdir / "best_program.txt").read_text() == (
        pathlib.Path(ref_dir) / "best_program.txt"
    ).read_text()


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, marks=pytest.mark.slow, id="sequential"),
        pytest.param(PARALLEL, marks=pytest.mark.slow, id="parallel"),
    ],
)
def test_run_writes_outputs_and_kill_resume_is_exact(tmp_path, extra):
    reference = _reference(tuple(extra.items()))
    _, ref_dir, ref_lines = reference
    ref_dir = pathlib.Path(ref_dir)
    assert any(
        line.startswith("Final evaluation fitness (on unseen data) = ") for line in ref_lines
    )
    assert "def Predict():" in "\n".join(ref_lines).splitlines()
    results = json.loads((ref_dir / "results.json").read_text())
    assert results["experiments"] == (3 if extra else 2)
    for name in ("best_program.txt", "best_program.json", "log.jsonl", "config.json"):
        assert (ref_dir / name).exists()
    events = [json.loads(line) for line in (ref_dir / "log.jsonl").read_text().splitlines()]
    assert {"progress", "experiment", "final"} <= {e["event"] for e in events}
    # Progress keeps its cadence when a new experiment (at 0 individuals) replaces an ended one.
    progressed = {i for e in events if e["event"] == "progress" for i in e["experiments"]}
    assert extra or progressed == {0, 1}
    # Killed run: the script, checkpointing after every call, SIGKILLed once it has written a
    # few checkpoints (maybe in the middle of a write); then resumed (here) from its last one.
    work = tmp_path / "killed"
    proc = _script(work, extra)
    _wait_for_checkpoints(proc, work / "checkpoint.npz", 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()  # Reaps it and closes its pipes.
    _assert_same_run(_resume(work, extra), work, reference)
    assert not list(work.glob(".tmp-*"))  # A write the kill cut short leaves nothing behind.


@pytest.mark.parametrize(
    "signum",
    [pytest.param(s, marks=pytest.mark.slow) for s in (signal.SIGINT, signal.SIGTERM)],
    ids=["SIGINT", "SIGTERM"],
)
def test_ctrl_c_and_sigterm_save_and_exit_130_then_resume_exactly(tmp_path, signum):
    work = tmp_path / "stopped"
    proc = _script(work, PARALLEL, "--config.checkpoint_every_secs=1000")
    _wait_for_checkpoints(proc, work / "log.jsonl", 2)  # Searching: progress being written.
    os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "saved" in lines[0] and "checkpoint.npz" in lines[0], stderr
    _assert_same_run(_resume(work, PARALLEL), work, _reference(tuple(PARALLEL.items())))


@pytest.mark.slow
def test_stale_temporaries_are_removed_and_op_names_resume_ids(tmp_path):
    work = tmp_path / "w"
    _, ref_dir, _ = _reference(tuple(PARALLEL.items()))
    shutil.copytree(ref_dir, work)
    stale = work / ".tmp-checkpoint.npz-abc123"
    stale.write_bytes(b"half a checkpoint")
    named = _tiny_config(**PARALLEL)
    named.setup_ops = named.predict_ops = named.learn_ops = tuple(
        ops.OPS[i].name for i in ops.DEMO_OPS
    )
    lines = []
    experiment.run(config.build(named), workdir=str(work), log=lines.append)  # Resumes: done.
    assert any("this run has finished" in line for line in lines)
    assert not stale.exists()


@pytest.mark.slow  # Needs a whole TINY run (test_checkpoint.py covers the file format).
def test_corrupt_or_mismatched_checkpoint_fails_clearly(tmp_path):
    work = tmp_path / "w"
    shutil.copytree(_reference(tuple(PARALLEL.items()))[1], work)
    other = config.build(_tiny_config(**PARALLEL, population_size=30))
    with pytest.raises(checkpoint.CheckpointError, match="population_size"):
        experiment.run(other, workdir=str(work), log=lambda line: None)
    (work / "checkpoint.npz").write_bytes(b"not a checkpoint")
    proc = _run(work, *_flags(PARALLEL), check=False)
    assert proc.returncode == 2 and "checkpoint" in proc.stderr, proc.stderr


@pytest.mark.slow  # Needs a whole TINY run (test_checkpoint.py covers the file format).
def test_a_finished_runs_checkpoint_keeps_the_result_not_the_search():
    """Once done, the caches and populations are saved zeroed and compressed (the demo's
    checkpoint: 89 MB -> under 1 MB); the run state, which the final evaluation needs, stays."""
    result, ref_dir, _ = _reference(tuple(PARALLEL.items()))
    path = os.path.join(ref_dir, "checkpoint.npz")
    assert os.path.getsize(path) < 200_000
    with np.load(path) as f:
        arrays = [f[k] for k in f.files]
    big = [a for a in arrays if a.size >= 10_000]  # The cache tables.
    assert big and not any(np.any(a) for a in big)
    assert sum(a.nbytes for a in big) > 10 * os.path.getsize(path)
    assert result.final_fitness > 0


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


@pytest.mark.slow
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


@pytest.mark.slow  # A whole parallel TINY run: about 30 s cold.
def test_parallel_run_stops_at_the_first_sufficient_experiment(tmp_path):
    """Once an experiment's select fitness is sufficient, the others are abandoned: no select
    evaluation for them, but their individuals count."""
    cfg = _tiny_config(parallel_experiments=2, max_experiments=0, sufficient_fitness=0.01)
    lines = []
    result = experiment.run(config.build(cfg), workdir=str(tmp_path), log=lines.append)
    ended = _experiment_events(tmp_path)
    assert len(ended) == 1 and ended[0][2] > 0.01
    assert result.experiments == 2
    assert result.individuals > ended[0][3]  # The abandoned one's individuals are counted.
    assert any(line.startswith("experiments=0-1, indivs=") for line in lines)


def test_parallel_experiments_must_be_positive():
    cfg = module_config("demo")
    cfg.parallel_experiments = 0
    with pytest.raises(config.ConfigError, match="parallel_experiments"):
        config.build(cfg)
