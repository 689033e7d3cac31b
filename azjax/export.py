"""Use what evolution finds: an evolved program as plain NumPy source or as pure JAX functions.

`to_python` writes readable, self-contained NumPy source (`setup`, `predict`, `learn` over a
memory dict, plus `new_memory`, `fit` and `predict_batch`); `to_jax` returns pure, jittable,
vmappable `init` / `fit` / `predict` functions. Both run the program's live code only
(`azjax.pruning`) and follow the evaluation protocol: memory starts at zero and Setup runs once;
training runs, per example, v0 = x, s0 = 0, Predict, sigmoid(s1) for classification, then
s0 = y, v0 = x, Learn; prediction runs Predict alone per example with memory carried over, as
validation does.

Numerics. `to_python` computes each op with the same NumPy calls as the reference interpreter
(`azjax.reference`), in float32. `to_jax` computes each op with the VM's own kernels
(`azjax.kernels`), so it matches the VM. The random-init ops of both draw from the VM's counter
hash (`azjax.rng`), keyed by a uint32 seed, the call number (Setup is call 0, then every Predict
and Learn run takes the next one, as in the VM) and the instruction's slot, so with the same seed
they draw the VM's numbers. Gaussians use `rng.erfinv` (Giles' polynomial, the VM's), where the
reference interpreter calls scipy's erfinv: the two agree within a few ulp.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from azjax import kernels, program_io, pruning, rng
from azjax import ops as ops_lib
from azjax.program import (
    COMPONENTS,
    FEATURES_VECTOR,
    LABEL_SCALAR,
    PREDICTION_SCALAR,
    Instruction,
    Program,
    ProgramSpec,
    instructions,
)

Kind = ops_lib.Kind
EVAL_TYPES = ("rms", "accuracy")

# Memory names of the reserved addresses; every other address keeps its paper name (s2, v1, m0).
_RESERVED = {
    (Kind.SCALAR, LABEL_SCALAR): "label",
    (Kind.SCALAR, PREDICTION_SCALAR): "prediction",
    (Kind.VECTOR, FEATURES_VECTOR): "features",
}
_INPUTS = ("label", "features")  # Set by the protocol before each Predict and Learn.


def _live_code(program: Program, spec: ProgramSpec, eval_type: str):
    """{component: [(slot, Instruction)]} of the program's live, non-NO_OP instructions."""
    if eval_type not in EVAL_TYPES:
        raise ValueError(f"eval_type must be one of {EVAL_TYPES}, got {eval_type!r}")
    program_io.validate(program, spec, batched=False)
    live = pruning.prune(program, spec)
    return {
        c: [(slot, ins) for slot, ins in enumerate(instructions(getattr(live, c))) if ins.op]
        for c in COMPONENTS
    }


# ------------------------------------------------------------------------------------------------
# NumPy source.

# Right-hand sides (or whole statements, for the partial writes) in NumPy, op by op: the
# reference interpreter's semantics. {a}, {b}, {o}: operand names; {c0}..{c2}: float32 literals;
# {slot}: the instruction's slot; n: the feature size.
_NUMPY: dict[int, str] = {
    1: "{a} + {b}",
    2: "{a} - {b}",
    3: "{a} * {b}",
    4: "{a} / {b}",
    5: "np.abs({a})",
    6: "1 / {a}",
    7: "np.sin({a})",
    8: "np.cos({a})",
    9: "np.tan({a})",
    10: "np.arcsin({a})",
    11: "np.arccos({a})",
    12: "np.arctan({a})",
    13: "np.exp({a})",
    14: "np.log({a})",
    15: "np.float32({a} >= 0)",
    16: "np.float32({a} > 0)",
    17: "np.float32({a} > 0)",
    18: "{a} * {b}",
    19: "np.full(n, {a}, np.float32)",
    20: "1 / {a}",
    21: "np.sqrt(np.sum({a} * {a}))",
    22: "np.abs({a})",
    23: "{a} + {b}",
    24: "{a} - {b}",
    25: "{a} * {b}",
    26: "{a} / {b}",
    27: "np.dot({a}, {b})",
    28: "np.outer({a}, {b})",
    29: "{a} * {b}",
    30: "1 / {a}",
    31: "{a} @ {b}",
    32: "np.repeat({a}[:, None], n, axis=1)",
    33: "np.repeat({a}[None, :], n, axis=0)",
    34: "np.sqrt(np.sum({a} * {a}))",
    35: "np.sqrt(np.sum({a} * {a}, axis=0))",
    36: "np.sqrt(np.sum({a} * {a}, axis=1))",
    37: "{a}.T.copy()",
    38: "np.abs({a})",
    39: "{a} + {b}",
    40: "{a} - {b}",
    41: "{a} * {b}",
    42: "{a} / {b}",
    43: "{a} @ {b}",
    44: "{b} if {b} < {a} else {a}",  # std::min: a on NaN or equality.
    45: "np.where({b} < {a}, {b}, {a})",
    46: "np.where({a} < {b}, {a}, {b})",
    47: "{b} if {a} < {b} else {a}",  # std::max: a on NaN or equality.
    48: "np.where({a} < {b}, {b}, {a})",
    49: "np.where({a} > {b}, {a}, {b})",
    50: "np.mean({a})",
    51: "np.mean({a})",
    52: "np.mean({a}, axis=1)",
    53: "np.sqrt(np.mean({a} * {a}, axis=1) - np.mean({a}, axis=1) ** 2)",
    54: "np.sqrt(np.mean({a} * {a}) - np.mean({a}) ** 2)",
    55: "np.sqrt(np.mean({a} * {a}) - np.mean({a}) ** 2)",
    56: "{c0}",
    57: "{o}[index({c0}, n)] = {c1}",
    58: "{o}[index({c0}, n), index({c1}, n)] = {c2}",
    59: "uniform_set({c0}, {c1}, (), memory, call, {slot})",
    60: "uniform_set({c0}, {c1}, (n,), memory, call, {slot})",
    61: "uniform_set({c0}, {c1}, (n, n), memory, call, {slot})",
    62: "gaussian_set({c0}, {c1}, (), memory, call, {slot})",
    63: "gaussian_set({c0}, {c1}, (n,), memory, call, {slot})",
    64: "gaussian_set({c0}, {c1}, (n, n), memory, call, {slot})",
}
assert set(_NUMPY) == set(ops_lib.ALL_OPS) - {ops_lib.NO_OP}, "every op but NO_OP needs NumPy"

_USES_N = frozenset({19, 32, 33, 57, 58, 60, 61, 63, 64})
_PARTIAL = kernels.PARTIAL_WRITE_OPS

_INDEX_SOURCE = '''
def index(fraction, n):
    """Entry int(n * fraction) of an index constant, computed in float32."""
    return min(max(int(np.float32(n) * np.float32(fraction)), 0), n - 1)
'''

_RANDOM_SOURCE = '''
def draws(memory, call, slot, shape):
    """U(0, 1) draws of the instruction in `slot` in call number `call`."""
    key = draw_key(memory["seed"], call, slot)
    return uniform01(key, np.arange(int(np.prod(shape))).reshape(shape))


def uniform_set(low, high, shape, memory, call, slot):
    return to_uniform(draws(memory, call, slot, shape), low, high)


def gaussian_set(mean, stdev, shape, memory, call, slot):
    return mean + stdev * standard_normal(draws(memory, call, slot, shape), erfinv)
'''


def _name(kind: Kind, address: int) -> str:
    return _RESERVED.get((kind, address), f"{kind.letter}{address}")


def _float32(x: float) -> str:
    """A float32 constant as source: np.float32(0.07744325)."""
    return f"np.float32({str(np.float32(x))})"


def _roles(ins: Instruction):
    """(reads, written name) of one instruction, by memory name."""
    op = ops_lib.OPS[ins.op]
    reads = [_name(k, a) for k, a in ((op.in1, ins.in1), (op.in2, ins.in2)) if k != Kind.NONE]
    written = _name(op.out, ins.out)
    if ins.op in _PARTIAL:
        reads.append(written)
    return reads, written


def _numpy_line(slot: int, ins: Instruction) -> str:
    op = ops_lib.OPS[ins.op]
    names = {
        "a": _name(op.in1, ins.in1),
        "b": _name(op.in2, ins.in2),
        "o": _name(op.out, ins.out),
        "slot": slot,
        **{f"c{j}": _float32(c) for j, c in enumerate(ins.consts)},
    }
    code = _NUMPY[ins.op].format(**names)
    if ins.op not in _PARTIAL:
        code = f"{names['o']} = {code}"
    return f"{code}  # {program_io.format_instruction(ins)}"


_SIGNATURES = {"setup": "memory", "predict": "memory, x", "learn": "memory, x, y"}
_DOCS = {
    "setup": "Setup: runs once, on the zeroed memory.",
    "predict": "Predict on one example x [n]; returns the prediction (s1).",
    "learn": "Learn from one example x [n] with label y, after its Predict.",
}


def _function(component: str, code, *, random: bool) -> list[str]:
    """The source lines of one component function."""
    loads, written = [], []
    for _, ins in code:
        reads, out = _roles(ins)
        for name in reads:
            if name not in written and name not in loads:
                loads.append(name)
        if out not in written:
            written.append(out)
    need_n = "features" in loads and component == "setup"
    need_n |= any(ins.op in _USES_N for _, ins in code)
    body = [f'"""{_DOCS[component]}"""']
    if need_n:
        body.append('n = memory["n_features"]')
    if random:
        body += ['call = memory["call"]', 'memory["call"] = call + 1']
    inputs = {
        "setup": ("np.float32(0)", "np.zeros(n, np.float32)"),
        "predict": ("np.float32(0)", "np.asarray(x, np.float32)"),
        "learn": ("np.float32(y)", "np.asarray(x, np.float32)"),
    }[component]
    for name, value in zip(_INPUTS, inputs, strict=True):
        if name in loads:
            body.append(f"{name} = {value}")
    body += [f'{name} = memory["{name}"]' for name in loads if name not in _INPUTS]
    body += [_numpy_line(slot, ins) for slot, ins in code]
    if written:
        body.append("memory.update(" + ", ".join(f"{k}={k}" for k in written) + ")")
    if component == "predict":
        body.append('return memory["prediction"]')
    lines = ['@np.errstate(all="ignore")', f"def {component}({_SIGNATURES[component]}):"]
    return lines + ["    " + line for line in body]


_ZEROS = {
    Kind.SCALAR: "np.float32(0)",
    Kind.VECTOR: "np.zeros(n, np.float32)",
    Kind.MATRIX: "np.zeros((n, n), np.float32)",
}


def _memory_entries(live: dict) -> list[str]:
    """new_memory's lines: every address the live code uses but the inputs (s1 always), in
    bank and address order, zeroed."""
    used = {(Kind.SCALAR, PREDICTION_SCALAR)}
    for code in live.values():
        for _, ins in code:
            op = ops_lib.OPS[ins.op]
            for kind, address in ((op.in1, ins.in1), (op.in2, ins.in2), (op.out, ins.out)):
                if kind != Kind.NONE:
                    used.add((kind, address))
    entries = [(_name(k, a), k) for k, a in sorted(used)]
    return [f'memory["{name}"] = {_ZEROS[k]}' for name, k in entries if name not in _INPUTS]


def _rng_source() -> str:
    """`azjax.rng`'s source without its docstrings and imports: standalone NumPy code."""
    source = inspect.getsource(rng)
    drop = set()
    tree = ast.parse(source)
    for node in [tree, *tree.body]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            drop.update(range(node.lineno, node.end_lineno + 1))
        if isinstance(node, ast.Module | ast.FunctionDef) and ast.get_docstring(node) is not None:
            doc = node.body[0]
            drop.update(range(doc.lineno, doc.end_lineno + 1))
    lines = [line for i, line in enumerate(source.splitlines(), start=1) if i not in drop]
    return "\n".join(lines).strip("\n")


def to_python(program: Program, spec: ProgramSpec, *, eval_type: str = "rms") -> str:
    """Readable, self-contained NumPy source of one program's live code.

    The source defines `new_memory(n_features, seed=0)` (the zeroed memory: a dict of float32
    scalars and arrays named label / prediction / features for s0 / s1 / v0 and s2, v1, m0, ...
    for the rest), `setup(memory)`, `predict(memory, x)` and `learn(memory, x, y)` (the three
    components, each line commented with its paper notation), `fit(memory, X, y, epochs=1)` (the
    training protocol) and `predict_batch(memory, X)` (Predict per example, as validation).
    It imports only NumPy and runs under `exec`. `seed` keys the random-init ops.

    Args:
      program: one unbatched program of `spec`.
      spec: its program space.
      eval_type: "rms" (regression) or "accuracy" (binary classification: training applies
        sigmoid to s1 before Learn, and `predict_batch` returns probabilities sigmoid(s1)).

    Returns:
      The source text.
    """
    live = _live_code(program, spec, eval_type)
    random = any(ops_lib.OPS[ins.op].is_random for code in live.values() for _, ins in code)
    classify = eval_type == "accuracy"
    text = program_io.format_program(program).rstrip("\n").replace("\n", "\n    ")
    out = [
        f'"""An algorithm evolved by azjax (AutoML-Zero), as plain NumPy.\n\n    {text}\n',
        "Use: memory = new_memory(n_features); setup(memory); fit(memory, X_train, y_train);",
        "predict_batch(memory, X). Memory persists between calls, as in the original. Ops give",
        "raw IEEE results (inf, NaN), as the original; the functions silence NumPy's warnings.",
        '"""',
        "",
        "import numpy as np",
        "",
        "",
        "def new_memory(n_features, seed=0):",
        '    """The zeroed memory."""',
        "    n = n_features",
        '    memory = {"n_features": n}',
    ]
    out += ["    " + line for line in _memory_entries(live)]
    if random:
        out += ['    memory["seed"] = np.uint32(seed)', '    memory["call"] = 0']
    out.append("    return memory")
    for c in COMPONENTS:
        out += ["", ""] + _function(c, live[c], random=random)
    sigmoid = 'sigmoid(memory["prediction"])'
    predictions = "sigmoid(np.array(s1, np.float32))" if classify else "np.array(s1, np.float32)"
    out += [
        "",
        "",
        "def fit(memory, X, y, epochs=1):",
        '    """Trains on the examples in order: per example Predict, then Learn."""',
        "    for _ in range(epochs):",
        "        for x_i, y_i in zip(X, y):",
        "            predict(memory, x_i)",
        *([f'            memory["prediction"] = {sigmoid}'] if classify else []),
        "            learn(memory, x_i, y_i)",
        "    return memory",
        "",
        "",
        "def predict_batch(memory, X):",
        f'    """{"Probabilities" if classify else "Predictions"} for the examples in order '
        '(memory carries over)."""',
        "    s1 = [predict(memory, x_i) for x_i in X]",
        f"    return {predictions}",
    ]
    if classify:
        out += [
            "",
            "",
            '@np.errstate(all="ignore")',
            "def sigmoid(x):",
            "    return 1 / (1 + np.exp(-x))",
        ]
    if any(ins.op in (57, 58) for code in live.values() for _, ins in code):
        out += ["", "", _INDEX_SOURCE.strip("\n")]
    if random:
        out += ["", "", "# The VM's counter-hash random numbers.", _rng_source(), "", ""]
        out += [_RANDOM_SOURCE.strip("\n")]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------------
# JAX functions.


class State(NamedTuple):
    """The memory of one trained algorithm, and what keys its random draws.

    scalars [S], vectors [V, F], matrices [M, F, F] (float32; s0 label, s1 prediction, v0
    features); seed: uint32 []; call: int32 [], the next call number.
    """

    scalars: jax.Array
    vectors: jax.Array
    matrices: jax.Array
    seed: jax.Array
    call: jax.Array


class JaxAlgorithm(NamedTuple):
    """Pure functions of one program (see `to_jax`)."""

    init: Callable[[jax.Array], State]
    fit: Callable[..., State]
    predict: Callable[[State, jax.Array], jax.Array]


def _run(code, state: State, call, feature_size: int) -> State:
    """Runs one component's live instructions, each through its VM kernel."""
    banks = [list(state.scalars), list(state.vectors), list(state.matrices)]
    for slot, ins in code:
        op = ops_lib.OPS[ins.op]
        operands = {Kind.SCALAR: {}, Kind.VECTOR: {}, Kind.MATRIX: {}}
        for role, kind, address in (("a", op.in1, ins.in1), ("b", op.in2, ins.in2)):
            if kind != Kind.NONE:
                operands[kind][role] = banks[kind - 1][address]
        if ins.op in _PARTIAL:
            operands[op.out]["o"] = banks[op.out - 1][ins.out]
        o = kernels.Operands(
            feature_size=feature_size,
            s=operands[Kind.SCALAR],
            v=operands[Kind.VECTOR],
            m=operands[Kind.MATRIX],
            c=tuple(jnp.asarray(c, jnp.float32) for c in ins.consts),
            key=rng.draw_key(state.seed, call, slot, xp=jnp) if op.is_random else None,
            dtype=jnp.float32,
            ops=ins.op,
        )
        banks[op.out - 1][ins.out] = kernels.KERNELS[ins.op](o).astype(jnp.float32)
    scalars, vectors, matrices = (jnp.stack(bank) for bank in banks)
    return state._replace(scalars=scalars, vectors=vectors, matrices=matrices)


def _with_inputs(state: State, label, x) -> State:
    return state._replace(
        scalars=state.scalars.at[LABEL_SCALAR].set(label),
        vectors=state.vectors.at[FEATURES_VECTOR].set(x),
    )


def to_jax(
    program: Program, spec: ProgramSpec, *, feature_size: int, eval_type: str = "rms"
) -> JaxAlgorithm:
    """Pure JAX functions running one program's live code with the VM's kernels.

    Returns `JaxAlgorithm(init, fit, predict)`; each is jittable and vmappable (e.g. over
    datasets: `jax.vmap(fit)(jax.vmap(init)(keys), Xs, ys)`):
      init(key) -> State: zeroed memory, then Setup. The key (consumed) gives the uint32 seed of
        the random-init ops (`State.seed`; with it the VM draws the same numbers).
      fit(state, X [E, F], y [E], epochs=1) -> State: `epochs` passes of the training protocol
        over the examples in order, a `lax.scan` (per example v0 = x, s0 = 0, Predict, sigmoid
        of s1 for classification, s0 = y, v0 = x, Learn). Like the VM's memory, it does not stop
        early when an error is NaN or exceeds 100.
      predict(state, X [E, F]) -> [E]: Predict per example with memory carried over, as in
        validation: s1, or sigmoid(s1) for classification. The state is not advanced.

    Args:
      program: one unbatched program of `spec`.
      spec: its program space.
      feature_size: F.
      eval_type: "rms" or "accuracy".
    """
    live = _live_code(program, spec, eval_type)
    F, classify = int(feature_size), eval_type == "accuracy"
    if F < 1:
        raise ValueError(f"feature_size must be >= 1, got {feature_size}")

    def predict_step(state: State, x):
        state = _with_inputs(state, jnp.float32(0), x)
        state = _run(live["predict"], state, state.call, F)
        return state._replace(call=state.call + 1), state.scalars[PREDICTION_SCALAR]

    def init(key) -> State:
        state = State(
            scalars=jnp.zeros((spec.num_scalars,), jnp.float32),
            vectors=jnp.zeros((spec.num_vectors, F), jnp.float32),
            matrices=jnp.zeros((spec.num_matrices, F, F), jnp.float32),
            seed=jax.random.bits(key, (), jnp.uint32),
            call=jnp.int32(0),
        )
        return _run(live["setup"], state, state.call, F)._replace(call=jnp.int32(1))

    def train_step(state: State, example):
        x, y = example
        state, s1 = predict_step(state, x)
        if classify:
            sigmoid = jax.nn.sigmoid(s1)
            state = state._replace(scalars=state.scalars.at[PREDICTION_SCALAR].set(sigmoid))
        state = _run(live["learn"], _with_inputs(state, y, x), state.call, F)
        return state._replace(call=state.call + 1), None

    def fit(state: State, X, y, epochs: int = 1) -> State:
        examples = (jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.float32))
        one_epoch = lambda _, s: jax.lax.scan(train_step, s, examples)[0]  # noqa: E731
        return jax.lax.fori_loop(0, epochs, one_epoch, state)

    def predict(state: State, X) -> jax.Array:
        _, s1 = jax.lax.scan(predict_step, state, jnp.asarray(X, jnp.float32))
        return jax.nn.sigmoid(s1) if classify else s1

    return JaxAlgorithm(init, fit, predict)
