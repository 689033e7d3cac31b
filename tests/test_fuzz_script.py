"""Smoke test of scripts/fuzz.py: a few hundred programs in a subprocess, then its JSON."""

import json
import os
import subprocess
import sys

import pytest

from azjax import ops

ROOT = os.path.join(os.path.dirname(__file__), "..")
SCRIPT = os.path.join(ROOT, "scripts", "fuzz.py")
# Small programs and tasks, every op; the tests' compile cache (conftest.py) keeps reruns fast.
TINY = ["--num_programs=200", "--chunk_size=200", "--reference_sample=10", "--num_tasks=1"]
TINY += ["--num_train=4", "--num_valid=4", "--sizes=2,2,2", "--capacity=3", "--progress=false"]


@pytest.mark.slow  # The script's compiles in a subprocess: about 20 s.
def test_fuzz_runs_a_few_hundred_programs_cleanly(tmp_path):
    out = tmp_path / "fuzz.json"
    cache = f"--cache_dir={os.path.join(ROOT, '.jax_cache')}"
    proc = subprocess.run(
        [sys.executable, SCRIPT, *TINY, cache, f"--output={out}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "crashes: 0" in proc.stdout and "non-finite or out-of-range fitness: 0" in proc.stdout
    result = json.loads(out.read_text())
    assert result["programs"] == 200 and result["chunks"] == 1
    assert result["num_crashes"] == 0 and result["num_bad_fitness"] == 0
    assert result["sampled"] == 10 and result["num_unexplained"] == 0
    by_op = {row["op"]: row for row in result["by_op"]}
    assert list(by_op) == [op.name for op in ops.OPS]
    assert sum(row["programs"] > 0 for row in by_op.values()) > 55  # Nearly every op appears.
