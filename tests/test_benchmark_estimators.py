"""Smoke test of scripts/benchmark_estimators.py: a short diabetes run, its table and JSON."""

import json
import os
import subprocess
import sys

import pytest
from conftest import CACHE_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "benchmark_estimators.py")


@pytest.mark.slow
def test_benchmark_estimators_writes_rows(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, AZJAX_COMPILATION_CACHE_DIR=CACHE_DIR)
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--datasets=diabetes", "--budget_secs=3", f"--output={out}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    models = [r["model"] for r in result["rows"]]
    assert models == ["AutoMLZeroRegressor", "LinearRegression", "mean of y_train"]
    rmse = {r["model"]: r["rmse"] for r in result["rows"]}
    assert rmse["AutoMLZeroRegressor"] < rmse["mean of y_train"]
    assert "AutoMLZeroRegressor" in proc.stdout and "def Predict():" in proc.stdout
