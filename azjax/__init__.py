"""azjax: AutoML-Zero on JAX.

Evolve whole ML algorithms (Setup / Predict / Learn programs over scalars, vectors and matrices,
built from AutoML-Zero's 65 ops) with batched regularized evolution, evaluated by a jitted VM over
populations x tasks. See README.md for the quickstart and `../shared/REFERENCE.md` for the
original's semantics.
"""

from azjax import ops
from azjax.config import build as build_experiment
from azjax.config import default_config, task_config
from azjax.evaluation import evaluate_lanes, flip_and_squash
from azjax.evaluator import (
    ConcurrentEvaluator,
    EvaluatorConfig,
    SearchEvaluator,
    place_collection,
    run_chunked,
    score,
    stack_groups,
)
from azjax.evolution import EvolutionConfig, PopulationState
from azjax.evolution import init as init_population
from azjax.evolution import step as evolution_step
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
from azjax.tasks import TaskInfo, TaskSet, TaskSpec, make_tasks

__all__ = [
    "COMPONENTS",
    "Component",
    "ComponentSpec",
    "EvaluatorConfig",
    "EvolutionConfig",
    "Instruction",
    "MutationParams",
    "MutationType",
    "PopulationState",
    "Program",
    "ProgramError",
    "ProgramSpec",
    "SearchEvaluator",
    "TaskInfo",
    "TaskSet",
    "TaskSpec",
    "build_experiment",
    "default_config",
    "evaluate_lanes",
    "evolution_step",
    "flip_and_squash",
    "format_program",
    "init_population",
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
    "place_collection",
    "prune",
    "random_algorithm",
    "run_chunked",
    "stack_groups",
    "ConcurrentEvaluator",
    "run_experiment",
    "save_program",
    "score",
    "task_config",
    "validate",
]
