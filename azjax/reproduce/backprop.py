"""Paper Fig. 5: evolving a 2-layer net's forward pass and Learn from random programs.

For each point of the config (a number D of teacher search tasks), `num_seeds` experiments
search; the best candidate (by select fitness) is scored on held-out teacher tasks beside the
hand-written LINEAR and NEURAL_NET programs, whose learning rates are tuned on the select tasks.

`layer_updates` reads the winner's pruned code: which matrix is its first layer (multiplied by
the features in Predict), which vector or matrix its second (multiplied by the first layer's
output on the way to the prediction), and whether Learn writes the first layer with a value
computed from the second layer's weights and the label: the signature of backpropagation.
"""

from __future__ import annotations

import copy
import os

import jax
import numpy as np
from ml_collections import config_dict

from azjax import baselines, config, kernels, program_io, pruning, tasks
from azjax import ops as ops_lib
from azjax.program import ProgramSpec, instructions
from azjax.reproduce import runs

_PAPER = (
    "D = 1: evolution hard-codes the teacher's weights; D = 100: it finds the forward pass and "
    "a Learn that updates the first layer through the second (backpropagation), Fig. 5"
)
# Ops that multiply their two operands (a layer applies its weights with one of these).
_MULTIPLY = {
    ops_lib.op_ids(["VECTOR_INNER_PRODUCT_OP"])[0],
    ops_lib.op_ids(["VECTOR_PRODUCT_OP"])[0],
    ops_lib.op_ids(["MATRIX_VECTOR_PRODUCT_OP"])[0],
    ops_lib.op_ids(["SCALAR_VECTOR_PRODUCT_OP"])[0],
}


def _name(kind: ops_lib.Kind, address: int) -> str:
    return f"{kind.letter}{address}"


def _flow(code, deps: dict[str, frozenset]) -> dict[str, frozenset]:
    """Runs `code` symbolically: each address maps to the addresses (values at the start)
    its value is computed from. Addresses not in `deps` stand for themselves."""
    deps = dict(deps)
    for ins in code:
        op = ops_lib.OPS[ins.op]
        sources: set[str] = set()
        for kind, address in ((op.in1, ins.in1), (op.in2, ins.in2)):
            if kind != ops_lib.Kind.NONE:
                name = _name(kind, address)
                sources |= deps.get(name, {name})
        out = _name(op.out, ins.out)
        if ins.op in kernels.PARTIAL_WRITE_OPS:  # One element written: the rest stays.
            sources |= deps.get(out, {out})
        deps[out] = frozenset(sources)
    return deps


def layer_updates(program, spec: ProgramSpec) -> dict:
    """What the program's pruned Predict and Learn do with a 2-layer net's weights: its
    `first_layer` (matrices multiplied with the features), `second_layer` (weights multiplied
    with the first layer's output), whether Learn writes the first layer (`first_layer_learned`)
    and whether it does so from the second layer's weights and the label (`backpropagates`)."""
    live = pruning.prune(program, spec)
    predict = [ins for ins in instructions(live.predict) if ins.op]
    learn = [ins for ins in instructions(live.learn) if ins.op]
    deps: dict[str, frozenset] = {}
    first, second = set(), set()
    for ins in predict:
        op = ops_lib.OPS[ins.op]
        if ins.op in _MULTIPLY:
            a, b = _name(op.in1, ins.in1), _name(op.in2, ins.in2)
            da, db = deps.get(a, {a}), deps.get(b, {b})
            for weights, w_deps, x_deps in ((a, da, db), (b, db, da)):
                is_param = w_deps == {weights} and weights not in ("v0", "s0")
                if is_param and weights[0] == "m" and "v0" in x_deps:
                    first.add(weights)
                elif is_param and weights[0] in "vm" and x_deps & first:
                    second.add(weights)
        deps = _flow([ins], deps)
    after = _flow(learn, {})
    learned = {m for m in first if after.get(m, {m}) != {m}}
    through = {m for m in learned if after[m] & second and "s0" in after[m]}
    return dict(
        first_layer=sorted(first),
        second_layer=sorted(second),
        first_layer_learned=bool(learned),
        backpropagates=bool(through),
        learn_instructions=len(learn),
    )


def _baselines(point: config_dict.ConfigDict, learning_rates) -> dict:
    select = [tasks.make_tasks(runs.task_spec(point.select_tasks))]
    final = [tasks.make_tasks(runs.task_spec(point.final_tasks))]
    out = {}
    for i, name in enumerate(("LINEAR", "NEURAL_NET")):
        r = baselines.tune_program(
            jax.random.key(i), name, runs.BASELINE_SPEC, select, final, tuple(learning_rates)
        )
        out[name] = dict(learning_rate=r.learning_rate, mean=r.mean, std=r.std)
    return out


def run(cfg: config_dict.ConfigDict, workdir: str, log) -> dict:
    """Runs (or resumes) every point; returns the summary written to results.json."""
    points = {}
    for name, point in cfg.points.items():
        c = copy.deepcopy(point)
        c.name = f"backprop_{name}"
        c.max_experiments = int(cfg.num_seeds)
        c.parallel_experiments = int(cfg.parallel_experiments)
        c.random_seed = int(cfg.random_seed)
        c.progress_every = int(cfg.progress_every)
        result, records = runs.search(c, os.path.join(workdir, name))
        spec = config.build(c).spec
        ended = runs.experiments(records)
        points[name] = dict(
            num_tasks=int(point.search_tasks.num_tasks),
            train_examples=int(point.search_tasks.num_train_examples),
            population_size=int(point.population_size),
            max_individuals=int(point.max_individuals),
            individuals=result.individuals,
            seconds=result.seconds,
            search_fitness=[float(r["search_fitness"]) for r in ended],
            select_fitness=result.select_fitness,
            final_fitness=result.final_fitness,
            analysis=layer_updates(result.program, spec),
            program=program_io.format_program(result.program),
            baselines=_baselines(point, cfg.learning_rates),
        )
        p = points[name]
        log(
            f"backprop {name}: final fitness {p['final_fitness']:.4f} (NEURAL_NET "
            f"{p['baselines']['NEURAL_NET']['mean']:.4f}, LINEAR "
            f"{p['baselines']['LINEAR']['mean']:.4f}), {p['individuals']:,} individuals, "
            f"{p['seconds']:.0f} s"
        )
    return dict(experiment="backprop", points=points, paper=_PAPER)


def table(summary: dict) -> str:
    """The results as a Markdown table, then each winner's program."""
    lines = [
        "| D | search examples | P | individuals | evolved (held-out) | NEURAL_NET | LINEAR | "
        "first layer learned | through the second layer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in summary["points"].values():
        b, a = p["baselines"], p["analysis"]
        lines.append(
            f"| {p['num_tasks']} | {p['train_examples']} | {p['population_size']} | "
            f"{p['individuals']:,} | {p['final_fitness']:.4f} | "
            f"{b['NEURAL_NET']['mean']:.4f} ± {b['NEURAL_NET']['std']:.4f} | "
            f"{b['LINEAR']['mean']:.4f} ± {b['LINEAR']['std']:.4f} | "
            f"{'yes' if a['first_layer_learned'] else 'no'} | "
            f"{'yes' if a['backpropagates'] else 'no'} |"
        )
    lines += ["", f"Paper: {summary['paper']}."]
    for name, p in summary["points"].items():
        lines += ["", f"Winner, {name} (pruned):", "```", p["program"].rstrip(), "```"]
    return "\n".join(lines)


def plot(summary: dict, workdir: str) -> list[str]:
    """backprop.png: best search fitness over individuals per experiment (left) and the
    held-out fitness of the winners against the baselines (right)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    for (name, p), color in zip(summary["points"].items(), ("tab:blue", "tab:green"), strict=False):
        series = runs.curves(runs.records(os.path.join(workdir, name)))
        for k, (xs, ys) in enumerate(series.values()):
            label = f"D = {p['num_tasks']}" if k == 0 else None
            left.plot(xs, np.maximum.accumulate(ys), color=color, label=label)
    left.set_xlabel("individuals")
    left.set_ylabel("best search fitness so far")
    left.legend(fontsize=8)
    labels, values, errors = [], [], []
    for p in summary["points"].values():
        labels.append(f"evolved\nD = {p['num_tasks']}")
        values.append(p["final_fitness"])
        errors.append(0.0)
    for name in ("NEURAL_NET", "LINEAR"):
        b = next(iter(summary["points"].values()))["baselines"][name]
        labels.append(name)
        values.append(b["mean"])
        errors.append(b["std"])
    right.bar(labels, values, yerr=errors, color="tab:gray")
    right.set_ylabel("mean fitness, held-out teacher tasks")
    path = os.path.join(workdir, "backprop.png")
    fig.savefig(path, dpi=110)
    return [path]
