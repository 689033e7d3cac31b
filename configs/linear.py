"""Linear regression with fixed small components (run_integration_test_linear.sh, §9.2).

Setup may only set constants, Predict is one dot product, Learn 4 instructions.
"""

from azjax.config import default_config, task_config


def get_config():
    c = default_config()
    c.name = "linear"
    c.setup_ops = ("SCALAR_CONST_SET_OP",)
    c.predict_ops = ("VECTOR_INNER_PRODUCT_OP",)
    c.learn_ops = (
        "SCALAR_DIFF_OP",
        "SCALAR_PRODUCT_OP",
        "SCALAR_VECTOR_PRODUCT_OP",
        "VECTOR_SUM_OP",
    )
    c.setup_size_init, c.predict_size_init, c.learn_size_init = 5, 1, 4
    c.search_tasks = task_config("linear", num_train_examples=100, num_tasks=10)
    c.select_tasks = task_config("linear", num_train_examples=10000, num_tasks=100)
    c.final_tasks = task_config("linear", num_train_examples=10000, num_tasks=100)
    c.max_train_steps = 100_000_000
    c.random_seed = 100021
    return c
