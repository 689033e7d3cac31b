"""Repair a damaged neural net by evolving only Setup (run_integration_test_nonlinear.sh, §9.3).

The initial population is the hand-written 2-layer net with its weight initializations deleted;
evolution must re-insert Gaussian inits for v2 and m0. Predict and Learn are frozen: the VM runs
them as fixed code (`ComponentSpec.fixed`). As the original's script, no FEC; dedupe then reuses
scores only of deterministic programs, never of those with random-init ops.
"""

from azjax.config import default_config, task_config


def get_config():
    c = default_config()
    c.name = "nonlinear"
    c.num_scalars, c.num_vectors, c.num_matrices = 5, 9, 2
    c.setup_ops = ("VECTOR_GAUSSIAN_SET_OP", "MATRIX_GAUSSIAN_SET_OP")
    c.predict_ops = c.learn_ops = ()
    c.setup_size_init, c.predict_size_init, c.learn_size_init = 2, 1, 4
    c.setup_size_min, c.predict_size_min, c.learn_size_min = 6, 3, 9
    c.setup_size_max, c.predict_size_max, c.learn_size_max = 7, 4, 10
    c.search_tasks = task_config("teacher", num_train_examples=1000)
    seeds = dict(param_seeds=(9000,), data_seeds=(19000,))
    c.select_tasks = task_config("teacher", num_train_examples=1000, **seeds)
    c.final_tasks = task_config("teacher", num_train_examples=1000, **seeds)
    c.fec_num_train_examples = c.fec_num_valid_examples = 0  # The original's script: no FEC.
    c.train_budget = "NEURAL_NET"
    c.initial_population = "DAMAGED_NEURAL_NET"
    c.allowed_mutation_types = (
        "ALTER_PARAM",
        "INSERT_INSTRUCTION",
        "REMOVE_INSTRUCTION",
        "TRADE_INSTRUCTION",
    )
    c.mutate_prob = 1.0
    c.max_train_steps = 100_000_000
    c.random_seed = 100001
    return c
