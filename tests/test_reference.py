"""The NumPy reference interpreter against hand-computed values: ops, corner cases, protocol."""

import itertools
import math
import statistics

import numpy as np
import pytest

from azjax import ops, rng
from azjax import reference as ref
from azjax.program import Instruction, ProgramSpec, make_program

S, V, M = ops.Kind.SCALAR, ops.Kind.VECTOR, ops.Kind.MATRIX
SPEC = ProgramSpec(num_scalars=4, num_vectors=4, num_matrices=3)
IN1 = {S: 1, V: 1, M: 0}  # Distinct addresses per kind for in1, in2 and out.
IN2 = {S: 2, V: 2, M: 1}
OUT = {S: 3, V: 3, M: 2}
SEED, CALL, SLOT = 7, 5, 2


# ------------------------------------------------------------------------------------------------
# An independent oracle: pure-Python floats, loops, `math` and `statistics` (two-pass std).


def _map(f, *xs):
    if isinstance(xs[0], list):
        return [_map(f, *ys) for ys in zip(*xs, strict=True)]
    return f(*xs)


def _col(m, j):
    return [row[j] for row in m]


def _uniform_element(e):
    return float(rng.uniform01(rng.draw_key(SEED, CALL, SLOT), e))


def _random_fill(F, kind, f):
    """f(u) per element, row-major element numbering (scalar e=0, matrix e = r*F + c)."""
    if kind == S:
        return f(_uniform_element(0))
    if kind == V:
        return [f(_uniform_element(e)) for e in range(F)]
    return [[f(_uniform_element(r * F + c)) for c in range(F)] for r in range(F)]


def _oracle(op, a, b, out, c, F):
    """Expected new value of the output, computed independently of azjax.reference."""
    out_kind = ops.OPS[op].out
    inv_cdf = statistics.NormalDist().inv_cdf
    table = {
        1: lambda: a + b,
        2: lambda: a - b,
        3: lambda: a * b,
        4: lambda: a / b,
        5: lambda: abs(a),
        6: lambda: 1 / a,
        7: lambda: math.sin(a),
        8: lambda: math.cos(a),
        9: lambda: math.tan(a),
        10: lambda: math.asin(a),
        11: lambda: math.acos(a),
        12: lambda: math.atan(a),
        13: lambda: math.exp(a),
        14: lambda: math.log(a),
        15: lambda: 1.0 if a >= 0 else 0.0,
        16: lambda: _map(lambda t: 1.0 if t > 0 else 0.0, a),
        17: lambda: _map(lambda t: 1.0 if t > 0 else 0.0, a),
        18: lambda: [a * t for t in b],
        19: lambda: [a] * F,
        20: lambda: [1 / t for t in a],
        21: lambda: math.sqrt(sum(t * t for t in a)),
        22: lambda: [abs(t) for t in a],
        23: lambda: _map(lambda x, y: x + y, a, b),
        24: lambda: _map(lambda x, y: x - y, a, b),
        25: lambda: _map(lambda x, y: x * y, a, b),
        26: lambda: _map(lambda x, y: x / y, a, b),
        27: lambda: sum(x * y for x, y in zip(a, b, strict=True)),
        28: lambda: [[x * y for y in b] for x in a],
        29: lambda: _map(lambda t: a * t, b),
        30: lambda: _map(lambda t: 1 / t, a),
        31: lambda: [sum(a[i][j] * b[j] for j in range(F)) for i in range(F)],
        32: lambda: [[a[i]] * F for i in range(F)],
        33: lambda: [list(a) for _ in range(F)],
        34: lambda: math.sqrt(sum(t * t for row in a for t in row)),
        35: lambda: [math.sqrt(sum(t * t for t in _col(a, j))) for j in range(F)],
        36: lambda: [math.sqrt(sum(t * t for t in row)) for row in a],
        37: lambda: [_col(a, i) for i in range(F)],
        38: lambda: _map(abs, a),
        39: lambda: _map(lambda x, y: x + y, a, b),
        40: lambda: _map(lambda x, y: x - y, a, b),
        41: lambda: _map(lambda x, y: x * y, a, b),
        42: lambda: _map(lambda x, y: x / y, a, b),
        43: lambda: [
            [sum(a[i][k] * b[k][j] for k in range(F)) for j in range(F)] for i in range(F)
        ],
        44: lambda: min(a, b),  # Inputs are distinct and finite here; tie/NaN rules tested below.
        45: lambda: _map(min, a, b),
        46: lambda: _map(min, a, b),
        47: lambda: max(a, b),
        48: lambda: _map(max, a, b),
        49: lambda: _map(max, a, b),
        50: lambda: statistics.fmean(a),
        51: lambda: statistics.fmean(t for row in a for t in row),
        52: lambda: [statistics.fmean(row) for row in a],
        53: lambda: [statistics.pstdev(row) for row in a],
        54: lambda: statistics.pstdev(a),
        55: lambda: statistics.pstdev([t for row in a for t in row]),
        56: lambda: c[0],
        57: lambda: out[: F - 1] + [c[1]],  # consts aim at index F - 1
        58: lambda: [
            [c[2] if (r, q) == (0, F - 1) else out[r][q] for q in range(F)] for r in range(F)
        ],
        59: lambda: _random_fill(F, out_kind, lambda u: c[0] + (c[1] - c[0]) * u),
        62: lambda: _random_fill(F, out_kind, lambda u: c[0] + c[1] * inv_cdf(u)),
    }
    table[60] = table[61] = table[59]
    table[63] = table[64] = table[62]
    return table[op]()


def _consts(op, F):
    data = ops.OPS[op].data
    if data == ops.Data.CONST_SCALAR:
        return (0.8125, 0.0, 0.0)
    if data == ops.Data.CONST_VECTOR:
        return ((F - 0.5) / F, 0.625, 0.0)  # index F - 1
    if data == ops.Data.CONST_MATRIX:
        return (0.5 / F, (F - 0.5) / F, -0.375)  # row 0, column F - 1
    if data == ops.Data.UNIFORM:
        return (-0.5, 1.5, 0.0)
    if data == ops.Data.GAUSSIAN:
        return (0.25, 2.0, 0.0)
    return (0.0, 0.0, 0.0)


def _random_memory(op, F, dtype):
    r = np.random.default_rng([op, F])
    mem = ref.Memory.zeros(SPEC, F, dtype)
    for bank in (mem.scalars, mem.vectors, mem.matrices):
        magnitude = r.uniform(0.05, 0.9, bank.shape)  # away from 0: reciprocals stay moderate
        bank[...] = magnitude if op == 14 else magnitude * r.choice([-1, 1], bank.shape)
    return mem


def _as_list(x):
    return np.asarray(x, np.float64).tolist()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("F", [1, 4, 8])
@pytest.mark.parametrize("op", [o.id for o in ops.OPS], ids=[o.name for o in ops.OPS])
def test_every_op_matches_the_oracle(op, F, dtype):
    spec = ops.OPS[op]
    consts = _consts(op, F)
    alias_options = [None] + [f for f in ("in1", "in2") if getattr(spec, f) == spec.out != 0]
    for alias in alias_options:  # Also out == in1 / out == in2 (in-place safety).
        mem = _random_memory(op, F, dtype)
        addr = {
            f: d.get(getattr(spec, f), 0) for f, d in (("in1", IN1), ("in2", IN2), ("out", OUT))
        }
        if alias:
            addr["out"] = addr[alias]
        ins = Instruction(op, addr["in1"], addr["in2"], addr["out"], consts)
        before = mem.copy()
        a, b, out = (
            _as_list(before.bank(getattr(spec, f))[addr[f]]) if getattr(spec, f) else None
            for f in ("in1", "in2", "out")
        )
        ref.execute_instruction(mem, ins, seed=SEED, call=CALL, slot=SLOT)
        for kind in (S, V, M):
            assert mem.bank(kind).dtype == np.dtype(dtype)
            changed = [
                i for i in range(mem.bank(kind).shape[0]) if (kind, i) != (spec.out, addr["out"])
            ]
            np.testing.assert_array_equal(mem.bank(kind)[changed], before.bank(kind)[changed])
        if op == ops.NO_OP:
            continue
        expected = _oracle(op, a, b, out, [float(np.float32(c)) for c in consts], F)
        tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6)
        if spec.is_random and dtype == np.float64:
            tol = dict(rtol=1e-9, atol=1e-12)  # erfinv vs inv_cdf
        np.testing.assert_allclose(mem.bank(spec.out)[addr["out"]], expected, **tol)


def _run(op, F=2, a=None, b=None, consts=(0.0, 0.0, 0.0), dtype=np.float64, out_init=None):
    """Runs one op with in1 = a, in2 = b at fixed addresses and returns the output value."""
    spec = ops.OPS[op]
    mem = ref.Memory.zeros(SPEC, F, dtype)
    for kind, addresses, value in ((spec.in1, IN1, a), (spec.in2, IN2, b)):
        if value is not None:
            mem.bank(kind)[addresses[kind]] = value
    if out_init is not None:
        mem.bank(spec.out)[OUT[spec.out]] = out_init
    ins = Instruction(op, IN1.get(spec.in1, 0), IN2.get(spec.in2, 0), OUT[spec.out], consts)
    ref.execute_instruction(mem, ins, seed=SEED, call=CALL, slot=SLOT)
    return mem.bank(spec.out)[OUT[spec.out]]


# Small hand-computed cases: (op, in1, in2, expected).
HAND_COMPUTED = [
    (1, 1.5, 2.25, 3.75),
    (2, 1.5, 2.25, -0.75),
    (3, 1.5, -2.0, -3.0),
    (4, 1.0, 4.0, 0.25),
    (6, 4.0, None, 0.25),
    (7, math.pi / 2, None, 1.0),
    (8, 0.0, None, 1.0),
    (9, math.pi / 4, None, 1.0),
    (10, 1.0, None, math.pi / 2),
    (11, 1.0, None, 0.0),
    (12, 1.0, None, math.pi / 4),
    (13, 0.0, None, 1.0),
    (14, 1.0, None, 0.0),
    (18, 2.0, [1.0, -3.0], [2.0, -6.0]),
    (19, 2.5, None, [2.5, 2.5]),
    (20, [2.0, -4.0], None, [0.5, -0.25]),
    (21, [3.0, 4.0], None, 5.0),
    (26, [1.0, 1.0], [2.0, 4.0], [0.5, 0.25]),
    (27, [1.0, 2.0], [3.0, 4.0], 11.0),
    (28, [1.0, 2.0], [3.0, 4.0], [[3.0, 4.0], [6.0, 8.0]]),
    (29, -1.0, [[1.0, 2.0], [3.0, 4.0]], [[-1.0, -2.0], [-3.0, -4.0]]),
    (30, [[2.0, 4.0], [-1.0, 0.5]], None, [[0.5, 0.25], [-1.0, 2.0]]),
    (31, [[1.0, 2.0], [3.0, 4.0]], [5.0, 6.0], [17.0, 39.0]),
    (32, [1.0, 2.0], None, [[1.0, 1.0], [2.0, 2.0]]),
    (33, [1.0, 2.0], None, [[1.0, 2.0], [1.0, 2.0]]),
    (34, [[1.0, 2.0], [2.0, 4.0]], None, 5.0),
    (35, [[3.0, 4.0], [0.0, 12.0]], None, [3.0, math.sqrt(160.0)]),  # column norms
    (36, [[3.0, 4.0], [0.0, 12.0]], None, [5.0, 12.0]),  # row norms
    (37, [[1.0, 2.0], [3.0, 4.0]], None, [[1.0, 3.0], [2.0, 4.0]]),
    (41, [[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]], [[5.0, 12.0], [21.0, 32.0]]),
    (43, [[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]], [[19.0, 22.0], [43.0, 50.0]]),
    (50, [1.0, 5.0], None, 3.0),
    (51, [[1.0, 2.0], [3.0, 6.0]], None, 3.0),
    (52, [[1.0, 3.0], [2.0, 6.0]], None, [2.0, 4.0]),  # row means
    (53, [[1.0, 3.0], [2.0, 6.0]], None, [1.0, 2.0]),  # row (population) stds
    (54, [1.0, 3.0], None, 1.0),  # population std (the sample std would be sqrt(2))
    (55, [[1.0, 3.0], [3.0, 1.0]], None, 1.0),
]


@pytest.mark.parametrize("op, a, b, expected", HAND_COMPUTED)
def test_hand_computed_values(op, a, b, expected):
    np.testing.assert_allclose(_run(op, 2, a, b), expected, rtol=1e-15, atol=1e-15)


def test_matrix_ops_at_feature_size_3():
    m = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 10.0]]
    v = [1.0, 0.0, -1.0]
    np.testing.assert_array_equal(_run(31, 3, m, v), [-2.0, -2.0, -3.0])
    np.testing.assert_array_equal(_run(37, 3, m), [[1, 4, 7], [2, 5, 8], [3, 6, 10]])
    np.testing.assert_array_equal(
        _run(43, 3, m, [[0, 0, 1], [0, 1, 0], [1, 0, 0]]), [[3, 2, 1], [6, 5, 4], [10, 8, 7]]
    )
    np.testing.assert_allclose(_run(35, 3, m), np.sqrt([66.0, 93.0, 145.0]), rtol=1e-15)
    np.testing.assert_allclose(_run(36, 3, m), np.sqrt([14.0, 77.0, 213.0]), rtol=1e-15)


# ------------------------------------------------------------------------------------------------
# Corner cases.


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_heaviside_at_zero_and_specials(dtype):
    x = [0.0, -0.0, 1e-30, -1e-30, np.nan, np.inf, -np.inf]
    scalar = [float(_run(15, 1, t, dtype=dtype)) for t in x]
    assert scalar == [1, 1, 1, 0, 0, 1, 0]  # a >= 0
    strict = [0, 0, 1, 0, 0, 1, 0]  # x > 0
    np.testing.assert_array_equal(_run(16, 7, x, dtype=dtype), strict)
    m = _run(17, 7, np.tile(x, (7, 1)), dtype=dtype)
    np.testing.assert_array_equal(m, np.tile(strict, (7, 1)))


def test_std_uses_the_one_pass_population_formula():
    # Nearly equal float32 entries: mean(x^2) - mean^2 rounds below 0, so the op gives NaN where a
    # two-pass std would give ~2.5e-8.
    x = [0.37283533811569214, 0.37283530831336975, 0.3728352189064026, 0.37283533811569214]
    assert np.std(np.asarray(x, np.float32)) > 0
    assert np.isnan(_run(54, 4, x, dtype=np.float32))
    assert np.isnan(_run(55, 2, np.reshape(x, (2, 2)), dtype=np.float32))
    row_std = _run(53, 4, [x, [1.0, 3.0, 1.0, 3.0], x, x], dtype=np.float32)
    assert np.isnan(row_std[0]) and row_std[1] == 1.0
    x64 = [8.62670661215892, 8.626706612158925, 8.626706612158927, 8.626706612158918]
    assert np.isnan(_run(54, 4, x64, dtype=np.float64))
    assert _run(54, 4, [1.0, 3.0, 1.0, 3.0]) == 1.0  # population, not sample (1.1547)


NAN = np.nan
# (a, b, std::min(a, b), std::max(a, b)) -- a's entry on NaN or equality.
STD_MIN_MAX = [
    (NAN, 1.0, NAN, NAN),
    (1.0, NAN, 1.0, 1.0),
    (-0.0, 0.0, -0.0, -0.0),
    (0.0, -0.0, 0.0, 0.0),
    (1.0, 2.0, 1.0, 2.0),
    (2.0, 1.0, 1.0, 2.0),
]
# The original's matrix loops `a < b ? a : b` / `a > b ? a : b`: b's entry on NaN or equality.
LOOP_MIN_MAX = [
    (NAN, 1.0, 1.0, 1.0),
    (1.0, NAN, NAN, NAN),
    (-0.0, 0.0, 0.0, 0.0),
    (0.0, -0.0, -0.0, -0.0),
    (1.0, 2.0, 1.0, 2.0),
    (2.0, 1.0, 1.0, 2.0),
]


def _same(x, y):
    """Equal including NaN-ness and the sign of zero."""
    x, y = np.asarray(x), np.asarray(y)
    return bool(np.all((np.isnan(x) & np.isnan(y)) | ((x == y) & (np.signbit(x) == np.signbit(y)))))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_min_max_nan_and_equality_rules(dtype):
    for a, b, lo, hi in STD_MIN_MAX:
        assert _same(_run(44, 1, a, b, dtype=dtype), lo)
        assert _same(_run(47, 1, a, b, dtype=dtype), hi)
    cols = np.array(STD_MIN_MAX).T  # Vectors: all cases at once, elementwise.
    assert _same(_run(45, 6, cols[0], cols[1], dtype=dtype), cols[2])
    assert _same(_run(48, 6, cols[0], cols[1], dtype=dtype), cols[3])
    a, b, lo, hi = (np.resize(c, (6, 6)) for c in np.array(LOOP_MIN_MAX).T)
    assert _same(_run(46, 6, a, b, dtype=dtype), lo) and _same(_run(49, 6, a, b, dtype=dtype), hi)
    # ReLU: maximum(v, zeros).
    assert _same(_run(48, 3, [-1.0, 0.0, 2.0], [0.0, 0.0, 0.0]), [0.0, 0.0, 2.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_const_set_index_rounding(dtype):
    for F in (1, 2, 3, 4, 5, 8, 16, 32):  # (i + 0.5) / F is the original's IndexToFloat.
        for i in range(F):
            v = _run(57, F, consts=((i + 0.5) / F, 1.0, 0.0), dtype=dtype)
            assert np.flatnonzero(v).tolist() == [i]
    fractions = {0.0: 0, 0.999999: 7, float(np.nextafter(np.float32(1), 0)): 7, 1.0: 7, NAN: 0}
    for fraction, index in fractions.items():  # 1.0 and NaN are clamped (never drawn).
        assert np.flatnonzero(_run(57, 8, consts=(fraction, 1.0, 0.0), dtype=dtype)).tolist() == [
            index
        ]
    # The product F * fraction is float32, as the original's FloatToIndex: float32(5/6) * 6
    # rounds to exactly 5.0, while the exact product 4.99999988 would truncate to 4.
    assert np.flatnonzero(_run(57, 6, consts=(5 / 6, 1.0, 0.0), dtype=dtype)).tolist() == [5]
    # Other entries stay unchanged.
    v = _run(57, 4, consts=(0.3, -2.0, 0.0), out_init=[1.0, 2.0, 3.0, 4.0], dtype=dtype)
    np.testing.assert_array_equal(v, [1.0, -2.0, 3.0, 4.0])
    m = _run(58, 4, consts=(0.9, 0.3, 5.0), out_init=np.ones((4, 4)), dtype=dtype)
    expected = np.ones((4, 4))
    expected[3, 1] = 5.0
    np.testing.assert_array_equal(m, expected)


@pytest.mark.parametrize("op", [59, 60, 61])
@pytest.mark.parametrize("high", [0.3, -0.5])
def test_uniform_with_low_not_below_high_gives_low(op, high):
    value = _run(op, 4, consts=(0.3, high, 0.0), dtype=np.float32)
    np.testing.assert_array_equal(value, np.full(np.shape(value), np.float32(0.3)))


def test_transpose_in_place():
    mem = ref.Memory.zeros(SPEC, 3, np.float64)
    m = np.arange(9.0).reshape(3, 3)
    mem.matrices[1] = m
    ref.execute_instruction(mem, Instruction(37, 1, 0, 1))
    np.testing.assert_array_equal(mem.matrices[1], m.T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ieee_specials_propagate_without_warnings(dtype):
    inf = np.inf
    assert _run(14, 1, 0.0, dtype=dtype) == -inf  # log(0)
    assert np.isnan(_run(14, 1, -1.0, dtype=dtype))  # log(-1)
    assert _run(4, 1, 1.0, 0.0, dtype=dtype) == inf
    assert _run(4, 1, -1.0, 0.0, dtype=dtype) == -inf
    assert _run(4, 1, 1.0, -0.0, dtype=dtype) == -inf
    assert np.isnan(_run(4, 1, 0.0, 0.0, dtype=dtype))
    assert _run(6, 1, 0.0, dtype=dtype) == inf
    assert np.isnan(_run(10, 1, 2.0, dtype=dtype))  # arcsin outside [-1, 1]
    assert _run(13, 1, 1000.0, dtype=dtype) == inf  # exp overflow
    assert np.isnan(_run(2, 1, inf, inf, dtype=dtype))
    v = _run(26, 3, [1.0, 0.0, -1.0], [0.0, 0.0, 0.0], dtype=dtype)
    assert v[0] == inf and np.isnan(v[1]) and v[2] == -inf
    v = _run(23, 3, [1.0, NAN, inf], [1.0, 1.0, 1.0], dtype=dtype)
    assert v[0] == 2.0 and np.isnan(v[1]) and v[2] == inf
    m = _run(43, 2, [[inf, 0.0], [1.0, 1.0]], [[1.0, 1.0], [0.0, 1.0]], dtype=dtype)
    assert m[0, 0] == inf and m[0, 1] == inf and m[1].tolist() == [1.0, 2.0]
    assert np.isnan(_run(21, 2, [inf, NAN], dtype=dtype))
    assert _run(1, 1, np.finfo(dtype).max, np.finfo(dtype).max, dtype=dtype) == inf


# ------------------------------------------------------------------------------------------------
# float64: the original's double arithmetic.


@pytest.mark.parametrize("F", [2, 4, 8])
def test_float64_products_are_rounded_before_they_are_added(F):
    """An inf term plus a product overflowing to -inf is NaN in dot, matrix-vector and matrix
    products, wherever the two sit: the original rounds each product. (BLAS fuses the multiply
    into the add, inf + -1e400 exactly = inf: np.dot and @ gave inf for some positions.)"""
    for i, j in itertools.permutations(range(F), 2):
        row, v = np.zeros(F), np.zeros(F)
        row[i], v[i] = np.inf, 1.0
        row[j], v[j] = 1e200, -1e200
        m = np.tile(row, (F, 1))
        assert np.isnan(_run(27, F, row, v)), (i, j)
        assert np.isnan(_run(31, F, m, v)).all(), (i, j)
        assert np.isnan(_run(43, F, m, np.tile(v[:, None], (1, F)))).all(), (i, j)


# Arguments where NumPy's own float64 functions and the C library's differ in the last bit (found
# on this machine's NumPy), and the special values.
LIBM_ARGS = [-0.4604265724722594, 0.8701448475755365, 0.6265404784005448, 0.08292244049818343]
LIBM_ARGS += [0.8255111545554434, -0.648688758794882, -0.02230792774148016, -0.6341133506485626]
LIBM_ARGS += [0.1268249473479799, -0.14395096191209666, 0.9329853499970076, 0.9674058832128316]
LIBM_ARGS += [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 710.0, -800.0, 1e-310, np.inf, -np.inf, np.nan]
LIBM = {7: math.sin, 8: math.cos, 9: math.tan, 10: math.asin}
LIBM |= {11: math.acos, 12: math.atan, 13: math.exp, 14: math.log}


@pytest.mark.parametrize("op", sorted(LIBM), ids=[ops.OPS[i].name for i in sorted(LIBM)])
def test_float64_transcendentals_are_the_c_library(op):
    """The original's std:: functions are the C library's (Python's `math`, which raises where C
    returns inf or NaN)."""
    for x in LIBM_ARGS:
        got = float(_run(op, 1, x))
        try:
            want = LIBM[op](x)
        except OverflowError:
            want = math.inf
        except ValueError:
            want = -math.inf if op == 14 and x == 0 else math.nan
        assert got == want or math.isnan(got) and math.isnan(want), (x, got, want)


def test_float64_validation_error_beyond_1e154_scores_zero():
    """|e| = exp(400) ~ 5e173 passes max_abs_error = inf; e^2 overflows to inf and the fitness is
    0, as the original's double sum (Python's e ** 2 raised OverflowError)."""
    program = make_program(SPEC, setup=[I(56, out=2, consts=(400.0,))], predict=[I(13, 2, 0, 1)])
    task = ref.SingleTask([[1.0]] * 2, [0.0, 0.0], [[1.0]], [0.0], 2, "rms")
    result = ref.evaluate(program, task, spec=SPEC, dtype=np.float64, max_abs_error=math.inf)
    assert result.fitness == 0.0 and not result.stopped_early
    assert result.valid_errors.tolist() == [math.exp(400.0)]


def test_float64_scalar_constants_are_float32():
    """The one float64 difference left: constants are float32 in the program encoding, so
    `s2 = 0.1` holds float32(0.1), where the original's SCALAR_CONST_SET keeps the double 0.1."""
    got = _run(56, 1, consts=(0.1,))
    assert got == float(np.float32(0.1)) != 0.1 and got.dtype == np.float64


# ------------------------------------------------------------------------------------------------
# Subnormal numbers: kept, as the original; flushed to zero on request, as the VM on CPU.

TINY = np.float32(2.0**-149)  # The smallest subnormal float32.


def test_subnormals_are_kept_unless_flushed():
    for flush, step, product in ((False, 1.0, np.inf), (True, 0.0, None)):
        mem = ref.Memory.zeros(SPEC, 4, np.float32)
        mem.vectors[1] = TINY
        mem.scalars[1], mem.scalars[2] = TINY, np.inf
        for ins in (I(16, 1, 0, 2), I(3, 1, 2, 3), I(5, 1, 0, 2), I(15, 1, 0, 1)):
            ref.execute_instruction(mem, ins, flush_subnormals=flush)
        np.testing.assert_array_equal(mem.vectors[2], [step] * 4)  # heaviside(x > 0)
        if flush:  # 2^-149 * inf: 0 * inf = NaN (the VM's early stop), not inf.
            assert np.isnan(mem.scalars[3])
        else:
            assert mem.scalars[3] == product
        assert mem.scalars[1] == 1.0 and mem.scalars[2] == (0.0 if flush else TINY)
    x = np.float32([TINY, -TINY, 1e-38, -1e-38, 1.2e-38, 0.0, -np.inf, np.nan])
    flushed = ref.flush_to_zero(x)
    np.testing.assert_array_equal(flushed[:4], 0.0)
    np.testing.assert_array_equal(np.signbit(flushed[:4]), [False, True, False, True])
    np.testing.assert_array_equal(flushed[4:7], x[4:7])
    assert np.isnan(flushed[7])


def test_evaluate_flushes_subnormals_on_request():
    """v[0.5] = 2^-149; s1 = sum(heaviside(v)) [via dot with ones]: 1 kept, 0 flushed."""
    program = make_program(
        SPEC,
        setup=[I(57, out=1, consts=(0.5, float(TINY))), I(57, out=2, consts=(0.5, 1.0))],
        predict=[I(16, 1, 0, 3), I(27, 3, 2, 1)],
    )
    task = ref.SingleTask([[0.0, 0.0]] * 2, [0.0, 0.0], [[0.0, 0.0]], [1.0], 2, "rms")
    kept = ref.evaluate(program, task, spec=SPEC)
    flushed = ref.evaluate(program, task, spec=SPEC, flush_subnormals=True)
    assert kept.valid_errors.tolist() == [0.0] and flushed.valid_errors.tolist() == [1.0]
    assert kept.fitness == 1.0 and flushed.fitness == 0.5


# ------------------------------------------------------------------------------------------------
# Random ops.


def _draw(op, F, consts, seed=SEED, call=CALL, slot=SLOT, dtype=np.float32):
    mem = ref.Memory.zeros(SPEC, F, dtype)
    ref.execute_instruction(mem, Instruction(op, 0, 0, 1, consts), seed=seed, call=call, slot=slot)
    return mem.bank(ops.OPS[op].out)[1].copy()


def test_random_op_moments():
    g = _draw(64, 32, (0.5, 2.0, 0.0))
    assert g.dtype == np.float32 and np.all(np.isfinite(g))
    assert abs(g.mean() - 0.5) < 0.25 and 1.8 < g.std() < 2.2  # SE 0.06 and 0.04
    u = _draw(61, 32, (-1.0, 3.0, 0.0))
    assert u.min() >= -1.0 and u.max() < 3.0
    assert abs(u.mean() - 1.0) < 0.15 and abs(u.std() - 4 / math.sqrt(12)) < 0.1
    assert len(np.unique(u)) > 1000  # 1024 distinct draws


@pytest.mark.parametrize("op", [59, 60, 61, 62, 63, 64])
def test_random_ops_are_deterministic_in_seed_call_slot(op):
    consts = (0.0, 1.0, 0.0)
    base = _draw(op, 4, consts)
    np.testing.assert_array_equal(base, _draw(op, 4, consts))
    for changed in (dict(seed=SEED + 1), dict(call=CALL + 1), dict(slot=SLOT + 1)):
        other = _draw(op, 4, consts, **changed)
        assert np.all(other != base), changed
    if ops.OPS[op].out != S:
        assert len(np.unique(base)) == base.size  # elements are distinct draws


def test_random_element_layout_is_row_major():
    # The same key: the scalar draw is element 0, the vector's e = i, the matrix's e = r * F + c.
    s, v, m = (_draw(op, 4, (0.0, 1.0, 0.0)) for op in (59, 60, 61))
    assert s == v[0] == m[0, 0]
    np.testing.assert_array_equal(m.reshape(-1)[:4], v)


# ------------------------------------------------------------------------------------------------
# The evaluation protocol.

I = Instruction  # noqa: E741


def _linear_sgd(lr):
    return make_program(
        SPEC,
        setup=[I(56, out=2, consts=(lr,))],
        predict=[I(27, 1, 0, 1)],
        learn=[I(2, 0, 1, 3), I(3, 2, 3, 3), I(18, 3, 0, 2), I(23, 1, 2, 1)],
    )


def _linear_task(epochs=1, n=100, F=4, eval_type="rms"):
    r = np.random.default_rng(0)
    u = r.normal(size=F)
    x_train, x_valid = r.normal(size=(n, F)), r.normal(size=(n, F))
    stream = np.concatenate([x_train[r.permutation(n)] if e else x_train for e in range(epochs)])
    return ref.SingleTask(stream, stream @ u, x_valid, x_valid @ u, n, eval_type)


def test_linear_regression_by_sgd_is_learned():
    task = _linear_task()
    slow = ref.evaluate(_linear_sgd(0.01), task, spec=SPEC)
    fast = ref.evaluate(_linear_sgd(0.1), task, spec=SPEC)
    assert 0.5 < slow.fitness < 0.99 < fast.fitness
    task10 = _linear_task(epochs=10)
    assert ref.evaluate(_linear_sgd(0.01), task10, spec=SPEC).fitness > 0.99
    assert fast.train_errors.shape == (100,) and fast.valid_errors.shape == (100,)
    assert fast.train_errors.dtype == np.float32 and not fast.stopped_early
    # Weights start at 0, so the first prediction is 0 and the first error is |y_0|.
    assert fast.train_errors[0] == np.float32(abs(task.y_train[0]))
    f64 = ref.evaluate(_linear_sgd(0.1), task, spec=SPEC, dtype=np.float64)
    assert abs(f64.fitness - fast.fitness) < 1e-5


def test_protocol_by_hand():
    # F = 1, lr = 0.25, train (x, y) = (1, 2), (2, 4); valid (3, 5); all exact in float32.
    # Step 1: s1 = 0, err 2, w = 0.25 * 2 * 1 = 0.5. Step 2: s1 = 1, err 3, w = 0.5 + 0.75 * 2 = 2.
    # Validation: s1 = 6, e = -1, rmse 1, fitness 1 - (2 / pi) atan(1) = 0.5.
    task = ref.SingleTask([[1.0], [2.0]], [2.0, 4.0], [[3.0]], [5.0], 2, "rms")
    for dtype in (np.float32, np.float64):
        result = ref.evaluate(_linear_sgd(0.25), task, spec=SPEC, dtype=dtype)
        assert result.train_errors.tolist() == [2.0, 3.0]
        assert result.valid_errors.tolist() == [1.0]
        assert result.fitness == pytest.approx(0.5, abs=1e-15)


def test_nan_program_scores_zero():
    nan_predict = make_program(SPEC, predict=[I(4, 0, 0, 1)])  # s1 = s0 / s0 = 0 / 0
    task = _linear_task()
    result = ref.evaluate(nan_predict, task, spec=SPEC)
    assert result.fitness == 0.0 and result.stopped_early
    assert result.train_errors.size == 0 and result.valid_errors.size == 0
    huge = make_program(SPEC, setup=[I(56, out=2, consts=(1e3,))], predict=[I(1, 2, 0, 1)])
    assert ref.evaluate(huge, task, spec=SPEC).fitness == 0.0  # |err| > 100


def _counter_program(step):
    """Setup s2 = step; Predict s1 = s3 + s0 (= s3); Learn s3 = s3 + s2: s1 counts up by step."""
    return make_program(
        SPEC,
        setup=[I(56, out=2, consts=(step,))],
        predict=[I(1, 3, 0, 1)],
        learn=[I(1, 3, 2, 3)],
    )


def _counter_task(y_valid, epochs=3, epoch_size=10):
    n = epochs * epoch_size
    valid = (np.zeros((5, 4)), np.full(5, y_valid))
    return ref.SingleTask(np.zeros((n, 4)), np.zeros(n), *valid, epoch_size)


def test_early_stop_in_a_later_epoch_keeps_the_best():
    # Predictions 0, 5, 10, ...: epoch 1 validates at s1 = 50 (error 40), epoch 2 at s1 = 100
    # (error 10); epoch 3 trains at s1 = 100 (|err| = 100, allowed) and 105 (> 100: stop).
    result = ref.evaluate(_counter_program(5.0), _counter_task(90.0), spec=SPEC)
    assert result.stopped_early
    assert result.fitness == pytest.approx(1 - 2 / math.pi * math.atan(10.0))
    np.testing.assert_array_equal(result.train_errors, np.arange(21) * 5.0)
    np.testing.assert_array_equal(result.valid_errors, np.full(5, 40.0))  # first pass only
    # Stopping in the first epoch gives 0.
    early = ref.evaluate(_counter_program(50.0), _counter_task(90.0), spec=SPEC)
    assert early.stopped_early and early.fitness == 0.0
    np.testing.assert_array_equal(early.train_errors, [0.0, 50.0, 100.0])


def test_validation_blowup_scores_that_epoch_zero_and_training_continues():
    # Epoch 1 validates at s1 = 50 vs y = 160 (|e| = 110 > 100: that pass scores 0); epoch 2 at
    # s1 = 100 (error 60).
    result = ref.evaluate(_counter_program(5.0), _counter_task(160.0), spec=SPEC)
    assert result.fitness == pytest.approx(1 - 2 / math.pi * math.atan(60.0))
    assert result.valid_errors.size == 0


def test_loss_is_divided_by_the_full_valid_count():
    result = ref.evaluate(
        _counter_program(5.0), _counter_task(90.0, epochs=1), spec=SPEC, num_valid_examples=2
    )
    # Two examples of error 40 over the task's 5: rmse = sqrt(2 * 1600 / 5).
    assert result.fitness == pytest.approx(1 - 2 / math.pi * math.atan(math.sqrt(640.0)))
    assert result.valid_errors.tolist() == [40.0, 40.0]


def test_accuracy_mode_applies_the_sigmoid():
    # Setup v1[0] = 1 (fraction 0.1 -> index 0), so Predict gives the logit s1 = dot(v1, v0) = x[0].
    program = make_program(
        SPEC,
        setup=[I(57, out=1, consts=(0.1, 1.0))],
        predict=[I(27, 1, 0, 1)],
    )
    r = np.random.default_rng(3)
    x_train, x_valid = r.normal(size=(20, 4)), r.normal(size=(10, 4))
    y_valid = (x_valid[:, 0] > 0).astype(float)
    y_valid[:3] = 1 - y_valid[:3]  # three wrong labels
    task = ref.SingleTask(x_train, (x_train[:, 0] > 0) * 1.0, x_valid, y_valid, 20, "accuracy")
    result = ref.evaluate(program, task, spec=SPEC, dtype=np.float64)
    assert result.fitness == pytest.approx(0.7)
    expected = np.abs(task.y_train - 1 / (1 + np.exp(-x_train[:, 0])))
    np.testing.assert_allclose(result.train_errors, expected, rtol=1e-14)
    assert result.valid_errors.tolist() == [1.0] * 3 + [0.0] * 7


def test_learn_sees_the_sigmoid_of_the_prediction():
    # Predict s1 = s2 + s0 (= s2); Learn s2 = s1 + s3 (= the sigmoid written by the protocol).
    program = make_program(SPEC, predict=[I(1, 2, 0, 1)], learn=[I(1, 1, 3, 2)])
    task = ref.SingleTask(np.zeros((3, 4)), np.ones(3), np.zeros((1, 4)), np.ones(1), 3, "accuracy")
    result = ref.evaluate(program, task, spec=SPEC, dtype=np.float64)
    p1 = 0.5  # sigmoid(0)
    p2 = 1 / (1 + math.exp(-p1))
    p3 = 1 / (1 + math.exp(-p2))
    np.testing.assert_allclose(result.train_errors, [1 - p1, 1 - p2, 1 - p3], rtol=1e-15)


def test_reserved_addresses_are_reset():
    # Predict doubles v0 and reads s2; Learn sets s2 = dot(v0, v0): 2 when v0 is reset to x = (1, 1,
    # 0, 0) before Learn (8 if Predict's change leaked). Predict also adds s0, which must be 0 (the
    # label 5 is only visible to Learn).
    program = make_program(SPEC, predict=[I(23, 0, 0, 0), I(1, 2, 0, 1)], learn=[I(27, 0, 0, 2)])
    x = np.tile([1.0, 1.0, 0.0, 0.0], (3, 1))
    task = ref.SingleTask(x, np.full(3, 5.0), x[:1], np.zeros(1), 3)
    result = ref.evaluate(program, task, spec=SPEC)
    assert result.train_errors.tolist() == [5.0, 3.0, 3.0]
    assert result.valid_errors.tolist() == [2.0]


def test_budget_rejection_scores_zero():
    task = _linear_task()
    result = ref.evaluate(_linear_sgd(0.1), task, spec=SPEC, num_train_examples=0)
    assert result.fitness == 0.0 and not result.stopped_early
    assert result.train_errors.size == 0 and result.valid_errors.size == 0


def _u(call, slot=0, seed=SEED):
    return float(rng.uniform01(rng.draw_key(seed, call, slot), 0))


def test_call_numbers_follow_the_protocol():
    # Predict s1 = uniform(0, 1) with y = 0: errors are the draws. Setup is call 0; example k
    # runs Predict at 1 + 2k and Learn at 2 + 2k; validation of the 3-example chunk follows.
    program = make_program(SPEC, predict=[I(0), I(59, out=1, consts=(0.0, 1.0))])
    task = ref.SingleTask(np.zeros((6, 2)), np.zeros(6), np.zeros((2, 2)), np.zeros(2), 3)
    result = ref.evaluate(program, task, spec=SPEC, seed=SEED)
    expected_train = [_u(c, slot=1) for c in (1, 3, 5, 9, 11, 13)]  # 7, 8: chunk-1 validation
    np.testing.assert_array_equal(result.train_errors, np.float32(expected_train))
    np.testing.assert_array_equal(result.valid_errors, np.float32([_u(7, 1), _u(8, 1)]))
    # A validation pass that stops early (|e| > 100 at its first example) still reserves its two
    # call numbers: chunk 2 keeps Predict calls 9, 11, 13.
    blowup = ref.evaluate(program, task._replace(y_valid=np.full(2, 1e3)), spec=SPEC, seed=SEED)
    np.testing.assert_array_equal(blowup.train_errors, result.train_errors)
    assert blowup.fitness == 0.0 and blowup.valid_errors.size == 0
    # Learn draws at its own call numbers (2, 4, 6, then 10, 12); Predict reads them next step.
    learn_draw = make_program(
        SPEC, predict=[I(1, 2, 0, 1)], learn=[I(59, out=2, consts=(0.0, 1.0))]
    )
    result = ref.evaluate(learn_draw, task, spec=SPEC, seed=SEED)
    expected_train = [0.0] + [_u(c) for c in (2, 4, 6, 10, 12)]
    np.testing.assert_array_equal(result.train_errors, np.float32(expected_train))
    np.testing.assert_array_equal(result.valid_errors, np.float32([_u(6), _u(6)]))
    # Setup runs once, at call 0.
    setup_draw = make_program(
        SPEC, setup=[I(59, out=2, consts=(0.0, 1.0))], predict=[I(1, 2, 0, 1)]
    )
    result = ref.evaluate(setup_draw, task, spec=SPEC, seed=SEED)
    np.testing.assert_array_equal(result.train_errors, np.full(6, np.float32(_u(0))))


def test_fec_errors_take_the_first_epoch_only():
    task = _linear_task()
    full = ref.evaluate(_linear_sgd(0.01), task, spec=SPEC)
    train, valid = ref.fec_errors(_linear_sgd(0.01), task, spec=SPEC)
    np.testing.assert_array_equal(train, full.train_errors[:10])
    np.testing.assert_array_equal(valid.shape, (10,))
    short_epochs = task._replace(epoch_size=4)
    train, valid = ref.fec_errors(_linear_sgd(0.01), short_epochs, spec=SPEC)
    np.testing.assert_array_equal(train, full.train_errors[:4])


def test_batched_task_with_task_index():
    task = _linear_task()
    other = task._replace(y_train=-task.y_train, y_valid=-task.y_valid)
    batched = ref.SingleTask(
        *(np.stack([a, b]) for a, b in zip(task[:4], other[:4], strict=True)), 100, "rms"
    )
    for t, single in enumerate((task, other)):
        got = ref.evaluate(_linear_sgd(0.1), batched, spec=SPEC, task_index=t)
        assert got.fitness == ref.evaluate(_linear_sgd(0.1), single, spec=SPEC).fitness


def test_bad_input_raises_clear_errors():
    task = _linear_task()
    bad_address = make_program(SPEC, learn=[I(0), I(23, 1, 9, 2)])
    with pytest.raises(ValueError, match=r"learn slot 1 .*in2 = 9"):
        ref.evaluate(bad_address, task, spec=SPEC)
    with pytest.raises(ValueError, match="eval_type"):
        ref.evaluate(_linear_sgd(0.1), task._replace(eval_type="mse"), spec=SPEC)
    with pytest.raises(ValueError, match="share F"):
        ref.evaluate(_linear_sgd(0.1), task._replace(x_valid=np.zeros((100, 3))), spec=SPEC)
    with pytest.raises(ValueError, match="float32 or float64"):
        ref.evaluate(_linear_sgd(0.1), task, spec=SPEC, dtype=np.float16)
    mem = ref.Memory.zeros(SPEC, 4)
    with pytest.raises(ValueError, match="op = 65"):
        ref.execute_instruction(mem, I(65))
    with pytest.raises(ValueError, match="out = 4"):
        ref.execute_instruction(mem, I(1, 0, 0, 4))
    with pytest.raises(ValueError, match="4 consts"):
        ref.execute_instruction(mem, I(58, consts=(0.1, 0.2, 0.3, 0.4)))


def test_op_semantics_cover_the_table():
    assert sorted(ref.OP_SEMANTICS) == list(range(ops.NUM_OPS))
