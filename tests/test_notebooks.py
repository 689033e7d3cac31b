"""The notebooks run in a real kernel (nbclient) on small budgets and give meaningful results;
the stored copies carry their outputs, a Colab badge to themselves and a commented install cell.

Each notebook reads its budget from AZJAX_NB_* environment variables; a last cell, added here
only, prints what the assertions need as JSON. The kernels share the tests' compile cache.
"""

import json
import os
import re

import nbformat
import pytest
from conftest import CACHE_DIR
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
NAMES = ("00_quickstart.ipynb", "01_your_data.ipynb", "02_inspect_a_run.ipynb")
BUDGETS = {
    "AZJAX_NB_BUDGET_SECS": "5",
    "AZJAX_NB_EXPERIMENTS": "2",
    "AZJAX_NB_POPULATION": "100",
    "AZJAX_NB_MAX_TRAIN_STEPS": "400000",
    "AZJAX_NB_MLP_STEPS": "300",
}


def _run(name: str, summary: str, monkeypatch) -> tuple[nbformat.NotebookNode, dict]:
    """Executes the notebook plus a last cell printing `summary` (a JSON-able expression)."""
    for key, value in BUDGETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AZJAX_COMPILATION_CACHE_DIR", CACHE_DIR)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    )
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(f"import json\nprint(json.dumps({summary}))"))
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
    ).execute()  # Raises CellExecutionError, naming the cell, on any error.
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    return nb, json.loads(text.strip().splitlines()[-1])


def _images(nb) -> int:
    return sum(
        "image/png" in o.get("data", {})
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )


@pytest.mark.slow  # A kernel and a search each: about 30 s on 2 cores.
def test_quickstart_searches_plots_and_exports(monkeypatch):
    nb, got = _run(
        "00_quickstart.ipynb",
        '{"first": float(history[0][2].max()), "best": float(best.max()), '
        '"individuals": individuals, "unseen": float(per_task.mean()), '
        '"exported": "def predict_batch" in source}',
        monkeypatch,
    )
    assert got["individuals"] > 0 and got["best"] >= got["first"] > 0
    assert 0 < got["unseen"] <= 1 and got["exported"]
    assert _images(nb) == 1


@pytest.mark.slow  # A kernel and a search each: about 30 s on 2 cores.
def test_your_data_beats_the_mean_and_compares_with_baselines(monkeypatch):
    nb, got = _run("01_your_data.ipynb", "results", monkeypatch)
    assert set(got) == {"AutoMLZeroRegressor", "LinearRegression", "MLP (optax)", "mean of y_train"}
    assert got["AutoMLZeroRegressor"] < got["mean of y_train"]
    assert got["LinearRegression"] < got["mean of y_train"] and got["MLP (optax)"] < 100
    assert _images(nb) == 2


@pytest.mark.slow  # A kernel and a search each: about 30 s on 2 cores.
def test_inspect_a_run_plots_and_traces_the_winner(monkeypatch):
    nb, got = _run(
        "02_inspect_a_run.ipynb",
        '{"pngs": [os.path.basename(p) for p in pngs], "final": result.final_fitness, '
        '"live": {c: int(live[c].sum()) for c in COMPONENTS}, '
        '"printed": azjax.format_program(program).count("\\n  ")}',
        monkeypatch,
    )
    assert {"fitness.png", "work.png"} <= set(got["pngs"])
    assert 0 <= got["final"] <= 1
    # The live instructions are the ones the pruned program prints.
    assert sum(got["live"].values()) == got["printed"]
    assert _images(nb) >= 2


@pytest.mark.parametrize("name", NAMES)
def test_stored_notebooks_have_outputs_a_badge_and_an_install_cell(name):
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    nbformat.validate(nb)
    badge = f"https://colab.research.google.com/github/<owner>/<repo>/blob/main/notebooks/{name}"
    assert badge in nb.cells[0].source
    install = nb.cells[1].source.splitlines()
    assert all(line.startswith("#") for line in install)
    assert any(re.search(r"pip install .*-e '\./azjax\[plot\]'", line) for line in install)
    code = [c for c in nb.cells if c.cell_type == "code"][1:]
    assert all(c.execution_count for c in code), "store it executed, with its outputs"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    assert _images(nb) >= 1
