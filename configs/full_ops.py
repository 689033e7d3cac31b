"""Linear regression from random programs over all 65 ops (a harder space than the demo's six).

python scripts/run_search_experiment.py --config=configs/full_ops.py
python scripts/benchmark_search.py --config=configs/full_ops.py --seeds=1 --seed_budget_secs=120

The demo's tasks and settings (configs/demo.py), but every op in every component (random-init,
transcendental and matrix ops included) and memory 4/3/2: the throughput benchmark of the full
op set, and a search that must find linear regression among far more candidates.
"""

import os

from azjax import ops
from azjax.config import load_config_file


def get_config():
    c = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo.py"))
    c.name = "full_ops"
    c.num_scalars, c.num_vectors, c.num_matrices = 4, 3, 2
    c.setup_ops = c.predict_ops = c.learn_ops = ops.ALL_OPS
    return c
