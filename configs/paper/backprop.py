"""Paper Fig. 5: from random programs on teacher-network tasks, does evolution find a forward
pass and a backpropagation-like Learn? (§4.1)

    python scripts/reproduce.py --experiment=backprop

Two points, as two of the paper's worker groups: D = 1 search task (the paper: evolution
hard-codes the teacher's weights) and D = 100 (the paper: it invents backpropagation). The
search space is the paper's: memory 4/8/2, fixed sizes 21/3/9, the 2-layer net's ops only
(Setup {56, 63, 64}, Predict {27, 31, 48}, Learn {2, 3, 16, 18, 23, 25, 28, 39}), random
initial programs, P = 1000 (100 with D = 100, as the paper's group), T = 10, U = 0.9, FEC.
Teacher tasks are u . ReLU(M x) with F = 8. The evolved programs are scored on held-out teacher
tasks beside the hand-written LINEAR and NEURAL_NET, their learning rates tuned on the select
tasks (docs/reproducing.md).
"""

from ml_collections import config_dict

from azjax.config import default_config, task_config

SETUP_OPS = ("SCALAR_CONST_SET_OP", "VECTOR_GAUSSIAN_SET_OP", "MATRIX_GAUSSIAN_SET_OP")
PREDICT_OPS = ("VECTOR_INNER_PRODUCT_OP", "MATRIX_VECTOR_PRODUCT_OP", "VECTOR_MAX_OP")
# The paper's list names OP40 (MATRIX_DIFF); the NEURAL_NET it mirrors adds with MATRIX_SUM (39).
LEARN_OPS = (
    "SCALAR_DIFF_OP",
    "SCALAR_PRODUCT_OP",
    "VECTOR_HEAVYSIDE_OP",
    "SCALAR_VECTOR_PRODUCT_OP",
    "VECTOR_SUM_OP",
    "VECTOR_PRODUCT_OP",
    "VECTOR_OUTER_PRODUCT_OP",
    "MATRIX_SUM_OP",
)


def _teacher(num_tasks: int, num_train: int, num_valid: int, **seeds):
    return task_config(
        "teacher",
        feature_size=8,
        num_train_examples=num_train,
        num_valid_examples=num_valid,
        num_tasks=num_tasks,
        **seeds,
    )


def _point(num_tasks: int, num_train: int, num_valid: int, population: int, budget: int):
    c = default_config()
    c.name = f"backprop_d{num_tasks}"
    c.num_scalars, c.num_vectors, c.num_matrices = 4, 8, 2
    c.setup_ops, c.predict_ops, c.learn_ops = SETUP_OPS, PREDICT_OPS, LEARN_OPS
    c.setup_size_init, c.predict_size_init, c.learn_size_init = 21, 3, 9
    c.search_tasks = _teacher(num_tasks, num_train, num_valid)
    c.select_tasks = _teacher(10, 1000, 100, param_seeds=(8000,), data_seeds=(18000,))
    c.final_tasks = _teacher(100, 1000, 100, param_seeds=(9000,), data_seeds=(19000,))
    c.population_size = population
    c.children_per_generation = min(250, population)
    c.max_individuals = budget
    c.max_train_steps = 0
    return c


def get_config():
    c = config_dict.ConfigDict()
    c.experiment = "backprop"
    c.num_seeds = 2  # Experiments per point (the best, by select fitness, is reported).
    c.random_seed = 1
    c.parallel_experiments = 2
    c.progress_every = 20_000
    c.learning_rates = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3)  # Tuned for the baselines.
    c.points = config_dict.ConfigDict(
        dict(
            d1=_point(1, 1000, 100, population=1000, budget=2_000_000),
            d100=_point(100, 100, 10, population=100, budget=200_000),
        )
    )
    return c
