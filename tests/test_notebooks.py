"""Smoke test: the quickstart notebook's code runs on a tiny budget and improves fitness."""

import json
import os

import pytest

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "00_quickstart.ipynb")


def test_quickstart_notebook_runs_and_improves(monkeypatch):
    monkeypatch.setenv("AZJAX_NB_POPULATION", "80")
    monkeypatch.setenv("AZJAX_NB_MAX_INDIVIDUALS", "2000")
    with open(NOTEBOOK) as f:
        cells = [c for c in json.load(f)["cells"] if c["cell_type"] == "code"]
    namespace = {}
    for cell in cells:
        source = "".join(cell["source"])
        if source.lstrip().startswith("#"):  # The Colab install cell (comments only).
            continue
        exec(compile(source, NOTEBOOK, "exec"), namespace)
    state, start = namespace["state"], namespace["start"]
    assert int(state.num_individuals) >= 2000 or state.best_fitness > 0.9999
    assert namespace["evolution"].population_stats(state)["mean"] > start["mean"]
    assert state.best_fitness >= start["best"]


@pytest.mark.parametrize("name", ["00_quickstart.ipynb"])
def test_notebooks_are_valid_json_with_code(name):
    with open(os.path.join(os.path.dirname(NOTEBOOK), name)) as f:
        nb = json.load(f)
    assert nb["nbformat"] == 4 and any(c["cell_type"] == "code" for c in nb["cells"])
