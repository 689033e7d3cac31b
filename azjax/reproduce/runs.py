"""One search of a paper experiment: run (or resume) it in its own folder, read back its records.

Each search is an ordinary `azjax.experiment` run, so it checkpoints, resumes exactly after a
kill, and refuses a changed config. `search` returns its `Result` and the records of its
log.jsonl; `experiments` and `curves` pick out the per-experiment ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import numpy as np
from ml_collections import config_dict

from azjax import config, evaluation, experiment, generator, plot, scoring, tasks
from azjax import program as program_lib
from azjax.program import ComponentSpec, ProgramSpec

# Room for every hand-written program (LINEAR, AFFINE, NEURAL_NET) at its own length.
BASELINE_SPEC = ProgramSpec(
    num_scalars=5,
    num_vectors=9,
    num_matrices=2,
    setup=ComponentSpec(16),
    predict=ComponentSpec(16),
    learn=ComponentSpec(16),
)


def search(
    cfg: config_dict.ConfigDict, workdir: str, on_record: Callable[[dict], None] | None = None
) -> tuple[experiment.Result, list[dict]]:
    """Runs the search config `cfg` in `workdir` (resuming its checkpoint), its printed lines
    going to workdir/output.txt. `on_record` receives each new log.jsonl record."""
    exp = config.build(cfg)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "output.txt"), "a", encoding="utf-8") as out:

        def log(line: str) -> None:
            out.write(line + "\n")
            out.flush()

        result = experiment.run(exp, workdir=workdir, log=log, metrics=on_record)
    return result, records(workdir)


def records(workdir: str) -> list[dict]:
    """The records of a search folder's log.jsonl."""
    return plot.read_log(os.path.join(workdir, "log.jsonl"))


def experiments(records: list[dict]) -> list[dict]:
    """The "experiment" records (one per ended experiment, the last kept if a resumed run wrote
    one twice), by experiment index."""
    ended = {r["experiment"]: r for r in records if r.get("event") == "experiment"}
    return [ended[i] for i in sorted(ended)]


def curves(records: list[dict]) -> dict[int, tuple[list[int], list[float]]]:
    """{experiment: (individuals, best search fitness)} from the progress records' per-experiment
    lists, each ending at the experiment's last individual and final search fitness."""
    out: dict[int, tuple[list[int], list[float]]] = {}
    for r in records:
        if r.get("event") == "progress":
            for i, n, best in zip(
                r["experiments"], r["experiment_individuals"], r["experiment_best"], strict=True
            ):
                xs, ys = out.setdefault(i, ([], []))
                xs.append(int(n))
                ys.append(float(best))
    for r in experiments(records):
        xs, ys = out.setdefault(r["experiment"], ([], []))
        xs.append(int(r["individuals"]))
        ys.append(float(r["search_fitness"]))
    return out


def on_grid(series: dict[int, tuple[list[int], list[float]]], grid: np.ndarray) -> np.ndarray:
    """`[experiments, len(grid)]`: each experiment's best fitness so far at each grid point
    (NaN before its first record; its last value after it ended)."""
    out = np.full((len(series), len(grid)), np.nan)
    for row, (xs, ys) in enumerate(series.values()):
        xs, ys = np.asarray(xs), np.maximum.accumulate(np.asarray(ys, np.float64))
        at = np.searchsorted(xs, grid, side="right") - 1
        out[row] = np.where(at >= 0, ys[np.maximum(at, 0)], np.nan)
    return out


def task_spec(task_cfg: config_dict.ConfigDict) -> tasks.TaskSpec:
    return tasks.TaskSpec(**dict(task_cfg))


def program_fitness(
    key: jax.Array, program: program_lib.Program, spec: ProgramSpec, task: tasks.TaskSpec
) -> float:
    """Mean fitness of one program on the tasks of `task` (the evaluation protocol)."""
    spec = generator.add_required_ops(spec, program)
    groups = scoring.place_collection([tasks.make_tasks(task)])
    fitness = scoring.score(program_lib.stack([program]), groups, key, spec=spec)
    return float(evaluation.combine(fitness, "mean")[0])
