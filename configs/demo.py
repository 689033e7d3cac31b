"""The 5-minute demo: rediscover linear regression by gradient descent (run_demo.sh, §9.1).

python scripts/run_search_experiment.py --config=configs/demo.py [--config.random_seed=3]
"""

from azjax.config import default_config, task_config


def get_config():
    c = default_config()
    c.name = "demo"
    c.search_tasks = task_config("linear", num_train_examples=100, num_tasks=10)
    c.select_tasks = task_config("linear", num_train_examples=1000, num_tasks=100)
    c.final_tasks = task_config(
        "linear",
        num_train_examples=1000,
        num_tasks=100,
        param_seeds=(2000000,),
        data_seeds=(1000000,),
    )
    c.max_train_steps = 200_000_000
    c.max_experiments = 0
    c.randomize_task_seeds = True
    c.sufficient_fitness = 0.9999
    # Deviation: stop an experiment's search as soon as it has a candidate above the threshold,
    # and restart one whose best fitness has not risen for 100,000 individuals. In a measured run
    # (seed 5, 40 experiments, no restarts, 20 M individuals), that rule would have cut 1 of the
    # 9 successful experiments (after a plateau of 165k) and freed 7.0 M individuals from 21
    # stuck ones; successes came at any age (44k-632k individuals).
    c.stop_search_at_fitness = 0.9999
    c.stagnation_individuals = 100_000
    # Deviation: 32 experiments at a time, on the device, in lockstep, their VM work pooled (the
    # original runs them one by one). Each experiment is the same search either way; the run ends
    # at the first sufficient one.
    c.parallel_experiments = 32
    return c
