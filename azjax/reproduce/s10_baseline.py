"""Paper Table S5's "Basic" baseline: search from empty programs on projected binary tasks.

Each variant (without and with FEC) runs `num_seeds` experiments of the run_baseline.sh search.
Reported as Table S5 reports them: the best select accuracy (mean +- std over the runs), and the
fraction of runs whose candidate beats, on the select tasks, the hand-written LINEAR and
NEURAL_NET programs (learning rates tuned on those tasks). Beside them, optax baselines tuned
the same way: logistic regression and a 2-layer MLP, by SGD and Adam, one example at a time
(the paper's protocol) and in minibatches of 32. Final accuracies are on held-out class pairs.
"""

from __future__ import annotations

import copy
import os

import jax
import numpy as np
from ml_collections import config_dict

from azjax import baselines, datasets, tasks
from azjax.reproduce import runs

_DIGITS_PER_PAIR = 348  # 174 per class: the fewest images a digit has.
_OPTAX = (  # (label, model, optimizer, batch size)
    ("logistic regression, SGD", "linear", "sgd", 1),
    ("logistic regression, Adam", "linear", "adam", 1),
    ("logistic regression, SGD, batch 32", "linear", "sgd", 32),
    ("MLP, SGD", "mlp", "sgd", 1),
    ("MLP, Adam", "mlp", "adam", 1),
    ("MLP, Adam, batch 32", "mlp", "adam", 32),
)
_PAPER = dict(
    basic_1_process=0.671,
    basic_1_process_std=0.004,
    linear_success_fraction=0.01,
    nn_success_fraction=0.0,
    full_100_processes=0.707,
    logistic_regression=0.702,
    neural_net=0.729,
)


def task_configs(cfg: config_dict.ConfigDict) -> tuple[dict, dict]:
    """(search = select, final) task fields: the final tasks come from the held-out pairs."""
    held_out = tuple(tuple(p) for p in cfg.held_out_pairs)
    common = dict(
        kind="projected_binary",
        eval_type="accuracy",
        feature_size=int(cfg.feature_size),
        num_train_examples=int(cfg.num_train_examples),
        num_valid_examples=int(cfg.num_valid_examples),
        dataset_dir=cfg.data_dir,
        dataset_name=cfg.dataset_name,
        max_supported_data_seed=int(cfg.max_data_seed),
    )
    search = dict(common, num_tasks=int(cfg.num_search_tasks), held_out_pairs=held_out)
    others = tuple(p for p in tasks.allowed_pairs(()) if p not in set(held_out))
    final = dict(
        common,
        num_tasks=int(cfg.num_final_tasks),
        held_out_pairs=others,
        data_seeds=(19000,),
    )
    return search, final


def prepare_digits(cfg: config_dict.ConfigDict, log) -> None:
    """Writes the digits files the tasks read, unless all are there already."""
    if cfg.dataset_name != "digits":
        return
    names = [
        datasets.binary_file_name("digits", i, j, int(cfg.feature_size), s)
        for i, j in tasks.allowed_pairs(())
        for s in range(int(cfg.max_data_seed))
    ]
    if all(os.path.isfile(os.path.join(cfg.data_dir, n)) for n in names):
        return
    log(f"Preparing {len(names)} projected digits files in {cfg.data_dir}")
    # A little more than the tasks read: a pair with a class short of images shrinks a little.
    num_train, num_valid = int(cfg.num_train_examples) + 10, int(cfg.num_valid_examples) + 5
    images, labels = datasets.read_digits()
    datasets.prepare_binary_datasets(
        images,
        labels,
        out_dir=cfg.data_dir,
        dataset_name="digits",
        class_ids=range(10),
        min_data_seed=0,
        max_data_seed=int(cfg.max_data_seed),
        num_train=num_train,
        num_valid=num_valid,
        num_test=max(10, _DIGITS_PER_PAIR - num_train - num_valid),
        projected_dim=int(cfg.feature_size),
    )


def _baselines(cfg, select, final) -> dict:
    out = {}
    rates = tuple(cfg.learning_rates)
    for i, name in enumerate(("LINEAR", "NEURAL_NET")):
        r = baselines.tune_program(
            jax.random.key(i), name, runs.BASELINE_SPEC, select, final, rates
        )
        out[name] = _tuned(r)
    for i, (label, model, optimizer, batch) in enumerate(_OPTAX):
        r = baselines.tune(
            jax.random.key(100 + i), model, optimizer, select, final, rates, batch_size=batch
        )
        out[label] = _tuned(r)
    return out


def _tuned(r: baselines.TuneResult) -> dict:
    return dict(
        learning_rate=r.learning_rate,
        select=float(np.max(r.select_mean)),
        final=r.mean,
        final_std=r.std,
    )


def run(cfg: config_dict.ConfigDict, workdir: str, log) -> dict:
    """Runs (or resumes) both variants; returns the summary written to results.json."""
    prepare_digits(cfg, log)
    search_tasks, final_tasks = task_configs(cfg)
    select = [tasks.make_tasks(tasks.TaskSpec(**search_tasks))]
    final = [tasks.make_tasks(tasks.TaskSpec(**final_tasks))]
    base = _baselines(cfg, select, final)
    variants = {}
    for name, overrides in cfg.variants.items():
        c = copy.deepcopy(cfg.search)
        c.name = f"s10_{name}"
        c.search_tasks = c.select_tasks = config_dict.ConfigDict(search_tasks)
        c.final_tasks = config_dict.ConfigDict(final_tasks)
        c.update(dict(overrides))
        c.max_experiments = int(cfg.num_seeds)
        c.parallel_experiments = int(cfg.parallel_experiments)
        c.random_seed = int(cfg.random_seed)
        c.progress_every = int(cfg.progress_every)
        result, records = runs.search(c, os.path.join(workdir, name))
        select_acc = np.asarray([r["select_fitness"] for r in runs.experiments(records)])
        variants[name] = dict(
            runs=len(select_acc),
            individuals=result.individuals,
            seconds=result.seconds,
            select=select_acc.tolist(),
            select_mean=float(select_acc.mean()),
            select_std=float(select_acc.std()),
            beats_linear=float(np.mean(select_acc > base["LINEAR"]["select"])),
            beats_neural_net=float(np.mean(select_acc > base["NEURAL_NET"]["select"])),
            final_of_best=result.final_fitness,
        )
        v = variants[name]
        log(
            f"s10_baseline {name}: select accuracy {v['select_mean']:.3f} ± "
            f"{v['select_std']:.3f} over {v['runs']} runs, {v['individuals']:,} individuals, "
            f"{v['seconds']:.0f} s"
        )
    return dict(experiment="s10_baseline", variants=variants, baselines=base, paper=_PAPER)


def table(summary: dict) -> str:
    """The results as Markdown tables."""
    lines = [
        "| variant | runs | individuals | best select accuracy | beats LINEAR | "
        "beats NEURAL_NET | final accuracy (best run) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in summary["variants"].items():
        lines.append(
            f"| {name} | {v['runs']} | {v['individuals']:,} | {v['select_mean']:.3f} ± "
            f"{v['select_std']:.3f} | {v['beats_linear']:.2f} | {v['beats_neural_net']:.2f} | "
            f"{v['final_of_best']:.3f} |"
        )
    lines += [
        "",
        "| baseline | learning rate | select accuracy | final accuracy |",
        "|---|---|---|---|",
    ]
    for name, b in summary["baselines"].items():
        lines.append(
            f"| {name} | {b['learning_rate']:g} | {b['select']:.3f} | "
            f"{b['final']:.3f} ± {b['final_std']:.3f} |"
        )
    p = summary["paper"]
    lines += [
        "",
        f"Paper (Table S5, CIFAR-10): Basic, 1 process {p['basic_1_process']} ± "
        f"{p['basic_1_process_std']} (beats linear {p['linear_success_fraction']}, NN "
        f"{p['nn_success_fraction']}); Full, 100 processes {p['full_100_processes']}; logistic "
        f"regression {p['logistic_regression']}, neural net {p['neural_net']}.",
    ]
    return "\n".join(lines)


def plot(summary: dict, workdir: str) -> list[str]:
    """s10_baseline.png: select accuracy of each run's candidate against the baselines'."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.subplots()
    labels, values, errors, colors = [], [], [], []
    for name, v in summary["variants"].items():
        labels.append(f"evolved\n{name}")
        values.append(v["select_mean"])
        errors.append(v["select_std"])
        colors.append("tab:blue")
    for name, b in summary["baselines"].items():
        labels.append(name.replace("logistic regression", "logistic").replace(", ", "\n"))
        values.append(b["select"])
        errors.append(0.0)
        colors.append("tab:gray")
    ax.bar(labels, values, yerr=errors, color=colors)
    for i, v in enumerate(summary["variants"].values()):
        ax.scatter(np.full(len(v["select"]), i), v["select"], color="black", s=8, zorder=3)
    runs_low = min((min(v["select"]) for v in summary["variants"].values()), default=1.0)
    ax.set_ylim(max(0.0, min(min(values), runs_low) - 0.05), 1.0)
    ax.set_ylabel("select accuracy")
    ax.tick_params(axis="x", labelsize=8)
    path = os.path.join(workdir, "s10_baseline.png")
    fig.savefig(path, dpi=110)
    return [path]
