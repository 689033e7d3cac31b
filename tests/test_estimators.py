"""The scikit-learn estimators (`azjax.estimators`): fit / predict, budgets, errors, and
scikit-learn's own estimator checks.

Every fit in the default suite uses tasks of one shape (20 examples, 3 features: 14 train and 5
valid examples per task), so the search compiles once per estimator class; scikit-learn's checks
whose data have other shapes (each a compile of its own) run with `-m slow`.
"""

import time

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import estimator_checks_generator

from azjax import program_io
from azjax.estimators import AutoMLZeroClassifier, AutoMLZeroRegressor

# One worker runs this group: its tests share compiled programs and cached runs.
pytestmark = pytest.mark.xdist_group("estimators")

TINY = dict(
    max_time_secs=None,
    max_individuals=24,
    population_size=8,
    children_per_generation=4,
    tournament_size=2,
    num_experiments=2,
    num_tasks=2,
    random_state=0,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3)) * [1.0, 2.0, 0.5] + 3.0
    return X, X @ [1.0, -2.0, 0.5] + 10.0


@pytest.mark.slow  # The estimator's search compiles: about 20 s on 2 cores.
def test_regressor_fit_predict_and_fitted_attributes(data):
    X, y = data
    est = AutoMLZeroRegressor(**TINY).fit(X, y)
    program_io.validate(est.program_, est.spec_)
    assert est.n_features_in_ == 3 and est.feature_size_ == 3 and est.projection_ is None
    assert 0.0 <= est.fitness_ <= 1.0
    assert est.n_individuals_ >= 24 and est.history_[-1]["individuals"] == est.n_individuals_
    pred = est.predict(X)
    assert pred.shape == (20,) and np.all(np.isfinite(pred))
    # The exported NumPy source, trained on all of X (standardized), predicts the same.
    source = est.export_python()
    namespace = {}
    exec(compile(source, "exported", "exec"), namespace)
    memory = namespace["new_memory"](3, seed=int(est.state_.seed))
    namespace["setup"](memory)
    features = (X - X.mean(0)) / X.std(0)
    namespace["fit"](memory, features, (y - est.y_mean_) / est.y_scale_)
    first = namespace["predict"](memory, features[0]) * est.y_scale_ + est.y_mean_
    np.testing.assert_allclose(pred[0], first, rtol=1e-4, atol=1e-3)
    assert "def Predict():" in est.format_program()


@pytest.mark.slow  # Two more searches of their own compile: about 20 s.
def test_same_random_state_same_program(data):
    X, y = data
    a = AutoMLZeroRegressor(**TINY).fit(X, y)
    b = clone(a).fit(X, y)
    assert program_io.format_program(a.program_, pruned=False) == program_io.format_program(
        b.program_, pruned=False
    )
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


@pytest.mark.slow  # A second search compile (accuracy tasks): about 30 s on 2 cores.
def test_classifier_labels_probabilities_and_projection(data):
    X, y = data
    labels = np.where(y > np.median(y), "high", "low")
    X6 = np.hstack([X, X**2])  # Projected down to 3 features: the same task shapes.
    est = AutoMLZeroClassifier(project_to=3, **TINY).fit(X6, labels)
    assert list(est.classes_) == ["high", "low"] and est.projection_.shape == (6, 3)
    proba = est.predict_proba(X6)
    assert proba.shape == (20, 2) and np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(est.predict(X6), est.classes_[(proba[:, 1] > 0.5).astype(int)])


@pytest.mark.slow  # Its own compile (no individual budget): about 20 s on 2 busy cores.
def test_time_budget_ends_the_search(data):
    X, y = data
    est = AutoMLZeroRegressor(**{**TINY, "max_individuals": None, "max_time_secs": 2.0})
    est.fit(X, y)  # The budget counts the compile, which may take all of it.
    start = time.perf_counter()
    est.fit(X, y)  # Compiled: the search runs until the first call boundary past 2 s.
    assert 2.0 <= est.search_seconds_ < 30.0
    assert time.perf_counter() - start < 60.0
    assert est.n_individuals_ > 24 and est.__sklearn_tags__().non_deterministic


@pytest.mark.parametrize(
    "estimator, X, y, message",
    [
        (AutoMLZeroRegressor(max_time_secs=None), np.zeros((20, 3)), np.zeros(20), "give"),
        (AutoMLZeroRegressor(max_time_secs=0), np.zeros((20, 3)), np.zeros(20), "> 0"),
        (AutoMLZeroRegressor(), np.zeros((3, 3)), np.zeros(3), "n_samples = 3"),
        (AutoMLZeroRegressor(), np.zeros((20, 40)), np.zeros(20), "1..32, got 40.*project_to"),
        (AutoMLZeroClassifier(), np.zeros((20, 3)), np.arange(20) % 3, "Only binary"),
        (AutoMLZeroClassifier(), np.zeros((20, 3)), np.ones(20), "got 1 class"),
        (AutoMLZeroRegressor(ops=("NOPE",)), np.zeros((20, 3)), np.zeros(20), "unknown op"),
    ],
)
def test_bad_settings_and_data_fail_before_searching(estimator, X, y, message):
    with pytest.raises(ValueError, match=message):
        estimator.fit(X, y)


# ----------------------------------------------------------------------------------------------
# scikit-learn's estimator checks.

# Checks that never search: the default suite runs these. The others (each search compiles for
# about 20 s on 2 cores) are slow tests.
FAST_CHECKS = frozenset(
    {
        "check_estimator_cloneable",
        "check_estimator_tags_renamed",
        "check_valid_tag_types",
        "check_estimator_repr",
        "check_no_attributes_set_in_init",
        "check_estimators_unfitted",
        "check_do_not_raise_errors_in_init_or_set_params",
        "check_mixin_order",
        "check_complex_data",
        "check_estimators_empty_data_messages",
        "check_estimator_sparse_tag",
        "check_estimator_sparse_array",
        "check_estimator_sparse_matrix",
        "check_supervised_y_no_nan",
        "check_classifiers_one_label",
        "check_classifiers_regression_target",
        "check_classifier_not_supporting_multiclass",
        "check_non_transformer_estimators_n_iter",
        "check_parameters_default_constructible",
        "check_fit2d_1sample",
        "check_get_params_invariance",
        "check_set_params",
        "check_fit1d",
        "check_requires_y_none",
        "check_estimators_partial_fit_n_features",
        "check_decision_proba_consistency",
    }
)


def _name(check) -> str:
    return getattr(check, "func", check).__name__


def _params():
    for cls in (AutoMLZeroRegressor, AutoMLZeroClassifier):
        # No check is expected to fail; scikit-learn skips those it cannot run here (array API
        # without SCIPY_ARRAY_API, pandas inputs without pandas) with a SkipTestWarning.
        for estimator, check in estimator_checks_generator(cls(**TINY), legacy=True):
            name = _name(check)
            # The classifier's compiles (accuracy tasks) are slow tests; its fit/predict test too.
            fast = name in FAST_CHECKS and cls is AutoMLZeroRegressor
            marks = [] if fast else [pytest.mark.slow]
            yield pytest.param(estimator, check, id=f"{cls.__name__}-{name}", marks=marks)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@pytest.mark.parametrize("estimator, check", list(_params()))
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
