"""The batched JAX VM (`azjax.vm`) against the NumPy reference interpreter (`azjax.reference`).

Every op on random memories (NaN/inf/0/-0/equal operands included), the op table's corner cases,
1,000+ random programs over the full op set, the random ops' draws, and lane isolation. The VM
equals the reference bit for bit (-0 and NaN included) except on the ops it approximates, the
transcendentals and the Gaussian draws (`INEXACT_OPS`). Compiles are kept few: one jitted VM per
(feature size, spec, component, batch size).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from azjax import generator, kernels, ops, rng, vm, vm_plan
from azjax import reference as ref
from azjax.program import COMPONENTS, Component, ComponentSpec, Instruction, ProgramSpec

S, V, M = ops.Kind.SCALAR, ops.Kind.VECTOR, ops.Kind.MATRIX
NAN, INF = np.float32(np.nan), np.float32(np.inf)
ALL_OPS = ops.ALL_OPS

# Single-instruction programs (one slot), every op allowed.
SPEC_ONE = ProgramSpec(
    num_scalars=4,
    num_vectors=4,
    num_matrices=3,
    setup=ComponentSpec(1, ALL_OPS),
    predict=ComponentSpec(1, ALL_OPS),
    learn=ComponentSpec(1, ALL_OPS),
)
LANES_PER_OP = 32
P_ONE = ops.NUM_OPS * LANES_PER_OP  # Every single-op batch (and corner-case batch) has this size.
CALL = 7

# Random programs over the full op set in all three components.
SIZE = 6
SPEC_RAND = ProgramSpec(
    num_scalars=4,
    num_vectors=4,
    num_matrices=3,
    setup=ComponentSpec(SIZE, ALL_OPS),
    predict=ComponentSpec(SIZE, ALL_OPS),
    learn=ComponentSpec(SIZE, ALL_OPS),
)
P_RAND = 256

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 1e30, -1e30], np.float32)
DEFAULT_TOL = dict(rtol=1e-5, atol=1e-6)  # Transcendentals (the VM's own vs libm: a few ulp).
LOOSE_TOL = dict(rtol=5e-5, atol=1e-5)  # Gaussians (erfinv implementations differ).
TRANSCENDENTAL_OPS = frozenset(range(7, 15))  # sin .. log.
GAUSSIAN_OPS = frozenset({62, 63, 64})
# The ops the VM computes with its own approximations: not bit for bit, within a tolerance. Every
# other op, the sums over F included, is bit for bit (they add in one order, `azjax.reductions`).
INEXACT_OPS = TRANSCENDENTAL_OPS | GAUSSIAN_OPS


# ------------------------------------------------------------------------------------------------
# Helpers.


def random_memory(r, P, F, spec, special_rate=0.1, equal_rate=0.25):
    """Program-major float32 memories s [P, S], v [P, V, F], m [P, M, F, F].

    N(0, 2^2) entries; a fraction `special_rate` replaced by NaN/inf/0/-0/+-1/0.5/+-1e30; in a
    fraction `equal_rate` of the lanes, bank entry 1 is a copy of entry 0 (equal operands).
    """
    banks = []
    for shape in ((P, spec.num_scalars), (P, spec.num_vectors, F), (P, spec.num_matrices, F, F)):
        x = (2 * r.standard_normal(shape)).astype(np.float32)
        hit = r.random(shape) < special_rate
        x[hit] = r.choice(SPECIALS, size=int(hit.sum()))
        same = r.random(P) < equal_rate
        x[same, 1] = x[same, 0]
        banks.append(x)
    return tuple(banks)


def run_vm(spec, component, programs: Component, memory, seeds, call):
    """VM on P programs, each with its own memory; numpy (s, v, m)."""
    out = vm.execute_component(
        spec, component, programs, *memory, jnp.asarray(seeds, jnp.uint32), jnp.int32(call)
    )
    return tuple(np.asarray(x) for x in out)


def run_reference(
    programs: Component, memory, seeds, call, lanes=None, dtype=np.float32, flush=False
):
    """Reference interpreter, one lane at a time; (s, v, m) stacked like the VM's output.
    `flush`: subnormals flushed to zero, as XLA:CPU computes (`reference.execute_instruction`)."""
    lanes = range(len(seeds)) if lanes is None else lanes
    outs = ([], [], [])
    for p in lanes:
        mem = ref.Memory(*(np.array(x[p], dtype) for x in memory))
        one = Component(programs.code[p], programs.consts[p], programs.length[p])
        ref.execute_component(mem, one, seed=seeds[p], call=call, flush_subnormals=flush)
        for bank, x in zip(outs, (mem.scalars, mem.vectors, mem.matrices), strict=True):
            bank.append(x)
    return tuple(np.stack(x) for x in outs)


def lanes_close(a, b, **tol):
    """bool [P]: every memory entry of the lane agrees (NaN where NaN, inf where inf)."""
    ok = np.ones(len(a[0]), bool)
    for x, y in zip(a, b, strict=True):
        close = np.isclose(x, y, equal_nan=True, **tol)
        ok &= close.reshape(len(close), -1).all(axis=1)
    return ok


def assert_memory_equal(got, want, label):
    """Bit for bit, up to NaN payloads: NaN where NaN, -0 where -0."""
    for name, x, y in zip("svm", got, want, strict=True):
        np.testing.assert_array_equal(x, y, err_msg=f"{label}: bank {name}")
        np.testing.assert_array_equal(
            np.signbit(x) & ~np.isnan(x), np.signbit(y) & ~np.isnan(y), err_msg=f"{label}: sign"
        )


def lanes_equal(a, b):
    """bool [P]: every memory entry of the lane is the same float (NaN where NaN, -0 where -0)."""
    ok = np.ones(len(a[0]), bool)
    for x, y in zip(a, b, strict=True):
        same = (x == y) & (np.signbit(x) == np.signbit(y)) | np.isnan(x) & np.isnan(y)
        ok &= same.reshape(len(same), -1).all(axis=1)
    return ok


def assert_memory_close(got, want, label, **tol):
    for name, x, y in zip("svm", got, want, strict=True):
        np.testing.assert_allclose(x, y, equal_nan=True, err_msg=f"{label}: bank {name}", **tol)


def program_batch(instructions_per_lane, size):
    """Component [P, size] from a list (one per lane) of instruction lists."""
    P = len(instructions_per_lane)
    code = np.zeros((P, size, 4), np.int32)
    consts = np.zeros((P, size, ops.NUM_CONSTS), np.float32)
    length = np.full((P,), size, np.int32)
    for p, instrs in enumerate(instructions_per_lane):
        for i, ins in enumerate(instrs):
            ins = Instruction(*ins)
            code[p, i] = (ins.op, ins.in1, ins.in2, ins.out)
            consts[p, i, : len(ins.consts)] = ins.consts
    return Component(code, consts, length)


# ------------------------------------------------------------------------------------------------
# Every op against the reference, F in {1, 4, 8}: one batched VM call per F.


def _random_addresses(r, op: ops.OpSpec, spec, j):
    def addr(kind, out=False):
        if kind == ops.Kind.NONE:
            return 0
        lo, hi = spec.out_range(kind) if out else (0, spec.bank_size(kind))
        return int(r.integers(lo, hi))

    in1, in2, out = addr(op.in1), addr(op.in2), addr(op.out, out=True)
    if j % 4 == 1 and op.in1 == op.in2:
        in2 = in1  # Same operand twice.
    if j % 4 == 2 and op.in1 == op.out:
        in1 = out  # In place: out == in1.
    if j % 4 == 3 and op.in2 == op.out:
        in2 = out  # In place: out == in2.
    return in1, in2, out


def _random_consts(r, j):
    c = r.uniform(-1.0, 1.0, ops.NUM_CONSTS).astype(np.float32)
    c[:2] = np.abs(c[:2]) if j % 3 else c[:2]  # Fractions mostly in [0, 1).
    if j % 8 == 0:
        c[1] = c[0]  # uniform: low == high.
    if j % 8 == 1:
        c[0] = c[1] = np.float32(0.999999)  # Index rounding at the top.
    if j % 8 == 2:
        c[:2] = (0.0, 1.0)  # uniform(0, 1): the raw U(0, 1) draw.
    return c


@functools.cache
def single_op_results(F):
    """(programs, memory, seeds, vm_out, ref_out) of LANES_PER_OP one-instruction programs per
    op."""
    r = np.random.default_rng(100 + F)
    code = np.zeros((P_ONE, 1, 4), np.int32)
    consts = np.zeros((P_ONE, 1, ops.NUM_CONSTS), np.float32)
    for p in range(P_ONE):
        op, j = ops.OPS[p // LANES_PER_OP], p % LANES_PER_OP
        code[p, 0] = (op.id, *_random_addresses(r, op, SPEC_ONE, j))
        consts[p, 0] = _random_consts(r, j)
    programs = Component(code, consts, np.ones((P_ONE,), np.int32))
    memory = random_memory(r, P_ONE, F, SPEC_ONE)
    for p in range(P_ONE):  # Operand patterns for the NaN and signed-zero rules (min / max).
        op, j = ops.OPS[p // LANES_PER_OP], p % LANES_PER_OP
        _, in1, in2, _ = code[p, 0]
        if op.in2 and j % 8 == 3:  # NaN in about half of in2's entries.
            bank = memory[op.in2 - 1]
            bank[p, in2] = np.where(r.random(bank.shape[2:]) < 0.5, NAN, bank[p, in2])
        if op.in2 and op.in1 == op.in2 and in1 != in2 and j % 8 in (5, 6):  # +0 vs -0.
            zeros = (np.float32(0.0), np.float32(-0.0))[:: 1 if j % 8 == 5 else -1]
            memory[op.in1 - 1][p, in1] = zeros[0]
            memory[op.in2 - 1][p, in2] = zeros[1]
    seeds = r.integers(0, 2**32, P_ONE, dtype=np.uint32)
    got = run_vm(SPEC_ONE, "predict", programs, memory, seeds, CALL)
    want = run_reference(programs, memory, seeds, CALL)
    return programs, memory, seeds, got, want


@pytest.mark.parametrize("F", [1, 3, 4, 8])  # 3: odd sums and means by a count 1/3 rounds.
@pytest.mark.parametrize("op", ALL_OPS, ids=[o.name for o in ops.OPS])
def test_every_op_matches_reference(op, F):
    programs, _, _, got, want = single_op_results(F)
    code = programs.code
    lanes = np.arange(op * LANES_PER_OP, (op + 1) * LANES_PER_OP)
    assert (code[lanes, 0, 0] == op).all()
    got, want = (tuple(x[lanes] for x in mem) for mem in (got, want))
    spec = ops.OPS[op]
    if op not in INEXACT_OPS:
        # Bit for bit (NaN where NaN, -0 where -0): the sums over F (overflowing 1e30 entries
        # included) and the uniform draws' low + (high - low) * u too.
        assert_memory_equal(got, want, spec.name)
    tol = LOOSE_TOL if op in GAUSSIAN_OPS else DEFAULT_TOL
    assert_memory_close(got, want, spec.name, **tol)


def test_single_op_batches_exercise_specials():
    """The random memories do produce NaN and inf results (so the NaN rules above are tested)."""
    _, _, _, got, _ = single_op_results(4)
    for bank in got:
        assert np.isnan(bank).any() and np.isinf(bank).any() and (bank == 0).any()


# ------------------------------------------------------------------------------------------------
# Corner cases of docs/ops.md, explicitly (through the compiled single-op VM).


def run_corner_cases(F, cases, flush=False):
    """cases: list of (instruction, memory dict {(kind, addr): value}).

    Runs them padded to the single-op batch shape (no new compile), checks VM == reference (with
    `flush`: subnormals flushed to zero in both), and returns the VM's (s, v, m) for the lanes.
    """
    n = len(cases)
    instrs = [[c[0]] for c in cases] + [[]] * (P_ONE - n)
    programs = program_batch(instrs, 1)
    memory = tuple(
        np.zeros(shape, np.float32) for shape in ((P_ONE, 4), (P_ONE, 4, F), (P_ONE, 3, F, F))
    )
    for p, (_, values) in enumerate(cases):
        for (kind, addr), value in values.items():
            memory[kind - 1][p, addr] = value
    seeds = np.arange(P_ONE, dtype=np.uint32)
    got = run_vm(SPEC_ONE, "predict", programs, memory, seeds, CALL)
    got = tuple(x[:n] for x in got)
    want = run_reference(programs, memory, seeds, CALL, lanes=range(n), flush=flush)
    if flush:  # Untouched and moved entries keep their subnormals; compare them as zeros.
        got, want = (tuple(ref.flush_to_zero(x) for x in mem) for mem in (got, want))
    assert_memory_equal(got, want, "corner cases")  # -0 vs +0 too (a NaN's sign is unspecified).
    return got


def test_heaviside_at_zero_for_each_kind():
    F = 8
    x = np.array([0.0, -0.0, NAN, 1e-30, -1e-30, 2.0, INF, -INF], np.float32)
    scalar_cases = [(Instruction(15, 1, 0, 2), {(S, 1): value}) for value in x]
    cases = scalar_cases + [
        (Instruction(16, 1, 0, 2), {(V, 1): x}),
        (Instruction(17, 0, 0, 1), {(M, 0): np.tile(x, (F, 1))}),
    ]
    s, v, m = run_corner_cases(F, cases)
    # Scalar: 1 if a >= 0 (so both zeros give 1, NaN 0).
    np.testing.assert_array_equal(s[: len(x), 2], [1, 1, 0, 1, 0, 1, 1, 0])
    # Vector / matrix: 1 if x > 0 (so zeros give 0).
    strict = np.array([0, 0, 0, 1, 0, 1, 1, 0], np.float32)
    np.testing.assert_array_equal(v[len(x), 2], strict)
    np.testing.assert_array_equal(m[len(x) + 1, 1], np.tile(strict, (F, 1)))


def test_std_is_the_one_pass_formula():
    F = 4
    # Exact in float32 in any summation order: mean(x^2) = mean^2 = 1e8, so one-pass gives 0
    # where the two-pass std is 1.
    cancel = np.array([1e4 + 1, 1e4 - 1, 1e4 + 1, 1e4 - 1], np.float32)
    # One-pass rounds below zero in every summation order (true std ~1.2e-7): NaN.
    b = np.float32(2.1312501)
    negative = np.array([b, np.nextafter(b, INF), b, np.nextafter(b, INF)], np.float32)
    plain = np.array([1, 2, 3, 4], np.float32)
    cases = [
        (Instruction(54, 1, 0, 2), {(V, 1): cancel}),
        (Instruction(54, 1, 0, 2), {(V, 1): negative}),
        (Instruction(54, 1, 0, 2), {(V, 1): plain}),
        (Instruction(53, 0, 0, 2), {(M, 0): np.stack([cancel, negative, plain, plain])}),
        (Instruction(55, 0, 0, 2), {(M, 0): np.tile(cancel, (F, 1))}),
        (Instruction(55, 0, 0, 2), {(M, 0): np.tile(plain, (F, 1))}),
    ]
    s, v, m = run_corner_cases(F, cases)
    assert s[0, 2] == 0.0 and np.isnan(s[1, 2])
    np.testing.assert_allclose(s[2, 2], np.sqrt(1.25), rtol=1e-6)
    assert v[3, 2, 0] == 0.0 and np.isnan(v[3, 2, 1])
    np.testing.assert_allclose(v[3, 2, 2:], np.sqrt(1.25), rtol=1e-6)
    assert s[4, 2] == 0.0
    np.testing.assert_allclose(s[5, 2], np.sqrt(1.25), rtol=1e-6)


# v1 = bcast(s3); s1 = std(v1); s2 = mean(v1); m0 = bcast(v1, axis=1); v2 = std(m0, axis=1);
# s3 = std(m0). Every entry of v1 and m0 is the constant s3.
CONSTANT_STD_PROGRAM = [
    Instruction(op, a, 0, o) for op, a, o in ((19, 3, 1), (54, 1, 1), (50, 1, 2))
]
CONSTANT_STD_PROGRAM += [
    Instruction(op, a, 0, o) for op, a, o in ((33, 1, 0), (53, 0, 2), (55, 0, 3))
]
SPEC_STD = ProgramSpec(
    num_scalars=4,
    num_vectors=3,
    num_matrices=2,
    setup=ComponentSpec(len(CONSTANT_STD_PROGRAM), (19, 33, 50, 53, 54, 55)),
)


@pytest.mark.parametrize("F", [2, 4, 8, 16, 32])
def test_std_of_a_constant_is_exactly_zero(F):
    """The one-pass std of equal entries is exactly 0 (never NaN) and their mean the constant, in
    the VM and the reference alike, as in the original: its sums are pairwise trees, exact on
    equal terms at power-of-two F. Adding left to right gave NaN for 10-40% of the constants."""
    P = 512
    r = np.random.default_rng(F)
    c = np.concatenate([r.uniform(-1, 1, P // 2), r.standard_normal(P // 2) * 1e3])
    memory = random_memory(r, P, F, SPEC_STD, special_rate=0.0)
    memory[0][:, 3] = c
    programs = program_batch([CONSTANT_STD_PROGRAM] * P, len(CONSTANT_STD_PROGRAM))
    seeds = np.zeros(P, np.uint32)
    s, v, _ = got = run_vm(SPEC_STD, "setup", programs, memory, seeds, 0)
    assert_memory_equal(got, run_reference(programs, memory, seeds, 0), "constant std")
    np.testing.assert_array_equal(s[:, 1:], np.stack([0 * c, c.astype(np.float32), 0 * c], 1))
    np.testing.assert_array_equal(v[:, 2], np.zeros((P, F), np.float32))
    np.testing.assert_array_equal(np.signbit(s[:, 1]), False)


@pytest.mark.parametrize("F", [4, 8])
def test_const_set_index_rounding(F):
    top = np.float32(0.999999)
    old_v = np.arange(F, dtype=np.float32) + 10
    old_m = (np.arange(F * F, dtype=np.float32) + 100).reshape(F, F)
    old_v[1] = NAN  # Untouched entries keep whatever they held.
    fractions = [top, 0.0, 0.5, np.float32(1.0) / F - np.float32(1e-6), np.float32(1.0) / F]
    expected_index = [F - 1, 0, F // 2, 0, 1]
    cases = [(Instruction(57, out=2, consts=(f, -7.0)), {(V, 2): old_v}) for f in fractions]
    cases += [
        (Instruction(58, out=1, consts=(top, 0.0, -5.0)), {(M, 1): old_m}),
        (Instruction(58, out=1, consts=(0.5, top, -5.0)), {(M, 1): old_m}),
    ]
    _, v, m = run_corner_cases(F, cases)
    for lane, idx in enumerate(expected_index):
        want = old_v.copy()
        want[idx] = -7.0
        np.testing.assert_array_equal(v[lane, 2], want)
    for lane, (row, col) in zip((5, 6), ((F - 1, 0), (F // 2, F - 1)), strict=True):
        want = old_m.copy()
        want[row, col] = -5.0
        np.testing.assert_array_equal(m[lane, 1], want)


def test_uniform_with_low_not_below_high_writes_low():
    F = 4
    cases = [
        (Instruction(op, out=2, consts=(lo, hi)), {})
        for op in (59, 60)
        for lo, hi in ((0.3, 0.3), (0.5, -0.5))
    ]
    cases += [(Instruction(61, out=1, consts=(lo, hi)), {}) for lo, hi in ((0.3, 0.3), (0.5, -0.5))]
    cases += [(Instruction(op, out=2, consts=(-0.25, 0.75)), {}) for op in (59, 60)]
    s, v, m = run_corner_cases(F, cases)
    lows = np.float32([0.3, 0.5])
    np.testing.assert_array_equal(s[:2, 2], lows)
    np.testing.assert_array_equal(v[2:4, 2], np.repeat(lows[:, None], F, 1))
    np.testing.assert_array_equal(m[4:6, 1], np.broadcast_to(lows[:, None, None], (2, F, F)))
    assert -0.25 < s[6, 2] < 0.75
    assert ((v[7, 2] > -0.25) & (v[7, 2] < 0.75)).all() and len(set(v[7, 2].tolist())) == F


def test_random_draws_with_extreme_constants():
    """The products of the draws are computed as written: XLA regrouped std * (sqrt(2) * e)
    into (std * sqrt(2)) * e (inf for std = 3e38) and (high - low) * (k * 2^-23) into
    ((high - low) * 2^-23) * k (0 for high - low = 7e-35), until `Operands.rounded`."""
    F = 4
    tiny_range = (np.float32(0.0), np.float32(7.448407e-35))
    cases = [(Instruction(op, out=2, consts=tiny_range), {}) for op in (59, 60)]
    cases += [(Instruction(61, out=1, consts=tiny_range), {})]
    s, v, m = run_corner_cases(F, cases)  # Uniform draws: bit for bit.
    for x in (s[0, 2], v[1, 2], m[2, 1]):
        assert ((x > 0) & (x < tiny_range[1])).all()
    huge = (np.float32(3e38), np.float32(3e38))
    gaussians = [[Instruction(op, out=1, consts=huge)] for op in (62, 63, 64)]
    programs = program_batch(gaussians + [[]] * (P_ONE - 3), 1)
    memory = random_memory(np.random.default_rng(3), P_ONE, F, SPEC_ONE)
    seeds = np.arange(P_ONE, dtype=np.uint32) + 77
    got = run_vm(SPEC_ONE, "predict", programs, memory, seeds, CALL)
    want = run_reference(programs, memory, seeds, CALL, lanes=range(3))
    for lane in range(3):  # 3e38 + 3e38 * n: inf for n > 0.13, finite below.
        x, y = got[lane][lane, 1], want[lane][lane, 1]
        np.testing.assert_array_equal(np.isinf(x), np.isinf(y))
        np.testing.assert_allclose(x, y, rtol=1e-5)
    assert np.isfinite(want[2][2, 1]).any() and np.isinf(want[2][2, 1]).any()


def test_transpose_in_place():
    F = 4
    a = np.arange(F * F, dtype=np.float32).reshape(F, F)
    a[0, 3] = NAN
    cases = [
        (Instruction(37, 1, 0, 1), {(M, 1): a}),  # in1 == out
        (Instruction(37, 1, 0, 2), {(M, 1): a}),
    ]
    _, _, m = run_corner_cases(F, cases)
    np.testing.assert_array_equal(m[0, 1], a.T)
    np.testing.assert_array_equal(m[1, 2], a.T)
    np.testing.assert_array_equal(m[1, 1], a)


def test_min_max_nan_and_equality_rules():
    """Ops 44/45/47/48 are std::min/max (a on NaN or equality); 46/49 loop `a < b ? a : b`."""
    F = 4
    a = np.array([NAN, 1.0, -0.0, 0.0], np.float32)
    b = np.array([1.0, NAN, 0.0, -0.0], np.float32)
    cases = []
    for op in (44, 47):
        cases += [
            (Instruction(op, 1, 2, 3), {(S, 1): x, (S, 2): y}) for x, y in zip(a, b, strict=True)
        ]
    for op in (45, 48):
        cases.append((Instruction(op, 1, 2, 3), {(V, 1): a, (V, 2): b}))
    for op in (46, 49):
        cases.append(
            (Instruction(op, 0, 1, 2), {(M, 0): np.tile(a, (F, 1)), (M, 1): np.tile(b, (F, 1))})
        )
    s, v, m = run_corner_cases(F, cases)
    std_rule = a  # (NaN, 1) -> NaN, (1, NaN) -> 1, (-0, +0) -> -0, (+0, -0) -> +0: always a here.
    loop_rule = b  # a < b ? a : b and a > b ? a : b: always b here.
    for got in (s[0:4, 3], s[4:8, 3], v[8, 3], v[9, 3]):
        np.testing.assert_array_equal(got, std_rule)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(std_rule))
    for got in (m[10, 2], m[11, 2]):
        np.testing.assert_array_equal(got, np.tile(loop_rule, (F, 1)))
        np.testing.assert_array_equal(np.signbit(got), np.signbit(np.tile(loop_rule, (F, 1))))
    # Ordinary values: a real min / max for every kind.
    s, v, m = run_corner_cases(
        F,
        [
            (Instruction(44, 1, 2, 3), {(S, 1): 2.0, (S, 2): -3.0}),
            (Instruction(48, 1, 2, 3), {(V, 1): [1, 5, -2, 0], (V, 2): [2, 4, -3, INF]}),
            (Instruction(46, 0, 1, 2), {(M, 0): np.eye(F), (M, 1): -np.eye(F)}),
        ],
    )
    assert s[0, 3] == -3.0
    np.testing.assert_array_equal(v[1, 3], [2, 5, -2, INF])
    np.testing.assert_array_equal(m[2, 2], -np.eye(F))


def _max_ulps(got, want):
    """Largest error of float32 `got` against float64 `want`, in float32 ulps of `want`."""
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    return float(np.max(np.abs(np.asarray(got, np.float64) - want) / ulp))


def test_own_atan_and_erfinv_are_accurate():
    """The VM's own atan (XLA:CPU's is wrong under `vm.COMPILER_OPTIONS`) within 3 ulp, with its
    special values; its erfinv within 4 ulp on every U(0, 1) draw's argument 2u - 1."""
    r = np.random.default_rng(5)
    x = np.concatenate([r.uniform(-1, 1, 100_000), r.standard_normal(100_000) * 10])
    x = np.concatenate([x, np.logspace(-30, 30, 10_000), -np.logspace(-30, 30, 10_000)])
    x = x.astype(np.float32)
    atan = jax.jit(kernels.atan, compiler_options=vm.COMPILER_OPTIONS)
    assert _max_ulps(atan(x), np.arctan(x.astype(np.float64))) <= 3
    specials = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan])
    got = np.asarray(atan(specials))
    np.testing.assert_array_equal(got, np.float32([0.0, -0.0, np.pi / 2, -np.pi / 2, np.nan]))
    assert np.signbit(got[1])
    k = np.arange(0, 2**23, 7, dtype=np.uint32)  # rng.uniform01's grid: (k + 0.5) 2^-23.
    u = ((k.astype(np.float32) + np.float32(0.5)) * np.float32(2.0**-23)).astype(np.float32)
    arg = (2 * u - 1).astype(np.float32)
    want = scipy.special.erfinv(arg.astype(np.float64))
    erfinv = jax.jit(lambda a: rng.erfinv(a, jnp), compiler_options=vm.COMPILER_OPTIONS)
    assert _max_ulps(erfinv(arg), want) <= 4
    assert _max_ulps(rng.erfinv(arg, np), want) <= 4


def test_nan_and_inf_propagate():
    F = 4
    nan_m = np.eye(F, dtype=np.float32)
    nan_m[0, 0] = NAN
    cases = [
        (Instruction(3, 1, 2, 3), {(S, 1): 0.0, (S, 2): INF}),  # 0 * inf = NaN
        (Instruction(6, 1, 0, 3), {(S, 1): 0.0}),  # 1 / 0 = inf
        (Instruction(6, 1, 0, 3), {(S, 1): -0.0}),  # 1 / -0 = -inf
        (Instruction(14, 1, 0, 3), {(S, 1): 0.0}),  # log 0 = -inf
        (Instruction(14, 1, 0, 3), {(S, 1): -1.0}),  # log -1 = NaN
        (Instruction(10, 1, 0, 3), {(S, 1): 2.0}),  # arcsin 2 = NaN
        (Instruction(2, 1, 1, 3), {(S, 1): INF}),  # inf - inf = NaN
        (Instruction(13, 1, 0, 3), {(S, 1): 100.0}),  # exp overflows to inf
        (Instruction(27, 1, 2, 3), {(V, 1): [INF, 0, 0, 0], (V, 2): [0, 1, 1, 1]}),  # NaN
        (Instruction(43, 0, 1, 2), {(M, 0): nan_m, (M, 1): np.eye(F)}),  # NaN row 0
        (Instruction(31, 0, 1, 2), {(M, 0): np.eye(F), (V, 1): [1, INF, 0, 0]}),
        (Instruction(21, 1, 0, 3), {(V, 1): [1e30, 1e30, 0, 0]}),  # norm overflows: inf
    ]
    s, v, m = run_corner_cases(F, cases)
    np.testing.assert_array_equal(s[:9, 3], [NAN, INF, -INF, -INF, NAN, NAN, NAN, INF, NAN])
    assert np.isnan(m[9, 2, 0]).all() and not np.isnan(m[9, 2, 1:]).any()
    np.testing.assert_array_equal(v[10, 2], [NAN, INF, NAN, NAN])  # 0 * inf in rows 0, 2, 3
    assert s[11, 3] == INF


def test_norm_overflow_at_feature_size_1():
    """An overflowing square gives inf at F = 1 too: XLA simplified sqrt(x * x) to |x| there, until
    the products got their FMA barrier (`kernels.Operands.rounded`)."""
    F = 1
    big = np.float32(1e30)
    cases = [
        (Instruction(21, 1, 0, 3), {(V, 1): [big]}),
        (Instruction(34, 0, 0, 3), {(M, 0): [[big]]}),
        (Instruction(35, 0, 0, 2), {(M, 0): [[big]]}),
        (Instruction(36, 0, 0, 2), {(M, 0): [[big]]}),
    ]
    s, v, _ = run_corner_cases(F, cases)  # Also checks VM == reference bit for bit.
    assert s[0, 3] == s[1, 3] == v[2, 2, 0] == v[3, 2, 0] == np.inf


def test_subnormals_are_flushed_to_zero():
    """A documented deviation (docs/deviations.md): XLA:CPU computes with subnormal inputs read
    as 0 and subnormal results flushed to 0, whatever its flags (`--xla_cpu_ftz=false` changes
    nothing). The reference does the same with `flush_subnormals=True`, not by default."""
    F = 4
    tiny = np.float32(2.0**-149)
    cases = [
        (Instruction(16, 1, 0, 2), {(V, 1): [0.0, 0.0, tiny, 0.0]}),  # heaviside: 1 -> 0
        (Instruction(3, 1, 2, 3), {(S, 1): tiny, (S, 2): INF}),  # 2^-149 * inf: inf -> NaN
        (Instruction(3, 1, 2, 3), {(S, 1): 2.0**-75, (S, 2): 2.0**-75}),  # 2^-150 -> 0 either way
        (Instruction(4, 1, 2, 3), {(S, 1): 1.0, (S, 2): tiny}),  # 1 / 2^-149 = inf either way
        (Instruction(5, 1, 0, 3), {(S, 1): -tiny}),  # |x| (a bit operation in the VM)
        (Instruction(57, out=1, consts=(0.5, tiny)), {}),  # A move.
    ]
    s, v, _ = run_corner_cases(F, cases, flush=True)  # Returns the flushed VM memory.
    np.testing.assert_array_equal(v[0, 2], 0.0)
    assert np.isnan(s[1, 3]) and s[2, 3] == 0.0 and s[3, 3] == INF
    with pytest.raises(AssertionError):  # The original, and the default reference, keep them.
        run_corner_cases(F, cases[:2])


# ------------------------------------------------------------------------------------------------
# Random programs over the full op set, all three components.


@functools.cache
def random_population(seed):
    pop = generator.make_initial_population(
        jax.random.key(seed), "RANDOM", SPEC_RAND, (SIZE, SIZE, SIZE), P_RAND
    )
    return jax.tree.map(np.asarray, pop)


@pytest.mark.parametrize("batch, F", [(0, 4), (1, 4), (2, 8), (3, 8)])
def test_random_programs_match_reference(batch, F):
    """4 batches x 256 programs x 3 components: VM memory == reference memory.

    At F = 4 each component runs through its own compiled VM (setup, predict, learn); at F = 8
    all three run through the setup VM (same op set, so the same semantics; one compile).
    A lane is bit for bit the reference's unless its program holds an op of INEXACT_OPS; those
    lanes agree within LOOSE_TOL, all but at most 1% (ill-conditioned follow-ups of a last-bit
    difference, e.g. cancellation then 1/x).
    """
    pop = random_population(batch)
    r = np.random.default_rng(batch)
    mismatched, exact_lanes = [], 0
    for call, c in enumerate(COMPONENTS):
        comp = getattr(pop, c)
        assert (comp.length == SIZE).all()
        memory = random_memory(r, P_RAND, F, SPEC_RAND, special_rate=0.02, equal_rate=0.1)
        seeds = r.integers(0, 2**32, P_RAND, dtype=np.uint32)
        got = run_vm(SPEC_RAND, c if F == 4 else "setup", comp, memory, seeds, call)
        want = run_reference(comp, memory, seeds, call)
        inexact = np.isin(comp.code[..., 0], list(INEXACT_OPS)).any(axis=1)
        exact_lanes += int((~inexact).sum())
        for p in np.flatnonzero(~inexact & ~lanes_equal(got, want)):
            used = sorted({ops.OPS[int(o)].name for o in comp.code[p, :, 0]})
            raise AssertionError(f"{c} lane {p}: VM != reference bit for bit, ops {used}")
        mismatched += [(c, p) for p in np.flatnonzero(~lanes_close(got, want, **LOOSE_TOL))]
    assert exact_lanes > P_RAND // 4
    assert len(mismatched) <= 0.01 * P_RAND * len(COMPONENTS), mismatched


def test_random_programs_use_every_op():
    ops_seen = set()
    for batch in range(4):
        for c in COMPONENTS:
            ops_seen |= set(np.unique(getattr(random_population(batch), c).code[..., 0]).tolist())
    assert ops_seen == set(ALL_OPS)


# ------------------------------------------------------------------------------------------------
# Random ops: distributions, and batched == one-at-a-time paths.

MOMENTS_PROGRAM = [
    Instruction(64, out=0, consts=(0.25, 2.0)),  # m0 = gaussian(0.25, 2)
    Instruction(61, out=1, consts=(-0.5, 1.5)),  # m1 = uniform(-0.5, 1.5)
    Instruction(64, out=2, consts=(-1.0, 0.5)),  # m2 = gaussian(-1, 0.5)
    Instruction(63, out=1, consts=(0.0, 1.0)),  # v1 = gaussian(0, 1)
    Instruction(60, out=2, consts=(0.0, 1.0)),  # v2 = uniform(0, 1)
    Instruction(62, out=2, consts=(3.0, 0.1)),  # s2 = gaussian(3, 0.1)
]


def test_random_matrix_draws_have_the_right_distribution():
    F = 8
    programs = program_batch([MOMENTS_PROGRAM] * P_RAND, SIZE)
    memory = random_memory(np.random.default_rng(5), P_RAND, F, SPEC_RAND)
    seeds = np.random.default_rng(6).integers(0, 2**32, P_RAND, dtype=np.uint32)
    s, v, m = run_vm(SPEC_RAND, "setup", programs, memory, seeds, 0)
    n = P_RAND * F * F
    for x, mean, std in ((m[:, 0], 0.25, 2.0), (m[:, 2], -1.0, 0.5)):
        x = x.reshape(-1).astype(np.float64)
        assert abs(x.mean() - mean) < 4 * std / np.sqrt(n)
        assert abs(x.std() / std - 1) < 0.03
        assert scipy.stats.kstest(x, "norm", args=(mean, std)).pvalue > 1e-3
    u = m[:, 1].reshape(-1).astype(np.float64)
    assert ((u > -0.5) & (u < 1.5)).all()
    assert abs(u.mean() - 0.5) < 4 * (2 / np.sqrt(12)) / np.sqrt(n)
    assert abs(u.std() / (2 / np.sqrt(12)) - 1) < 0.03
    assert scipy.stats.kstest(u, "uniform", args=(-0.5, 2.0)).pvalue > 1e-3
    # Independent draws: lanes and entries differ (up to float32 collisions of 2^23 values), and
    # the two gaussian slots are not the same draw rescaled.
    assert len(np.unique(m[:, 0])) > 0.995 * n and len(np.unique(v[:, 1])) > 0.995 * P_RAND * F
    assert np.isclose((m[:, 0] - 0.25) / 2.0, (m[:, 2] + 1.0) / 0.5).mean() < 0.01
    assert abs(s[:, 2].mean() - 3.0) < 4 * 0.1 / np.sqrt(P_RAND)
    # The reference draws the same U(0, 1) bits: uniforms bit for bit; gaussians agree to float32
    # tolerance (erfinv implementations differ).
    want = run_reference(programs, memory, seeds, 0, lanes=range(32))
    np.testing.assert_array_equal(v[:32, 2], want[1][:, 2])
    np.testing.assert_array_equal(m[:32, 1], want[2][:, 1])
    assert_memory_close((s[:32], v[:32], m[:32]), want, "moments", **LOOSE_TOL)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _single_jit(spec, component, program, s, v, m, seed, call):
    return vm.execute_component_single(spec, component, program, s, v, m, seed, call)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _single_vmap(spec, component, programs, s, v, m, seeds, call):
    one = functools.partial(vm.execute_component_single, spec, component)
    return jax.vmap(one, in_axes=(0, 0, 0, 0, 0, None))(programs, s, v, m, seeds, call)


def _assert_one_at_a_time_equal(batched, comp, memory, seeds, call, lanes):
    """Each of `lanes`, run alone through the jitted single-program path, equals its batched
    result within 1 ulp: compiled alone, the slot loop is scalar code (XLA:CPU compiles small
    loops into one function, `runtime.XLA_CPU_FLAGS`), whose fused multiply-adds may differ from
    the vectorized batch's in the last bit."""
    for p in lanes:
        one = Component(comp.code[p], comp.consts[p], comp.length[p])
        single = _single_jit(
            SPEC_RAND, "setup", one, *(x[p] for x in memory), jnp.uint32(seeds[p]), jnp.int32(call)
        )
        for x, y in zip(batched, single, strict=True):
            x, y = x[p], np.asarray(y)
            same = (x == y) | (np.isnan(x) & np.isnan(y))
            finite = np.isfinite(x) & np.isfinite(y)
            x, y = np.where(finite, x, 0), np.where(finite, y, 0)
            ulp = np.spacing(np.maximum(np.abs(x), np.abs(y)).astype(np.float32))
            close = finite & (np.abs(x - y) <= ulp)
            assert (same | close).all(), f"lane {p}: {x} != {y}"


def _paths_inputs():
    """Random programs (lanes 0-7: MOMENTS_PROGRAM), memories and seeds at F = 8."""
    comp = random_population(0).setup
    code, consts = comp.code.copy(), comp.consts.copy()
    moments = program_batch([MOMENTS_PROGRAM], SIZE)
    code[:8], consts[:8] = moments.code, moments.consts
    comp = Component(code, consts, comp.length)
    memory = random_memory(np.random.default_rng(9), P_RAND, 8, SPEC_RAND, special_rate=0.02)
    seeds = np.random.default_rng(10).integers(0, 2**32, P_RAND, dtype=np.uint32)
    return comp, memory, seeds


def test_batched_and_single_paths_agree_bitwise():
    """execute_component (P lanes) == execute_component_single, vmapped and one at a time (each
    program compiled alone), bit for bit with every op: random ops, sums over F and the
    transcendentals included."""
    comp, memory, seeds = _paths_inputs()
    has_random = np.isin(comp.code[..., 0], [o.id for o in ops.OPS if o.is_random]).any(axis=1)
    assert has_random.sum() > P_RAND // 3
    call = 5
    batched = run_vm(SPEC_RAND, "setup", comp, memory, seeds, call)
    vmapped = _single_vmap(SPEC_RAND, "setup", comp, *memory, seeds, jnp.int32(call))
    for x, y in zip(batched, vmapped, strict=True):
        np.testing.assert_array_equal(x, np.asarray(y))
    lanes = list(range(64)) + list(np.flatnonzero(has_random)[32:48])
    _assert_one_at_a_time_equal(batched, comp, memory, seeds, call, lanes)
    # The draws depend on the seed and the call number.
    for other in (
        run_vm(SPEC_RAND, "setup", comp, memory, seeds + 1, call),
        run_vm(SPEC_RAND, "setup", comp, memory, seeds, call + 1),
    ):
        assert not np.isclose(other[2][:8, 1], batched[2][:8, 1]).any()


@pytest.mark.parametrize("F", [1, 4, 8])
def test_compiler_options_change_no_result(F):
    """The VM's XLA options (`vm.COMPILER_OPTIONS`: 512-bit vectors) change no bit of any op's
    result: XLA:CPU's own atan, for one, is wrong at that width."""
    tuned = jax.jit(
        vm.execute_component.__wrapped__,
        static_argnames=("spec", "component"),
        compiler_options=vm.COMPILER_OPTIONS,
    )
    programs, memory, seeds, want, _ = single_op_results(F)
    got = tuned(SPEC_ONE, "predict", programs, *memory, jnp.asarray(seeds), jnp.int32(CALL))
    for x, y in zip(want, got, strict=True):
        np.testing.assert_array_equal(x, np.asarray(y))


# ------------------------------------------------------------------------------------------------
# NaN / inf isolation between lanes.

POISON_PROGRAM = [
    Instruction(2, 0, 0, 3),  # s3 = s0 - s0 (0, or NaN)
    Instruction(6, 3, 0, 3),  # s3 = 1 / s3 (inf)
    Instruction(29, 3, 0, 0),  # m0 = s3 * m0 (inf / NaN)
    Instruction(18, 3, 0, 1),  # v1 = s3 * v0
    Instruction(43, 0, 0, 1),  # m1 = matmul(m0, m0)
    Instruction(2, 3, 3, 2),  # s2 = s3 - s3 (NaN)
]


@pytest.mark.parametrize("component", ["predict", "learn"])
def test_poisonous_lanes_do_not_change_other_lanes(component):
    F = 4
    pop = random_population(1)
    clean = getattr(pop, component)
    r = np.random.default_rng(11)
    memory = random_memory(r, P_RAND, F, SPEC_RAND, special_rate=0.0)
    seeds = r.integers(0, 2**32, P_RAND, dtype=np.uint32)
    poison = np.arange(P_RAND) % 3 == 1
    poison_batch = program_batch([POISON_PROGRAM] * int(poison.sum()), SIZE)
    code, consts = clean.code.copy(), clean.consts.copy()
    code[poison], consts[poison] = poison_batch.code, poison_batch.consts
    mixed = Component(code, consts, clean.length)
    poisoned_memory = tuple(x.copy() for x in memory)
    for x in poisoned_memory:
        x[poison] = np.where(r.random(x[poison].shape) < 0.5, NAN, INF)
    base = run_vm(SPEC_RAND, component, clean, memory, seeds, 2)
    mixed_out = run_vm(SPEC_RAND, component, mixed, poisoned_memory, seeds, 2)
    for x, y in zip(base, mixed_out, strict=True):
        np.testing.assert_array_equal(x[~poison], y[~poison])
    s, _, m = mixed_out
    assert np.isnan(s[poison, 2]).all() and (~np.isfinite(m[poison, 1])).all()
    # The clean lanes are not trivially non-finite themselves.
    assert np.isfinite(base[0][~poison]).mean() > 0.5


# ------------------------------------------------------------------------------------------------
# Compaction (design c2): random and transcendental ops run only on the lanes that use them.

COMPACTED_OPS = sorted(set().union(*(members for _, members, _ in vm_plan.COMPACT_GROUPS)))


def _compaction_population(rate, r):
    """Random programs where a fraction `rate` of the slots hold a compacted op (others: none)."""
    comp = random_population(2).setup
    code, consts = comp.code.copy(), comp.consts.copy()
    compacted = np.isin(code[..., 0], COMPACTED_OPS)
    code[compacted] = (3, 1, 2, 3)  # s3 = s1 * s2 where the random program had one.
    hit = r.random(code.shape[:2]) < rate
    code[hit, 0] = r.choice(COMPACTED_OPS, size=int(hit.sum()))
    code[hit, 3] = r.integers(1, 3, size=int(hit.sum()))  # Output address 1 or 2, every kind.
    return Component(code, consts, comp.length)


@pytest.mark.parametrize("rate", [0.0, 0.02, 1.0])
def test_compaction_matches_dense_path_and_reference(rate):
    """Few lanes (one round), none (no round) and all lanes (P / capacity rounds per slot) using
    compacted ops: the compacted VM equals the dense VM bit for bit, and the reference."""
    r = np.random.default_rng(12)
    comp = _compaction_population(rate, r)
    uses = np.isin(comp.code[..., 0], COMPACTED_OPS)
    if rate == 1.0:
        assert uses.all()
    elif rate > 0:
        assert 0 < uses.sum(axis=0).max() <= P_RAND // 16  # Within one round at every slot.
    memory = random_memory(r, P_RAND, 4, SPEC_RAND, special_rate=0.02)
    seeds = r.integers(0, 2**32, P_RAND, dtype=np.uint32)
    call = jnp.int32(3)
    args = (SPEC_RAND, "setup", comp, *memory, jnp.asarray(seeds), call)
    compact = vm.execute_component(*args)
    dense = vm.execute_component(*args, compact=False)
    for x, y in zip(compact, dense, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    want = run_reference(comp, memory, seeds, 3, lanes=range(0, P_RAND, 8))
    got = tuple(np.asarray(x)[::8] for x in compact)
    inexact = np.isin(comp.code[::8, :, 0], list(INEXACT_OPS)).any(axis=1)
    ok = np.where(inexact, lanes_close(got, want, **LOOSE_TOL), lanes_equal(got, want))
    assert ok.all(), np.flatnonzero(~ok)


def test_plans_compact_only_allowed_groups():
    full = vm_plan.plan_component(SPEC_RAND, "setup")
    assert [g.name for g in full.compact] == [name for name, _, _ in vm_plan.COMPACT_GROUPS]
    dense_ops = set().union(*full.dense.kinds)
    assert dense_ops.isdisjoint(COMPACTED_OPS)
    assert dense_ops | set(COMPACTED_OPS) == set(ALL_OPS) - {ops.NO_OP}
    assert vm_plan.plan_component(SPEC_RAND, "setup", compact=False).compact == ()
    demo = vm_plan.plan_component(ProgramSpec(), "setup")  # No random or transcendental ops.
    assert demo.compact == () and vm_plan.decode(demo, random_population(0).setup).lists is None
