"""Projected binary classification on real images: the hand-written neural net, evolving only
its Setup, on class 0 vs 1 (run_integration_test_projected_binary_datasets.sh, docs/ops.md).

Prepare the data first (scikit-learn's bundled digits; nothing is downloaded):

    python scripts/prepare_datasets.py --dataset=digits --class_ids=0,1 --max_data_seed=5 \\
        --output_dir=workdir/datasets/digits
    python scripts/run_search_experiment.py --config=configs/projected_binary.py

For CIFAR-10 use --dataset=cifar10 --data_dir=<dir with data_batch_1..5>, then
--config.search_tasks.dataset_name=cifar10 (and the same for select/final tasks, with their
dataset_dir), F=16, 8000 train and 1000 valid examples as the original. Digits has ~180 images
per class, so this config uses 250 train and 30 valid examples per task.

For your own examples (a .csv file with the class id 0..9 in the last column, or a .npz file with
arrays x and y): --dataset=file --data_file=PATH --projected_dim=16 (and the class ids, split
sizes and output folder you want), then set dataset_name=file and dataset_dir (and the split
sizes) of search_tasks, select_tasks and final_tasks, e.g. --config.search_tasks.dataset_name=file.
`azjax.tasks.from_arrays` builds such tasks from arrays in memory, without files.
"""

from azjax.config import default_config, task_config

DATA_DIR = "workdir/datasets/digits"


def _binary(data_seed: int):
    return task_config(
        "projected_binary",
        feature_size=16,
        num_train_examples=250,
        num_valid_examples=30,
        eval_type="accuracy",
        dataset_dir=DATA_DIR,
        dataset_name="digits",
        positive_class=0,
        negative_class=1,
        max_supported_data_seed=2,
        data_seeds=(data_seed,),
    )


def get_config():
    c = default_config()
    c.name = "projected_binary"
    c.num_scalars = c.num_vectors = c.num_matrices = 20
    c.setup_ops = ("VECTOR_GAUSSIAN_SET_OP", "MATRIX_GAUSSIAN_SET_OP")
    c.predict_ops = c.learn_ops = ()
    c.setup_size_init, c.predict_size_init, c.learn_size_init = 2, 1, 4
    c.search_tasks = _binary(11001)
    c.select_tasks = _binary(2)
    c.final_tasks = _binary(3)
    c.train_budget = "NEURAL_NET"
    c.population_size = 10
    c.tournament_size = 10
    c.children_per_generation = 10
    c.initial_population = "NEURAL_NET"
    c.max_train_steps = 2500  # = P x train examples: the initial population uses the budget.
    c.allowed_mutation_types = ("ALTER_PARAM", "IDENTITY")
    c.mutate_prob = 1.0
    c.fec_num_train_examples = c.fec_num_valid_examples = 0
    c.progress_every = 100
    c.random_seed = 1000060
    return c
