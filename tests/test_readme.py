"""The README's Python examples run as written (shortened: fewer calls, a smaller budget)."""

import os
import re

import pytest

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def _blocks() -> list[str]:
    with open(README) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def _shortened(code: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in code, f"the README example no longer contains {old!r}"
        code = code.replace(old, new)
    return code


@pytest.mark.slow  # A search compile: about 20 s.
def test_quickstart_runs():
    code = _shortened(_blocks()[0], {"range(200)": "range(2)"})
    scope = {}
    exec(compile(code, "README quickstart", "exec"), scope)
    assert scope["state"].population.num_individuals.sum() > 0


@pytest.mark.slow  # A search compile: about 20 s.
def test_ask_tell_example_runs():
    quickstart, ask_tell = _blocks()[:2]
    setup = quickstart.split("task_spec =")[0]  # Imports, runtime.configure() and the spec.
    code = setup + "my_fitness = lambda children: -children.learn.length.astype(float)\n"
    scope = {}
    exec(compile(code + ask_tell + "state = generation(state)\n", "README ask/tell", "exec"), scope)
    assert int(scope["state"].num_individuals) > 0


@pytest.mark.slow  # The estimator's search compiles: about 20 s.
def test_estimator_example_runs():
    code = _shortened(_blocks()[2], {"max_time_secs=60": "max_time_secs=5"})
    scope = {}
    exec(compile(code, "README estimator", "exec"), scope)
    assert scope["y_hat"].shape == scope["y"].shape
