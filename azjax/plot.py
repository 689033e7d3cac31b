"""Plots of a search run from its `log.jsonl`: fitness, work avoidance and program size.

The run's log holds one JSON object per line, its kind in `"event"`: "progress" (the fitness
statistics `best` / `mean` / `stdev` and the work counters of the running experiments, every
progress interval), "experiment" (an experiment's end: its search and select fitness, individuals
and counters) and "final". `plot_run` turns it into PNGs:

- fitness.png: best and mean (+- stdev) fitness against individuals: one line per experiment
  where a record covers one experiment (experiments run one at a time) or gives per-experiment
  lists, else one line for the running experiments together; and each ended experiment's search
  and select fitness.
- work.png: how the children were scored (structural dedupe, FEC hit, early-stop shortcut, full
  evaluation, train-budget rejection), cumulative and per progress interval.
- size.png: program size, when the records hold it (numeric fields named like `*size*`,
  `*length*` or `*instructions*`, or per-component dicts of them).

Fields this module does not know are ignored and missing optional ones skipped, so logs from
older and newer runs plot alike. The x axis "individuals" is the run's total: the individuals of
the experiments ended so far plus those of the running ones. matplotlib is an optional
dependency (`pip install azjax[plot]`), imported on first use; no global pyplot state is touched.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence

# Work-avoidance counters: (label, accepted field names), in the order a child meets the stages.
COUNTERS = (
    ("dedupe", ("dedupe_hits", "dedupe")),
    ("FEC", ("fec_hits", "fec")),
    ("early stop", ("early_stops", "early_stop")),
    ("full evaluation", ("full_evaluations", "full")),
    ("budget rejected", ("budget_rejected",)),
)
_SIZE_FIELD = re.compile(r"size|length|instructions")
_NOT_SIZE = re.compile(r"population|tournament|cache|batch|children|chunk")


class LogError(ValueError):
    """A log that cannot be read or holds nothing to plot."""


def read_log(path: str | os.PathLike) -> list[dict]:
    """The records of a `log.jsonl`, in order. Blank lines and a torn last line (a run killed
    mid-write) are skipped; any other line that is not a JSON object raises LogError."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise LogError(f"cannot read {os.fspath(path)}: {e.strerror}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise LogError(f"{os.fspath(path)}: line {number} is not JSON") from None
        if not isinstance(record, dict):
            raise LogError(f"{os.fspath(path)}: line {number} is not a JSON object")
        records.append(record)
    return records


def _number(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)


def _counter(record: dict, names: Sequence[str]) -> float | None:
    for name in names:
        if name in record:
            return _number(record[name])
    return None


def _run_progress(records: Iterable[dict]):
    """Progress records with `run_x` (the run's individuals) and the counters summed over the
    run (ended experiments' included), in log order."""
    ended_individuals, ended = 0.0, {label: 0.0 for label, _ in COUNTERS}
    out = []
    for record in records:
        event = record.get("event")
        if event == "experiment":
            ended_individuals += _number(record.get("individuals")) or 0.0
            counters = record.get("counters")
            for label, names in COUNTERS:
                if isinstance(counters, dict):
                    ended[label] += _counter(counters, names) or 0.0
        elif event == "progress":
            individuals = record.get("individuals")
            if isinstance(individuals, list):
                individuals = sum(_number(x) or 0.0 for x in individuals)
            individuals = _number(individuals)
            if individuals is None:
                continue
            counts = {}
            for label, names in COUNTERS:
                value = _counter(record, names)
                if value is not None:
                    counts[label] = ended[label] + value
            out.append((ended_individuals + individuals, record, counts))
    return out


def fitness_series(records: Sequence[dict]) -> dict[str, dict[str, list[float]]]:
    """{series label: {"x", "best", "mean", "stdev": lists}} from the progress records."""
    series: dict[str, dict[str, list[float]]] = {}

    def add(label, x, best, mean, stdev):
        s = series.setdefault(label, {"x": [], "best": [], "mean": [], "stdev": []})
        for key, value in (("x", x), ("best", best), ("mean", mean), ("stdev", stdev)):
            s[key].append(math.nan if value is None else value)

    for run_x, record, _ in _run_progress(records):
        experiments = record.get("experiments")
        if "experiment" in record:
            experiments = [record["experiment"]]
        fields = [record.get(k) for k in ("individuals", "best", "mean", "stdev")]
        if isinstance(
            record.get("experiment_best"), list
        ):  # Per-experiment lists (azjax.experiment).
            fields = [
                record.get("experiment_individuals", fields[0]),
                record["experiment_best"],
                record.get("experiment_mean"),
                None,
            ]
        if isinstance(experiments, list) and any(isinstance(f, list) for f in fields[1:]):
            n = len(experiments)
            picks = [f if isinstance(f, list) and len(f) == n else [f] * n for f in fields]
            for j, e in enumerate(experiments):
                x = _number(picks[0][j]) if isinstance(fields[0], list) else run_x
                add(f"experiment {e}", x, *(_number(p[j]) for p in picks[1:]))
        elif isinstance(experiments, list) and len(experiments) == 1:
            add(f"experiment {experiments[0]}", _number(fields[0]), *map(_number, fields[1:]))
        else:
            add("running experiments", run_x, *map(_number, fields[1:]))
    return series


def size_series(records: Sequence[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """{field (or field/component): (x, y)} of the program-size fields of progress records."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for run_x, record, _ in _run_progress(records):
        for key, value in record.items():
            if not _SIZE_FIELD.search(key) or _NOT_SIZE.search(key):
                continue
            values = value.items() if isinstance(value, dict) else [(None, value)]
            for part, v in values:
                if isinstance(v, list):  # Per experiment: their mean.
                    numbers = [n for n in map(_number, v) if n is not None]
                    v = sum(numbers) / len(numbers) if numbers else None
                v = _number(v)
                if v is not None:
                    xs, ys = series.setdefault(key if part is None else f"{key}/{part}", ([], []))
                    xs.append(run_x)
                    ys.append(v)
    return series


def _figure(rows: int):
    from matplotlib.figure import Figure  # Lazily: matplotlib is an optional extra.

    fig = Figure(figsize=(9, 3.6 * rows), layout="constrained")
    return fig, fig.subplots(rows, 1, squeeze=False)[:, 0]


def plot_fitness(records: Sequence[dict], path: str) -> bool:
    """Writes fitness.png-style plot to `path`; False (nothing written) without progress."""
    series = fitness_series(records)
    ended = [r for r in records if r.get("event") == "experiment" and "experiment" in r]
    if not series:
        return False
    fig, axes = _figure(2 if ended else 1)
    ax = axes[0]
    many = len(series) > 10
    for i, (label, s) in enumerate(sorted(series.items(), key=lambda kv: _natural(kv[0]))):
        color = f"C{i % 10}"
        ax.plot(s["x"], s["best"], color=color, lw=1.6, label=None if many else label)
        ax.plot(s["x"], s["mean"], color=color, lw=1, ls="--")
        low = [m - d for m, d in zip(s["mean"], s["stdev"], strict=True)]
        high = [m + d for m, d in zip(s["mean"], s["stdev"], strict=True)]
        ax.fill_between(s["x"], low, high, color=color, alpha=0.12, lw=0)
    final = next((r for r in reversed(records) if r.get("event") == "final"), None)
    title = "Fitness of the population (best: solid, mean +- stdev: dashed)"
    if final is not None and _number(final.get("final_fitness")) is not None:
        title += f"; final fitness {final['final_fitness']:.6f}"
    ax.set(title=title, xlabel="individuals", ylabel="fitness", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    if not many:
        ax.legend(fontsize="small")
    if ended:
        from matplotlib.ticker import MaxNLocator

        ax = axes[1]
        ids = [r["experiment"] for r in ended]
        for field, marker in (("search_fitness", "o"), ("select_fitness", "x")):
            points = [(i, _number(r.get(field))) for i, r in zip(ids, ended, strict=True)]
            points = [(i, v) for i, v in points if v is not None]
            if points:
                ax.scatter(*zip(*points, strict=True), marker=marker, label=field.replace("_", " "))
        ax.set(
            title="Ended experiments: best search fitness, and its fitness on the select tasks",
            xlabel="experiment",
            ylabel="fitness",
            xlim=(min(ids) - 0.5, max(ids) + 0.5),
            ylim=(-0.02, 1.02),
        )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    fig.savefig(path, dpi=110)
    return True


def plot_work(records: Sequence[dict], path: str) -> bool:
    """Writes the work-avoidance plot to `path`; False without counters."""
    progress = [(x, counts) for x, _, counts in _run_progress(records) if counts]
    labels = [label for label, _ in COUNTERS if any(c.get(label) for _, c in progress)]
    if len(progress) < 1 or not labels:
        return False
    xs = [x for x, _ in progress]
    cumulative = [[c.get(label, 0.0) for _, c in progress] for label in labels]
    fig, (top, bottom) = _figure(2)
    top.stackplot(xs, cumulative, labels=labels, alpha=0.85)
    top.set(title="How children were scored (cumulative)", xlabel="individuals", ylabel="children")
    top.legend(fontsize="small", loc="upper left")
    top.grid(alpha=0.3)
    # Per interval: the share of each stage among the children scored since the previous record.
    mids, shares = [], [[] for _ in labels]
    for k in range(1, len(progress)):
        deltas = [max(series[k] - series[k - 1], 0.0) for series in cumulative]
        total = sum(deltas)
        if total > 0:
            mids.append(xs[k])
            for share, d in zip(shares, deltas, strict=True):
                share.append(d / total)
    if mids:
        bottom.stackplot(mids, shares, labels=labels, alpha=0.85, step="pre")
    bottom.set(
        title="Share of each stage per progress interval",
        xlabel="individuals",
        ylabel="fraction of children",
        ylim=(0, 1),
    )
    bottom.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return True


def plot_size(records: Sequence[dict], path: str) -> bool:
    """Writes the program-size plot to `path`; False when no record holds a size."""
    series = size_series(records)
    if not series:
        return False
    fig, (ax,) = _figure(1)
    for label, (xs, ys) in sorted(series.items()):
        ax.plot(xs, ys, lw=1.4, label=label)
    ax.set(title="Program size", xlabel="individuals", ylabel="instructions")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)
    return True


PLOTS = (("fitness.png", plot_fitness), ("work.png", plot_work), ("size.png", plot_size))


def plot_run(log_path: str | os.PathLike, out_dir: str | os.PathLike) -> list[str]:
    """Reads a run's `log.jsonl` and writes the PNGs it has data for into `out_dir`.

    Returns:
      The paths written (fitness.png, work.png, size.png, those with data).
    Raises:
      LogError: the log cannot be read or has no progress record.
    """
    records = read_log(log_path)
    if not any(r.get("event") == "progress" for r in records):
        raise LogError(f"{os.fspath(log_path)} has no progress records yet")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, plot in PLOTS:
        path = os.path.join(out_dir, name)
        if plot(records, path):
            written.append(path)
    return written


def _natural(label: str):
    """Sort key: 'experiment 2' before 'experiment 10'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", label)]
