"""The NumPy reference interpreter: the executable specification of AutoML-Zero's semantics.

One program, one task, one instruction at a time, written to be obviously correct rather than fast
(the original's memory, op table and evaluation protocol). The JAX VM is tested against it. Every
op gives raw IEEE results (inf/NaN, no guards); the protocol's early-stopping rules deal with them.

Memory is float32 by default, what the search uses: the VM then agrees bit for bit on every op
but the transcendentals (7-14, its own approximations) and the Gaussian draws (62-64). float64,
the original's `double`, reproduces the original's arithmetic: the sums over F add in one pairwise
order with every product rounded first (`azjax.reductions`, shared with the VM; no BLAS, no
fused multiply-adds), and the scalar transcendentals are the C library's. One float64 difference
remains: every constant is a float32, also SCALAR_CONST_SET's, which the original keeps as a
double (`ins.consts` is float32; a constant such as 0.1 is read as float32(0.1)).

Subnormal numbers are kept, as in the original, unless `flush_subnormals=True`: XLA:CPU, and so
the VM on CPU, flushes them to zero (the inputs and results of arithmetic), whatever its flags
say (docs/deviations.md), and the flag makes the reference do the same for exact comparisons.

Random-init ops (59-64) draw from the stateless counter hash of `azjax.rng` (a deliberate deviation
from the original's shared mt19937): element `e` (row-major) of the draw of the instruction in
slot `i`, run in call number `c` of an evaluation with lane seed `seed`, uses
`u = rng.uniform01(rng.draw_key(seed, c, i), e)`. Setup is call 0; each Predict / Learn /
validation Predict then takes the next number in protocol order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import scipy.special

from azjax import ops as ops_lib
from azjax import reductions, rng
from azjax.program import (
    COMPONENTS,
    FEATURES_VECTOR,
    LABEL_SCALAR,
    PREDICTION_SCALAR,
    Component,
    Instruction,
    Program,
    ProgramSpec,
)

Kind = ops_lib.Kind
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclasses.dataclass
class Memory:
    """Typed memories: scalars [S], vectors [V, F], matrices [M, F, F] (docs/ops.md)."""

    scalars: np.ndarray
    vectors: np.ndarray
    matrices: np.ndarray

    @classmethod
    def zeros(cls, spec: ProgramSpec, F: int, dtype=np.float32) -> Memory:
        """All-zero memory for `spec`'s address counts and feature size F."""
        dtype = _check_dtype(dtype)
        if int(F) < 1:
            raise ValueError(f"feature size F must be >= 1, got {F}")
        return cls(
            scalars=np.zeros((spec.num_scalars,), dtype),
            vectors=np.zeros((spec.num_vectors, F), dtype),
            matrices=np.zeros((spec.num_matrices, F, F), dtype),
        )

    def bank(self, kind: Kind) -> np.ndarray:
        return {Kind.SCALAR: self.scalars, Kind.VECTOR: self.vectors, Kind.MATRIX: self.matrices}[
            kind
        ]

    def copy(self) -> Memory:
        return Memory(self.scalars.copy(), self.vectors.copy(), self.matrices.copy())


class Operands(NamedTuple):
    """What an op function sees; arrays are copies, in the memory dtype unless noted.

    a, b: the in1 / in2 values (None when the op has no such input).
    out: the current value at the output address (const-set ops change only one entry of it).
    consts: float32 [3], as stored in the program.
    u: U(0, 1) draws shaped like the output (random ops only, else None).
    arith: how the sums over F (and the uniform draws) round their intermediate results: as
      NumPy does, or with subnormals flushed to zero (`execute_instruction`).
    """

    a: Any
    b: Any
    out: Any
    consts: np.ndarray
    u: Any
    arith: reductions.Arithmetic = reductions.NUMPY


OpFn = Callable[[Operands], Any]  # Returns the new value of the output (None for NO_OP).


def _dtype_of(o: Operands) -> np.dtype:
    return np.asarray(o.out).dtype


def _index(fraction, F: int) -> int:
    """int(F * fraction) in float32, as the original's FloatToIndex; clamped into [0, F-1].

    Fractions live in [0, 1), for which float32 never rounds F * fraction up to F; the clamp (and
    NaN -> 0) only keeps hand-written out-of-range constants from crashing (the original would
    index out of bounds).
    """
    x = float(np.float32(F) * np.float32(fraction))
    if math.isnan(x):
        return 0
    return int(min(max(x, 0.0), F - 1))


def _vector_const_set(o: Operands):
    v = o.out
    v[_index(o.consts[0], v.shape[0])] = o.consts[1]
    return v


def _matrix_const_set(o: Operands):
    m = o.out
    F = m.shape[0]
    m[_index(o.consts[0], F), _index(o.consts[1], F)] = o.consts[2]
    return m


def _uniform_set(o: Operands):
    low, high = o.consts[:2].astype(o.u.dtype)
    return rng.to_uniform(o.u, low, high, rounded=o.arith.product)  # `low` when low >= high.


def _gaussian_set(o: Operands):
    mean, stdev = o.consts[:2].astype(o.u.dtype)
    return mean + stdev * rng.standard_normal(o.u, scipy.special.erfinv)


def _all_axes(x) -> tuple[int, ...]:
    return tuple(range(np.ndim(x)))


def _libm(numpy_fn, c_fn):
    """A scalar transcendental: NumPy's in float32; in float64 the C library's, as the original's
    std:: functions (NumPy's own float64 exp, log, tan, arcsin, ... differ from it by 1 ulp on
    many inputs). Python's `math` calls the C library but raises where C returns inf or NaN."""

    def op(o: Operands):
        if _dtype_of(o) != np.float64:
            return numpy_fn(o.a)
        x = float(o.a)
        try:
            return np.float64(c_fn(x))
        except OverflowError:  # exp(x) for x > 709.78.
            return np.float64(np.inf)
        except ValueError:  # A pole (log of a zero) or outside the domain.
            return np.float64(-np.inf if c_fn is math.log and x == 0 else np.nan)

    return op


def _std_min(a, b):  # std::min(a, b) = (b < a) ? b : a -> a on NaN or equality.
    return np.where(b < a, b, a)


def _std_max(a, b):  # std::max(a, b) = (a < b) ? b : a -> a on NaN or equality.
    return np.where(a < b, b, a)


# The original's MATRIX_MIN/MAX ops (46, 49) are explicit loops `a < b ? a : b` and
# `a > b ? a : b` (executor.h; docs/ops.md rows 46/49): unlike std::min/max they return the
# *b* entry on NaN or equality. We follow the original here, not the "a's entry for matrices too"
# summary in the reference interpreter's brief.
def _loop_min(a, b):
    return np.where(a < b, a, b)


def _loop_max(a, b):
    return np.where(a > b, a, b)


def _heaviside_ge(a):  # Scalar heaviside: 1 if a >= 0 (so -0 -> 1, NaN -> 0).
    return np.where(a >= 0, 1, 0).astype(np.asarray(a).dtype)


def _heaviside_gt(x):  # Vector / matrix heaviside: 1 if x > 0 (so 0 -> 0, NaN -> 0).
    return np.where(x > 0, 1, 0).astype(x.dtype)


# One plain NumPy function per op id (docs/ops.md); `o` is an `Operands`.
OP_SEMANTICS: dict[int, OpFn] = {
    0: lambda o: None,  # NO_OP
    1: lambda o: o.a + o.b,
    2: lambda o: o.a - o.b,
    3: lambda o: o.a * o.b,
    4: lambda o: o.a / o.b,
    5: lambda o: np.abs(o.a),
    6: lambda o: 1 / o.a,
    7: _libm(np.sin, math.sin),
    8: _libm(np.cos, math.cos),
    9: _libm(np.tan, math.tan),
    10: _libm(np.arcsin, math.asin),
    11: _libm(np.arccos, math.acos),
    12: _libm(np.arctan, math.atan),
    13: _libm(np.exp, math.exp),
    14: _libm(np.log, math.log),
    15: lambda o: _heaviside_ge(o.a),
    16: lambda o: _heaviside_gt(o.a),
    17: lambda o: _heaviside_gt(o.a),
    18: lambda o: o.a * o.b,  # scalar (in1) * vector (in2)
    19: lambda o: np.full(o.out.shape, o.a, o.out.dtype),
    20: lambda o: 1 / o.a,
    21: lambda o: reductions.norm(o.a, (0,), o.arith),
    22: lambda o: np.abs(o.a),
    23: lambda o: o.a + o.b,
    24: lambda o: o.a - o.b,
    25: lambda o: o.a * o.b,
    26: lambda o: o.a / o.b,
    27: lambda o: reductions.dot(o.a, o.b, o.arith),  # Not np.dot: BLAS order and FMAs.
    28: lambda o: np.outer(o.a, o.b),  # a b^T
    29: lambda o: o.a * o.b,  # scalar (in1) * matrix (in2)
    30: lambda o: 1 / o.a,
    31: lambda o: reductions.matvec(o.a, o.b, o.arith),  # matrix (in1) @ vector (in2)
    32: lambda o: np.broadcast_to(o.a[:, None], o.out.shape).copy(),  # m[i][j] = v[i]
    33: lambda o: np.broadcast_to(o.a[None, :], o.out.shape).copy(),  # m[i][j] = v[j]
    34: lambda o: reductions.norm(o.a, (0, 1), o.arith),  # Frobenius
    35: lambda o: reductions.norm(o.a, (0,), o.arith),  # v[j] = ||m[:, j]||
    36: lambda o: reductions.norm(o.a, (1,), o.arith),  # v[i] = ||m[i, :]||
    37: lambda o: o.a.T.copy(),  # `a` is a copy, so in1 == out is safe.
    38: lambda o: np.abs(o.a),
    39: lambda o: o.a + o.b,
    40: lambda o: o.a - o.b,
    41: lambda o: o.a * o.b,  # Hadamard
    42: lambda o: o.a / o.b,
    43: lambda o: reductions.matmul(o.a, o.b, o.arith),  # matrix product
    44: lambda o: _std_min(o.a, o.b),
    45: lambda o: _std_min(o.a, o.b),
    46: lambda o: _loop_min(o.a, o.b),
    47: lambda o: _std_max(o.a, o.b),
    48: lambda o: _std_max(o.a, o.b),
    49: lambda o: _loop_max(o.a, o.b),
    50: lambda o: reductions.mean(o.a, _all_axes(o.a), o.arith),
    51: lambda o: reductions.mean(o.a, _all_axes(o.a), o.arith),
    52: lambda o: reductions.mean(o.a, (1,), o.arith),  # row means
    53: lambda o: reductions.std(o.a, (1,), o.arith),  # row stds
    54: lambda o: reductions.std(o.a, _all_axes(o.a), o.arith),
    55: lambda o: reductions.std(o.a, _all_axes(o.a), o.arith),
    56: lambda o: o.consts[0].astype(_dtype_of(o)),
    57: _vector_const_set,
    58: _matrix_const_set,
    59: _uniform_set,
    60: _uniform_set,
    61: _uniform_set,
    62: _gaussian_set,
    63: _gaussian_set,
    64: _gaussian_set,
}

assert sorted(OP_SEMANTICS) == [op.id for op in ops_lib.OPS], "OP_SEMANTICS must cover ops.OPS"


def _uniform_draws(seed, call, slot, shape, dtype) -> np.ndarray:
    """U(0,1) float32 draws (element e row-major), cast to the memory dtype."""
    key = rng.draw_key(seed, call, slot)
    elements = np.arange(math.prod(shape)).reshape(shape)
    return rng.uniform01(key, elements, dtype=np.float32).astype(dtype)


def flush_to_zero(x):
    """`x` with every subnormal entry replaced by a zero of its sign (what XLA:CPU's flush-to-zero
    and denormals-are-zero modes do to the inputs and results of arithmetic)."""
    x = np.asarray(x)
    tiny = np.finfo(x.dtype).tiny  # The smallest normal number.
    return np.where(np.abs(x) < tiny, np.copysign(x.dtype.type(0), x), x)


def execute_instruction(
    mem: Memory,
    ins: Instruction,
    *,
    seed=0,
    call: int = 0,
    slot: int = 0,
    flush_subnormals: bool = False,
):
    """Runs one instruction on `mem` in place. `seed`, `call`, `slot` key the random ops.

    `flush_subnormals`: reads every operand and constant, rounds the intermediate results of
    the sums over F and the uniform draws, and writes the result, with subnormal numbers flushed
    to zero, as the VM computes on CPU (see the module doc); False (the default) keeps them, as
    the original does.
    """
    op = int(ins.op)
    if not 0 <= op < ops_lib.NUM_OPS:
        raise ValueError(f"op = {op} is not an op id (0..{ops_lib.NUM_OPS - 1})")
    spec = ops_lib.OPS[op]
    values = {}
    for field, kind in (("in1", spec.in1), ("in2", spec.in2), ("out", spec.out)):
        if kind == Kind.NONE:
            values[field] = None
            continue
        bank, addr = mem.bank(kind), int(getattr(ins, field))
        if not 0 <= addr < bank.shape[0]:
            raise ValueError(
                f"{spec.name}: {field} = {addr} is outside the {bank.shape[0]} "
                f"{kind.name.lower()} addresses"
            )
        values[field] = np.array(bank[addr])  # A copy (0-d for scalars).
    given = np.asarray(ins.consts, np.float32).reshape(-1)
    if given.size > ops_lib.NUM_CONSTS:
        raise ValueError(f"{spec.name}: {given.size} consts, at most {ops_lib.NUM_CONSTS}")
    consts = np.zeros(ops_lib.NUM_CONSTS, np.float32)
    consts[: given.size] = given  # Missing trailing constants are 0.
    flush = _flush if flush_subnormals else lambda x: x
    in1, in2, out = (flush(values[f]) for f in ("in1", "in2", "out"))
    u = None
    if spec.is_random:
        u = _uniform_draws(seed, call, slot, out.shape, out.dtype)
    arith = _FLUSHED if flush_subnormals else reductions.NUMPY
    with np.errstate(all="ignore"):
        result = OP_SEMANTICS[op](Operands(in1, in2, out, flush(consts), u, arith))
        if spec.out != Kind.NONE:
            mem.bank(spec.out)[int(ins.out)] = flush(result)


def execute_component(
    mem: Memory, component: Component, *, seed=0, call: int = 0, flush_subnormals: bool = False
) -> None:
    """Runs slots 0..length-1 of an unbatched component on `mem` in place, as call `call`
    (`flush_subnormals`: see `execute_instruction`)."""
    code = np.asarray(component.code)
    consts = np.asarray(component.consts, np.float32)
    for slot in range(int(component.length)):
        op, in1, in2, out = (int(x) for x in code[slot])
        ins = Instruction(op, in1, in2, out, consts[slot])
        try:
            execute_instruction(
                mem, ins, seed=seed, call=call, slot=slot, flush_subnormals=flush_subnormals
            )
        except ValueError as e:
            raise ValueError(f"slot {slot}: {e}") from None


def check_program(program: Program, spec: ProgramSpec) -> None:
    """Raises ValueError naming the component, slot and field of the first malformed part."""
    for name in COMPONENTS:
        comp = getattr(program, name)
        code, consts = np.asarray(comp.code), np.asarray(comp.consts)
        if code.ndim != 2 or code.shape[1] != 4:
            raise ValueError(f"{name}: code must have shape [L, 4], got {code.shape}")
        if consts.shape != (code.shape[0], ops_lib.NUM_CONSTS):
            raise ValueError(
                f"{name}: consts must have shape {(code.shape[0], 3)}, got {consts.shape}"
            )
        length = int(np.asarray(comp.length))
        if not 0 <= length <= code.shape[0]:
            raise ValueError(f"{name}: length {length} is outside [0, {code.shape[0]}]")
        for slot in range(length):
            op = int(code[slot, 0])
            if not 0 <= op < ops_lib.NUM_OPS:
                raise ValueError(f"{name} slot {slot}: op = {op} is not an op id")
            op_spec = ops_lib.OPS[op]
            for f, field in enumerate(("in1", "in2", "out"), start=1):
                kind = getattr(op_spec, field)
                n = spec.bank_size(kind) if kind != Kind.NONE else 0
                if kind != Kind.NONE and not 0 <= int(code[slot, f]) < n:
                    raise ValueError(
                        f"{name} slot {slot} ({op_spec.name}): {field} = {int(code[slot, f])} is "
                        f"outside the {n} {kind.name.lower()} addresses of the spec"
                    )


def _flush(x):
    return None if x is None else flush_to_zero(x)


_FLUSHED = reductions.Arithmetic(np, flush_to_zero, flush_to_zero)


def _check_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


# ----------------------------------------------------------------------------------------------
# The evaluation protocol for one program on one task (docs/ops.md).


class SingleTask(NamedTuple):
    """One task, unbatched. The training stream is already in epoch order: N = epochs * epoch_size.

    x_train [N, F], y_train [N], x_valid [Ev, F], y_valid [Ev]; eval_type "rms" or "accuracy".
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    epoch_size: int
    eval_type: str = "rms"


class EvalResult(NamedTuple):
    """fitness in [0, 1]; train_errors: |y - s1| of every training Predict that passed the
    early-stopping check (the original does not record the failing one); valid_errors: per example
    of the FIRST validation pass, |y - s1| (rms) or the 0/1 error (accuracy), up to a validation
    early stop; stopped_early: training stopped early. Errors are in the memory dtype."""

    fitness: float
    train_errors: np.ndarray
    valid_errors: np.ndarray
    stopped_early: bool


_EVAL_TYPES = {"rms": "rms", "rms_error": "rms", "accuracy": "accuracy"}


def _eval_type(value) -> str:
    name = str(getattr(value, "name", value)).lower()  # Also accepts an enum member.
    if name not in _EVAL_TYPES:
        raise ValueError(f"task.eval_type must be 'rms' or 'accuracy', got {value!r}")
    return _EVAL_TYPES[name]


def _single_task(task, task_index, dtype) -> SingleTask:
    """Reads (and with `task_index`, slices out of a [T, ...] batch) a task, checking shapes."""

    def pick(x):
        if task_index is None or isinstance(x, str) or np.ndim(x) == 0:
            return x
        return np.asarray(x)[task_index]

    arrays = [np.asarray(pick(getattr(task, f)), dtype) for f in SingleTask._fields[:4]]
    x_train, y_train, x_valid, y_valid = arrays
    if x_train.ndim != 2 or x_valid.ndim != 2 or x_train.shape[1] != x_valid.shape[1]:
        raise ValueError(
            f"task: x_train [N, F] and x_valid [Ev, F] must share F, got {x_train.shape} and "
            f"{x_valid.shape} (pass task_index for a batched task set)"
        )
    if y_train.shape != x_train.shape[:1] or y_valid.shape != x_valid.shape[:1]:
        raise ValueError(f"task: labels {y_train.shape}, {y_valid.shape} do not match features")
    epoch_size = int(pick(task.epoch_size))
    if epoch_size < 1 and len(y_train) > 0:
        raise ValueError(f"task.epoch_size must be >= 1, got {epoch_size}")
    eval_type = _eval_type(pick(task.eval_type))
    return SingleTask(x_train, y_train, x_valid, y_valid, epoch_size, eval_type)


def flip_and_squash(rmse: float) -> float:
    """1 - (2/pi) atan(rmse), 0 for NaN or inf: the original's rms fitness (docs/ops.md)."""
    if not math.isfinite(rmse):
        return 0.0
    return 1.0 - (2.0 / math.pi) * math.atan(rmse)


def _sigmoid(x):
    with np.errstate(all="ignore"):
        return 1 / (1 + np.exp(-x))


def _set_inputs(mem: Memory, x: np.ndarray, label) -> None:
    mem.vectors[FEATURES_VECTOR] = x
    mem.scalars[LABEL_SCALAR] = label


def _validate(mem, program, task, num_steps, *, call, max_abs_error, **run) -> tuple[float, list]:
    """One validation pass (Predict only) from call number `call`; returns (fitness, errors).
    `run`: `execute_component`'s seed and flush_subnormals."""
    loss, errors = 0.0, []
    for j in range(num_steps):
        y = task.y_valid[j]
        _set_inputs(mem, task.x_valid[j], 0)
        execute_component(mem, program.predict, call=call + j, **run)
        s1 = mem.scalars[PREDICTION_SCALAR]
        if task.eval_type == "rms":
            e = y - s1
        else:
            p = _sigmoid(s1)  # Memory is not changed; NaN p counts as predicting class 0.
            wrong = (y > 0.5) != (p > 0.5)
            e = y.dtype.type(np.inf if (p > 1 or p < 0) else float(wrong))
        if np.isnan(abs(e)) or abs(e) > max_abs_error:
            return 0.0, errors  # Validation early stop: this pass scores 0.
        # Accumulated in float64. e * e, not e ** 2: Python's power raises OverflowError past
        # 1e308, where the original's double sum becomes inf (and the fitness 0).
        loss += float(e) * float(e) if task.eval_type == "rms" else float(e)
        errors.append(abs(e))
    loss /= len(task.y_valid)  # The FULL valid count, even when fewer steps ran (as the original).
    if task.eval_type == "rms":
        return flip_and_squash(math.sqrt(loss)), errors
    return 1.0 - loss, errors


def evaluate(
    program: Program,
    task,
    *,
    spec: ProgramSpec,
    num_train_examples: int | None = None,
    seed=0,
    max_abs_error: float = 100.0,
    dtype=np.float32,
    num_valid_examples: int | None = None,
    task_index: int | None = None,
    flush_subnormals: bool = False,
) -> EvalResult:
    """Trains and validates one program on one task, as the original's Executor (docs/ops.md).

    Memory starts at zero and Setup runs once (call 0). The first `num_train_examples` (default
    all N) of the training stream run in chunks of `task.epoch_size`: per example s0 = 0, v0 = x,
    Predict; for accuracy s1 = sigmoid(s1); stop early if |y - s1| is NaN or > max_abs_error;
    v0 = x, s0 = y, Learn. An early stop in the first chunk gives fitness 0, in a later one the
    best so far. After each complete chunk, a validation pass over the first `num_valid_examples`
    (default all) examples; fitness is the best pass (starting at 0). N = 0 gives 0.

    Call numbers for the random ops follow protocol position: Setup 0, training example k of the
    stream Predict then Learn, and each validation pass reserves one number per example, also
    when it stops early (so a number depends only on position, as in a fixed-shape VM).

    Args:
      program: an unbatched `Program` (code [L, 4] per component).
      task: unbatched (x_train [N, F], y_train [N], x_valid [Ev, F], y_valid [Ev], epoch_size,
        eval_type), e.g. a `SingleTask`; or a [T, ...] batch with `task_index`.
      spec: the program space (address counts).
      seed: the lane seed of the random ops.
      dtype: memory dtype, float32 (default) or float64.
      flush_subnormals: compute as the VM does on CPU, subnormal numbers flushed to zero (see
        `execute_instruction`); False (the default) keeps them, as the original does.
    """
    dtype = _check_dtype(dtype)
    check_program(program, spec)
    task = _single_task(task, task_index, dtype)
    n_total = len(task.y_train)
    if num_train_examples is not None:
        n_total = max(0, min(int(num_train_examples), n_total))
    n_valid = len(task.y_valid)
    if num_valid_examples is not None:
        n_valid = max(0, min(int(num_valid_examples), n_valid))

    mem = Memory.zeros(spec, task.x_train.shape[1], dtype)
    run = dict(seed=seed, flush_subnormals=flush_subnormals)
    execute_component(mem, program.setup, call=0, **run)
    call, best, start = 1, 0.0, 0
    train_errors, valid_errors = [], None
    while start < n_total:
        end = min(start + task.epoch_size, n_total)
        for k in range(start, end):
            x, y = task.x_train[k], task.y_train[k]
            _set_inputs(mem, x, 0)
            execute_component(mem, program.predict, call=call, **run)
            if task.eval_type == "accuracy":
                mem.scalars[PREDICTION_SCALAR] = _sigmoid(mem.scalars[PREDICTION_SCALAR])
            err = abs(y - mem.scalars[PREDICTION_SCALAR])
            if np.isnan(err) or err > max_abs_error:
                # In the first chunk `best` is still 0: fitness 0; later, the best so far.
                return _result(best, train_errors, valid_errors, True, dtype)
            train_errors.append(err)
            _set_inputs(mem, x, y)
            execute_component(mem, program.learn, call=call + 1, **run)
            call += 2
        fitness, errors = _validate(
            mem, program, task, n_valid, call=call, max_abs_error=max_abs_error, **run
        )
        call += n_valid
        valid_errors = errors if valid_errors is None else valid_errors
        best = max(best, fitness)
        start = end
    return _result(best, train_errors, valid_errors, False, dtype)


def _result(fitness, train_errors, valid_errors, stopped_early, dtype) -> EvalResult:
    return EvalResult(
        fitness=float(fitness),
        train_errors=np.asarray(train_errors, dtype),
        valid_errors=np.asarray(valid_errors or [], dtype),
        stopped_early=bool(stopped_early),
    )


def fec_errors(
    program: Program,
    task,
    *,
    spec: ProgramSpec,
    num_train: int = 10,
    num_valid: int = 10,
    seed=0,
    max_abs_error: float = 100.0,
    dtype=np.float32,
    task_index: int | None = None,
    flush_subnormals: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The FEC fingerprint inputs (docs/ops.md): (train_errors, valid_errors) of a run on
    the first `num_train` training and `num_valid` validation examples, first epoch only."""
    result = evaluate(
        program,
        task,
        spec=spec,
        num_train_examples=num_train,
        num_valid_examples=num_valid,
        seed=seed,
        max_abs_error=max_abs_error,
        dtype=dtype,
        task_index=task_index,
        flush_subnormals=flush_subnormals,
    )
    epoch = _single_task(task, task_index, dtype).epoch_size
    return result.train_errors[: min(num_train, epoch)], result.valid_errors
