"""Paper Table S5's "Basic" baseline (run_baseline.sh): search from empty programs on projected
binary classification, against logistic regression and a 2-layer net.

    python scripts/reproduce.py --experiment=s10_baseline

The search space and settings are run_baseline.sh's: memory 5/9/2; Setup {56, 59-64}, Predict
{1, 23, 27, 31, 48}, Learn {1, 2, 3, 16, 18, 23, 25, 28, 39}; sizes init 1/1/1, min 1/1/1, max
7/11/23; NO_OP initial programs; P = 100, T = 10, U = 0.9; mutations ALTER_PARAM,
RANDOMIZE_COMPONENT_FUNCTION, INSERT_INSTRUCTION, REMOVE_INSTRUCTION; the NEURAL_NET train
budget (x2). Search and select tasks are the same 10 tasks, drawn from the 36 class pairs that
are not held out; the final tasks come from the 9 held-out pairs. Each variant ("no_fec" as the
original's script, "fec" with FEC) runs `num_seeds` experiments.

The tasks are scikit-learn's bundled digits (8x8 images, about 180 per class), projected to
F = 16; the files are prepared on first use in `data_dir`. For CIFAR-10 (the paper's), prepare
the files with scripts/prepare_datasets.py --dataset=cifar10 and set dataset_name, data_dir and
the split sizes (8000 / 1000 in the paper): --config.dataset_name=cifar10
--config.data_dir=DIR --config.num_train_examples=8000 --config.num_valid_examples=1000.
"""

from ml_collections import config_dict

from azjax.config import default_config

# The paper's recommended held-out pairs (run_baseline.sh): final tasks come from these.
HELD_OUT_PAIRS = ((0, 5), (0, 9), (1, 8), (2, 9), (3, 5), (3, 6), (3, 8), (4, 6), (8, 9))


def _search() -> config_dict.ConfigDict:
    c = default_config()
    c.num_scalars, c.num_vectors, c.num_matrices = 5, 9, 2
    c.setup_ops = (
        "SCALAR_CONST_SET_OP",
        "SCALAR_GAUSSIAN_SET_OP",
        "SCALAR_UNIFORM_SET_OP",
        "VECTOR_GAUSSIAN_SET_OP",
        "VECTOR_UNIFORM_SET_OP",
        "MATRIX_GAUSSIAN_SET_OP",
        "MATRIX_UNIFORM_SET_OP",
    )
    c.predict_ops = (
        "SCALAR_SUM_OP",
        "MATRIX_VECTOR_PRODUCT_OP",
        "VECTOR_MAX_OP",
        "VECTOR_INNER_PRODUCT_OP",
        "VECTOR_SUM_OP",
    )
    c.learn_ops = (
        "SCALAR_SUM_OP",
        "SCALAR_DIFF_OP",
        "SCALAR_PRODUCT_OP",
        "SCALAR_VECTOR_PRODUCT_OP",
        "VECTOR_SUM_OP",
        "VECTOR_HEAVYSIDE_OP",
        "VECTOR_PRODUCT_OP",
        "VECTOR_OUTER_PRODUCT_OP",
        "MATRIX_SUM_OP",
    )
    c.setup_size_init = c.predict_size_init = c.learn_size_init = 1
    c.setup_size_min = c.predict_size_min = c.learn_size_min = 1
    c.setup_size_max, c.predict_size_max, c.learn_size_max = 7, 11, 23
    c.train_budget = "NEURAL_NET"
    c.population_size = 100
    c.tournament_size = 10
    c.children_per_generation = 25  # The experiments run side by side fill the VM's batches.
    c.initial_population = "NO_OP"
    c.allowed_mutation_types = (
        "ALTER_PARAM",
        "RANDOMIZE_COMPONENT_FUNCTION",
        "INSERT_INSTRUCTION",
        "REMOVE_INSTRUCTION",
    )
    c.mutate_prob = 0.9
    c.max_train_steps = 0
    c.max_individuals = 20_000
    return c


def get_config():
    c = config_dict.ConfigDict()
    c.experiment = "s10_baseline"
    c.dataset_name = "digits"
    c.data_dir = "workdir/datasets/digits_s10"  # Prepared here on first use (digits only).
    c.max_data_seed = 10  # Files per class pair: data seeds 0..max_data_seed - 1.
    c.feature_size = 16
    c.num_train_examples, c.num_valid_examples = 250, 45
    c.num_search_tasks, c.num_final_tasks = 10, 100
    c.held_out_pairs = HELD_OUT_PAIRS
    c.num_seeds = 10  # Runs per variant (the paper: 100 repeats).
    c.parallel_experiments = 10
    c.random_seed = 1
    c.progress_every = 10_000
    c.learning_rates = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3)  # Tuned for the baselines.
    c.search = _search()
    c.variants = config_dict.ConfigDict(
        dict(
            no_fec=dict(fec_num_train_examples=0, fec_num_valid_examples=0),
            fec=dict(fec_num_train_examples=10, fec_num_valid_examples=10),
        )
    )
    return c
