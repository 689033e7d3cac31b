"""configs/paper/backprop.py shrunk to seconds, for the tests."""

import os

from azjax.config import load_config_file

PAPER = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "paper")


def get_config():
    c = load_config_file(os.path.join(PAPER, "backprop.py"))
    c.learning_rates = (0.01, 0.1)
    c.progress_every = 20
    for point in c.points.values():
        point.population_size, point.children_per_generation = 20, 10
        point.max_individuals = 60
        point.search_tasks.num_tasks = min(point.search_tasks.num_tasks, 3)
        for tasks in (point.search_tasks, point.select_tasks, point.final_tasks):
            tasks.num_train_examples, tasks.num_valid_examples = 20, 10
        point.final_tasks.num_tasks = 4
    return c
