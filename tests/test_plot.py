"""Plots of a run's log.jsonl (`azjax.plot`, `scripts/plot_run.py`) on small synthetic logs."""

import json
import math
import os
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")

from azjax import plot  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
SCRIPT = os.path.join(ROOT, "scripts", "plot_run.py")
PNG = b"\x89PNG\r\n\x1a\n"


def _progress(individuals, best, experiments=(0, 1), **extra):
    counters = dict(dedupe_hits=individuals // 2, fec_hits=individuals // 4, early_stops=10)
    counters |= dict(full_evaluations=individuals - individuals // 2 - individuals // 4 - 10)
    return dict(
        event="progress",
        experiments=list(experiments),
        individuals=individuals,
        elapsed=individuals / 1000,
        mean=best / 2,
        stdev=0.1,
        best=best,
        children=individuals,
        budget_rejected=0,
        train_steps=100 * individuals,
        **counters,
        **extra,
    )


def _records():
    """Two experiments in lockstep; 0 ends and 2 starts; then the final record. Records carry
    fields the plots do not know and program sizes in two layouts."""
    size = {"program_size": {"setup": 3.0, "predict": 1.5, "learn": 4.0}, "mean_live_length": 6.5}
    records = [_progress(1000 * k, 0.3 + 0.1 * k, unknown={"a": [1, 2]}, **size) for k in (1, 2)]
    records.append(
        dict(
            event="experiment",
            experiment=0,
            search_fitness=0.9999,
            select_fitness=0.99995,
            individuals=1500,
            counters=dict(children=1500, dedupe_hits=700, fec_hits=400, full_evaluations=400),
            note="extra field",
        )
    )
    records += [_progress(500 * k, 0.5, experiments=(1, 2), **size) for k in (2, 3)]
    records.append(dict(event="final", final_fitness=0.9998, individuals=3000, counters={}))
    return records


def _write_log(path, records, tail=""):
    with open(path, "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records) + tail)


def test_plot_run_writes_png_files(tmp_path):
    log = tmp_path / "log.jsonl"
    _write_log(log, _records(), tail='{"event": "progress", "indiv')  # A torn last line.
    written = plot.plot_run(log, tmp_path / "plots")
    assert [os.path.basename(p) for p in written] == ["fitness.png", "work.png", "size.png"]
    for path in written:
        with open(path, "rb") as f:
            data = f.read()
        assert data.startswith(PNG) and len(data) > 10_000, path


def test_series_follow_the_run_and_its_experiments():
    records = _records()
    series = plot.fitness_series(records)
    assert list(series) == ["running experiments"]
    # The run's individuals: those of ended experiments (1500 after experiment 0) plus running.
    assert series["running experiments"]["x"] == [1000, 2000, 2500, 3000]
    sizes = plot.size_series(records)
    assert sorted(sizes) == [
        "mean_live_length",
        "program_size/learn",
        "program_size/predict",
        "program_size/setup",
    ]
    assert sizes["program_size/learn"][1] == [4.0] * 4
    # One experiment per record (experiments run one at a time): a line per experiment, on its
    # own individuals; per-experiment lists split the same way; missing fields are NaN.
    one_at_a_time = [
        dict(event="progress", experiments=[0], individuals=100, best=0.2),
        dict(event="progress", experiment=1, individuals=100, best=0.3, mean=0.1),
        dict(event="progress", experiments=[2, 3], individuals=[10, 20], best=[0.4, 0.5]),
    ]
    series = plot.fitness_series(one_at_a_time)
    assert sorted(series) == [f"experiment {i}" for i in range(4)]
    assert series["experiment 3"]["x"] == [20] and series["experiment 3"]["best"] == [0.5]
    assert math.isnan(series["experiment 0"]["mean"][0])
    assert plot.size_series(one_at_a_time) == {}


def test_plots_skip_what_the_log_lacks(tmp_path):
    bare = [dict(event="progress", individuals=100 * k, best=0.1 * k) for k in range(1, 4)]
    log = tmp_path / "log.jsonl"
    _write_log(log, bare)
    assert [os.path.basename(p) for p in plot.plot_run(log, tmp_path)] == ["fitness.png"]


def test_bad_logs_raise_log_errors(tmp_path):
    log = tmp_path / "log.jsonl"
    _write_log(log, [dict(event="final", final_fitness=1.0)])
    with pytest.raises(plot.LogError, match="no progress records"):
        plot.plot_run(log, tmp_path)
    log.write_text('{"event": "progress"}\nnot json\n{"event": "final"}\n')
    with pytest.raises(plot.LogError, match="line 2 is not JSON"):
        plot.read_log(log)
    log.write_text("[1, 2]\n{}\n")
    with pytest.raises(plot.LogError, match="line 1 is not a JSON object"):
        plot.read_log(log)


def _script(*args):
    cmd = [sys.executable, SCRIPT, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_plot_run_script(tmp_path):
    _write_log(tmp_path / "log.jsonl", _records())
    proc = _script(f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        str(tmp_path / n) for n in ("fitness.png", "work.png", "size.png")
    ]
    for args, message in (
        ([f"--workdir={tmp_path / 'missing'}"], "does not exist"),
        ([f"--workdir={tmp_path / 'plots'}"], "has no log.jsonl"),
        ([], "--workdir is required"),
    ):
        os.makedirs(tmp_path / "plots", exist_ok=True)
        proc = _script(*args)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("plot_run.py: error: "), proc.stderr
        assert message in lines[0]
    (tmp_path / "plots" / "log.jsonl").write_text("")
    proc = _script(f"--workdir={tmp_path / 'plots'}")
    assert proc.returncode == 2 and "no progress records" in proc.stderr
