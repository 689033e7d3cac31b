"""The scikit-learn estimators against linear baselines on scikit-learn's bundled datasets.

    python scripts/benchmark_estimators.py                          # 60 s per fit, seed 0
    python scripts/benchmark_estimators.py --budget_secs=20 --seeds=0,1 --output=bench.json

Per seed: one stratified (classification) or plain 75 / 25 split; `AutoMLZeroRegressor` on
diabetes against `LinearRegression` (test RMSE), `AutoMLZeroClassifier` on breast cancer
(standardized, projected to --project_to features) against `LogisticRegression` on the same
projected features and on all 30 standardized features (test accuracy); the predict-the-mean /
majority-class baseline beside them. Fit seconds include the search's compile (the first fit of
a shape in a process; `azjax.runtime.configure` keeps compiled code in the persistent cache, so a
second run of this script compiles far less). Prints a table and writes JSON to --output.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import jax
import numpy as np
from absl import app, flags
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from azjax import datasets, runtime
from azjax.estimators import AutoMLZeroClassifier, AutoMLZeroRegressor

_BUDGET = flags.DEFINE_float("budget_secs", 60.0, "max_time_secs of each fit.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds: of the split and of the estimators.")
_PROJECT_TO = flags.DEFINE_integer("project_to", 8, "Projected features for breast cancer.")
_INITIAL = flags.DEFINE_string(
    "initial_population", None, "The estimators' initial_population (default: theirs)."
)
_DATASETS = flags.DEFINE_list("datasets", ["diabetes", "breast_cancer"], "Which to run.")
_OUTPUT = flags.DEFINE_string(
    "output", "workdir/benchmark_estimators.json", "Where to write the JSON results."
)


def _estimator_kwargs(seed: int) -> dict:
    kwargs = dict(max_time_secs=_BUDGET.value, random_state=seed)
    if _INITIAL.value:
        kwargs["initial_population"] = _INITIAL.value
    return kwargs


def _fit(estimator, X, y):
    t = time.perf_counter()
    estimator.fit(X, y)
    return time.perf_counter() - t


def _azjax_row(estimator, seconds: float) -> dict:
    return dict(
        fit_seconds=seconds,
        first_call_seconds=estimator.history_[0]["seconds"],
        individuals=estimator.n_individuals_,
        select_fitness=estimator.fitness_,
        program=estimator.format_program(),
    )


def diabetes(seed: int) -> list[dict]:
    X, y = load_diabetes(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=seed)

    def rmse(model):
        return float(np.sqrt(np.mean((model.predict(X_te) - y_te) ** 2)))

    azjax = AutoMLZeroRegressor(**_estimator_kwargs(seed))
    seconds = _fit(azjax, X_tr, y_tr)
    linear = LinearRegression()
    linear_seconds = _fit(linear, X_tr, y_tr)
    mean = float(np.sqrt(np.mean((y_tr.mean() - y_te) ** 2)))
    rows = [
        dict(model="AutoMLZeroRegressor", rmse=rmse(azjax), **_azjax_row(azjax, seconds)),
        dict(model="LinearRegression", rmse=rmse(linear), fit_seconds=linear_seconds),
        dict(model="mean of y_train", rmse=mean),
    ]
    return [dict(dataset="diabetes", seed=seed, metric="rmse", **r) for r in rows]


def breast_cancer(seed: int) -> list[dict]:
    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    F = _PROJECT_TO.value
    azjax = AutoMLZeroClassifier(project_to=F, **_estimator_kwargs(seed))
    seconds = _fit(azjax, X_tr, y_tr)

    def projected(Z):  # The features azjax's program sees.
        Z = datasets.transform(Z, None, azjax.input_scaler_)
        return datasets.transform(Z, azjax.projection_, azjax.scaler_)

    full = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    full_seconds = _fit(full, X_tr, y_tr)
    same = LogisticRegression(max_iter=1000)
    same_seconds = _fit(same, projected(X_tr), y_tr)
    majority = float(np.mean(y_te == np.bincount(y_tr).argmax()))
    rows = [
        dict(
            model=f"AutoMLZeroClassifier (project_to={F})",
            accuracy=float(np.mean(azjax.predict(X_te) == y_te)),
            **_azjax_row(azjax, seconds),
        ),
        dict(
            model=f"LogisticRegression (same {F} projected features)",
            accuracy=float(np.mean(same.predict(projected(X_te)) == y_te)),
            fit_seconds=same_seconds,
        ),
        dict(
            model="LogisticRegression (30 standardized features)",
            accuracy=float(np.mean(full.predict(X_te) == y_te)),
            fit_seconds=full_seconds,
        ),
        dict(model="majority class", accuracy=majority),
    ]
    return [dict(dataset="breast_cancer", seed=seed, metric="accuracy", **r) for r in rows]


def main(argv):
    if len(argv) > 1:
        sys.exit(f"benchmark_estimators.py: error: unexpected arguments {argv[1:]}")
    runtime.configure()
    runs = {"diabetes": diabetes, "breast_cancer": breast_cancer}
    unknown = set(_DATASETS.value) - set(runs)
    if unknown:
        sys.exit(f"benchmark_estimators.py: error: unknown --datasets {sorted(unknown)}")
    rows = []
    for seed in (int(s) for s in _SEEDS.value):
        for name in _DATASETS.value:
            rows += runs[name](seed)
    print(f"{'dataset':<14} {'seed':>4}  {'model':<50} {'test':>8} {'fit s':>7} {'indivs':>9}")
    for r in rows:
        fit = f"{r['fit_seconds']:.1f}" if "fit_seconds" in r else "-"
        print(
            f"{r['dataset']:<14} {r['seed']:>4}  {r['model']:<50} {r[r['metric']]:>8.4f} "
            f"{fit:>7} {r.get('individuals', '-'):>9}"
        )
    for r in rows:
        if "program" in r:
            print(f"\n{r['model']} on {r['dataset']}, seed {r['seed']}:\n{r['program']}")
    result = dict(
        settings=dict(
            budget_secs=_BUDGET.value,
            seeds=[int(s) for s in _SEEDS.value],
            project_to=_PROJECT_TO.value,
            initial_population=_INITIAL.value,
        ),
        machine=dict(
            platform=platform.platform(),
            devices=[str(d) for d in jax.devices()],
            jax=jax.__version__,
        ),
        rows=rows,
    )
    os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
    with open(_OUTPUT.value, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {_OUTPUT.value}")


if __name__ == "__main__":
    app.run(main)
