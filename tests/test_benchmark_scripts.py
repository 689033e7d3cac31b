"""Smoke test of scripts/benchmark_vm.py: a --quick run in a subprocess, then its JSON."""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
SCRIPT = os.path.join(ROOT, "scripts", "benchmark_vm.py")
ENGINES = ("vm", "vm_1dev", "switch", "numpy")


def _run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory,
):  # About a minute on the 2-core machine: the tests using it are slow.
    """One workload per table (the demo op set; the nonlinear config), every engine, probes on."""
    out = tmp_path_factory.mktemp("bench") / "sub" / "bench.json"  # The script makes "sub".
    proc = _run(
        "--quick", "--op_sets=demo", "--configs=nonlinear", "--paper=fig5", f"--output={out}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out) as f:
        return json.load(f), proc.stdout


@pytest.mark.slow
def test_rows_cover_every_workload_and_engine(quick_run):
    result, _ = quick_run
    got = [(r["table"], r["workload"], r["engine"]) for r in result["rows"]]
    want = [("op_sets", "demo ops", e) for e in ENGINES]
    want += [("configs", "nonlinear config", e) for e in ENGINES]
    want += [("paper", "fig5", e) for _ in (4, 8) for e in ("vm_1dev", "vm")]
    assert got == want
    assert [r.get("lanes") for r in result["rows"] if r["table"] == "paper"] == [4, 4, 8, 8]
    assert set(result["workloads"]) == {"demo ops", "nonlinear config", "fig5"}


@pytest.mark.slow
def test_rows_hold_positive_timings_and_consistent_rates(quick_run):
    result, _ = quick_run
    workloads = result["workloads"]
    for r in result["rows"]:
        name = f"{r['workload']}/{r['engine']}"
        assert r["median_s"] > 0 and r["warmup_s"] > 0, name
        assert len(r["call_s"]) == result["settings"]["num_repeats"] == 1, name
        assert r["candidates_per_s"] > 0, name
        assert math.isclose(r["candidates_per_s"], r["num_programs"] / r["median_s"]), name
        per_task = workloads[r["workload"]]["instructions_per_task"]
        expected = r["candidates_per_s"] * r["num_tasks"] * per_task
        assert math.isclose(r["instructions_per_s"], expected), name
        assert r["ratio_to_vm"] > 0, name
        # Every engine agrees with the VM on the lanes they share (same programs, tasks, seeds).
        assert r["max_abs_fitness_diff_vs_vm"] < 1e-4, name
        if r["engine"] in ("vm", "switch"):  # The first JAX engine of a workload compiles.
            assert r["compile_s"] > 0, name
    by = {(r["workload"], r["engine"]): r for r in result["rows"]}
    assert by[("demo ops", "vm")]["ratio_to_vm"] == 1.0
    assert by[("demo ops", "vm")]["num_programs"] == result["settings"]["population_size"] == 16
    assert by[("demo ops", "switch")]["num_programs"] == 4
    assert by[("demo ops", "numpy")]["num_programs"] == 2
    assert 0.0 <= by[("demo ops", "numpy")]["stopped_early_frac"] <= 1.0


@pytest.mark.slow
def test_workloads_describe_the_configurations(quick_run):
    result, _ = quick_run
    demo, nonlinear = result["workloads"]["demo ops"], result["workloads"]["nonlinear config"]
    assert demo["sizes"] == [10, 10, 10] and demo["memory"] == [4, 3, 1]
    # 10 + 10 * (10 + 10) + 10 * 10 with --quick's 10 train + 10 valid examples.
    assert demo["instructions_per_task"] == 310
    assert nonlinear["memory"] == [5, 9, 2] and nonlinear["tasks"]["kind"] == "teacher"
    assert nonlinear["programs"] == "DAMAGED_NEURAL_NET+mutation"
    fig5 = result["workloads"]["fig5"]
    assert fig5["memory"] == [4, 8, 2] and fig5["sizes"] == [21, 3, 9]
    assert fig5["tasks"]["feature_size"] == 8


@pytest.mark.slow
def test_compile_probes_show_the_cache_hit(quick_run):
    result, _ = quick_run
    assert [p["workload"] for p in result["compile"]] == ["demo ops", "nonlinear config"]
    for p in result["compile"]:
        assert p["cold"]["compile_s"] > 0 and p["cold"]["cache_hits"] == 0
        assert p["cached"]["cache_hits"] >= 1
        assert p["cached"]["compile_s"] < p["cold"]["compile_s"]


@pytest.mark.slow
def test_machine_facts_and_printed_tables(quick_run):
    result, stdout = quick_run
    m = result["machine"]
    assert m["device_count"] == len(m["devices"]) >= 1 and m["cpu_count"] >= 1
    assert m["jax_version"] and len(m["load_average_before"]) == 3
    titles = ("Op sets: candidates/s", "Configurations: evaluations/s", "Paper workloads")
    for title in titles + ("Compile of `vm`",):
        assert title in stdout
    assert "nonlinear config" in stdout


def test_bad_flag_values_fail_with_a_clear_message():
    proc = _run("--quick", "--engines=vm,warp", "--output=/dev/null", timeout=120)
    assert proc.returncode != 0
    assert "--engines: unknown ['warp']" in proc.stderr
