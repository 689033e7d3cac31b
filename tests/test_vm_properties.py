"""Property-based tests (hypothesis): random programs over all 65 ops, VM against the reference.

Programs of `SLOTS` instructions with extreme constants (+-3e38, subnormal and tiny index
fractions, 1 - 2^-24) run on memories full of specials (NaN, inf, +-0, +-3e38, subnormals), at
F in {1, 4, 8, 16, 32}. The first `SLOTS - 1` instructions use the exactly computed ops, the last
any op, so the VM must equal the float32 reference bit for bit everywhere but in the output of a
final transcendental or Gaussian draw (the VM's own approximations), which must be close. Both
flush subnormals to zero, as XLA:CPU does (docs/deviations.md). The default run is a few
examples per F; `test_random_programs_many` (slow) runs many more.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azjax import ops, vm
from azjax import reference as ref
from azjax.program import Component, ComponentSpec, ProgramSpec

Kind, Data = ops.Kind, ops.Data
FEATURE_SIZES = (1, 4, 8, 16, 32)
SLOTS, LANES = 6, 8
SPEC = ProgramSpec(
    num_scalars=4,
    num_vectors=3,
    num_matrices=2,
    setup=ComponentSpec(SLOTS, ops.ALL_OPS),
)
INEXACT_OPS = frozenset(range(7, 15)) | {62, 63, 64}  # Transcendentals, Gaussian draws.
EXACT_OPS = tuple(i for i in ops.ALL_OPS if i not in INEXACT_OPS)

MAX32 = float(np.finfo(np.float32).max)
TINY_NORMAL = float(np.finfo(np.float32).tiny)
SUBNORMAL = float(np.float32(2.0**-149))
EXTREMES = [3e38, -3e38, MAX32, -MAX32, 1e-38, -1e-38, TINY_NORMAL, SUBNORMAL, 0.0, -0.0, 1.0]
FRACTIONS = [0.0, SUBNORMAL, 1e-38, 1e-30, 1e-7, 0.5, 0.999999, float(np.float32(1 - 2.0**-24))]
SPECIALS = np.float32([np.nan, np.inf, -np.inf, 0.0, -0.0, 3e38, -3e38, 1e-38, -(2.0**-149), 1.0])

SETTINGS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _float32(x) -> float:
    return float(np.float32(x))


values = st.one_of(
    st.sampled_from(EXTREMES),
    st.floats(-1, 1, width=32),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
).map(_float32)
fractions = st.one_of(st.sampled_from(FRACTIONS), st.floats(0, 1, exclude_max=True, width=32))
CONSTS = {
    Data.NONE: st.just(()),
    Data.CONST_SCALAR: st.tuples(values),
    Data.CONST_VECTOR: st.tuples(fractions, values),
    Data.CONST_MATRIX: st.tuples(fractions, fractions, values),
    Data.UNIFORM: st.tuples(values, values),
    Data.GAUSSIAN: st.tuples(values, values),
}


@st.composite
def instructions(draw, op_ids):
    """(op, in1, in2, out) and its 3 constants: only the fields the op uses are non-zero."""
    op = ops.OPS[draw(st.sampled_from(op_ids))]

    def address(kind, out=False):
        if kind == Kind.NONE:
            return 0
        lo, hi = SPEC.out_range(kind) if out else (0, SPEC.bank_size(kind))
        return draw(st.integers(lo, hi - 1))

    row = (op.id, address(op.in1), address(op.in2), address(op.out, out=True))
    consts = draw(CONSTS[op.data])
    return row, tuple(consts) + (0.0,) * (ops.NUM_CONSTS - len(consts))


@st.composite
def batches(draw):
    """LANES programs (exact ops, then any op last) and a memory recipe (seed, scale, rates)."""
    code = np.zeros((LANES, SLOTS, 4), np.int32)
    consts = np.zeros((LANES, SLOTS, ops.NUM_CONSTS), np.float32)
    for p in range(LANES):
        for slot in range(SLOTS):
            op_ids = ops.ALL_OPS if slot == SLOTS - 1 else EXACT_OPS
            code[p, slot], consts[p, slot] = draw(instructions(op_ids))
    programs = Component(code, consts, np.full(LANES, SLOTS, np.int32))
    recipe = (
        draw(st.integers(0, 2**32 - 1)),  # numpy seed of the memory and the lane seeds
        draw(st.sampled_from([1.0, 1e3, 1e18, 1e30])),  # scale of the ordinary entries
        draw(st.sampled_from([0.0, 0.05, 0.3])),  # fraction of special entries
    )
    return programs, recipe, draw(st.integers(0, 1000))  # call number


def _memory(F, seed, scale, special_rate):
    r = np.random.default_rng(seed)
    banks = []
    for shape in ((LANES, 4), (LANES, 3, F), (LANES, 2, F, F)):
        x = (scale * r.standard_normal(shape)).astype(np.float32)
        hit = r.random(shape) < special_rate
        x[hit] = r.choice(SPECIALS, size=int(hit.sum()))
        same = r.random(LANES) < 0.2  # Equal operands: entry 1 a copy of entry 0.
        x[same, 1] = x[same, 0]
        banks.append(x)
    return tuple(banks), r.integers(0, 2**32, LANES, dtype=np.uint32)


def _reference(programs, memory, seeds, call):
    outs = ([], [], [])
    for p in range(LANES):
        mem = ref.Memory(*(x[p].copy() for x in memory))
        one = Component(programs.code[p], programs.consts[p], programs.length[p])
        ref.execute_component(mem, one, seed=seeds[p], call=call, flush_subnormals=True)
        for out, bank in zip(outs, (mem.scalars, mem.vectors, mem.matrices), strict=True):
            out.append(ref.flush_to_zero(bank))
    return tuple(np.stack(x) for x in outs)


def _same_bits(x, y):
    return (x == y) & (np.signbit(x) == np.signbit(y)) | np.isnan(x) & np.isnan(y)


def check_batch(F, batch):
    """VM == reference: bit for bit, but for the output of a final inexact op (close)."""
    programs, (seed, scale, special_rate), call = batch
    memory, seeds = _memory(F, seed, scale, special_rate)
    got = vm.execute_component(
        SPEC, "setup", programs, *memory, seeds, np.int32(call)
    )  # One compile per F.
    got = tuple(ref.flush_to_zero(np.asarray(x)) for x in got)
    want = _reference(programs, memory, seeds, call)
    for p in range(LANES):
        op, _, _, out = (int(x) for x in programs.code[p, -1])
        inexact = {}  # bank index -> the entry a final inexact op wrote.
        if op in INEXACT_OPS:
            inexact[ops.OPS[op].out - 1] = out
        for b, (x, y) in enumerate(zip(got, want, strict=True)):
            exact = np.ones(x.shape[1:], bool)
            if b in inexact:
                exact[inexact[b]] = False
                a, c = x[p, inexact[b]], y[p, inexact[b]]
                c0, c1 = (abs(float(v)) for v in programs.consts[p, -1, :2])
                atol = 1e-6 + (1e-6 * (c0 + 8 * c1) if op in (62, 63, 64) else 0.0)
                close = np.isclose(a, c, rtol=5e-5, atol=atol, equal_nan=True)
                assert close.all(), (p, ops.OPS[op].name, a, c)
            same = _same_bits(x[p], y[p]) | ~exact
            assert same.all(), (p, "svm"[b], np.argwhere(~same)[:3], programs.code[p])


@pytest.mark.parametrize("F", FEATURE_SIZES)
@settings(max_examples=5, derandomize=True, **SETTINGS)
@given(batch=batches())
def test_random_programs_vm_equals_reference(F, batch):
    check_batch(F, batch)


@pytest.mark.slow
@pytest.mark.parametrize("F", FEATURE_SIZES + (3, 5))  # Not powers of two: the VM allows them.
@settings(max_examples=300, **SETTINGS)
@given(batch=batches())
def test_random_programs_many(F, batch):
    check_batch(F, batch)
