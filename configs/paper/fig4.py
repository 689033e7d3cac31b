"""Paper Fig. 4: evolution against random search on linear and affine regression (§4.1).

    python scripts/reproduce.py --experiment=fig4

Four points: {linear, affine} tasks x {"full" algorithm (Setup, Predict and Learn from random
code), "learn" (Setup and Predict hold the hand-written regressor's: its learning rate and forward
pass; only Learn is searched)}. Each point runs `max_experiments` experiments (seeds) of evolution
and as many of random search, under the same budget in individuals (`max_individuals`). An
experiment succeeds once a candidate is as good as the hand-written regressor trained by SGD on
the search tasks (docs/reproducing.md).

The paper's settings: F = 8, 1000 train / 100 valid examples, D = 3 tasks, P = 1000, T = 10,
U = 0.9, random initial programs, memory 4/3/1 (linear) and 5/3/1 (affine), fixed sizes 5/1/4
and 6/2/6. The op lists are the fewest the regressors need (the paper does not list its own).
"""

from ml_collections import config_dict

from azjax.config import default_config, task_config

LINEAR_OPS = dict(
    setup_ops=("SCALAR_CONST_SET_OP",),
    predict_ops=("VECTOR_INNER_PRODUCT_OP",),
    learn_ops=(
        "SCALAR_DIFF_OP",
        "SCALAR_PRODUCT_OP",
        "SCALAR_VECTOR_PRODUCT_OP",
        "VECTOR_SUM_OP",
    ),
)
# Affine adds the bias: a scalar sum in Predict (s1 = s1 + b) and in Learn (b = b + step).
AFFINE_OPS = dict(
    setup_ops=LINEAR_OPS["setup_ops"],
    predict_ops=LINEAR_OPS["predict_ops"] + ("SCALAR_SUM_OP",),
    learn_ops=("SCALAR_SUM_OP",) + LINEAR_OPS["learn_ops"],
)


def _tasks(kind: str, num_tasks: int, **seeds):
    return task_config(
        kind,
        feature_size=8,
        num_train_examples=1000,
        num_valid_examples=100,
        num_tasks=num_tasks,
        **seeds,
    )


def _point(kind: str, variant: str, max_individuals: int, seeds: int) -> config_dict.ConfigDict:
    c = default_config()
    c.name = f"{kind}_{variant}"
    affine = kind == "affine"
    c.num_scalars, c.num_vectors, c.num_matrices = (5 if affine else 4), 3, 1
    for field, ops in (AFFINE_OPS if affine else LINEAR_OPS).items():
        c[field] = ops
    c.setup_size_init, c.predict_size_init, c.learn_size_init = (6, 2, 6) if affine else (5, 1, 4)
    if variant == "learn":  # Setup and Predict are the hand-written regressor's, frozen.
        c.setup_ops = c.predict_ops = ()
        c.fixed_components = kind.upper()
    c.search_tasks = _tasks(kind, 3)
    test_seeds = dict(param_seeds=(9000,), data_seeds=(19000,))
    c.select_tasks = _tasks(kind, 10, **test_seeds)
    c.final_tasks = _tasks(kind, 100, **test_seeds)
    c.max_individuals = max_individuals
    c.max_train_steps = 0
    c.max_experiments = seeds  # Experiments per search mode.
    c.parallel_experiments = min(seeds, 20)  # Run at a time, in lockstep, their VM work pooled.
    c.progress_every = max_individuals // 100  # Per experiment: the fitness curves' points.
    c.random_seed = 1
    return c


def get_config():
    c = config_dict.ConfigDict()
    c.experiment = "fig4"
    # The bar: the hand-written regressor (LINEAR or AFFINE) with the original's learning rate,
    # 0.01; a candidate succeeds when its search fitness is within `tolerance` of it, or above.
    c.baseline_learning_rate = 0.01
    c.tolerance = 1e-6
    c.points = config_dict.ConfigDict(
        dict(
            linear_full=_point("linear", "full", 1_000_000, seeds=10),
            linear_learn=_point("linear", "learn", 100_000, seeds=50),
            affine_full=_point("affine", "full", 1_000_000, seeds=10),
            affine_learn=_point("affine", "learn", 200_000, seeds=50),
        )
    )
    return c
