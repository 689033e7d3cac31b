"""Fuzzes the VM: random and mutated programs over all 65 ops, with extreme constants.

Programs are made in fixed-size chunks: half drawn at random (RANDOM), half mutated from the
previous chunk (every mutation type, so mutants drift away from random programs as an evolving
population does). A fraction `--extreme_rate` of their constants is replaced by extreme values
(+-3e38, the float32 maximum, +-1e-38 and other subnormals, tiny or near-1 index fractions).
Each chunk runs through the batched VM (`azjax.evaluation.evaluate_lanes`, jitted with the
search's compiler options) on T linear tasks, alternately scored as regression (rms) and as
classification (accuracy, labels y > 0), at the feature sizes of `--feature_sizes` in turn. A
sample of `--reference_sample` programs also runs through the NumPy reference (float32, with
subnormals flushed as the VM's CPU arithmetic does).

Reported (targets in brackets): crashes [0] (a VM call or reference run that raised); non-finite
or out-of-range fitness [0] (outside [0, 1]); and VM-vs-reference disagreements (|fitness
difference| > --tolerance) by op. A disagreement is "explained" when the float32 and float64
reference runs also disagree (an ill-conditioned program: rounding decides), else unexplained
[0 expected].

Examples:
  python scripts/fuzz.py --num_programs=10000
  python scripts/fuzz.py --num_programs=1000000 --feature_sizes=1,4,8,16,32 \\
      --reference_sample=5000 --output=workdir/fuzz.json
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import pathlib
import time

import jax
import numpy as np
import tqdm
from absl import app, flags

from azjax import evaluation, generator, mutation, ops, runtime, tasks, vm
from azjax import program as program_lib
from azjax import reference as ref
from azjax.program import ComponentSpec, ProgramSpec
from azjax.program_io import format_program

_NUM_PROGRAMS = flags.DEFINE_integer("num_programs", 10_000, "Programs to evaluate.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the programs, tasks and random-op draws.")
_FEATURE_SIZES = flags.DEFINE_list("feature_sizes", "4", "Feature sizes F, used chunk by chunk.")
_REFERENCE_SAMPLE = flags.DEFINE_integer(
    "reference_sample", 500, "Programs also run through the NumPy reference (spread over chunks)."
)
_CHUNK_SIZE = flags.DEFINE_integer("chunk_size", 512, "Programs per VM call (a fixed shape).")
_NUM_TASKS = flags.DEFINE_integer("num_tasks", 2, "Linear tasks per program.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 8, "Training examples per task.")
_NUM_VALID = flags.DEFINE_integer("num_valid", 8, "Validation examples per task.")
_SIZES = flags.DEFINE_list("sizes", "4,4,4", "Initial setup,predict,learn sizes of random ones.")
_CAPACITY = flags.DEFINE_integer("capacity", 6, "Slots per component (mutants grow up to it).")
_EXTREME_RATE = flags.DEFINE_float("extreme_rate", 0.2, "Fraction of constants made extreme.")
_TOLERANCE = flags.DEFINE_float("tolerance", 1e-4, "|VM - reference| fitness that disagrees.")
_OUTPUT = flags.DEFINE_string("output", None, "JSON file to write the results to.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", runtime.DEFAULT_CACHE_DIR, "Persistent compile cache ('' for none)."
)

# The flags recorded with the results (feature_sizes parsed).
_SETTINGS = (_NUM_PROGRAMS, _SEED, _REFERENCE_SAMPLE, _CHUNK_SIZE, _NUM_TASKS, _NUM_TRAIN)
_SETTINGS += (_NUM_VALID, _SIZES, _CAPACITY, _EXTREME_RATE, _TOLERANCE)

MAX32 = float(np.finfo(np.float32).max)
EXTREME_VALUES = np.float32(
    [3e38, -3e38, MAX32, -MAX32, 1e-38, -1e-38, 2.0**-149, -(2.0**-149), 1.1754944e-38, 1e30]
)
EXTREME_FRACTIONS = np.float32([0.0, 2.0**-149, 1e-38, 1e-30, 1e-7, 0.999999, 1 - 2.0**-24])
# Which constants of an op are index fractions (the rest that it uses are values).
_FRACTION_CONSTS = {ops.Data.CONST_VECTOR: (0,), ops.Data.CONST_MATRIX: (0, 1)}
_USED_CONSTS = {ops.Data.NONE: 0, ops.Data.CONST_SCALAR: 1, ops.Data.CONST_VECTOR: 2}
_USED_CONSTS |= {ops.Data.CONST_MATRIX: 3, ops.Data.UNIFORM: 2, ops.Data.GAUSSIAN: 2}
ALL_MUTATIONS = tuple(t.name for t in mutation.MutationType)
_EXAMPLES_KEPT = 10  # Failures recorded in full per kind.


@dataclasses.dataclass
class Tally:
    """Counts over the whole run."""

    programs: int = 0
    chunks: int = 0
    crashes: list = dataclasses.field(default_factory=list)  # The first few, in full.
    num_vm_crashes: int = 0  # VM calls (of a chunk each) that raised.
    num_reference_crashes: int = 0  # Reference runs (of one program and task) that raised.
    bad_fitness: list = dataclasses.field(default_factory=list)
    num_bad_fitness: int = 0
    sampled: int = 0
    sampled_lanes: int = 0
    disagreements: list = dataclasses.field(default_factory=list)
    num_disagreements: int = 0
    num_unexplained: int = 0
    ops_seen: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    ops_sampled: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    ops_disagree: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    ops_unexplained: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    seconds: collections.Counter = dataclasses.field(default_factory=collections.Counter)


def make_spec(capacity: int) -> ProgramSpec:
    every = ComponentSpec(capacity, ops.ALL_OPS)
    return ProgramSpec(4, 3, 2, setup=every, predict=every, learn=every)


def make_taskset(F: int, seed: int, accuracy: bool):
    """T linear tasks at feature size F; for accuracy the labels become y > 0."""
    spec = tasks.TaskSpec(
        kind="linear",
        num_train_examples=_NUM_TRAIN.value,
        num_valid_examples=_NUM_VALID.value,
        feature_size=F,
        num_tasks=_NUM_TASKS.value,
        param_seeds=(seed,),
        data_seeds=(seed + 1,),
    )
    taskset, info = tasks.make_tasks(spec)
    taskset = tasks.TaskSet(*(np.asarray(x) for x in taskset))
    if accuracy:
        label = lambda y: (y > 0).astype(np.float32)  # noqa: E731
        taskset = taskset._replace(y_train=label(taskset.y_train), y_valid=label(taskset.y_valid))
    return taskset, info


def with_extreme_constants(population, rate: float, r: np.random.Generator):
    """A copy with a fraction `rate` of the used constants replaced by extreme values."""
    comps = {}
    for c in program_lib.COMPONENTS:
        code, consts, length = (np.array(x) for x in getattr(population, c))
        data = np.asarray([op.data for op in ops.OPS])[code[..., 0]]
        used = np.asarray([_USED_CONSTS[ops.Data(d)] for d in range(6)])[data]
        for j in range(ops.NUM_CONSTS):
            hit = (j < used) & (r.random(used.shape) < rate)
            fraction = np.zeros_like(hit)
            for d, js in _FRACTION_CONSTS.items():
                fraction |= (data == d) & (j in js)
            values = np.where(
                fraction,
                r.choice(EXTREME_FRACTIONS, size=hit.shape),
                r.choice(EXTREME_VALUES, size=hit.shape),
            )
            consts[..., j] = np.where(hit, values, consts[..., j])
        comps[c] = program_lib.Component(code, consts, length)
    return program_lib.Program(**comps)


def ops_used(population) -> list[set[int]]:
    """The ops of each program, padding NO_OPs left out."""
    P = program_lib.population_size(population)
    used = [set() for _ in range(P)]
    for c in program_lib.COMPONENTS:
        comp = getattr(population, c)
        for p in range(P):
            used[p] |= {int(o) for o in comp.code[p, : int(comp.length[p]), 0]}
    return used


def evaluator(spec: ProgramSpec):
    """evaluate_lanes, jitted with the search's CPU compiler options."""
    fn = jax.jit(
        evaluation.evaluate_lanes.__wrapped__,
        static_argnames=("spec", "eval_type", "epoch_size", "max_abs_error", "record", "engine"),
        compiler_options=vm.COMPILER_OPTIONS,
    )
    return lambda population, taskset, info, seeds, eval_type: (
        fn(
            population, taskset, seeds, spec=spec, eval_type=eval_type, epoch_size=info.epoch_size
        ).fitness
    )


def reference_fitness(program, taskset, info, t, seed, eval_type, spec, dtype):
    task = tasks.single_task(tasks.TaskSet(*taskset), info, t)._replace(eval_type=eval_type)
    flush = dtype == np.float32  # The VM's CPU arithmetic.
    result = ref.evaluate(program, task, spec=spec, seed=seed, dtype=dtype, flush_subnormals=flush)
    return result.fitness


def check_sample(tally, population, used, fitness, lanes, taskset, info, seeds, eval_type, spec):
    """Runs the programs `lanes` through the reference; counts disagreements by op (`used`: the
    ops of each program)."""
    for p in lanes:
        program = program_lib.index(population, p)
        tally.sampled += 1
        tally.ops_sampled.update(used[p])
        for t in range(fitness.shape[1]):
            tally.sampled_lanes += 1
            args = (program, taskset, info, t, seeds[p, t], eval_type, spec)
            try:
                want = reference_fitness(*args, np.float32)
            except Exception as e:  # A reference crash is a crash too.
                tally.num_reference_crashes += 1
                _keep(tally.crashes, dict(where="reference", program=_text(program), error=repr(e)))
                continue
            got = float(fitness[p, t])
            if not abs(got - want) > _TOLERANCE.value:
                continue
            f64 = reference_fitness(*args, np.float64)
            explained = abs(f64 - want) > _TOLERANCE.value
            tally.num_disagreements += 1
            tally.num_unexplained += not explained
            tally.ops_disagree.update(used[p])
            if not explained:
                tally.ops_unexplained.update(used[p])
            _keep(
                tally.disagreements,
                dict(
                    vm=got,
                    reference=want,
                    reference_float64=f64,
                    explained=explained,
                    eval_type=eval_type,
                    F=int(taskset.x_train.shape[-1]),
                    task=t,
                    seed=int(seeds[p, t]),
                    program=_text(program),
                ),
            )


def _keep(records: list, record: dict) -> None:
    if len(records) < _EXAMPLES_KEPT:
        records.append(record)


def _text(program) -> str:
    try:
        return format_program(program)
    except ValueError as e:
        return f"<unprintable: {e}>"


def run(num_programs: int, seed: int, feature_sizes, reference_sample: int) -> Tally:
    """The fuzzing loop; returns the tallies."""
    C = _CHUNK_SIZE.value
    sizes = tuple(int(s) for s in _SIZES.value)
    spec = make_spec(_CAPACITY.value)
    params = mutation.MutationParams(
        ALL_MUTATIONS, mutate_prob=1.0, size_max=(_CAPACITY.value,) * 3
    )
    mutate = jax.jit(mutation.mutate_batch, static_argnums=(2, 3))
    evaluate = evaluator(spec)
    num_chunks = math.ceil(num_programs / C)
    per_chunk = reference_sample / num_chunks
    r = np.random.default_rng(seed)
    key = jax.random.key(seed)
    tally, parents = Tally(), None
    half = C // 2  # Mutants; the other C - half are drawn at random.
    task_cache, compiled = {}, set()
    bar = tqdm.tqdm(total=num_programs, unit="prog", disable=not _PROGRESS.value, smoothing=0.05)
    for chunk in range(num_chunks):
        start = time.perf_counter()
        key, key_random, key_mutate, key_seeds = jax.random.split(key, 4)
        fresh = generator.make_initial_population(key_random, "RANDOM", spec, sizes, C - half)
        if parents is None:
            parents = program_lib.index(fresh, np.arange(half))
        mutants = mutate(key_mutate, parents, spec, params)
        population = jax.tree.map(lambda a, b: np.concatenate([a, b]), fresh, mutants)
        population = with_extreme_constants(population, _EXTREME_RATE.value, r)
        parents = program_lib.index(population, np.sort(r.choice(C, half, replace=False)))
        F = feature_sizes[chunk % len(feature_sizes)]
        eval_type = ("rms", "accuracy")[(chunk // len(feature_sizes)) % 2]
        if (F, eval_type) not in task_cache:
            task_cache[F, eval_type] = make_taskset(F, seed, eval_type == "accuracy")
        taskset, info = task_cache[F, eval_type]
        seeds = evaluation.lane_seeds(key_seeds, C, _NUM_TASKS.value)
        n = min(C, num_programs - tally.programs)
        tally.seconds["generate"] += time.perf_counter() - start
        start = time.perf_counter()
        try:
            fitness = np.asarray(evaluate(population, taskset, info, seeds, eval_type))
        except Exception as e:
            tally.num_vm_crashes += 1
            _keep(tally.crashes, dict(where="vm", chunk=chunk, F=F, error=repr(e)))
            fitness = None
        first = (F, eval_type) not in compiled  # Its time is mostly the compile.
        compiled.add((F, eval_type))
        tally.seconds["vm first calls (compiles)" if first else f"vm F={F}"] += (
            time.perf_counter() - start
        )
        start = time.perf_counter()
        used = ops_used(population)
        for p in range(n):
            tally.ops_seen.update(used[p])
        if fitness is not None:
            bad = ~(np.isfinite(fitness) & (fitness >= 0) & (fitness <= 1))
            bad[n:] = False
            tally.num_bad_fitness += int(bad.any(axis=1).sum())
            for p, t in np.argwhere(bad)[:_EXAMPLES_KEPT]:
                program = program_lib.index(population, p)
                _keep(tally.bad_fitness, dict(fitness=float(fitness[p, t]), program=_text(program)))
            k = int((chunk + 1) * per_chunk) - int(chunk * per_chunk)
            lanes = r.choice(n, size=min(k, n), replace=False)
            check_sample(
                tally, population, used, fitness, lanes, taskset, info, seeds, eval_type, spec
            )
        tally.seconds["reference"] += time.perf_counter() - start
        tally.programs += n
        tally.chunks += 1
        bar.update(n)
        bar.set_postfix(
            crashes=tally.num_vm_crashes + tally.num_reference_crashes, bad=tally.num_bad_fitness
        )
    bar.close()
    return tally


def report(tally: Tally, feature_sizes, wall_s: float) -> dict:
    """Prints the summary table; returns the JSON-ready results."""
    print(
        f"fuzz: {tally.programs:,} programs (F = {', '.join(map(str, feature_sizes))}), "
        f"{tally.chunks:,} chunks of {_CHUNK_SIZE.value}, {wall_s:.0f} s "
        f"({tally.programs / wall_s:,.0f} programs/s)"
    )
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(tally.seconds.items())))
    crashes = tally.num_vm_crashes + tally.num_reference_crashes
    print(
        f"crashes: {crashes} (VM calls {tally.num_vm_crashes}, reference runs "
        f"{tally.num_reference_crashes})"
    )
    print(f"non-finite or out-of-range fitness: {tally.num_bad_fitness}")
    print(
        f"reference sample: {tally.sampled:,} programs, {tally.sampled_lanes:,} (program, task) "
        f"lanes; disagreements (|fitness difference| > {_TOLERANCE.value:g}): "
        f"{tally.num_disagreements}, unexplained (float32 and float64 reference agree): "
        f"{tally.num_unexplained}"
    )
    header = f"{'op':<28} {'programs':>10} {'sampled':>8} {'disagree':>8} {'unexplained':>11}"
    print(header)
    print("-" * len(header))
    rows = []
    for op in ops.OPS:
        row = dict(
            op=op.name,
            programs=tally.ops_seen[op.id],
            sampled=tally.ops_sampled[op.id],
            disagree=tally.ops_disagree[op.id],
            unexplained=tally.ops_unexplained[op.id],
        )
        rows.append(row)
        print(
            f"{op.name:<28} {row['programs']:>10,} {row['sampled']:>8,} {row['disagree']:>8,} "
            f"{row['unexplained']:>11,}"
        )
    fields = (f.name for f in dataclasses.fields(tally))
    counts = {name: getattr(tally, name) for name in fields if not name.startswith("ops_")}
    settings = {holder.name: holder.value for holder in _SETTINGS}
    settings["feature_sizes"] = list(feature_sizes)
    return {
        "settings": settings,
        "wall_s": wall_s,
        "num_crashes": crashes,
        **counts,
        "by_op": rows,
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        feature_sizes = [int(f) for f in _FEATURE_SIZES.value]
        sizes = [int(s) for s in _SIZES.value]
    except ValueError as e:
        raise app.UsageError(f"--feature_sizes and --sizes take integers: {e}") from None
    if not feature_sizes or not all(1 <= f <= 32 for f in feature_sizes):
        raise app.UsageError(f"--feature_sizes must be in 1..32, got {_FEATURE_SIZES.value}")
    if len(sizes) != 3 or not all(1 <= s <= _CAPACITY.value for s in sizes):
        raise app.UsageError(f"--sizes must be 3 ints in 1..--capacity, got {_SIZES.value}")
    if _NUM_PROGRAMS.value < 1 or _CHUNK_SIZE.value < 2 or _REFERENCE_SAMPLE.value < 0:
        raise app.UsageError("need --num_programs >= 1, --chunk_size >= 2, --reference_sample >= 0")
    runtime.configure(num_cpu_devices=1, cache_dir=_CACHE_DIR.value or None)
    start = time.perf_counter()
    tally = run(_NUM_PROGRAMS.value, _SEED.value, feature_sizes, _REFERENCE_SAMPLE.value)
    results = report(tally, feature_sizes, time.perf_counter() - start)
    if _OUTPUT.value:
        output = pathlib.Path(_OUTPUT.value)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {output}")


if __name__ == "__main__":
    app.run(main)
