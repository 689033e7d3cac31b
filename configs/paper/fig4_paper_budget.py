"""Fig. 4 with the paper's budgets: 10,000 individuals per experiment (100,000 for the affine
full-algorithm point), and many experiments, so that the rates rest on many short searches as
the paper's do (configs/paper/fig4.py gives fewer experiments more individuals each).

    python scripts/reproduce.py --experiment=fig4 --config=configs/paper/fig4_paper_budget.py
"""

import os

from azjax.config import load_config_file

EXPERIMENTS = {"linear_full": 1000, "linear_learn": 1000, "affine_full": 50, "affine_learn": 1000}


def get_config():
    c = load_config_file(os.path.join(os.path.dirname(__file__), "fig4.py"))
    for name, point in c.points.items():
        point.max_individuals = 100_000 if name == "affine_full" else 10_000
        point.max_experiments = EXPERIMENTS[name]
        point.parallel_experiments = 50
        point.progress_every = 2500
    return c
