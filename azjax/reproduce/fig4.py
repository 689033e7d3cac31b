"""Paper Fig. 4: evolution's success rate against random search's, under equal budgets.

For each point of the config (a task kind and which components are searched), `max_experiments`
experiments of evolution and as many of random search run with the same budget in individuals.
An experiment succeeds when a candidate's search fitness reaches the bar: the hand-written
regressor (LINEAR on linear tasks, AFFINE on affine ones) trained by SGD at the original's
learning rate, less `tolerance`. Both modes stop an experiment at its first success.

Reported per point and mode: successes / experiments, the success rate, the individuals spent,
and for random search the rate per individual (successes over all individuals drawn, the
maximum-likelihood estimate of a geometric draw), whose inverse is the point's *difficulty* as
the paper defines it. The ratio is evolution's success rate over random search's; when random
search never succeeded, a lower bound from the 95% upper bound on its rate (1 - 0.05^(1/n)).
"""

from __future__ import annotations

import copy
import os
import warnings

import jax
import numpy as np
from ml_collections import config_dict

from azjax import generator
from azjax.reproduce import runs

MODES = ("evolution", "random")
_PAPER_RATIOS = "about 2.9, 5.6, 150 and 23,000 (read from the plot; the text says 5x for linear)"


def bar_fitness(point: config_dict.ConfigDict, learning_rate: float) -> float:
    """Search fitness of the point's hand-written regressor (LINEAR or AFFINE by task kind)."""
    kind = point.search_tasks.kind
    make = generator.affine_algorithm if kind == "affine" else generator.linear_algorithm
    program = make(runs.BASELINE_SPEC, (0, 0, 0), learning_rate)
    key = jax.random.key(0)  # The regressors draw nothing.
    return runs.program_fitness(
        key, program, runs.BASELINE_SPEC, runs.task_spec(point.search_tasks)
    )


def _mode_summary(records, bar: float, seconds: float) -> dict:
    ended = runs.experiments(records)
    wins = [r for r in ended if r["search_fitness"] > bar]
    individuals = int(sum(r["individuals"] for r in ended))
    n = len(ended)
    return dict(
        experiments=n,
        successes=len(wins),
        success_rate=len(wins) / n if n else 0.0,
        individuals=individuals,
        individuals_to_success=sorted(int(r["individuals"]) for r in wins),
        rate_per_individual=len(wins) / individuals if individuals else 0.0,
        best_search_fitness=[float(r["search_fitness"]) for r in ended],
        experiment_individuals=[int(r["individuals"]) for r in ended],
        seconds=seconds,
    )


def _ratio(evo: dict, rs: dict) -> dict:
    """Evolution's success rate over random search's; a lower bound when random search never
    succeeded (None when neither did)."""
    if rs["successes"]:
        return dict(ratio=evo["success_rate"] / rs["success_rate"], bound=None)
    if not evo["successes"]:
        return dict(ratio=None, bound=None)
    upper = 1.0 - 0.05 ** (1.0 / max(rs["experiments"], 1))
    return dict(ratio=None, bound=evo["success_rate"] / upper)


def _ratio_text(p: dict) -> str:
    if p["ratio"] is not None:
        return f"{p['ratio']:.1f}"
    return f"> {p['bound']:.1f}" if p["bound"] is not None else "n/a (neither succeeded)"


def run(cfg: config_dict.ConfigDict, workdir: str, log) -> dict:
    """Runs (or resumes) every point and mode; returns the summary written to results.json."""
    points = {}
    for name, point in cfg.points.items():
        bar = bar_fitness(point, float(cfg.baseline_learning_rate)) - float(cfg.tolerance)
        modes = {}
        for mode in MODES:
            c = copy.deepcopy(point)
            c.name = f"fig4_{name}_{mode}"
            c.search_mode = mode
            c.stop_search_at_fitness = bar
            result, records = runs.search(c, os.path.join(workdir, name, mode))
            modes[mode] = _mode_summary(records, bar, result.seconds)
            m = modes[mode]
            log(
                f"fig4 {name} {mode}: {m['successes']}/{m['experiments']} succeeded, "
                f"{m['individuals']:,} individuals, {m['seconds']:.0f} s"
            )
        evo, rs = modes["evolution"], modes["random"]
        points[name] = dict(
            kind=point.search_tasks.kind,
            searched="Learn" if point.fixed_components else "Setup, Predict, Learn",
            max_individuals=int(point.max_individuals),
            bar=bar,
            modes=modes,
            difficulty=1.0 / rs["rate_per_individual"] if rs["successes"] else None,
            **_ratio(evo, rs),
        )
    return dict(experiment="fig4", points=points, paper_ratios=_PAPER_RATIOS)


def _rate(m: dict) -> str:
    return f"{m['successes']}/{m['experiments']} ({m['success_rate']:.2f})"


def table(summary: dict) -> str:
    """The results as a Markdown table."""
    lines = [
        "| point | searched | budget (individuals) | evolution | random search | ratio | "
        "difficulty (RS individuals per success) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, p in summary["points"].items():
        evo, rs = p["modes"]["evolution"], p["modes"]["random"]
        ratio = _ratio_text(p)
        difficulty = (
            f"{p['difficulty']:,.0f}"
            if p["difficulty"]
            else f"> {rs['individuals'] / 3:,.0f} (none in {rs['individuals']:,})"
        )
        lines.append(
            f"| {name} | {p['searched']} | {p['max_individuals']:,} | {_rate(evo)} | "
            f"{_rate(rs)} | {ratio} | {difficulty} |"
        )
    lines.append("")
    lines.append(f"Paper (Fig. 4, four points): ratios of {summary['paper_ratios']}.")
    return "\n".join(lines)


def plot(summary: dict, workdir: str) -> list[str]:
    """fig4.png: per point, the fraction of experiments that succeeded within n individuals
    (top) and the best search fitness over individuals (bottom: each experiment thin, their
    mean bold), evolution against random search, with the bar dashed."""
    from matplotlib.figure import Figure

    names = list(summary["points"])
    fig = Figure(figsize=(3.4 * len(names), 6.4), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False)
    for col, name in enumerate(names):
        p = summary["points"][name]
        grid = np.linspace(0, p["max_individuals"], 201)
        for mode, color in zip(MODES, ("tab:blue", "tab:orange"), strict=True):
            m = p["modes"][mode]
            wins = np.asarray(m["individuals_to_success"])
            frac = (wins[None, :] <= grid[:, None]).sum(1) / max(m["experiments"], 1)
            label = "evolution" if mode == "evolution" else "random search"
            axes[0, col].step(grid, frac, where="post", color=color, label=label)
            values = runs.on_grid(
                runs.curves(runs.records(os.path.join(workdir, name, mode))), grid
            )
            axes[1, col].plot(grid, values.T, color=color, lw=0.5, alpha=0.25)
            with warnings.catch_warnings():  # Grid points before any record: NaN, no warning.
                warnings.simplefilter("ignore", RuntimeWarning)
                axes[1, col].plot(grid, np.nanmean(values, axis=0), color=color, lw=2, label=label)
        axes[0, col].set_title(f"{name} ({p['searched']})", fontsize=9)
        axes[0, col].set_ylim(-0.02, 1.02)
        axes[1, col].axhline(p["bar"], color="gray", ls="--", lw=0.8, label="bar")
        axes[1, col].set_ylim(0.0, 1.02)
        axes[1, col].set_xlabel("individuals")
    axes[0, 0].set_ylabel("fraction of experiments succeeded")
    axes[1, 0].set_ylabel("best search fitness so far")
    axes[0, 0].legend(fontsize=8)
    axes[1, 0].legend(fontsize=8, loc="lower right")
    path = os.path.join(workdir, "fig4.png")
    fig.savefig(path, dpi=110)
    return [path]
