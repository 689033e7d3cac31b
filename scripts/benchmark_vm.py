"""Benchmarks the VM: compile time, instructions/s and candidates/s per engine (docs/vm.md).

Two tables, every engine measured in the same run on the same programs and tasks:
  1. op sets: random programs (RANDOM, all three components, 10/10/10 instructions) over the demo
     op set and the full 65-op set, on T linear tasks (F=4, 100 train + 100 valid examples); a
     candidate is one program evaluated on all T tasks.
  2. configurations ("evaluations/s"): the demo (random programs, sizes 10/2/8, 4/3/1 memory) and
     the nonlinear test (NEURAL_NET with one ALTER_PARAM or RANDOMIZE_INSTRUCTION mutation each,
     5/9/2 memory, one teacher task with 1000 train + 100 valid examples).
  3. paper workloads ("latency against lanes"): the nonlinear configuration as configs/nonlinear.py
     sets it (Predict and Learn frozen, run as fixed code), the Fig. 5 setup (4/8/2 memory, F = 8,
     sizes 21/3/9, the 2-layer net's ops, random programs, 1000 + 100 teacher examples) and the S10
     space (run_baseline.sh: 5/9/2, F = 16, sizes 6/10/22, 8000 + 1000 examples), each at
     --paper_lanes programs per call: `vm_1dev` is one call on one device (its latency), `vm` as
     many programs per device on every device.
Engines: `vm` (azjax.scoring.run_chunked, chunks spread over every CPU device), `vm_1dev` (the
same on one device), `switch` (the naive lax.switch VM, a smaller population) and `numpy`
(azjax.reference, one program and task at a time, a few programs).

Each timing is the median of --num_repeats calls after one warm-up call (block_until_ready'd,
time.perf_counter). The warm-up runs with the persistent compile cache disabled; "compile s" is
the trace + lowering + XLA compile time JAX reports for it. For `vm`, a fresh subprocess per
workload measures the first call with an empty persistent cache, and a second one with the same
cache directory shows the cache hit.

Examples:
  python scripts/benchmark_vm.py                      # writes workdir/benchmark_vm.json
  python scripts/benchmark_vm.py --quick --output=/tmp/bench.json
  python scripts/benchmark_vm.py --op_sets=full --configs= --engines=vm,numpy
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

import jax
import numpy as np
from absl import app, flags

from azjax import config as config_lib
from azjax import (
    evaluation,
    generator,
    mutation,
    ops,
    reference,
    runtime,
    scoring,
    switch_vm,
    tasks,
)
from azjax import program as program_lib
from azjax.program import ComponentSpec, ProgramSpec

ENGINES = ("vm", "vm_1dev", "switch", "numpy")
OP_SETS = {"demo": ops.DEMO_OPS, "full": ops.ALL_OPS}
CONFIGS = ("demo", "nonlinear")
PAPER = ("nonlinear", "fig5", "s10")
# Fig. 5's search space (the paper's Learn lists the matrix update as OP40; the code's net and
# run_baseline.sh use MATRIX_SUM, 39) and run_baseline.sh's (the S10 baseline).
FIG5_OPS = dict(setup=(56, 63, 64), predict=(27, 31, 48), learn=(2, 3, 16, 18, 23, 25, 28, 39))
S10_OPS = dict(
    setup=(56, 59, 60, 61, 62, 63, 64),
    predict=(1, 23, 27, 31, 48),
    learn=(1, 2, 3, 16, 18, 23, 25, 28, 39),
)
_PROBE_MARK = "BENCHMARK_VM_PROBE "
_CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")
PROBE_HASH_SEED = "0"

_POPULATION = flags.DEFINE_integer("population_size", 2000, "Programs per call of the VM engines.")
_SWITCH_POPULATION = flags.DEFINE_integer(
    "switch_population_size", 20, "Programs per call of the naive switch VM (it is slow)."
)
_REFERENCE_PROGRAMS = flags.DEFINE_integer(
    "reference_programs", 8, "Programs the NumPy reference evaluates per call (on every task)."
)
_NUM_REPEATS = flags.DEFINE_integer("num_repeats", 3, "Timed calls after the warm-up call.")
_OP_SETS = flags.DEFINE_list("op_sets", "demo,full", f"Op sets of table 1, from {list(OP_SETS)}.")
_CONFIGS = flags.DEFINE_list("configs", "demo,nonlinear", f"Table 2 configurations {CONFIGS}.")
_PAPER = flags.DEFINE_list("paper", ",".join(PAPER), f"Paper workloads of table 3, from {PAPER}.")
_PAPER_LANES = flags.DEFINE_list("paper_lanes", "32,128,512,2048", "Table 3 programs per call.")
_PAPER_TRAIN = flags.DEFINE_list(
    "paper_num_train", "1000,1000,8000", "Train examples of the nonlinear, fig5 and s10 rows."
)
_ENGINES = flags.DEFINE_list("engines", ",".join(ENGINES), f"Engines, from {ENGINES}.")
_OUTPUT = flags.DEFINE_string("output", "workdir/benchmark_vm.json", "JSON file to write.")
_QUICK = flags.DEFINE_bool("quick", False, "Tiny sizes (smoke test); explicit flags still win.")
_CHUNK_SIZE = flags.DEFINE_integer(
    "chunk_size", scoring.DEFAULT_CHUNK_SIZE, "Programs per VM call (run_chunked)."
)
_NUM_TASKS = flags.DEFINE_integer("num_tasks", 10, "T, linear tasks of table 1 and the demo.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 100, "Train examples per linear task.")
_NUM_VALID = flags.DEFINE_integer("num_valid", 100, "Validation examples per linear task.")
_NONLINEAR_TRAIN = flags.DEFINE_integer("nonlinear_num_train", 1000, "Teacher train examples.")
_NONLINEAR_VALID = flags.DEFINE_integer("nonlinear_num_valid", 100, "Teacher valid examples.")
_OP_SET_SIZES = flags.DEFINE_list("op_set_sizes", "10,10,10", "Table 1 setup,predict,learn sizes.")
_DEMO_MEMORY = flags.DEFINE_list("demo_memory", "4,3,1", "S,V,M addresses for the demo op set.")
_FULL_MEMORY = flags.DEFINE_list("full_memory", "4,3,2", "S,V,M addresses for the full op set.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the programs and the random-op lane seeds.")
_COMPILE_PROBES = flags.DEFINE_bool(
    "compile_probes", True, "Measure cold and cached compiles of `vm` in fresh subprocesses."
)
_PROBE = flags.DEFINE_string("compile_probe", None, "Internal: run one compile probe and exit.")
_PROBE_CACHE = flags.DEFINE_string("probe_cache_dir", None, "Internal: the probe's cache dir.")
_PROBE_DATA = flags.DEFINE_string("probe_data", None, "Internal: the probe's programs and tasks.")

# fmt: off
_QUICK_VALUES = dict(
    population_size=16, switch_population_size=4, reference_programs=2, num_repeats=1,
    chunk_size=8, num_tasks=2, num_train=10, num_valid=10, nonlinear_num_train=20,
    nonlinear_num_valid=10, paper_lanes=["4", "8"], paper_num_train=["20", "20", "20"],
)
_FORWARDED = (  # The flags a probe subprocess needs to rebuild a workload.
    _POPULATION, _SWITCH_POPULATION, _REFERENCE_PROGRAMS, _NUM_REPEATS, _QUICK, _CHUNK_SIZE,
    _NUM_TASKS, _NUM_TRAIN, _NUM_VALID, _NONLINEAR_TRAIN, _NONLINEAR_VALID, _OP_SET_SIZES,
    _DEMO_MEMORY, _FULL_MEMORY, _SEED, _PAPER_TRAIN,
)
# fmt: on


def _value(holder):
    """A flag's value, or its --quick value when --quick is on and the flag was not given."""
    if _QUICK.value and not holder.present and holder.name in _QUICK_VALUES:
        return _QUICK_VALUES[holder.name]
    return holder.value


def _ints(holder, n: int) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in _value(holder))
    except ValueError:
        values = ()
    if len(values) != n or min(values) < 1:
        raise app.UsageError(f"--{holder.name} must be {n} positive integers, got {holder.value}")
    return values


class Workload(NamedTuple):
    """One benchmarked configuration: programs of `spec` (initial sizes) on one task spec."""

    name: str
    table: str  # "op_sets", "configs" or "paper".
    spec: ProgramSpec
    task_spec: tasks.TaskSpec
    programs: str  # "RANDOM", or an initial algorithm mutated once: "NAME+mutation".
    sizes: tuple[int, int, int]
    mutation: mutation.MutationParams | None = None  # What made "NAME+mutation" programs.

    @property
    def instructions_per_task(self) -> int:
        """n_setup + epochs * (E * (n_predict + n_learn) + Ev * n_predict), n_c the slots of
        component c (a fixed component's: its instructions)."""
        s, p, l = (
            self.sizes[i] if cs.fixed is None else len(cs.fixed)
            for i, cs in enumerate(self.spec.component(c) for c in program_lib.COMPONENTS)
        )
        t = self.task_spec
        return s + t.num_train_epochs * (t.num_train_examples * (p + l) + t.num_valid_examples * p)


def make_workload(table: str, name: str) -> Workload:
    """The workload `name` of table "op_sets" (demo / full), "configs" (demo / nonlinear) or
    "paper" (nonlinear / fig5 / s10)."""
    linear = tasks.TaskSpec(
        kind="linear",
        num_train_examples=_value(_NUM_TRAIN),
        num_valid_examples=_value(_NUM_VALID),
        feature_size=4,
        num_tasks=_value(_NUM_TASKS),
    )
    if table == "op_sets":
        s, v, m = _ints(_DEMO_MEMORY if name == "demo" else _FULL_MEMORY, 3)
        sizes = _ints(_OP_SET_SIZES, 3)
        comps = {
            c: ComponentSpec(n, OP_SETS[name])
            for c, n in zip(program_lib.COMPONENTS, sizes, strict=True)
        }
        spec = ProgramSpec(s, v, m, **comps)
        return Workload(f"{name} ops", table, spec, linear, "RANDOM", sizes)
    if name == "demo":
        spec = ProgramSpec()  # The demo's: 4/3/1 memory, sizes 10/2/8, the demo op set.
        sizes = tuple(spec.component(c).size for c in program_lib.COMPONENTS)
        return Workload("demo config", table, spec, linear, "RANDOM", sizes)
    if table == "paper" and name != "nonlinear":
        return _paper_workload(name)
    # The nonlinear test as configs/nonlinear.py sets it: Setup evolves over the two Gaussian
    # inits; Predict and Learn are the net's, frozen (fixed code).
    exp = config_lib.build(config_lib.load_config_file(_CONFIGS_DIR + "/nonlinear.py"))
    train = _ints(_PAPER_TRAIN, 3)[0] if table == "paper" else _value(_NONLINEAR_TRAIN)
    teacher = dataclasses.replace(
        exp.search_tasks,
        num_train_examples=train,
        num_valid_examples=_value(_NONLINEAR_VALID),
    )
    programs = "DAMAGED_NEURAL_NET+mutation"
    label = "nonlinear config" if table == "configs" else "nonlinear"
    return Workload(
        label,
        table,
        exp.search.evolution.spec,
        teacher,
        programs,
        exp.search.evolution.sizes,
        exp.search.evolution.mutation,
    )


def _paper_workload(name: str) -> Workload:
    """Fig. 5 or S10: random programs of the paper's search space on teacher tasks."""
    F, memory, sizes, ops_lists, train, valid = {
        "fig5": (8, (4, 8, 2), (21, 3, 9), FIG5_OPS, _ints(_PAPER_TRAIN, 3)[1], 100),
        "s10": (16, (5, 9, 2), (6, 10, 22), S10_OPS, _ints(_PAPER_TRAIN, 3)[2], 1000),
    }[name]
    if _QUICK.value:
        valid = 10
    comps = {
        c: ComponentSpec(n, ops_lists[c])
        for c, n in zip(program_lib.COMPONENTS, sizes, strict=True)
    }
    spec = ProgramSpec(*memory, **comps)
    teacher = tasks.TaskSpec(
        kind="teacher", num_train_examples=train, num_valid_examples=valid, feature_size=F
    )
    return Workload(name, "paper", spec, teacher, "RANDOM", sizes)


def make_population(key: jax.Array, w: Workload, size: int) -> program_lib.Program:
    """`size` programs of the workload as numpy arrays. The key is consumed."""
    key_init, key_mutate = jax.random.split(key)
    if w.programs == "RANDOM":
        pop = generator.make_initial_population(key_init, "RANDOM", w.spec, w.sizes, size)
    else:
        initial = w.programs.split("+")[0]
        parents = generator.make_initial_population(key_init, initial, w.spec, w.sizes, size)
        mutate = jax.jit(mutation.mutate_batch, static_argnums=(2, 3))
        pop = mutate(key_mutate, parents, w.spec, w.mutation)
    return jax.tree.map(np.asarray, pop)


class Data(NamedTuple):
    """A workload's programs, lane seeds `[P, T]` and tasks, placed for each engine."""

    population: program_lib.Program
    seeds: np.ndarray
    taskset: tasks.TaskSet
    info: tasks.TaskInfo
    chunk_size: int


def make_data(w: Workload, size: int) -> Data:
    key_programs, key_seeds = jax.random.split(jax.random.key(_value(_SEED)))
    taskset, info = tasks.make_tasks(w.task_spec)
    seeds = evaluation.lane_seeds(key_seeds, size, info.num_tasks)
    return Data(make_population(key_programs, w, size), seeds, taskset, info, _value(_CHUNK_SIZE))


def engine_fn(engine: str, w: Workload, d: Data):
    """(number of programs, a call returning fitness `[n, T]`) of one engine on the workload."""
    P = program_lib.population_size(d.population)
    if engine in ("vm", "vm_1dev"):
        mesh = runtime.program_mesh(jax.devices()[:1] if engine == "vm_1dev" else None)
        (group,) = scoring.place_collection([(d.taskset, d.info)], mesh=mesh)

        def run_vm():
            return scoring.run_chunked(
                d.population, group, d.seeds, spec=w.spec, chunk_size=d.chunk_size
            ).fitness

        return P, run_vm
    if engine == "switch":
        n = min(P, _value(_SWITCH_POPULATION))
        programs, seeds = program_lib.index(d.population, np.arange(n)), d.seeds[:n]
        info = d.info

        def run_switch():
            return evaluation.evaluate_lanes(
                programs,
                d.taskset,
                seeds,
                spec=w.spec,
                eval_type=info.eval_type,
                epoch_size=info.epoch_size,
                engine=switch_vm.ENGINE,
            ).fitness

        return n, run_switch
    n = min(P, _value(_REFERENCE_PROGRAMS))
    programs = [program_lib.index(d.population, p) for p in range(n)]
    singles = [tasks.single_task(d.taskset, d.info, t) for t in range(d.info.num_tasks)]

    def run_numpy():
        results = [
            [
                reference.evaluate(prog, task, spec=w.spec, seed=int(d.seeds[p, t]))
                for t, task in enumerate(singles)
            ]
            for p, prog in enumerate(programs)
        ]
        run_numpy.stopped_early_frac = float(
            np.mean([[r.stopped_early for r in rs] for rs in results])
        )
        return np.asarray([[r.fitness for r in rs] for rs in results])

    return n, run_numpy


def measure(engine: str, w: Workload, d: Data, log: runtime.CompileLog) -> dict:
    """Warm-up (compile) and timed calls of one engine; one result row."""
    n, fn = engine_fn(engine, w, d)
    log.reset()
    start = time.perf_counter()
    fitness = jax.block_until_ready(fn())
    warmup = time.perf_counter() - start
    compile_s = log.seconds
    calls = []
    for _ in range(_value(_NUM_REPEATS)):
        start = time.perf_counter()
        fitness = jax.block_until_ready(fn())
        calls.append(time.perf_counter() - start)
    median = statistics.median(calls)
    T = d.info.num_tasks
    row = dict(
        table=w.table,
        workload=w.name,
        engine=engine,
        num_programs=n,
        num_tasks=T,
        devices=jax.device_count() if engine == "vm" else 1,
        warmup_s=warmup,
        compile_s=compile_s if engine != "numpy" else 0.0,
        call_s=calls,
        median_s=median,
        candidates_per_s=n / median,
        task_evals_per_s=n * T / median,
        instructions_per_s=n * T * w.instructions_per_task / median,
        fitness=np.asarray(fitness, np.float64),
        stopped_early_frac=getattr(fn, "stopped_early_frac", None),
    )
    return row


def save_chunk(path: str, d: Data) -> None:
    """Writes the first programs of a workload and their seeds, for a compile probe."""
    # One chunk per device: run_chunked then picks the same chunk shape as for the whole population.
    n = min(program_lib.population_size(d.population), d.chunk_size * jax.device_count())
    arrays = {
        f"{c}.{f}": x[:n]
        for c, comp in zip(program_lib.COMPONENTS, d.population, strict=True)
        for f, x in zip(program_lib.Component._fields, comp, strict=True)
    }
    np.savez(path, seeds=d.seeds[:n], **arrays)


def load_chunk(path: str, w: Workload) -> Data:
    """The `Data` of a probe: saved programs and seeds, tasks rebuilt from the workload."""
    with np.load(path) as f:
        comps = [
            program_lib.Component(*(f[f"{c}.{k}"] for k in program_lib.Component._fields))
            for c in program_lib.COMPONENTS
        ]
        seeds = f["seeds"]
    taskset, info = tasks.make_tasks(w.task_spec)
    return Data(program_lib.Program(*comps), seeds, taskset, info, _value(_CHUNK_SIZE))


def run_probe(name: str, data_path: str) -> dict:
    """The `vm` engine's first call on one saved chunk, in this (fresh) process."""
    table, _, which = name.partition(":")
    w = make_workload(table, which)
    _, fn = engine_fn("vm", w, load_chunk(data_path, w))
    log = runtime.CompileLog()  # Counts the call only, not making the tasks.
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return dict(
        first_call_s=time.perf_counter() - start, compile_s=log.seconds, cache_hits=log.cache_hits
    )


def _probe_subprocess(name: str, data_path: str, cache_dir: str) -> dict:
    args = [
        sys.executable,
        os.path.abspath(__file__),
        f"--compile_probe={name}",
        f"--probe_data={data_path}",
        f"--probe_cache_dir={cache_dir}",
        *(h.serialize() for h in _FORWARDED if h.present),
    ]
    # Both probes share one hash seed, so no set iteration order anywhere in the trace can make
    # the HLO (and the cache key) of evaluate_lanes differ between the two processes.
    env = dict(os.environ, PYTHONHASHSEED=PROBE_HASH_SEED)
    out = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False, env=env)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith(_PROBE_MARK):
            return json.loads(line[len(_PROBE_MARK) :])
    raise RuntimeError(f"compile probe {name} failed (exit {out.returncode}): {out.stderr[-2000:]}")


def compile_probes(w: Workload, d: Data) -> dict:
    """Cold (empty persistent cache) then cached first calls of `vm`, each in a fresh process."""
    name = f"{w.table}:{w.name.split()[0]}"
    with tempfile.TemporaryDirectory(prefix="azjax_bench_") as tmp:
        data_path, cache_dir = os.path.join(tmp, "chunk.npz"), os.path.join(tmp, "cache")
        save_chunk(data_path, d)
        cold = _probe_subprocess(name, data_path, cache_dir)
        cached = _probe_subprocess(name, data_path, cache_dir)
    return dict(
        workload=w.name,
        table=w.table,
        engine="vm",
        devices=jax.device_count(),
        cold=cold,
        cached=cached,
    )


def machine_facts() -> dict:
    import jaxlib

    model = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    return dict(
        jax_version=jax.__version__,
        jaxlib_version=jaxlib.__version__,
        devices=[str(d) for d in jax.devices()],
        device_count=jax.device_count(),
        cpu_count=os.cpu_count(),
        cpu_model=model,
        platform=platform.platform(),
        python=platform.python_version(),
        load_average_before=list(os.getloadavg()),
    )


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def format_table(title: str, rows: list[dict], columns) -> str:
    """Plain-text columns: `columns` is a list of (header, key, format spec)."""
    cells = [[h for h, _, _ in columns]]
    cells += [[_fmt(r.get(k), f) for _, k, f in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = [" ".join(c.rjust(wd) for c, wd in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([title, lines[0], " ".join("-" * wd for wd in widths), *lines[1:]])


# fmt: off
_COLUMNS = [  # (header, row key, format spec)
    ("workload", "workload", "s"), ("engine", "engine", "s"), ("dev", "devices", "d"),
    ("P", "num_programs", "d"), ("T", "num_tasks", "d"), ("compile s", "compile_s", ".2f"),
    ("s/call", "median_s", ".3f"), ("cand/s", "candidates_per_s", ",.1f"),
    ("task-evals/s", "task_evals_per_s", ",.0f"), ("M instr/s", "minstr_per_s", ",.2f"),
    ("vs vm", "ratio_to_vm", ".3f"),
]
_PAPER_COLUMNS = [
    ("workload", "workload", "s"), ("engine", "engine", "s"), ("dev", "devices", "d"),
    ("P/call/dev", "lanes", "d"), ("T", "num_tasks", "d"), ("compile s", "compile_s", ".2f"),
    ("s/call", "median_s", ".4f"), ("evals/s", "candidates_per_s", ",.0f"),
    ("M instr/s", "minstr_per_s", ",.1f"),
]
_COMPILE_COLUMNS = [
    ("workload", "workload", "s"), ("engine", "engine", "s"), ("dev", "devices", "d"),
    ("cold compile s", "cold_compile_s", ".2f"), ("cold 1st call s", "cold_first_call_s", ".2f"),
    ("cached compile s", "cached_compile_s", ".2f"),
    ("cached 1st call s", "cached_first_call_s", ".2f"), ("cache hits", "cached_cache_hits", "d"),
]
# fmt: on
_NOTES = """\
compile s: JAX trace + lowering + XLA compile time of the warm-up call, persistent cache off (0
  when an earlier engine already compiled the same executable). s/call: median of the timed calls.
cand/s: programs fully evaluated per second, each on all T tasks; M instr/s counts every
  instruction of the protocol, also after an early stop (numpy stops early and so does less).
vs vm: cand/s relative to the `vm` row of the same workload."""


def _finish_rows(rows: list[dict]) -> None:
    """Adds the ratio to `vm` and the fitness difference to `vm` on shared lanes; drops fitness."""
    vm = {(r["workload"], r.get("lanes")): r for r in rows if r["engine"] == "vm"}
    for r in rows:
        base = vm.get((r["workload"], r.get("lanes")))
        r["minstr_per_s"] = r["instructions_per_s"] / 1e6
        r["ratio_to_vm"] = r["candidates_per_s"] / base["candidates_per_s"] if base else None
        diff = np.abs(r["fitness"] - base["fitness"][: len(r["fitness"])]) if base else None
        r["max_abs_fitness_diff_vs_vm"] = None if diff is None else float(diff.max())
    for r in rows:
        del r["fitness"]


def settings() -> dict:
    """The resolved benchmark settings (after --quick)."""
    out = {h.name: _value(h) for h in _FORWARDED}
    out.update(
        op_set_sizes=_ints(_OP_SET_SIZES, 3),
        demo_memory=_ints(_DEMO_MEMORY, 3),
        full_memory=_ints(_FULL_MEMORY, 3),
        engines=_ENGINES.value,
        op_sets=_OP_SETS.value,
        configs=_CONFIGS.value,
        paper=_PAPER.value,
        paper_lanes=_ints(_PAPER_LANES, len(_value(_PAPER_LANES))),
        compile_probes=_COMPILE_PROBES.value,
    )
    return out


def describe(w: Workload) -> dict:
    spec = w.spec
    return dict(
        table=w.table,
        programs=w.programs,
        sizes=w.sizes,
        memory=(spec.num_scalars, spec.num_vectors, spec.num_matrices),
        ops={c: spec.component(c).valid_ops for c in program_lib.COMPONENTS},
        tasks=dataclasses.asdict(w.task_spec),
        instructions_per_task=w.instructions_per_task,
    )


def run_benchmark() -> dict:
    """Every selected workload x engine, and the compile probes; the JSON-able result."""
    facts, log = machine_facts(), runtime.CompileLog()
    workloads = [make_workload("op_sets", n) for n in _OP_SETS.value]
    workloads += [make_workload("configs", n) for n in _CONFIGS.value]
    rows, probes = [], []
    for w in workloads:
        d = make_data(w, _value(_POPULATION))
        for engine in [e for e in ENGINES if e in _ENGINES.value]:
            rows.append(measure(engine, w, d, log))
            print(f"{w.name:>16} {engine:>8}: {rows[-1]['median_s']:.3f} s/call", flush=True)
        if _COMPILE_PROBES.value and "vm" in _ENGINES.value:
            probes.append(compile_probes(w, d))
    for name in _PAPER.value:
        w = make_workload("paper", name)
        workloads.append(w)
        for lanes in _ints(_PAPER_LANES, len(_value(_PAPER_LANES))):
            d = make_data(w, lanes * jax.device_count())._replace(chunk_size=lanes)
            one = d._replace(
                population=program_lib.index(d.population, np.arange(lanes)), seeds=d.seeds[:lanes]
            )
            for engine, data in (("vm_1dev", one), ("vm", d)):
                rows.append(dict(measure(engine, w, data, log), lanes=lanes))
                print(f"{name:>16} {engine:>8} P={lanes}: {rows[-1]['median_s']:.3f} s/call")
    _finish_rows(rows)
    facts["load_average_after"] = list(os.getloadavg())
    return dict(
        machine=facts,
        settings=settings(),
        workloads={w.name: describe(w) for w in workloads},
        rows=rows,
        compile=probes,
    )


def report(result: dict) -> str:
    """The printed tables."""
    m = result["machine"]
    before, after = m["load_average_before"][0], m["load_average_after"][0]
    parts = [
        f"{m['cpu_model']} x{m['cpu_count']}, {m['device_count']} CPU devices, "
        f"jax {m['jax_version']}, load average {before:.2f} before, {after:.2f} after"
    ]
    for table, title, columns in (
        ("op_sets", "Op sets: candidates/s (random programs)", _COLUMNS),
        ("configs", "Configurations: evaluations/s", _COLUMNS),
        ("paper", "Paper workloads: evaluations/s and latency against lanes", _PAPER_COLUMNS),
    ):
        rows = [r for r in result["rows"] if r["table"] == table]
        if rows:
            parts.append(format_table(title, rows, columns))
    if result["compile"]:
        flat = [
            dict(p, **{f"{k}_{f}": v for k in ("cold", "cached") for f, v in p[k].items()})
            for p in result["compile"]
        ]
        title = "Compile of `vm`: fresh process with an empty persistent cache, then the same cache"
        parts.append(format_table(title, flat, _COMPILE_COLUMNS))
    return "\n\n".join(parts + [_NOTES])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    for holder, allowed in (
        (_ENGINES, ENGINES),
        (_OP_SETS, tuple(OP_SETS)),
        (_CONFIGS, CONFIGS),
        (_PAPER, PAPER),
    ):
        bad = sorted(set(holder.value) - set(allowed))
        if bad:
            raise app.UsageError(f"--{holder.name}: unknown {bad}; expected some of {allowed}")
    if _PROBE.value:  # A fresh process measuring one cold or cached compile.
        runtime.configure(cache_dir=_PROBE_CACHE.value)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        print(_PROBE_MARK + json.dumps(run_probe(_PROBE.value, _PROBE_DATA.value)), flush=True)
        return
    runtime.configure(cache_dir=None)
    jax.config.update("jax_enable_compilation_cache", False)  # Warm-ups compile from scratch.
    settings()  # Checks the list flags before any work.
    result = run_benchmark()
    print("\n" + report(result))
    os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
    with open(_OUTPUT.value, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {_OUTPUT.value}")


if __name__ == "__main__":
    app.run(main)
