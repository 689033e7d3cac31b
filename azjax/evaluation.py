"""The evaluation protocol, batched: P programs x T tasks scored in one jitted call.

Per (program, task) lane, exactly the original's executor (docs/ops.md; `azjax.reference` is
the one-at-a-time spec): memory zeroed, Setup once; per training example v0 = x, s0 = 0, Predict,
sigmoid for classification, early stop on NaN or |err| > max_abs_error, then v0 = x, s0 = y, Learn;
after each epoch, validation with Predict only; fitness is the best validation fitness over epochs,
0 if training blew up in the first epoch. A SIMD VM cannot skip a dead lane's work, so early
stopping is a per-lane mask: results after the stop are computed and ignored.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from azjax import hashing, kernels, rng, vm, vm_plan
from azjax import ops as ops_lib
from azjax import program as program_lib
from azjax.program import Program, ProgramSpec
from azjax.tasks import TaskSet

RMS, ACCURACY = "rms", "accuracy"
MAX_ABS_ERROR = 100.0


class Engine(NamedTuple):
    """What runs the components: `decode(plan, component)` once per call, then
    `run_component(plan, memory, decoded, *, seeds, call, feature_size, num_slots)` per
    component invocation (`azjax.vm`'s signatures)."""

    decode: Callable
    run_component: Callable


VM = Engine(vm_plan.decode, vm.run_component)


class LaneResult(NamedTuple):
    """Per-lane outputs `[P, T]`; the error records `[P, T, n]` only when asked for (FEC).

    train_steps: training steps executed, as the original counts them (docs/ops.md: the
    step that triggers an early stop counts, the ones after it do not).
    valid_predictions: `[P, T, Ev]`, when asked for: s1 on each validation example after the
    last epoch (after the sigmoid for classification), NaN in lanes that stopped early: the
    evolved algorithm's predictions on data it did not train on.
    """

    fitness: jax.Array
    train_errors: jax.Array | None
    valid_errors: jax.Array | None
    train_steps: jax.Array | None = None
    valid_predictions: jax.Array | None = None


def flip_and_squash(rmse):
    """The original's regression fitness 1 - (2/pi) atan(rmse); 0 for NaN/inf (§4.4)."""
    fit = 1.0 - (2.0 / math.pi) * kernels.atan(rmse)  # Not jnp.arctan: see vm.COMPILER_OPTIONS.
    return jnp.where(jnp.isfinite(rmse), fit, 0.0)


@functools.partial(
    jax.jit,
    static_argnames=(
        "spec",
        "eval_type",
        "epoch_size",
        "max_abs_error",
        "record",
        "predictions",
        "engine",
    ),
)
def evaluate_lanes(
    population: Program,
    tasks: TaskSet,
    seeds,
    task_ids=None,
    *,
    spec: ProgramSpec,
    eval_type: str,
    epoch_size: int,
    max_abs_error: float = MAX_ABS_ERROR,
    record: bool = False,
    predictions: bool = False,
    engine: Engine = VM,
) -> LaneResult:
    """Scores every program of `population` (`[P]`) on every task of `tasks` (`[T]`).

    Args:
      seeds: uint32 `[P, T]`, the lanes' random-op seeds.
      task_ids: optional int32 `[P]`: `tasks` then holds E task sets (a leading `[E]` axis on
        each array) and program p runs on set `task_ids[p]` (concurrent experiments, each with
        its own tasks, share one call).
      epoch_size: unique training examples per epoch; `tasks.x_train` holds `N` = epochs x that.
      record: also return |y - s1| after each training Predict and each first-epoch validation
        Predict (0/1 errors for accuracy), NaN after an early stop: FEC's fingerprint inputs.
      predictions: also return `valid_predictions` (see `LaneResult`).
      engine: what runs the programs: `VM` (`azjax.vm`), or e.g. the naive baseline
        `azjax.switch_vm.ENGINE`.
    """
    decode_fn, run_fn = engine
    P = program_lib.population_size(population)
    T, N, F = tasks.x_train.shape[-3:]
    Ev = tasks.x_valid.shape[-2]
    num_epochs = N // epoch_size
    dtype = tasks.x_train.dtype
    fixed = {c: spec.component(c).fixed for c in program_lib.COMPONENTS}
    run_by_vm = [c for c in program_lib.COMPONENTS if fixed[c] is None]
    plans = {c: vm_plan.plan_component(spec, c) for c in run_by_vm}
    decs = {c: decode_fn(plans[c], getattr(population, c)) for c in run_by_vm}
    slots = {c: vm_plan.num_live_slots(getattr(population, c)) for c in run_by_vm}
    seeds = jnp.asarray(seeds, jnp.uint32).T  # Lanes [T, P] (see azjax.vm).
    lanes = (T, P)
    classify = eval_type == ACCURACY

    def run(c, mem, call):
        if fixed[c] is not None:
            return vm.run_fixed(fixed[c], mem, seeds=seeds, call=call, feature_size=F)
        return run_fn(
            plans[c], mem, decs[c], seeds=seeds, call=call, feature_size=F, num_slots=slots[c]
        )

    def with_inputs(mem, label, x):
        return vm.Memory((label,) + mem.scalars[1:], (x,) + mem.vectors[1:], mem.matrices)

    def predict(mem, x, y, call):  # v0 = x, s0 = 0, Predict; returns the memory and s1.
        mem = run("predict", with_inputs(mem, jnp.zeros_like(y), x), call)
        return mem, mem.scalars[1]

    def train_step(carry, example):
        mem, stopped, steps, call = carry
        x, y = example
        mem, s1 = predict(mem, x, y, call)
        if classify:
            s1 = jax.nn.sigmoid(s1)
            mem = vm.Memory((mem.scalars[0], s1) + mem.scalars[2:], mem.vectors, mem.matrices)
        err = jnp.abs(y - s1)
        recorded = jnp.where(stopped, jnp.nan, err)
        steps = steps + jnp.where(stopped, 0, 1)
        stopped = stopped | ~(err <= max_abs_error)
        mem = run("learn", with_inputs(mem, y, x), call + 1)
        return (mem, stopped, steps, call + 2), (recorded if record else None)

    def valid_step(carry, example):
        mem, loss, bad, call = carry
        x, y = example
        mem, s1 = predict(mem, x, y, call)
        if classify:
            e = jnp.where((y > 0.5) == (jax.nn.sigmoid(s1) > 0.5), 0.0, 1.0).astype(dtype)
        else:
            e = y - s1
        bad = bad | ~(jnp.abs(e) <= max_abs_error)
        out = (jnp.abs(e) if record else None, jax.nn.sigmoid(s1) if classify else s1)
        return (mem, loss + (e if classify else e * e), bad, call + 1), (
            out if predictions else out[:1]
        )

    x_tr, y_tr, x_va, y_va = (_lanes_examples(a, P, task_ids) for a in tasks)

    def epoch(carry, data):
        mem, stopped, steps, best, call = carry
        xs, ys = data
        (mem, stopped, steps, call), train_err = jax.lax.scan(
            train_step, (mem, stopped, steps, call), (xs, ys)
        )
        zero = jnp.zeros(lanes, dtype)
        (mem, loss, bad, call), (valid_err, *valid_pred) = jax.lax.scan(
            valid_step, (mem, zero, jnp.zeros(lanes, bool), call), (x_va, y_va)
        )
        if classify:
            fit = 1.0 - loss / Ev
        else:
            fit = flip_and_squash(jnp.sqrt(loss / Ev))
        fit = jnp.where(bad, 0.0, fit)
        best = jnp.where(stopped, best, jnp.maximum(best, fit))
        if record:
            valid_err = jnp.where(stopped[None], jnp.nan, valid_err)
        valid_pred = [jnp.where(stopped[None], jnp.nan, v) for v in valid_pred]
        return (mem, stopped, steps, best, call), (train_err, valid_err, *valid_pred)

    mem = vm.zeros_memory(spec, F, lanes, dtype)
    mem = run("setup", mem, jnp.int32(0))
    zeros = lambda dt: jnp.zeros(lanes, dt)  # noqa: E731
    init = (mem, zeros(bool), zeros(jnp.int32), zeros(dtype), jnp.int32(1))
    split = lambda a: a.reshape((num_epochs, epoch_size) + a.shape[1:])  # noqa: E731
    (_, _, steps, best, _), (train_err, valid_err, *valid_pred) = jax.lax.scan(
        epoch, init, (split(x_tr), split(y_tr))
    )
    fitness, steps = jnp.where(in_spec(population, spec)[:, None], best.T, jnp.nan), steps.T
    to_pt = lambda e: jnp.transpose(e.reshape((-1, T, P)), (2, 1, 0))  # noqa: E731
    pred = to_pt(valid_pred[0][-1]) if predictions else None
    if not record:
        return LaneResult(fitness, None, None, steps, pred)
    return LaneResult(fitness, to_pt(train_err), to_pt(valid_err[0]), steps, pred)


def in_spec(population: Program, spec: ProgramSpec) -> jax.Array:
    """bool `[P]`: each program is one the VM runs as the reference does: every op allowed in
    its component (the VM computes only those), every address inside the spec's memory (the VM
    clips), and the spec's fixed instructions in its frozen components (`ComponentSpec.fixed`;
    the VM runs the spec's). `evaluate_lanes` scores the other programs NaN, never a fitness
    that is not theirs; the search treats NaN as the worst fitness. Cheap: table lookups."""
    sizes = np.array([0, spec.num_scalars, spec.num_vectors, spec.num_matrices], np.int32)
    kinds = np.array([(op.in1, op.in2, op.out) for op in ops_lib.OPS], np.int32)
    ok = jnp.ones(program_lib.population_size(population), bool)
    for c in program_lib.COMPONENTS:
        cs = spec.component(c)
        code = jnp.asarray(getattr(population, c).code)
        allowed = np.zeros(ops_lib.NUM_OPS + 1, bool)  # The last row: ids out of range.
        allowed[list(cs.valid_ops)] = True
        op = jnp.where((code[..., 0] >= 0) & (code[..., 0] < ops_lib.NUM_OPS), code[..., 0], -1)
        kind = jnp.asarray(kinds)[op]  # [P, L, 3]; op -1 is refused below anyway.
        addr = code[..., 1:]
        fits = (kind == 0) | ((addr >= 0) & (addr < jnp.asarray(sizes)[kind]))
        ok = ok & jnp.all(jnp.asarray(allowed)[op] & jnp.all(fits, -1), -1)
        if cs.fixed is not None:
            want = program_lib.make_component(cs.fixed, code.shape[-2])
            consts = hashing.float_bits(getattr(population, c).consts)
            same = (code == want.code).all((-2, -1)) & (
                consts == hashing.float_bits(want.consts)
            ).all((-2, -1))
            ok = ok & same
    return ok


def _lanes_examples(a, num_programs, task_ids=None):
    """`[T, n, ...]` task data to per-example lane arrays `[n, ..., T, P]`; with `task_ids`
    `[P]`, `[E, T, n, ...]` data of which program p reads set `task_ids[p]`."""
    if task_ids is not None:
        a = jnp.moveaxis(a[task_ids], 2, 0)  # [n, P, T, ...]
        return jnp.moveaxis(a, (1, 2), (-1, -2))  # [n, ..., T, P]
    a = jnp.moveaxis(a, 1, 0)  # [n, T, ...]
    a = jnp.moveaxis(a, 1, -1)[..., None]  # [n, ..., T, 1]
    return jnp.broadcast_to(a, a.shape[:-1] + (num_programs,))


def lane_seeds(key, num_programs: int, num_tasks: int, stream: int = 0, xp=np):
    """uint32 `[P, T]` seeds for the random ops, from a jax.random key (consumed); `stream`
    tells apart several seed sets drawn from one key (a program's task groups). `xp`: numpy
    (host, no device computation: a `jax.random` draw here cost an eager dispatch per call) or
    jax.numpy (inside a jitted search step); both give the same seeds.

    Seed (p, t) is the counter hash of the lane index p T + t, keyed by the key's words: a lane's
    seed depends on its program's position p only, not on the batch it runs in.
    """
    u = xp.uint32
    words = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
    base = u(0x9E3779B9) ^ rng.lowbias32(np.uint32(stream))
    for i in range(words.shape[0]):
        word = np.asarray(words[i]) if xp is np else words[i]
        base = rng.lowbias32(base ^ word, xp) ^ u(0x9E3779B9)
    lanes = xp.arange(num_programs * num_tasks, dtype=u).reshape(num_programs, num_tasks)
    return rng.lowbias32(rng.lowbias32(lanes, xp) ^ base, xp)


def combine(fitness, mode: str = "mean") -> np.ndarray:
    """Per-program fitness over tasks `[P, T] -> [P]`: mean, or the original's upper median."""
    fitness = np.asarray(fitness, np.float64)
    if mode == "mean":
        return fitness.mean(axis=-1)
    if mode == "median":
        return np.sort(fitness, axis=-1)[..., fitness.shape[-1] // 2]
    raise ValueError(f"unknown fitness combination mode {mode!r}; expected 'mean' or 'median'")
