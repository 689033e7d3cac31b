"""configs/paper/s10_baseline.py shrunk to seconds, for the tests (the digits files are
prepared in the folder the test sets with --config.data_dir)."""

import os

from azjax.config import load_config_file

PAPER = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "paper")


def get_config():
    c = load_config_file(os.path.join(PAPER, "s10_baseline.py"))
    c.max_data_seed = 1
    c.num_train_examples, c.num_valid_examples = 40, 10
    c.num_search_tasks, c.num_final_tasks = 2, 3
    c.num_seeds = c.parallel_experiments = 2
    c.learning_rates = (0.01, 0.1)
    c.progress_every = 20
    c.search.population_size, c.search.children_per_generation = 20, 10
    c.search.max_individuals = 60
    return c
