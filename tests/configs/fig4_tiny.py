"""configs/paper/fig4.py shrunk to seconds, for the tests: two points, two seeds, tiny tasks."""

import os

from azjax.config import load_config_file

PAPER = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "paper")


def get_config():
    c = load_config_file(os.path.join(PAPER, "fig4.py"))
    for name in ("affine_full", "linear_full"):
        del c.points[name]
    for point in c.points.values():
        point.population_size, point.children_per_generation = 20, 10
        point.max_individuals = 60
        point.max_experiments = point.parallel_experiments = 2
        point.progress_every = 20
        for tasks in (point.search_tasks, point.select_tasks, point.final_tasks):
            tasks.num_train_examples, tasks.num_valid_examples = 20, 10
            tasks.num_tasks = min(tasks.num_tasks, 2)
    return c
