"""Plain scoring of programs on task collections: mesh placement and chunked, sharded VM calls.

`score` is the evaluation without caches (the original's Evaluator::Evaluate, no FEC): every
program on every task, combined by mean (or median) over tasks; the experiment driver scores
candidates on the select and final tasks with it. VM calls run on fixed-shape chunks of programs
(padded with NO_OP programs, power-of-two sizes, so compiles stay few), each split over the
devices of a 1-D mesh with `shard_map`. The search scores its children on the device instead
(`azjax.search_eval`), with calls sized by the same `programs_per_call`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from azjax import budget as budget_lib
from azjax import evaluation, program_io, runtime, vm
from azjax import program as program_lib
from azjax.program import Program, ProgramSpec
from azjax.tasks import TaskInfo, TaskSet


class TaskGroup(NamedTuple):
    """One task spec's tasks, replicated on the mesh."""

    tasks: TaskSet
    info: TaskInfo
    mesh: Mesh


def place_collection(collection, *, mesh=None) -> list[TaskGroup]:
    """Replicates each (TaskSet, TaskInfo) of a collection on the mesh."""
    mesh = runtime.program_mesh() if mesh is None else mesh
    return [TaskGroup(runtime.replicate(tasks, mesh), info, mesh) for tasks, info in collection]


# Lanes x memory floats per device and VM call at most, so that the slot loop's working set (the
# memory and one instruction's candidates) stays in a core's caches. Measured on one core of the
# 2-core machine, T = 10: the full op set (S/V/M 4/3/2, F = 4: 48 floats per lane) ran at 301
# cand/s in calls of 256 programs, 416 in calls of 128 and 432 in calls of 64; the demo's memory
# (32 floats per lane) is flat from 128 to 256 programs and slower at 512.
LANE_FLOATS = 96 * 1024
DEFAULT_CHUNK_SIZE = 256


def programs_per_call(spec: ProgramSpec, chunk_size: int, num_tasks: int, feature_size: int) -> int:
    """Programs per device and VM call: `chunk_size`, lowered to a power of 2 that keeps
    lanes x memory floats per lane within `LANE_FLOATS` (at least 1)."""
    F = feature_size
    floats = spec.num_scalars + spec.num_vectors * F + spec.num_matrices * F * F
    fit = max(1, LANE_FLOATS // (num_tasks * floats))
    return min(chunk_size, 1 << (fit.bit_length() - 1))


def _bucket(n: int, chunk_size: int) -> int:
    """Programs per device per VM call for n programs: a power of 2, at most chunk_size."""
    size = 1
    while size < min(n, chunk_size):
        size *= 2
    return min(size, chunk_size)


@functools.cache
def _sharded_evaluate(mesh: Mesh, spec, eval_type, epoch_size, max_abs_error):
    """`evaluation.evaluate_lanes` over a population split along the mesh's program axis
    (`shard_map`: each device scores its own programs on all tasks; one compile)."""
    fn = functools.partial(
        evaluation.evaluate_lanes,
        spec=spec,
        eval_type=eval_type,
        epoch_size=epoch_size,
        max_abs_error=max_abs_error,
    )
    split, whole = PartitionSpec(runtime.PROGRAMS_AXIS), PartitionSpec()
    cpu = mesh.devices.flat[0].platform == "cpu"
    return jax.jit(
        jax.shard_map(
            fn, mesh=mesh, in_specs=(split, whole, split), out_specs=split, check_vma=False
        ),
        compiler_options=vm.COMPILER_OPTIONS if cpu else None,  # XLA:CPU options.
    )


# A VM call's fixed cost (loop and kernel overheads) in programs per device: measured on the demo,
# a call on n programs per device costs about as much as CALL_COST + n programs' lanes.
CALL_COST = 16
MIN_LANES = 64  # Per device and call; below this a call is all overhead.


def _chunk_sizes(n: int, num_devices: int, chunk_size: int, smallest: int = 1) -> list[int]:
    """Programs per device of each VM call for n programs (each a `_bucket` size >= smallest).

    Full chunks first; a remainder that would leave the last call mostly padding is split off
    into a smaller call when that is cheaper by the `CALL_COST` model (e.g. 137 programs on 2
    devices: calls of 128 and 16 program slots instead of one of 256).
    """
    sizes, left = [], n
    while left > 0:
        size = max(smallest, _bucket(-(-left // num_devices), chunk_size))
        half = size // 2
        if num_devices * size > left and half >= smallest and num_devices * half < left:
            rest = _bucket(-(-(left - num_devices * half) // num_devices), chunk_size)
            if 2 * CALL_COST + half + max(smallest, rest) < CALL_COST + size:
                size = half
        sizes.append(size)
        left -= num_devices * size
    return sizes


def run_chunked(
    population: Program,
    group: TaskGroup,
    seeds,
    *,
    spec: ProgramSpec,
    max_abs_error: float = evaluation.MAX_ABS_ERROR,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> evaluation.LaneResult:
    """`evaluation.evaluate_lanes` over a population of any size, in padded fixed-shape chunks,
    each split over the mesh's devices. seeds: uint32 `[P, T]`. Returns numpy arrays `[P, T]`."""
    P, info = program_lib.population_size(population), group.info
    chunk = programs_per_call(spec, chunk_size, info.num_tasks, info.feature_size)
    smallest = _bucket(-(-MIN_LANES // info.num_tasks), chunk)
    sizes = [group.mesh.size * b for b in _chunk_sizes(P, group.mesh.size, chunk, smallest)]
    pad = sum(sizes) - P

    def padded(x):
        x = np.asarray(x)
        return np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])

    args = (jax.tree.map(padded, population), padded(np.asarray(seeds, np.uint32)))
    evaluate = _sharded_evaluate(group.mesh, spec, info.eval_type, info.epoch_size, max_abs_error)
    starts = np.cumsum([0] + sizes)
    outs = [
        evaluate(jax.tree.map(lambda x, a=a, b=b: x[a:b], args[0]), group.tasks, args[1][a:b])
        for a, b in zip(starts[:-1], starts[1:], strict=True)
    ]
    return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs])[:P], *outs)


def score(
    population: Program,
    groups,
    key,
    *,
    spec: ProgramSpec,
    max_abs_error: float = evaluation.MAX_ABS_ERROR,
    baseline: Program | None = None,
    budget_factor: float = budget_lib.DEFAULT_FACTOR,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    check: bool = True,
) -> np.ndarray:
    """Full evaluation, no caches: per-task fitness `[P, T_total]` (numpy) over the groups'
    tasks. The key is consumed (random ops' lane seeds). `baseline`: the train budget's
    (programs over it train on no example: fitness 0). `check`: validate the programs first (a
    clear `ProgramError` for bad opcodes, addresses or shapes, instead of undefined VM
    behaviour)."""
    if check:
        program_io.validate(population, spec, batched=True)
    P = program_lib.population_size(population)
    fitness = []
    for j, group in enumerate(groups):
        n = group.info.epoch_size * group.info.num_train_epochs
        fit = np.zeros((P, group.info.num_tasks))
        run = np.arange(P)
        if baseline is not None:
            counts = budget_lib.train_examples(population, baseline, n, budget_factor)
            run = np.flatnonzero(counts > 0)
        if run.size:
            seeds = evaluation.lane_seeds(key, P, group.info.num_tasks, stream=j)
            result = run_chunked(
                program_lib.index(population, run),
                group,
                seeds[run],
                spec=spec,
                max_abs_error=max_abs_error,
                chunk_size=chunk_size,
            )
            fit[run] = result.fitness
        fitness.append(fit)
    return np.concatenate(fitness, axis=1)
