"""Experiment configs: every field with its default, and validation into an `Experiment`.

A config is an `ml_collections.ConfigDict` (configs/*.py start from `default_config()` and
override fields; scripts take `--config.FIELD=VALUE` overrides). `build` checks every field and
turns the config into the static objects the search needs, raising a `ConfigError` that names
the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import re
import sys
from typing import Any

from absl import flags
from ml_collections import config_dict

from azjax import budget, evolution, generator, mutation, search, search_eval, tasks
from azjax import ops as ops_lib
from azjax import program as program_lib
from azjax.program import ComponentSpec, ProgramSpec

_ROOMY = 1024  # Slot capacity used only to measure hand-written models.
MAX_ADDRESSES = 100  # Per bank (the original's builds use at most 20 scalars, vectors, matrices).


class ConfigError(ValueError):
    """An invalid experiment configuration; the message names the field."""


_PLACEHOLDERS = dict(dataset_dir=str, dataset_name=str, positive_class=int, negative_class=int)


def task_config(
    kind: str,
    *,
    feature_size=4,
    num_train_examples=100,
    num_valid_examples=100,
    num_tasks=1,
    eval_type="rms",
    **fields,
) -> config_dict.ConfigDict:
    """A task collection's config: the fields of `azjax.tasks.TaskSpec`. Its None defaults
    are typed placeholders, so that flags can set them (`--config.search_tasks.dataset_dir=...`)."""
    cfg = {
        f.name: config_dict.placeholder(_PLACEHOLDERS[f.name])
        if f.name in _PLACEHOLDERS
        else f.default
        for f in dataclasses.fields(tasks.TaskSpec)
        if f.default is not dataclasses.MISSING
    }
    cfg.update(
        kind=kind,
        feature_size=feature_size,
        num_train_examples=num_train_examples,
        num_valid_examples=num_valid_examples,
        num_tasks=num_tasks,
        eval_type=eval_type,
        **fields,
    )
    return config_dict.ConfigDict(cfg)


def default_config() -> config_dict.ConfigDict:
    """Every experiment field with its default (the original's where it has one); configs/*.py
    start from this and override. Task collections are `task_config`s."""
    c = config_dict.ConfigDict()
    c.name = "run"
    # Memory and search space (op names or ids; an empty list freezes that component).
    c.num_scalars, c.num_vectors, c.num_matrices = 4, 3, 1
    c.setup_ops = c.predict_ops = c.learn_ops = ops_lib.DEMO_OPS
    c.setup_size_init, c.predict_size_init, c.learn_size_init = 10, 2, 8
    c.setup_size_min = c.predict_size_min = c.learn_size_min = 0
    c.setup_size_max = c.predict_size_max = c.learn_size_max = 0
    c.search_tasks = task_config("linear", num_tasks=10)
    c.select_tasks = task_config("linear", num_train_examples=1000, num_tasks=100)
    c.final_tasks = task_config("linear", num_train_examples=1000, num_tasks=100)
    # Evaluation.
    c.fec_num_train_examples = 10  # 0 disables FEC.
    c.fec_num_valid_examples = 10
    c.fec_cache_size = 100_000
    c.fec_forget_every = 100
    # azjax, not in the original: dead-code elimination + structural dedupe, with its cache size.
    c.dedupe = True
    c.dedupe_cache_size = 100_000
    c.fitness_combination = "mean"
    c.max_abs_error = 100.0
    c.train_budget = ""  # "" = none, or an initial-algorithm name, e.g. "NEURAL_NET".
    c.train_budget_factor = 2.0
    # Search.
    c.search_mode = "evolution"  # or "random" (the random-search baseline).
    c.population_size = 1000
    c.tournament_size = 10
    c.children_per_generation = 250  # K; 1 = the original's steady state (see evolution.py).
    c.initial_population = "RANDOM"
    # azjax: an initial-algorithm name whose code the frozen components (empty op lists) hold in
    # every program, e.g. "LINEAR" for the paper's "only Learn" searches ("" = the initial
    # population's own code there).
    c.fixed_components = ""
    c.allowed_mutation_types = (
        "ALTER_PARAM",
        "RANDOMIZE_INSTRUCTION",
        "RANDOMIZE_COMPONENT_FUNCTION",
    )
    c.mutate_prob = 0.9
    c.max_train_steps = 80_000_000_000
    # azjax: end an experiment's search once it has scored this many individuals, its initial
    # population included (0 = never; a budget in individuals as the paper's Fig. 4 has).
    c.max_individuals = 0
    c.time_budget_secs = 0.0  # Per experiment; 0 = none. Resume is exact only without it.
    # azjax: end an experiment's search once its best search fitness exceeds this (0 = never,
    # as the original, which always spends max_train_steps).
    c.stop_search_at_fitness = 0.0
    # azjax: end an experiment's search once its best search fitness has not risen for this many
    # individuals (0 = never; the original's hurdles serve the same purpose).
    c.stagnation_individuals = 0
    # Experiments.
    c.max_experiments = 1  # 0 = until sufficient_fitness.
    c.random_seed = 0  # 0 = from the clock, as the original.
    c.randomize_task_seeds = False
    c.sufficient_fitness = 0.0  # 0 = none.
    # azjax: experiments run this many at a time on the device, in lockstep, their VM work
    # pooled (1 = one after another, as the original). They are split over the devices (one per
    # CPU core): a multiple of the device count uses them all. See azjax/experiment.py.
    c.parallel_experiments = 1
    # Output and runtime.
    c.progress_every = 10000  # Individuals per running experiment between progress lines.
    c.checkpoint_every_secs = 30.0
    c.chunk_size = 64  # Programs per device and full-evaluation VM call (search_eval).
    return c


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The experiment driver's settings (`azjax.experiment`), typed; see `default_config`."""

    name: str
    max_experiments: int
    random_seed: int
    randomize_task_seeds: bool
    sufficient_fitness: float
    parallel_experiments: int
    progress_every: int
    checkpoint_every_secs: float
    time_budget_secs: float


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything static about a run, built and validated from a config by `build`.

    `config` is the resolved config as a plain dict, kept for config.json and checkpoints.
    """

    run: RunConfig
    search: search.SearchConfig
    search_tasks: tasks.TaskSpec
    select_tasks: tasks.TaskSpec
    final_tasks: tasks.TaskSpec
    config: dict[str, Any]

    @property
    def spec(self) -> ProgramSpec:
        return self.search.spec


def load_config_file(path: str) -> config_dict.ConfigDict:
    """`get_config()` of a config file (`configs/*.py`), as `--config=PATH` loads it."""
    name = os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(f"azjax_config_{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config()


def _get(cfg, name):
    if name not in cfg:
        raise ConfigError(f"config is missing field {name!r}")
    return cfg[name]


def _task_spec(cfg, name) -> tasks.TaskSpec:
    fields = dict(_get(cfg, name))
    try:
        return tasks.TaskSpec(**fields)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config.{name}: {e}") from e


def _fix_frozen(spec: ProgramSpec, initial: str, sizes) -> ProgramSpec:
    """`spec` with each frozen component's instructions fixed (`ComponentSpec.fixed`): the code
    of algorithm `initial` there (empty for RANDOM), which no mutation changes, so that the VM
    runs them as straight-line code."""
    frozen = [c for c in program_lib.COMPONENTS if generator.is_frozen(spec, c)]
    if not frozen:
        return spec
    model = None
    if initial in generator.DETERMINISTIC_ALGORITHMS:
        model = generator.INITIAL_ALGORITHMS[initial](None, spec, sizes)
    fixed = {
        c: () if model is None else tuple(program_lib.instructions(getattr(model, c)))
        for c in frozen
    }
    return spec.replace(**{c: spec.component(c)._replace(fixed=fixed[c]) for c in frozen})


def build(cfg: config_dict.ConfigDict | dict) -> Experiment:
    """Validates a config (see configs/demo.py for every field) into an `Experiment`."""
    cfg = cfg.to_dict() if isinstance(cfg, config_dict.ConfigDict) else dict(cfg)
    try:
        ops = {c: ops_lib.op_ids(_get(cfg, f"{c}_ops")) for c in program_lib.COMPONENTS}
    except ValueError as e:
        raise ConfigError(f"config op lists: {e}") from e
    sizes = tuple(int(_get(cfg, f"{c}_size_init")) for c in program_lib.COMPONENTS)
    size_max = tuple(int(_get(cfg, f"{c}_size_max")) for c in program_lib.COMPONENTS)
    size_min = tuple(int(_get(cfg, f"{c}_size_min")) for c in program_lib.COMPONENTS)
    for c, n in zip(program_lib.COMPONENTS, sizes, strict=True):
        if n < 0:
            raise ConfigError(f"config.{c}_size_init must be >= 0, got {n}")
    try:
        initial = generator.canonical_name(str(_get(cfg, "initial_population")))
        fixed_name = str(_get(cfg, "fixed_components"))
        fixed_name = generator.canonical_name(fixed_name) if fixed_name else initial
        budget_name = str(_get(cfg, "train_budget"))
        budget_name = generator.canonical_name(budget_name) if budget_name else ""
    except ValueError as e:
        raise ConfigError(f"config: {e}") from e
    # Slot capacity: the initial size, grown to the insert limit (max - 1) when insertion is on.
    capacity = tuple(max(1, s, m - 1) for s, m in zip(sizes, size_max, strict=True))
    try:
        memory = dict(
            num_scalars=int(_get(cfg, "num_scalars")),
            num_vectors=int(_get(cfg, "num_vectors")),
            num_matrices=int(_get(cfg, "num_matrices")),
        )
        roomy = ProgramSpec(
            **memory, **{c: ComponentSpec(_ROOMY, ops[c]) for c in program_lib.COMPONENTS}
        )
        # Hand-written models are never truncated and may use ops outside the (possibly empty,
        # frozen) lists: grow the capacity to their length and allow their ops.
        for name in sorted({initial, fixed_name, budget_name} - {"", "RANDOM", "NO_OP"}):
            model = generator.INITIAL_ALGORITHMS[name](None, roomy, sizes)
            roomy = generator.add_required_ops(roomy, model)
            capacity = tuple(
                max(n, int(getattr(model, c).length))
                for n, c in zip(capacity, program_lib.COMPONENTS, strict=True)
            )
        spec = ProgramSpec(
            **memory,
            **{
                c: roomy.component(c)._replace(size=n)
                for c, n in zip(program_lib.COMPONENTS, capacity, strict=True)
            },
        )
        spec = _fix_frozen(spec, fixed_name, sizes)
        mparams = mutation.MutationParams(
            allowed_mutation_types=tuple(_get(cfg, "allowed_mutation_types")),
            mutate_prob=float(_get(cfg, "mutate_prob")),
            size_min=size_min,
            size_max=size_max,
        )
        mparams.validate(spec)
        evo = evolution.EvolutionConfig(
            spec=spec,
            mutation=mparams,
            sizes=sizes,
            population_size=int(_get(cfg, "population_size")),
            tournament_size=int(_get(cfg, "tournament_size")),
            children_per_generation=int(_get(cfg, "children_per_generation")),
            initial_population=initial,
            mode=str(_get(cfg, "search_mode")),
        )
        baseline = None
        if budget_name:
            model = generator.INITIAL_ALGORITHMS[budget_name](None, spec, sizes)
            baseline = tuple(int(c) for c in budget.program_costs(model))
        evaluation = search_eval.EvaluationConfig(
            max_abs_error=float(_get(cfg, "max_abs_error")),
            combination=str(_get(cfg, "fitness_combination")),
            fec_num_train=int(_get(cfg, "fec_num_train_examples")),
            fec_num_valid=int(_get(cfg, "fec_num_valid_examples")),
            fec_cache_size=int(_get(cfg, "fec_cache_size")),
            fec_forget_every=int(_get(cfg, "fec_forget_every")),
            dedupe_cache_size=int(_get(cfg, "dedupe_cache_size"))
            if bool(_get(cfg, "dedupe"))
            else 0,
            budget_baseline=baseline,
            budget_factor=float(_get(cfg, "train_budget_factor")),
            chunk_size=int(_get(cfg, "chunk_size")),
        )
    except ValueError as e:
        raise ConfigError(f"config: {e}") from e
    for name in ("num_scalars", "num_vectors", "num_matrices"):
        if not 1 <= int(_get(cfg, name)) <= MAX_ADDRESSES:
            raise ConfigError(f"config.{name} must be in [1, {MAX_ADDRESSES}], got {cfg[name]}")
    if not float(_get(cfg, "max_abs_error")) > 0:
        raise ConfigError(f"config.max_abs_error must be > 0, got {cfg['max_abs_error']}")
    names = ("max_train_steps", "max_individuals", "max_experiments", "random_seed")
    for name in names + ("progress_every",):
        if int(_get(cfg, name)) < 0:
            raise ConfigError(f"config.{name} must be >= 0, got {_get(cfg, name)}")
    if int(_get(cfg, "parallel_experiments")) < 1:
        raise ConfigError(
            f"config.parallel_experiments must be >= 1, got {_get(cfg, 'parallel_experiments')}"
        )
    for name in ("time_budget_secs", "checkpoint_every_secs"):
        if float(_get(cfg, name)) < 0:
            raise ConfigError(f"config.{name} must be >= 0, got {_get(cfg, name)}")
    search_tasks = _task_spec(cfg, "search_tasks")
    if evaluation.fec_num_train and search_tasks.num_train_examples < evaluation.fec_num_train:
        raise ConfigError(
            f"config.fec_num_train_examples={evaluation.fec_num_train} exceeds "
            f"search_tasks.num_train_examples={search_tasks.num_train_examples}"
        )
    if evaluation.fec_num_valid > search_tasks.num_valid_examples:
        raise ConfigError(
            f"config.fec_num_valid_examples={evaluation.fec_num_valid} exceeds "
            f"search_tasks.num_valid_examples={search_tasks.num_valid_examples}"
        )
    try:
        search_config = search.SearchConfig(
            evolution=evo,
            tasks=search_tasks.info,
            evaluation=evaluation,
            stop_at_fitness=float(_get(cfg, "stop_search_at_fitness")),
            max_train_steps=int(_get(cfg, "max_train_steps")),
            max_individuals=int(_get(cfg, "max_individuals")),
            stagnation_individuals=int(_get(cfg, "stagnation_individuals")),
        )
    except ValueError as e:
        raise ConfigError(f"config: {e}") from e
    run = RunConfig(
        name=str(_get(cfg, "name")),
        max_experiments=int(_get(cfg, "max_experiments")),
        random_seed=int(_get(cfg, "random_seed")),
        randomize_task_seeds=bool(_get(cfg, "randomize_task_seeds")),
        sufficient_fitness=float(_get(cfg, "sufficient_fitness")),
        parallel_experiments=int(_get(cfg, "parallel_experiments")),
        progress_every=int(_get(cfg, "progress_every")),
        checkpoint_every_secs=float(_get(cfg, "checkpoint_every_secs")),
        time_budget_secs=float(_get(cfg, "time_budget_secs")),
    )
    return Experiment(
        run=run,
        search=search_config,
        search_tasks=search_tasks,
        select_tasks=_task_spec(cfg, "select_tasks"),
        final_tasks=_task_spec(cfg, "final_tasks"),
        config=cfg,
    )


def _flat_keys(cfg, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        keys.append(prefix + k)
        if isinstance(v, config_dict.ConfigDict | dict):
            keys += _flat_keys(v, prefix + k + ".")
    return keys


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def parse_flags(argv: list[str], config_flag: str = "config") -> list[str]:
    """absl's flag parsing for scripts with an ml_collections config flag, with every error one
    line on stderr (exit 2): an unknown `--config.FIELD` names the closest fields, a config file
    that does not load names its problem. `app.run(main, flags_parser=config.parse_flags)`."""
    program = argv[0].rsplit("/", 1)[-1] if argv else "azjax"

    def fail(message: str):
        print(f"{program}: error: {message}", file=sys.stderr)
        sys.exit(2)

    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:
        fail(_one_line(e))
    except (AttributeError, KeyError) as e:  # ml_collections: an override of an unknown field.
        words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", str(e))
        overrides = [a.split("=")[0][len(f"--{config_flag}.") :] for a in argv]
        overrides = [o for o in overrides if o and any(w in o.split(".") for w in words[:1])]
        name = overrides[0] if overrides else (words[0] if words else "?")
        close = difflib.get_close_matches(name, _flat_keys(default_config()), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        fail(f"--{config_flag}.{name}: no such config field{hint}")
    except Exception as e:  # The config file's own errors (bad values, syntax).
        fail(f"--{config_flag}: {_one_line(e)}")
    try:
        dict(flags.FLAGS[config_flag].value)  # A file that failed to load raises here.
    except Exception as e:
        fail(f"--{config_flag}: {_one_line(e)}")
    return rest
