"""Exported programs (`azjax.export`) against the reference interpreter and the VM.

`to_python`'s NumPy source computes what the reference interpreter computes, `to_jax`'s functions
what the VM computes: every op on its own, then whole programs (the demo's linear-regression
winner, the hand-written LINEAR and NEURAL_NET algorithms) trained on a fresh task and asked for
predictions on its validation examples, for regression and for classification.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import evaluation, export, generator, ops, pruning, reference, tasks, vm
from azjax.program import ComponentSpec, Instruction, ProgramSpec, make_program, stack
from azjax.program_io import parse_program

F = 4
PREDICTION_TOL = dict(rtol=1e-6, atol=1e-7)  # float32, relative to the predictions' scale.

# The demo's typical winner: linear regression trained by gradient descent.
WINNER = """\
def Setup():
  s3 = s2 - s2
  v1 = v2 + v0
def Predict():
  s1 = dot(v1, v0)
def Learn():
  v2 = s3 * v0
  s3 = s0 - s1
  v2 = s3 * v2
  v1 = v1 + v2
  s3 = 0.07744325
"""
NN_SPEC = ProgramSpec(
    num_scalars=5,
    num_vectors=9,
    num_matrices=2,
    setup=ComponentSpec(3),
    predict=ComponentSpec(5),
    learn=ComponentSpec(11),
)
NN_SPEC = generator.add_required_ops(NN_SPEC, generator.neural_net_algorithm(NN_SPEC, (3, 5, 11)))


def exec_python(program, spec, eval_type="rms"):
    namespace = {}
    exec(export.to_python(program, spec, eval_type=eval_type), namespace)  # noqa: S102
    return namespace


# ------------------------------------------------------------------------------------------------
# The training and prediction protocol, run component by component by the reference or the VM.


def _reference_run(spec, program, component, memory, seed, call):
    mem = reference.Memory(*(np.array(x, np.float32) for x in memory))
    reference.execute_component(mem, getattr(program, component), seed=seed, call=call)
    return mem.scalars, mem.vectors, mem.matrices


@functools.partial(jax.jit, static_argnums=(0, 2))
def _vm_run(spec, program, component, memory, seed, call):
    comp = getattr(program, component)
    return vm.execute_component_single(spec, component, comp, *memory, seed, call)


def protocol_predictions(run, spec, program, task, seed, classify):
    """s1 (sigmoid(s1) for classification) after each validation Predict, having trained on
    every training example, with `run(spec, program, component, memory, seed, call)`."""
    memory = (
        np.zeros(spec.num_scalars, np.float32),
        np.zeros((spec.num_vectors, F), np.float32),
        np.zeros((spec.num_matrices, F, F), np.float32),
    )

    def call_with(component, memory, label, x, call):
        s, v, m = (np.array(a) for a in memory)
        s[0], v[0] = label, x
        return tuple(np.array(a) for a in run(spec, program, component, (s, v, m), seed, call))

    memory = tuple(np.array(a) for a in run(spec, program, "setup", memory, seed, 0))
    call = 1
    for x, y in zip(task.x_train, task.y_train, strict=True):
        memory = call_with("predict", memory, 0, x, call)
        if classify:
            memory[0][1] = _sigmoid(memory[0][1])
        memory = call_with("learn", memory, y, x, call + 1)
        call += 2
    predictions = []
    for x in task.x_valid:
        memory = call_with("predict", memory, 0, x, call)
        predictions.append(memory[0][1])
        call += 1
    s1 = np.asarray(predictions, np.float32)
    return _sigmoid(s1) if classify else s1


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


@functools.cache
def fresh_task(kind, digits_dir=None):
    """One task never seen in search: 100 train, 50 valid examples (or 100 / 20 digits)."""
    extra = dict(param_seeds=(4242,), data_seeds=(2424,))
    if kind == "projected_binary":
        extra = dict(
            dataset_dir=digits_dir,
            dataset_name="digits",
            positive_class=0,
            negative_class=1,
            eval_type="accuracy",
            max_supported_data_seed=2,
        )
    spec = tasks.TaskSpec(
        kind=kind,
        num_train_examples=100,
        num_valid_examples=50 if kind != "projected_binary" else 20,
        feature_size=F,
        **extra,
    )
    taskset, info = tasks.make_tasks(spec)
    return taskset, info, tasks.single_task(taskset, info, 0)


def check_exports(program, spec, kind, digits_dir=None):
    """Trains the exported program on a fresh task and compares its validation predictions with
    the reference's and the VM's; returns the predictions."""
    taskset, info, task = fresh_task(kind, digits_dir)
    classify = info.eval_type == "accuracy"
    algorithm = export.to_jax(program, spec, feature_size=F, eval_type=info.eval_type)
    init, fit, predict = (jax.jit(f) for f in algorithm)
    state = init(jax.random.key(7))
    seed = int(state.seed)
    got_jax = np.asarray(predict(fit(state, task.x_train, task.y_train), task.x_valid))
    namespace = exec_python(program, spec, info.eval_type)
    memory = namespace["new_memory"](F, seed)
    namespace["setup"](memory)
    namespace["fit"](memory, task.x_train, task.y_train)
    got_python = namespace["predict_batch"](memory, task.x_valid)

    want_ref = protocol_predictions(_reference_run, spec, program, task, seed, classify)
    want_vm = protocol_predictions(_vm_run, spec, program, task, jnp.uint32(seed), classify)
    scale = np.abs(want_ref).max()
    tol = dict(rtol=PREDICTION_TOL["rtol"], atol=PREDICTION_TOL["atol"] * max(scale, 1))
    np.testing.assert_allclose(got_python, want_ref, **tol)
    np.testing.assert_allclose(got_jax, want_vm, **tol)
    np.testing.assert_allclose(got_jax, want_ref, **tol)

    # The VM's evaluation of the same lane: its fitness is the exported predictions' score.
    lanes = evaluation.evaluate_lanes(
        stack([program]),
        taskset,
        np.full((1, 1), seed, np.uint32),
        spec=spec,
        eval_type=info.eval_type,
        epoch_size=info.epoch_size,
        record=True,
    )
    y = task.y_valid
    if classify:
        fitness = np.mean((y > 0.5) == (got_jax > 0.5))
        np.testing.assert_array_equal(lanes.valid_errors[0, 0], (y > 0.5) != (got_jax > 0.5))
    else:
        fitness = evaluation.flip_and_squash(np.sqrt(np.mean((y - got_jax) ** 2)))
        np.testing.assert_allclose(lanes.valid_errors[0, 0], np.abs(y - got_jax), **tol)
    np.testing.assert_allclose(lanes.fitness[0, 0], fitness, rtol=1e-6)
    return got_jax


# ------------------------------------------------------------------------------------------------
# Whole programs.


@pytest.mark.parametrize("name", ["winner", "linear"])
def test_linear_regression_by_gd_exports(name):
    if name == "winner":
        spec, program = ProgramSpec(), parse_program(WINNER, ProgramSpec())
    else:
        spec = ProgramSpec()
        program = generator.linear_algorithm(spec, (10, 2, 8), learning_rate=0.05)
    predictions = check_exports(program, spec, "linear")
    y = fresh_task("linear")[2].y_valid
    assert np.sqrt(np.mean((predictions - y) ** 2)) < 0.1 * np.std(y)  # It learned the task.


@pytest.mark.slow
def test_neural_net_regression_exports():
    program = generator.neural_net_algorithm(NN_SPEC, (3, 5, 11))
    check_exports(program, NN_SPEC, "teacher")


def test_neural_net_classification_exports(digits_dir):
    program = generator.neural_net_algorithm(NN_SPEC, (3, 5, 11), learning_rate=0.1)
    probabilities = check_exports(program, NN_SPEC, "projected_binary", digits_dir)
    assert ((probabilities > 0) & (probabilities < 1)).all()


def test_python_source_is_readable_and_self_contained():
    source = export.to_python(parse_program(WINNER, ProgramSpec()), ProgramSpec())
    code = [line.strip() for line in source.splitlines()]
    assert [line for line in code if "import" in line] == ["import numpy as np"]
    assert "prediction = np.dot(v1, features)  # s1 = dot(v1, v0)" in code
    assert "s3 = label - prediction  # s3 = s0 - s1" in code
    assert "s3 = np.float32(0.07744325)  # s3 = 0.07744325" in code
    assert "azjax." not in source.split('"""', 2)[2]
    # Dead code is gone: one commented line per live instruction.
    dead = make_program(
        ProgramSpec(),
        setup=[Instruction(56, out=2, consts=(0.5,)), Instruction(0)],
        predict=[Instruction(27, 0, 0, 1)],
        learn=[Instruction(3, 2, 2, 3)],  # s3 = s2 * s2: never read.
    )
    lines = [line for line in export.to_python(dead, ProgramSpec()).splitlines() if "  # " in line]
    assert [line.split("  # ")[1] for line in lines] == ["s1 = dot(v0, v0)"]


def test_jax_functions_vmap_over_datasets_and_epochs_compose():
    spec, program = ProgramSpec(), parse_program(WINNER, ProgramSpec())
    init, fit, predict = export.to_jax(program, spec, feature_size=F)
    taskset, _, _ = fresh_task("linear")
    X, y = taskset.x_train[0], taskset.y_train[0]
    Xs, ys = jnp.stack([X, -X, 2 * X]), jnp.stack([y, y, -y])
    states = jax.vmap(init)(jax.random.split(jax.random.key(0), 3))
    batched = jax.jit(jax.vmap(predict))(jax.jit(jax.vmap(fit))(states, Xs, ys), Xs)
    fit, predict = jax.jit(fit, static_argnames="epochs"), jax.jit(predict)
    for i in range(3):
        state = jax.tree.map(lambda a, i=i: a[i], states)
        one = predict(fit(state, Xs[i], ys[i]), Xs[i])  # Compiled apart: FMAs may differ.
        np.testing.assert_allclose(batched[i], one, rtol=1e-6, atol=1e-6 * np.abs(one).max())
    state = init(jax.random.key(1))
    twice = fit(state, X, y, epochs=2)
    jax.tree.map(np.testing.assert_array_equal, twice, fit(fit(state, X, y), X, y))
    assert int(twice.call) == 1 + 4 * len(y)


def test_export_rejects_bad_arguments():
    program = parse_program(WINNER, ProgramSpec())
    with pytest.raises(ValueError, match="eval_type"):
        export.to_python(program, ProgramSpec(), eval_type="mse")
    with pytest.raises(ValueError, match="feature_size"):
        export.to_jax(program, ProgramSpec(), feature_size=0)
    with pytest.raises(ValueError, match="scalar"):
        export.to_jax(program, ProgramSpec(num_scalars=3), feature_size=F)  # s3 is out of range.


# ------------------------------------------------------------------------------------------------
# Every op on its own, as Learn's one instruction, on random memories.

OPS_SPEC = ProgramSpec(
    num_scalars=4,
    num_vectors=4,
    num_matrices=3,
    setup=ComponentSpec(1, ops.ALL_OPS),
    predict=ComponentSpec(1, ops.ALL_OPS),
    learn=ComponentSpec(1, ops.ALL_OPS),
)
_NUM_CONSTS = {ops.Data.NONE: 0, ops.Data.CONST_SCALAR: 1, ops.Data.CONST_VECTOR: 2}
_NUM_CONSTS |= {ops.Data.CONST_MATRIX: 3, ops.Data.UNIFORM: 2, ops.Data.GAUSSIAN: 2}
_SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0], np.float32)


def _op_instruction(op: ops.OpSpec, r) -> Instruction:
    """`op` with random addresses (reads of s0 and v0 included) and constants (index fractions
    in [0, 1); uniform bounds in either order)."""

    def address(kind, out=False):
        if kind == ops.Kind.NONE:
            return 0
        lo, hi = OPS_SPEC.out_range(kind) if out else (0, OPS_SPEC.bank_size(kind))
        return int(r.integers(lo, hi))

    consts = np.zeros(ops.NUM_CONSTS, np.float32)
    n = _NUM_CONSTS[op.data]
    consts[:n] = r.uniform(-0.5 if op.data == ops.Data.UNIFORM else 0.0, 1.0, n)
    return Instruction(op.id, address(op.in1), address(op.in2), address(op.out, True), consts)


def _random_banks(r, P, F):
    banks = []
    for shape in ((P, 4), (P, 4, F), (P, 3, F, F)):
        x = (2 * r.standard_normal(shape)).astype(np.float32)
        hit = r.random(shape) < 0.05
        x[hit] = r.choice(_SPECIALS, size=int(hit.sum()))
        banks.append(x)
    return banks


def _addresses(memory: dict):
    """(name, bank 0/1/2, address) of the memory entries of an exported program's source."""
    for name in memory:
        if name == "prediction":
            yield name, 0, 1
        elif re.fullmatch(r"[svm]\d+", name):
            yield name, "svm".index(name[0]), int(name[1:])


def test_every_op_matches_reference_and_vm(monkeypatch):
    """Python source == reference, JAX == VM, for every op (pruning off, so the whole memory is
    comparable), one random address draw per op; run by `fit` on one example (Predict empty)."""
    monkeypatch.setattr(pruning, "prune", lambda program, spec: program)
    r = np.random.default_rng(0)
    programs = [make_program(OPS_SPEC, learn=[_op_instruction(op, r)]) for op in ops.OPS[1:]]
    P = len(programs)
    banks = _random_banks(r, P, F)
    x, y = banks[1][:, 0].copy(), banks[0][:, 0].copy()  # What Learn sees in v0 and s0.
    seeds = r.integers(0, 2**32, P, dtype=np.uint32)

    fits = [export.to_jax(p, OPS_SPEC, feature_size=F).fit for p in programs]
    states = [export.State(*(b[i] for b in banks), seeds[i], jnp.int32(1)) for i in range(P)]

    @jax.jit
    def fit_all(states):
        pairs = zip(fits, states, strict=True)
        return [fit(state, x[i, None], y[i, None]) for i, (fit, state) in enumerate(pairs)]

    got_jax = fit_all(states)
    want_vm = vm.execute_component(OPS_SPEC, "learn", stack(programs).learn, *banks, seeds, 2)
    for i, program in enumerate(programs):
        op = ops.OPS[int(program.learn.code[0, 0])]
        for bank, got, want in zip("svm", got_jax[i][:3], want_vm, strict=True):
            np.testing.assert_allclose(
                got, want[i], rtol=1e-6, atol=1e-7, equal_nan=True, err_msg=f"{op.name} {bank}"
            )
        mem = reference.Memory(*(b[i].copy() for b in banks))
        reference.execute_component(mem, program.learn, seed=seeds[i], call=2)
        namespace = exec_python(program, OPS_SPEC)
        memory = namespace["new_memory"](F, seeds[i])
        for name, bank, k in _addresses(memory):
            memory[name] = banks[bank][i, k].copy()
        memory["call"] = 2
        namespace["learn"](memory, x[i], y[i])
        # The same NumPy calls, bit for bit, but for gaussians (another erfinv: a few ulp) and
        # sums over F (NumPy's sum, dot and matmul, where the reference adds in the VM's
        # pairwise order: 1 ulp).
        sums = any(
            f in export._NUMPY[op.id] for f in ("np.sum", "np.dot", "@", "np.mean", "np.std")
        )
        if op.data == ops.Data.GAUSSIAN:
            tol = dict(rtol=2e-5, atol=1e-6)
        else:
            tol = dict(rtol=1e-6, atol=1e-7) if sums else dict(rtol=0, atol=0)
        for name, bank, k in _addresses(memory):
            want = (mem.scalars, mem.vectors, mem.matrices)[bank][k]
            np.testing.assert_allclose(
                memory[name], want, equal_nan=True, err_msg=f"{op.name} {name}", **tol
            )
