"""Tests for azjax.mutation: the eight mutation types and their rules (docs/ops.md)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from azjax import generator, keys, mutation, ops
from azjax import program as P
from azjax.mutation import MutationParams, MutationType
from azjax.program import COMPONENTS, ComponentSpec, Instruction, Program, ProgramSpec

try:
    from azjax.program_io import validate
except ImportError:  # program_io is written concurrently; fall back to small range checks.
    validate = None

Kind, Data = ops.Kind, ops.Data
I = Instruction  # noqa: E741
N = 4096  # Parents per call: one shape, so each MutationParams compiles once.

# Big banks make "new address equals the old one" rare (2%); Learn is frozen (the NN's Learn).
_BASE = ProgramSpec(
    num_scalars=50,
    num_vectors=50,
    num_matrices=50,
    setup=ComponentSpec(8, ops.ALL_OPS),
    predict=ComponentSpec(5, tuple(range(1, ops.NUM_OPS))),
    learn=ComponentSpec(11, ()),
)
NN = generator.neural_net_algorithm(_BASE, (0, 0, 0))
SPEC = generator.add_required_ops(_BASE, NN)
SETUP, PREDICT, LEARN = 0, 1, 2


@functools.partial(jax.jit, static_argnames=("params",))
def _mutate(key, parents, params):
    subkeys = keys.split(key, N)  # As mutate_batch splits.
    return jax.vmap(lambda k, p: mutation.mutate_with_info(k, p, SPEC, params))(subkeys, parents)


def run(params, parents, seed=0):
    children, info = _mutate(jax.random.key(seed), parents, params)
    children, info = jax.tree.map(np.asarray, (children, info))
    _check_invariants(parents, children)
    return children, info


@functools.cache
def random_parents():
    """N parents: random Setup / Predict of every length 0..L (full ones included), NN Learn."""

    @jax.jit
    def make(key):
        k_setup, k_predict, k_programs = jax.random.split(key, 3)
        n_setup = jax.random.randint(k_setup, (N,), 0, SPEC.setup.size + 1)
        n_predict = jax.random.randint(k_predict, (N,), 0, SPEC.predict.size + 1)

        def one(k, a, b):
            ka, kb = jax.random.split(k)
            setup = generator.random_component(ka, SPEC, "setup", a)
            predict = generator.random_component(kb, SPEC, "predict", b)
            return Program(setup, predict, jax.tree.map(jnp.asarray, NN.learn))

        return jax.vmap(one)(jax.random.split(k_programs, N), n_setup, n_predict)

    return jax.tree.map(np.asarray, make(jax.random.key(42)))


def tile(programs):
    """N parents cycling through `programs`."""
    return P.stack([programs[i % len(programs)] for i in range(N)])


def rows(comp, i):
    """The live instructions of parent i as hashable rows."""
    code, consts = np.asarray(comp.code[i]), np.asarray(comp.consts[i])
    return [code[s].tobytes() + consts[s].tobytes() for s in range(int(comp.length[i]))]


def diff(a, b):
    """Per-slot, per-field differences [N, L, 7] (op, in1, in2, out, c0, c1, c2)."""
    return np.concatenate([a.code != b.code, a.consts != b.consts], axis=-1)


def same(a, b):
    """[N] True where the two populations' component is identical."""
    return ~diff(a, b).any((1, 2)) & (a.length == b.length)


def _check_invariants(parents, children):
    """Every child is a valid program of SPEC (padding all-zero) and frozen Learn never changes."""
    assert same(parents.learn, children.learn).all()
    if validate is not None:
        validate(children, SPEC, batched=True)
        return
    for c in COMPONENTS:
        comp = getattr(children, c)
        live = np.arange(comp.code.shape[1]) < comp.length[:, None]
        assert not comp.code[~live].any() and not comp.consts[~live].any()
        ops_used = comp.code[..., 0][live]
        assert np.isin(ops_used, SPEC.component(c).valid_ops).all()
        for col, field in ((1, "in1"), (2, "in2"), (3, "out")):
            kinds = np.array([getattr(op, field) for op in ops.OPS])[ops_used]
            addr = comp.code[..., col][live]
            hi = np.where(kinds == Kind.NONE, 1, 50)
            lo = np.where((col == 3) & np.isin(kinds, (Kind.SCALAR, Kind.VECTOR)), 1, 0)
            assert ((addr >= lo) & (addr < hi)).all()


def binomial_ok(hits, n, p, sds=5.0):
    return abs(hits / n - p) <= sds * np.sqrt(p * (1 - p) / n)


# ------------------------------------------------------------------------------------------------


def test_params_validation_and_normalization():
    params = MutationParams(
        allowed_mutation_types=("ALTER_PARAM", "insert_instruction_mutation_type", 5),
        size_min={"setup": 1},
        size_max=7,
    )
    assert params.allowed_mutation_types == (0, 4, 5)
    assert params.size_min == (1, 0, 0) and params.size_max == (7, 7, 7)
    assert hash(params) == hash(MutationParams((0, 4, 5), 0.9, (1, 0, 0), (7, 7, 7)))
    assert MutationParams().allowed_mutation_types == (0, 1, 2)  # The demo's list.
    with pytest.raises(ValueError, match="unknown mutation type 'SWAP'"):
        MutationParams(allowed_mutation_types=("SWAP",))
    with pytest.raises(ValueError, match="unknown mutation type id 8"):
        MutationParams(allowed_mutation_types=(8,))
    with pytest.raises(ValueError, match="must not be empty"):
        MutationParams(allowed_mutation_types=())
    with pytest.raises(ValueError, match="mutate_prob"):
        MutationParams(mutate_prob=1.5)
    with pytest.raises(ValueError, match="size_min"):
        MutationParams(size_min=(1, 2))
    with pytest.raises(ValueError, match="size_max"):
        MutationParams(size_max={"train": 3})
    parent = P.index(random_parents(), 0)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="INSERT_INSTRUCTION is allowed but size_max of setup"):
        mutation.mutate(key, parent, SPEC, MutationParams((4,), size_max=(0, 5, 0)))
    with pytest.raises(ValueError, match="REMOVE_INSTRUCTION is allowed but size_max of predict"):
        mutation.mutate(key, parent, SPEC, MutationParams((5,), size_max=(5, 0, 0)))
    frozen = SPEC.replace(setup=SPEC.setup._replace(ops=()), predict=SPEC.predict._replace(ops=()))
    with pytest.raises(ValueError, match="frozen"):
        mutation.mutate(key, parent, frozen, MutationParams())
    with pytest.raises(ValueError, match="unbatched"):
        mutation.mutate(key, random_parents(), SPEC, MutationParams())


def test_clones_identity_and_mutate_prob():
    parents = random_parents()
    children, info = run(MutationParams((MutationType.IDENTITY,), mutate_prob=1.0), parents)
    assert info.mutated.all() and (info.mutation_type == 3).all()
    assert all(same(getattr(parents, c), getattr(children, c)).all() for c in COMPONENTS)

    ra = MutationType.RANDOMIZE_ALGORITHM
    children, info = run(MutationParams((ra,), mutate_prob=0.0), parents)
    assert not info.mutated.any()
    assert all(same(getattr(parents, c), getattr(children, c)).all() for c in COMPONENTS)

    # mutate_prob 0.9: ~90% mutated; RANDOMIZE_ALGORITHM regenerates every mutable component.
    children, info = run(MutationParams((ra,), mutate_prob=0.9), parents)
    assert binomial_ok(info.mutated.sum(), N, 0.9)
    for c in ("setup", "predict"):
        p, ch = getattr(parents, c), getattr(children, c)
        assert (p.length == ch.length).all()
        changed = ~same(p, ch)
        assert not changed[~info.mutated].any()
        assert changed[info.mutated & (p.length > 0)].mean() > 0.99


def test_type_and_component_selection():
    params = MutationParams(("ALTER_PARAM", "IDENTITY", "IDENTITY"), mutate_prob=1.0)
    parents = random_parents()
    children, info = run(params, parents)
    assert set(np.unique(info.mutation_type)) == {0, 3}
    assert binomial_ok((info.mutation_type == 3).sum(), N, 2 / 3)  # Duplicates weight.
    assert set(np.unique(info.component)) == {SETUP, PREDICT}  # Learn is frozen.
    assert binomial_ok((info.component == SETUP).sum(), N, 1 / 2)
    for i, c in ((SETUP, "setup"), (PREDICT, "predict")):
        changed = ~same(getattr(parents, c), getattr(children, c))
        assert not changed[(info.component != i) | (info.mutation_type == 3)].any()


def test_alter_param_changes_one_field_with_the_right_frequencies():
    parents = random_parents()
    children, info = run(MutationParams((MutationType.ALTER_PARAM,), mutate_prob=1.0), parents)
    fields = {"one input": [], "two inputs": [], "set op": []}
    for i, c in ((SETUP, "setup"), (PREDICT, "predict")):
        p, ch = getattr(parents, c), getattr(children, c)
        assert (p.length == ch.length).all()
        d = diff(p, ch)  # [N, L, 7]
        assert not d[info.component != i].any()
        assert not d[..., 0].any()  # The op never changes.
        assert (d.any(-1).sum(-1) <= 1).all()  # At most one instruction.
        for n, s in zip(*np.nonzero(d.any(-1)), strict=True):
            op = ops.OPS[p.code[n, s, 0]]
            changed = tuple(np.nonzero(d[n, s])[0])
            if op.data == Data.UNIFORM and set(changed) <= {4, 5}:
                changed = ("data",)  # Low and high may both move: they are re-sorted.
            assert len(changed) == 1, (op.name, changed)
            field = {1: "in1", 2: "in2", 3: "out"}.get(changed[0], "data")
            cls = "set op" if op.is_set_op else ("one input", "two inputs")[op.num_inputs - 1]
            fields[cls].append(field)
        # NO_OPs and empty components never change.
        noop = (p.length == 0) | (p.code[np.arange(N), 0, 0] == 0) & (p.length == 1)
        assert not d[noop].any()
    expected = {
        "one input": {"in1": 1 / 2, "out": 1 / 2},
        "two inputs": {"in1": 1 / 3, "in2": 1 / 3, "out": 1 / 3},
        "set op": {"out": 1 / 2, "data": 1 / 2},
    }
    for cls, probs in expected.items():
        got = fields[cls]
        assert len(got) > 300 and set(got) == set(probs)
        for field, p in probs.items():
            assert binomial_ok(got.count(field), len(got), p), (cls, field)
    # A program of NO_OPs is never altered.
    noops = tile([generator.no_op_algorithm(SPEC, (8, 5, 0))._replace(learn=NN.learn)])
    children, _ = run(MutationParams((MutationType.ALTER_PARAM,), mutate_prob=1.0), noops)
    assert all(same(getattr(noops, c), getattr(children, c)).all() for c in COMPONENTS)


def test_alter_data_rules():
    groups = [
        I(56, out=2, consts=(0.5,)),  # Scalar const: LogScaleOrFlip (4 of 8 groups).
        I(56, out=2, consts=(0.5,)),
        I(56, out=2, consts=(0.5,)),
        I(56, out=2, consts=(0.5,)),
        I(57, out=2, consts=(0.3, 0.5)),  # Vector const: 1/2 index, 1/2 value.
        I(58, out=2, consts=(0.3, 0.6, 0.5)),  # Matrix const: 1/3 row, col, value.
        I(63, out=2, consts=(0.5, 0.25)),  # Gaussian: 1/2 mean (flip), 1/2 stdev (no flip).
        I(60, out=2, consts=(0.5, -0.5)),  # Uniform, unsorted: re-sorted only by AlterData.
    ]
    programs = [
        P.make_program(SPEC, setup=[g], predict=[I(56, out=1, consts=(0.0,))], learn=[])._replace(
            learn=NN.learn
        )
        for g in groups
    ]
    parents = tile(programs)
    group = np.arange(N) % len(groups)
    params = MutationParams((MutationType.ALTER_PARAM,), mutate_prob=1.0)
    moved = {g: [] for g in range(len(groups))}  # (changed const columns, old, new) per group.
    for seed in range(4):
        children, info = run(params, parents, seed)
        assert not children.predict.consts.any()  # A zero constant stays zero.
        d = diff(parents.setup, children.setup)[:, 0]  # [N, 7]
        for n in np.nonzero(d[:, 4:].any(-1))[0]:
            assert not d[n, 1:4].any()  # Data alters leave the addresses alone.
            cols = tuple(np.nonzero(d[n, 4:])[0])
            moved[group[n]].append((cols, parents.setup.consts[n, 0], children.setup.consts[n, 0]))
        # Out alters leave the constants alone, even the unsorted uniform bounds.
        out_only = d[:, 3] & (group == 7)
        assert (children.setup.consts[out_only, 0, :2] == [0.5, -0.5]).all()

    scalar = [new[0] for g in range(4) for _, _, new in moved[g]]
    flipped = np.asarray(scalar) == np.float32(-0.5)
    assert len(scalar) > 1500 and binomial_ok(flipped.sum(), len(scalar), 0.1)
    log_factor = np.log(np.asarray(scalar)[~flipped] / 0.5)  # exp(N(0, 1)): sign kept.
    assert abs(log_factor.mean()) < 5 / np.sqrt(len(log_factor))
    assert abs(log_factor.std() - 1.0) < 0.1

    def shares(g, n_choices):
        cols = [c for c, _, _ in moved[g]]
        return cols, all(binomial_ok(cols.count(c), len(cols), 1 / n_choices) for c in set(cols))

    cols, ok = shares(4, 2)
    assert set(cols) == {(0,), (1,)} and ok
    assert all(0 <= new[0] < 1 for c, _, new in moved[4] if c == (0,))
    cols, ok = shares(5, 3)
    assert set(cols) == {(0,), (1,), (2,)} and ok
    cols, ok = shares(6, 2)
    assert set(cols) == {(0,), (1,)} and ok
    assert all(new[1] > 0 for _, _, new in moved[6])  # The stdev is never flipped.
    assert any(new[0] < 0 for _, _, new in moved[6])  # The mean is.
    assert all(new[0] <= new[1] for _, _, new in moved[7])  # Uniform bounds sorted after alter.
    assert len(moved[7]) > 300


def test_randomize_instruction():
    parents = random_parents()
    params = MutationParams((MutationType.RANDOMIZE_INSTRUCTION,), mutate_prob=1.0)
    children, info = run(params, parents)
    for i, c in ((SETUP, "setup"), (PREDICT, "predict")):
        p, ch = getattr(parents, c), getattr(children, c)
        assert (p.length == ch.length).all()
        d = diff(p, ch).any(-1)
        assert (d.sum(-1) <= 1).all() and not d[info.component != i].any()
        hit = (info.component == i) & (p.length > 0)
        assert d[hit].any(-1).mean() > 0.95


def test_randomize_component_changes_only_that_component():
    parents = random_parents()
    params = MutationParams((MutationType.RANDOMIZE_COMPONENT_FUNCTION,), mutate_prob=1.0)
    children, info = run(params, parents)
    for i, c in ((SETUP, "setup"), (PREDICT, "predict")):
        p, ch = getattr(parents, c), getattr(children, c)
        assert (p.length == ch.length).all()
        changed = ~same(p, ch)
        assert not changed[info.component != i].any()
        assert changed[(info.component == i) & (p.length > 0)].mean() > 0.99
        # Most instructions are replaced, not just one.
        many = (info.component == i) & (p.length >= 3)
        assert diff(p, ch).any(-1).sum(-1)[many].mean() > 2


def _check_insert(p, ch, mask, size_max, capacity):
    positions = []
    for n in np.nonzero(mask)[0]:
        before, after, length = rows(p, n), rows(ch, n), int(p.length[n])
        if length >= min(size_max - 1, capacity):
            assert after == before
            continue
        assert len(after) == length + 1
        pos = next((s for s in range(length) if after[s] != before[s]), length)
        assert after[:pos] == before[:pos] and after[pos + 1 :] == before[pos:]
        positions.append((length, pos))
    return positions


def test_insert_instruction():
    parents = random_parents()
    params = MutationParams((MutationType.INSERT_INSTRUCTION,), 1.0, size_max=(6, 9, 0))
    children, info = run(params, parents)
    pos_setup = _check_insert(parents.setup, children.setup, info.component == SETUP, 6, 8)
    # Predict: size_max 9 but only 5 slots, so a full component does not grow.
    pos_predict = _check_insert(parents.predict, children.predict, info.component == PREDICT, 9, 5)
    assert max(n for n, _ in pos_setup) == 4 and max(n for n, _ in pos_predict) == 4
    assert children.setup.length.max() == 8 and children.predict.length.max() == 5
    for c, idx in (("setup", SETUP), ("predict", PREDICT)):
        other = info.component != idx
        assert same(getattr(parents, c), getattr(children, c))[other].all()
    # The insertion point is uniform over [0, length].
    for length in (2, 4):
        counts = np.bincount([s for n, s in pos_setup + pos_predict if n == length])
        assert len(counts) == length + 1 and stats.chisquare(counts).pvalue > 1e-4


def test_remove_instruction():
    parents = random_parents()
    params = MutationParams((MutationType.REMOVE_INSTRUCTION,), 1.0, (2, 0, 0), (9, 6, 0))
    children, info = run(params, parents)
    positions = []
    for idx, c, size_min in ((SETUP, "setup", 2), (PREDICT, "predict", 0)):
        p, ch = getattr(parents, c), getattr(children, c)
        assert same(p, ch)[info.component != idx].all()
        for n in np.nonzero(info.component == idx)[0]:
            before, after, length = rows(p, n), rows(ch, n), int(p.length[n])
            if length <= size_min:
                assert after == before
                continue
            assert len(after) == length - 1
            pos = next((s for s in range(length - 1) if after[s] != before[s]), length - 1)
            assert after[:pos] == before[:pos] and after[pos:] == before[pos + 1 :]
            positions.append((length, pos))
    assert min(n for n, _ in positions) == 1  # Predict (min 0) empties; Setup stops at 2.
    assert children.setup.length[(info.component == SETUP) & (parents.setup.length >= 2)].min() == 2
    for length in (3, 5):
        counts = np.bincount([s for n, s in positions if n == length])
        assert len(counts) == length and stats.chisquare(counts).pvalue > 1e-4


def test_trade_instruction_keeps_length():
    parents = random_parents()
    params = MutationParams((MutationType.TRADE_INSTRUCTION,), mutate_prob=1.0)
    children, info = run(params, parents)
    n_same = n_total = 0
    for idx, c in ((SETUP, "setup"), (PREDICT, "predict")):
        p, ch = getattr(parents, c), getattr(children, c)
        assert (p.length == ch.length).all()  # Full components (length = slots) included.
        assert same(p, ch)[info.component != idx].all()
        for n in np.nonzero(info.component == idx)[0]:
            before, after = rows(p, n), rows(ch, n)
            n_total += 1
            if after == before:
                n_same += 1
                continue
            # One instruction out of the parent, one new one into the child.
            assert any(
                after[:k] + after[k + 1 :] == before[:m] + before[m + 1 :]
                for k in range(len(after))
                for m in range(len(before))
            )
    assert 0.05 < n_same / n_total < 0.5  # The new instruction is sometimes the one deleted.


@pytest.mark.slow  # About 10 s cold: the default suite stays under 4 minutes.
def test_determinism_batch_and_unbatched():
    parents = random_parents()
    params = MutationParams(tuple(range(8)), 0.9, size_min=(0, 0, 0), size_max=(8, 5, 0))
    a, info = run(params, parents, seed=7)
    b, _ = run(params, parents, seed=7)
    c, _ = run(params, parents, seed=8)
    assert all(same(getattr(a, x), getattr(b, x)).all() for x in COMPONENTS)
    assert not all(same(getattr(a, x), getattr(c, x)).all() for x in COMPONENTS)
    assert set(np.unique(info.mutation_type)) == set(range(8))
    # mutate_batch is the same vmap over split keys; mutate works unbatched under jit.
    batch = jax.jit(mutation.mutate_batch, static_argnames=("spec", "params"))
    d = jax.tree.map(np.asarray, batch(jax.random.key(7), parents, SPEC, params))
    assert all(same(getattr(a, x), getattr(d, x)).all() for x in COMPONENTS)
    one = jax.jit(mutation.mutate, static_argnames=("spec", "params"))
    key = keys.split(jax.random.key(7), N)[3]
    child = one(key, P.index(parents, 3), SPEC, params)
    for x in COMPONENTS:
        for leaf_a, leaf_b in zip(getattr(child, x), getattr(a, x), strict=True):
            np.testing.assert_array_equal(leaf_a, leaf_b[3])
