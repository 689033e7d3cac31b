"""azjax: AutoML-Zero on JAX.

Evolve whole ML algorithms (Setup / Predict / Learn programs over scalars, vectors and matrices,
built from AutoML-Zero's 65 ops) with regularized evolution that runs on the device: a jitted
generation step over a state pytree, with the VM scoring populations x tasks in batches.
"""

from azjax import ops
from azjax.config import build as build_experiment
from azjax.config import default_config, task_config
from azjax.evaluation import evaluate_lanes
from azjax.evolution import EvolutionConfig, PopulationState, ask, tell
from azjax.experiment import run as run_experiment
from azjax.generator import (
    linear_algorithm,
    make_initial_population,
    neural_net_algorithm,
    random_algorithm,
)
from azjax.mutation import MutationParams, MutationType, mutate, mutate_batch
from azjax.program import (
    COMPONENTS,
    Component,
    ComponentSpec,
    Instruction,
    Program,
    ProgramSpec,
    make_program,
)
from azjax.program_io import (
    ProgramError,
    format_program,
    load_program,
    parse_program,
    save_program,
    validate,
)
from azjax.pruning import prune
from azjax.scoring import score
from azjax.search import SearchConfig, SearchState, init, run, step
from azjax.search_eval import EvaluationConfig
from azjax.tasks import TaskInfo, TaskSet, TaskSpec, from_arrays, make_tasks

# The scikit-learn estimators load scikit-learn: imported on first use, not with azjax.
_ESTIMATORS = ("AutoMLZeroClassifier", "AutoMLZeroRegressor")


def __getattr__(name):
    if name in _ESTIMATORS:
        from azjax import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'azjax' has no attribute {name!r}")


__all__ = [
    "AutoMLZeroClassifier",
    "AutoMLZeroRegressor",
    "COMPONENTS",
    "Component",
    "ComponentSpec",
    "EvaluationConfig",
    "EvolutionConfig",
    "Instruction",
    "MutationParams",
    "MutationType",
    "PopulationState",
    "Program",
    "ProgramError",
    "ProgramSpec",
    "SearchConfig",
    "SearchState",
    "TaskInfo",
    "TaskSet",
    "TaskSpec",
    "ask",
    "build_experiment",
    "default_config",
    "evaluate_lanes",
    "format_program",
    "from_arrays",
    "init",
    "linear_algorithm",
    "load_program",
    "make_initial_population",
    "make_program",
    "make_tasks",
    "mutate",
    "mutate_batch",
    "neural_net_algorithm",
    "ops",
    "parse_program",
    "prune",
    "random_algorithm",
    "run",
    "run_experiment",
    "save_program",
    "score",
    "step",
    "task_config",
    "tell",
    "validate",
]
