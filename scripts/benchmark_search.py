"""Time-to-solution of the demo (or any config) over seeds: solved, seconds, individuals, savings.

    python scripts/benchmark_search.py                       # demo, seeds 1-10
    python scripts/benchmark_search.py --seeds=1,2 --config.children_per_generation=500
    python scripts/benchmark_search.py --config=configs/nonlinear.py --seeds=1 --seed_budget_secs=60

Each seed is one `run_search_experiment` run (experiments repeat until the select fitness exceeds
sufficient_fitness, or the per-seed budget ends) in this process, so compiled code is shared
across seeds; the first seed also pays the tracing and compiling (its compile seconds are in its
row). Prints a table (median, mean and max time to solve) and writes JSON to --output.
"""

import json
import os
import platform
import statistics
import sys
import time

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from azjax import config, experiment, runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(__file__), "..", "configs", "demo.py"),
    "Experiment config.",
)
_SEEDS = flags.DEFINE_list("seeds", [str(i) for i in range(1, 11)], "Random seeds to run.")
_OUTPUT = flags.DEFINE_string("output", "workdir/benchmark_search.json", "Where to write JSON.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/benchmark_search", "Per-seed run directories.")
_BUDGET = flags.DEFINE_float(
    "seed_budget_secs",
    600.0,
    "Per-seed wall-clock cap (sets config.time_budget_secs per experiment "
    "and max_experiments so one seed cannot run forever); 0 = none.",
)
_SOLVED = flags.DEFINE_float(
    "solved_fitness", 0.9999, "A seed is solved if its final fitness exceeds this."
)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    runtime.configure()
    cfg = _CONFIG.value
    rows, compiles = [], runtime.CompileLog()
    for seed in (int(s) for s in _SEEDS.value):
        cfg.random_seed = seed
        exp = config.build(cfg)
        workdir = os.path.join(_WORKDIR.value, f"seed{seed}")
        if os.path.exists(os.path.join(workdir, "checkpoint.npz")):
            os.remove(os.path.join(workdir, "checkpoint.npz"))
        lines = []
        compiles.reset()
        t0 = time.perf_counter()
        deadline = time.time() + _BUDGET.value if _BUDGET.value else None
        result = experiment.run(exp, workdir=workdir, log=lines.append, deadline=deadline)
        seconds = time.perf_counter() - t0
        compile_s = compiles.seconds
        c = result.counters
        row = dict(
            seed=seed,
            solved=bool(result.final_fitness > _SOLVED.value),
            seconds=seconds,
            final_fitness=result.final_fitness,
            select_fitness=result.select_fitness,
            experiments=result.experiments,
            individuals=result.individuals,
            individuals_per_sec=result.individuals / seconds,
            compile_seconds=compile_s,
            search_seconds=result.timings["search"],
            scoring_seconds=result.timings["scoring"],
            host_fraction=max(0.0, seconds - sum(result.timings.values())) / seconds,
            **{f"saved_{k}": v for k, v in c.items()},
        )
        rows.append(row)
        print(
            f"seed {seed}: solved={row['solved']} {seconds:.1f}s {result.individuals} individuals "
            f"({row['individuals_per_sec']:.0f}/s) final={result.final_fitness:.6f}",
            flush=True,
        )
    solved = [r for r in rows if r["solved"]]
    seconds = [r["seconds"] for r in solved]
    summary = dict(
        seeds=len(rows),
        solved=len(solved),
        median_seconds_to_solve=statistics.median(seconds) if solved else None,
        mean_seconds_to_solve=statistics.mean(seconds) if solved else None,
        max_seconds_to_solve=max(seconds) if solved else None,
        median_individuals_to_solve=statistics.median(r["individuals"] for r in solved)
        if solved
        else None,
        mean_individuals_per_sec=statistics.mean(r["individuals_per_sec"] for r in rows),
        total_individuals_per_sec=sum(r["individuals"] for r in rows)
        / sum(r["seconds"] for r in rows),
    )
    header = (
        "seed",
        "solved",
        "seconds",
        "individuals",
        "indiv/s",
        "experiments",
        "dedupe",
        "fec",
        "early_stop",
        "full_evals",
        "compile_s",
        "host_%",
        "final",
    )
    print("\n" + " | ".join(f"{h:>11}" for h in header))
    for r in rows:
        vals = (
            r["seed"],
            r["solved"],
            f"{r['seconds']:.1f}",
            r["individuals"],
            f"{r['individuals_per_sec']:.0f}",
            r["experiments"],
            r["saved_dedupe_hits"],
            r["saved_fec_hits"],
            r["saved_early_stops"],
            r["saved_full_evaluations"],
            f"{r['compile_seconds']:.1f}",
            f"{100 * r['host_fraction']:.1f}",
            f"{r['final_fitness']:.6f}",
        )
        print(" | ".join(f"{str(v):>11}" for v in vals))
    print(json.dumps(summary, indent=2))
    os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
    with open(_OUTPUT.value, "w") as f:
        json.dump(
            dict(
                summary=summary,
                rows=rows,
                config=cfg.to_dict(),
                jax=jax.__version__,
                devices=[str(d) for d in jax.devices()],
                cpu_count=os.cpu_count(),
                platform=platform.platform(),
                argv=sys.argv,
            ),
            f,
            indent=2,
            default=list,
        )
    print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
    app.run(main, flags_parser=config.parse_flags)
