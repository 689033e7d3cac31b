"""Initial programs: the hand-written algorithms and random instructions (docs/ops.md).

The hand-written algorithms (NO_OP, LINEAR, NEURAL_NET, DAMAGED_NEURAL_NET) are host-side
`Program`s built from `Instruction` lists and padded with NO_OPs to the per-component initial
size `sizes` (never truncated). Random instructions are drawn in JAX, table-driven: the op's
operand kinds and constant layout are gathered from NumPy tables derived once from `ops.OPS`, so
`random_instruction` is jit/vmap friendly and has no Python branching on traced values.

`sizes` is the original's `{setup,predict,learn}_size_init`: a mapping from component name to an
int, or a sequence of three ints in `program.COMPONENTS` order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from azjax import keys, rng
from azjax import ops as ops_lib
from azjax import program as program_lib
from azjax.program import COMPONENTS, Component, Instruction, Program, ProgramSpec

Kind, Data = ops_lib.Kind, ops_lib.Data
SizesLike = Mapping[str, int] | Sequence[int]

DEFAULT_LEARNING_RATE = 0.01  # kDefaultLearningRate
DEFAULT_INIT_SCALE = 0.1  # kDefaultInitScale

# Per-op lookup tables, indexed by op id: operand kinds (in1, in2, out) and constant layout.
OPERAND_KINDS = np.array([[op.in1, op.in2, op.out] for op in ops_lib.OPS], np.int32)  # [65, 3]
DATA_KINDS = np.array([op.data for op in ops_lib.OPS], np.int32)  # [65]

# Initial constant distributions per `Data` kind (docs/ops.md): c_j ~ U[lo_j, hi_j).
# SCALAR_CONST_SET's value is drawn on the open interval (-1, 1), as the original's double.
_D = len(Data)
DATA_LOW = np.zeros((_D, ops_lib.NUM_CONSTS), np.float32)
DATA_HIGH = np.zeros((_D, ops_lib.NUM_CONSTS), np.float32)
DATA_OPEN = np.zeros((_D,), bool)
for _kind, _lo, _hi in (
    (Data.CONST_SCALAR, (-1, 0, 0), (1, 0, 0)),  # value
    (Data.CONST_VECTOR, (0, -1, 0), (1, 1, 0)),  # index fraction, value
    (Data.CONST_MATRIX, (0, 0, -1), (1, 1, 1)),  # row fraction, column fraction, value
    (Data.UNIFORM, (-1, -1, 0), (1, 1, 0)),  # low, high (NOT sorted)
    (Data.GAUSSIAN, (-1, 0, 0), (1, 1, 0)),  # mean, stdev
):
    DATA_LOW[_kind], DATA_HIGH[_kind] = _lo, _hi
DATA_OPEN[Data.CONST_SCALAR] = True


def _sizes(spec: ProgramSpec, sizes: SizesLike) -> dict[str, int]:
    """Normalizes `sizes` to {component: int} and checks it against the slot capacities."""
    if isinstance(sizes, Mapping):
        unknown = set(sizes) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"unknown component(s) {sorted(unknown)} in sizes; use {COMPONENTS}")
        out = {c: int(sizes.get(c, 0)) for c in COMPONENTS}
    else:
        sizes = tuple(sizes)
        if len(sizes) != len(COMPONENTS):
            raise ValueError(f"sizes must give 3 ints (setup, predict, learn), got {sizes!r}")
        out = {c: int(s) for c, s in zip(COMPONENTS, sizes, strict=True)}
    for c, s in out.items():
        if s < 0:
            raise ValueError(f"initial size of {c} must be >= 0, got {s}")
    return out


def _fit(spec: ProgramSpec, name: str, component: str, instrs: list, size_init: int) -> list:
    """Pads `instrs` with NO_OPs to `size_init`; raises if the result exceeds the slot capacity."""
    padded = list(instrs) + [Instruction(ops_lib.NO_OP)] * max(0, size_init - len(instrs))
    capacity = spec.component(component).size
    if len(padded) > capacity:
        raise ValueError(
            f"{name}: {component} needs {len(padded)} instructions (algorithm length "
            f"{len(instrs)}, initial size {size_init}) but ProgramSpec.{component}.size is "
            f"{capacity}; hand-written algorithms are never truncated, so enlarge the spec"
        )
    return padded


def _require_addresses(spec: ProgramSpec, name: str, scalars: int, vectors: int, matrices: int):
    have = (spec.num_scalars, spec.num_vectors, spec.num_matrices)
    if have[0] < scalars or have[1] < vectors or have[2] < matrices:
        raise ValueError(
            f"{name} needs at least {scalars} scalar / {vectors} vector / {matrices} matrix "
            f"addresses; the spec has {have[0]} / {have[1]} / {have[2]}"
        )


def _build(spec: ProgramSpec, sizes: SizesLike, name: str, **lists) -> Program:
    size_init = _sizes(spec, sizes)
    fitted = {c: _fit(spec, name, c, lists.get(c, ()), size_init[c]) for c in COMPONENTS}
    return program_lib.make_program(spec, **fitted)


def no_op_algorithm(spec: ProgramSpec, sizes: SizesLike) -> Program:
    """NO_OP_ALGORITHM: each component is `sizes[c]` NO_OPs."""
    return _build(spec, sizes, "NO_OP")


def _linear_lists(learning_rate: float) -> dict:
    I = Instruction  # noqa: N806
    return dict(
        setup=[I(56, out=2, consts=(learning_rate,))],  # s2 = lr
        predict=[I(27, 1, 0, 1)],  # s1 = dot(v1, v0)
        learn=[
            I(2, 0, 1, 3),  # s3 = s0 - s1
            I(3, 2, 3, 3),  # s3 = s2 * s3
            I(18, 3, 0, 2),  # v2 = s3 * v0
            I(23, 1, 2, 1),  # v1 = v1 + v2
        ],
    )


def linear_algorithm(
    spec: ProgramSpec, sizes: SizesLike, learning_rate: float = DEFAULT_LEARNING_RATE
) -> Program:
    """LINEAR_ALGORITHM: linear regression by SGD; weights in v1 (docs/ops.md)."""
    _require_addresses(spec, "LINEAR", 4, 3, 0)
    return _build(spec, sizes, "LINEAR", **_linear_lists(learning_rate))


def affine_algorithm(
    spec: ProgramSpec, sizes: SizesLike, learning_rate: float = DEFAULT_LEARNING_RATE
) -> Program:
    """AFFINE: linear regression with a bias by SGD, for the paper's affine tasks (§4.1; not in
    the original's code). LINEAR plus the bias s4, added in Predict and stepped in Learn."""
    _require_addresses(spec, "AFFINE", 5, 3, 0)
    lists = _linear_lists(learning_rate)
    lists["predict"].append(Instruction(1, 1, 4, 1))  # s1 = s1 + s4
    lists["learn"].append(Instruction(1, 4, 3, 4))  # s4 = s4 + s3
    return _build(spec, sizes, "AFFINE", **lists)


def _neural_net_lists(learning_rate: float, first_init: float, final_init: float) -> dict:
    I = Instruction  # noqa: N806
    return dict(
        setup=[
            I(63, out=2, consts=(0.0, final_init)),  # v2 = gaussian(0, final_init): output w
            I(64, out=0, consts=(0.0, first_init)),  # m0 = gaussian(0, first_init): hidden w
            I(56, out=3, consts=(learning_rate,)),  # s3 = lr
        ],
        predict=[
            I(31, 0, 0, 3),  # v3 = dot(m0, v0)
            I(23, 3, 1, 3),  # v3 = v3 + v1 (hidden bias)
            I(48, 3, 5, 4),  # v4 = maximum(v3, v5) (v5 = 0: ReLU)
            I(27, 4, 2, 1),  # s1 = dot(v4, v2)
            I(1, 1, 2, 1),  # s1 = s1 + s2 (output bias)
        ],
        learn=[
            I(2, 0, 1, 4),  # s4 = s0 - s1
            I(3, 3, 4, 4),  # s4 = s3 * s4
            I(1, 2, 4, 2),  # s2 = s2 + s4
            I(18, 4, 4, 6),  # v6 = s4 * v4
            I(23, 2, 6, 2),  # v2 = v2 + v6
            I(18, 4, 2, 7),  # v7 = s4 * v2 (the already-updated v2, as in the original)
            I(16, 3, 0, 8),  # v8 = heaviside(v3)
            I(25, 8, 7, 7),  # v7 = v8 * v7
            I(23, 1, 7, 1),  # v1 = v1 + v7
            I(28, 7, 0, 1),  # m1 = outer(v7, v0)
            I(39, 0, 1, 0),  # m0 = m0 + m1
        ],
    )


def neural_net_algorithm(
    spec: ProgramSpec,
    sizes: SizesLike,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    first_init: float = DEFAULT_INIT_SCALE,
    final_init: float = DEFAULT_INIT_SCALE,
) -> Program:
    """NEURAL_NET_ALGORITHM: 2-layer ReLU MLP with biases trained by SGD (docs/ops.md)."""
    _require_addresses(spec, "NEURAL_NET", 5, 9, 2)
    lists = _neural_net_lists(learning_rate, first_init, final_init)
    return _build(spec, sizes, "NEURAL_NET", **lists)


def damaged_neural_net_algorithm(
    spec: ProgramSpec,
    sizes: SizesLike,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    first_init: float = DEFAULT_INIT_SCALE,
    final_init: float = DEFAULT_INIT_SCALE,
) -> Program:
    """INTEGRATION_TEST_DAMAGED_NEURAL_NET_ALGORITHM: NEURAL_NET minus its two weight inits."""
    _require_addresses(spec, "DAMAGED_NEURAL_NET", 5, 9, 2)
    lists = _neural_net_lists(learning_rate, first_init, final_init)
    lists["setup"] = lists["setup"][2:]
    return _build(spec, sizes, "DAMAGED_NEURAL_NET", **lists)


def required_ops(program: Program) -> dict[str, frozenset[int]]:
    """Op ids used (within `length`) per component, NO_OP excluded; batched programs allowed.

    Use it to add a hand-written model's ops to `ComponentSpec.extra_ops` of frozen components
    (see `add_required_ops`).
    """
    out = {}
    for c in COMPONENTS:
        comp = getattr(program, c)
        code, length = np.asarray(comp.code), np.asarray(comp.length)
        live = np.arange(code.shape[-2]) < length[..., None]
        out[c] = frozenset(int(op) for op in np.unique(code[..., 0][live])) - {ops_lib.NO_OP}
    return out


def add_required_ops(spec: ProgramSpec, program: Program) -> ProgramSpec:
    """`spec` with every op of `program` missing from a component's lists added to extra_ops."""
    changes = {}
    for c, used in required_ops(program).items():
        cs = spec.component(c)
        missing = sorted(used - set(cs.valid_ops))
        if missing:
            changes[c] = cs._replace(extra_ops=tuple(cs.extra_ops) + tuple(missing))
    return spec.replace(**changes) if changes else spec


# ------------------------------------------------------------------------------------------------
# Random instructions (JAX).


def _drawable_ops(spec: ProgramSpec, component: str) -> np.ndarray:
    """The component's op list as int32 [K]; raises if it is frozen or an op cannot be drawn."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; expected one of {COMPONENTS}")
    ops = ops_lib.op_ids(spec.component(component).ops)
    if not ops:
        raise ValueError(
            f"component {component!r} has an empty op list (frozen): it is never randomized"
        )
    for op in set(ops):
        out = ops_lib.OPS[op].out
        if out != Kind.NONE:
            lo, hi = spec.out_range(out)
            if hi <= lo:
                raise ValueError(
                    f"op {ops_lib.OPS[op].name} in {component}.ops writes a {out.name.lower()} "
                    f"but no {out.name.lower()} address is writable (range [{lo}, {hi}))"
                )
    return np.asarray(ops, np.int32)


# Draws from raw uint32 bits. One `rng.key_bits` call per public function feeds every choice.

BITS_PER_INSTRUCTION = 7  # op, in1, in2, out, c0, c1, c2


def bits_uniform(bits: jax.Array, *, open_low: bool | jax.Array = False) -> jax.Array:
    """float32 U[0, 1) from the top 23 bits of each uint32 (U(0, 1) when `open_low`)."""
    mantissa = (bits >> jnp.uint32(9)).astype(jnp.float32)
    offset = jnp.where(open_low, jnp.float32(0.5), jnp.float32(0.0))
    return (mantissa + offset) * jnp.float32(2.0**-23)


def bits_below(bits: jax.Array, n: jax.Array | int) -> jax.Array:
    """int32 uniform in [0, n) (0 when n <= 0); bias below 2^-23 * n."""
    n = jnp.maximum(jnp.asarray(n, jnp.int32), 1)
    i = jnp.floor(bits_uniform(bits) * n.astype(jnp.float32)).astype(jnp.int32)
    return jnp.minimum(i, n - 1)


def bits_normal(bits: jax.Array) -> jax.Array:
    """float32 N(0, 1) by the inverse CDF of an open-interval uniform (always finite), with the
    VM's erfinv (`rng.erfinv`: a third of XLA's cost, which was a third of a mutation's)."""
    erfinv = functools.partial(rng.erfinv, xp=jnp)
    return rng.standard_normal(bits_uniform(bits, open_low=True), erfinv, xp=jnp)


def address_bounds(spec: ProgramSpec) -> tuple[np.ndarray, np.ndarray]:
    """Address ranges [low, high), each int32 [3 fields (in1, in2, out), 4 kinds].

    Inputs come from [0, bank size), outputs from `spec.out_range` (docs/ops.md);
    Kind.NONE gets [0, 1), so unused fields are 0.
    """
    low, high = np.zeros((3, len(Kind)), np.int32), np.ones((3, len(Kind)), np.int32)
    for kind in (Kind.SCALAR, Kind.VECTOR, Kind.MATRIX):
        high[:2, kind] = spec.bank_size(kind)
        low[2, kind], high[2, kind] = spec.out_range(kind)
    return low, high


def addresses_from_bits(bits: jax.Array, op: jax.Array, spec: ProgramSpec) -> jax.Array:
    """Fresh (in1, in2, out) int32 [3] for `op` (traced int32 []) from uint32 bits [3]."""
    low, high = (jnp.asarray(x) for x in address_bounds(spec))
    kinds = jnp.asarray(OPERAND_KINDS)[op]  # [3]
    field = jnp.arange(3)
    lo, hi = low[field, kinds], high[field, kinds]
    return lo + bits_below(bits, hi - lo)


def data_from_bits(bits: jax.Array, op: jax.Array) -> jax.Array:
    """Fresh constants float32 [3] for `op` from uint32 bits [3] (docs/ops.md); 0 if none."""
    data = jnp.asarray(DATA_KINDS)[op]
    u = bits_uniform(bits, open_low=jnp.asarray(DATA_OPEN)[data])
    lo, hi = jnp.asarray(DATA_LOW)[data], jnp.asarray(DATA_HIGH)[data]
    return lo + (hi - lo) * u


def instruction_from_bits(bits: jax.Array, spec: ProgramSpec, component: str):
    """`random_instruction` from uint32 bits [BITS_PER_INSTRUCTION]."""
    ops = _drawable_ops(spec, component)
    op = jnp.asarray(ops)[bits_below(bits[0], len(ops))]
    code = jnp.concatenate([op[None], addresses_from_bits(bits[1:4], op, spec)])
    return code, data_from_bits(bits[4:7], op)


def random_instruction(key: jax.Array, spec: ProgramSpec, component: str):
    """One random instruction for `component` (docs/ops.md). The key is consumed.

    The op is uniform over `spec.<component>.ops` (duplicates weight it), addresses are uniform
    over their ranges and constants follow the per-op distributions.

    Returns:
      (code int32 [4] = (op, in1, in2, out), consts float32 [3]).
    """
    bits = keys.key_bits(key, (BITS_PER_INSTRUCTION,))
    return instruction_from_bits(bits, spec, component)


def component_from_bits(
    bits: jax.Array, spec: ProgramSpec, component: str, length: int | jax.Array
) -> Component:
    """`random_component` from uint32 bits [L, BITS_PER_INSTRUCTION]."""
    size = spec.component(component).size
    if isinstance(length, int) and not 0 <= length <= size:
        raise ValueError(f"length {length} of {component} is outside [0, {size}] (slot capacity)")
    code, consts = jax.vmap(lambda b: instruction_from_bits(b, spec, component))(bits)
    length = jnp.asarray(length, jnp.int32)
    live = (jnp.arange(size, dtype=jnp.int32) < length)[:, None]
    return Component(
        code=jnp.where(live, code, jnp.int32(0)),
        consts=jnp.where(live, consts, jnp.float32(0)),
        length=length,
    )


def random_component(
    key: jax.Array, spec: ProgramSpec, component: str, length: int | jax.Array
) -> Component:
    """`length` (may be traced) random instructions, then zero padding. The key is consumed.

    Returns:
      Component with code [L, 4], consts [L, 3] for L = `spec.<component>.size`.
    """
    size = spec.component(component).size
    bits = keys.key_bits(key, (size, BITS_PER_INSTRUCTION))
    return component_from_bits(bits, spec, component, length)


def is_frozen(spec: ProgramSpec, component: str) -> bool:
    """A component with an empty op list is never randomized nor mutated."""
    return not spec.component(component).ops


def random_algorithm(key: jax.Array, spec: ProgramSpec, sizes: SizesLike) -> Program:
    """RANDOM_ALGORITHM: NO_OP algorithm with each non-frozen component's instructions randomized.

    A frozen component holds its `ComponentSpec.fixed` code when the spec has some (e.g. the
    paper's "only Learn" searches, whose Setup and Predict are a hand-written forward pass).
    Deviation: the original CHECK-fails when a frozen component has a non-zero initial size; here
    that component keeps its NO_OPs.
    """
    size_init = _sizes(spec, sizes)
    base = no_op_algorithm(spec, size_init)
    subkeys = keys.split(key, len(COMPONENTS))
    comps = []
    for k, c in zip(subkeys, COMPONENTS, strict=True):
        if is_frozen(spec, c):
            fixed, size = spec.component(c).fixed, spec.component(c).size
            code = program_lib.make_component(fixed, size) if fixed else getattr(base, c)
            comps.append(jax.tree.map(jnp.asarray, code))
        else:
            comps.append(random_component(k, spec, c, size_init[c]))
    return Program(*comps)


# ------------------------------------------------------------------------------------------------
# Registry.

InitialAlgorithmFn = Callable[[jax.Array, ProgramSpec, SizesLike], Program]

INITIAL_ALGORITHMS: dict[str, InitialAlgorithmFn] = {
    "NO_OP": lambda key, spec, sizes: no_op_algorithm(spec, sizes),
    "RANDOM": random_algorithm,
    "LINEAR": lambda key, spec, sizes: linear_algorithm(spec, sizes),
    "AFFINE": lambda key, spec, sizes: affine_algorithm(spec, sizes),
    "NEURAL_NET": lambda key, spec, sizes: neural_net_algorithm(spec, sizes),
    "DAMAGED_NEURAL_NET": lambda key, spec, sizes: damaged_neural_net_algorithm(spec, sizes),
}
DETERMINISTIC_ALGORITHMS = frozenset(
    {"NO_OP", "LINEAR", "AFFINE", "NEURAL_NET", "DAMAGED_NEURAL_NET"}
)
_ALIASES = {"INTEGRATION_TEST_DAMAGED_NEURAL_NET": "DAMAGED_NEURAL_NET"}


def canonical_name(name: str) -> str:
    """Registry key for `name`; accepts the original's enum names (e.g. 'NEURAL_NET_ALGORITHM')."""
    key = name.strip().upper()
    key = key.removesuffix("_ALGORITHM")
    key = _ALIASES.get(key, key)
    if key not in INITIAL_ALGORITHMS:
        raise ValueError(
            f"unknown initial algorithm {name!r}; expected one of {sorted(INITIAL_ALGORITHMS)}"
        )
    return key


def make_initial_population(
    key: jax.Array, name: str, spec: ProgramSpec, sizes: SizesLike, population_size: int
) -> Program:
    """The initial population: `population_size` programs of algorithm `name` (leading axis P).

    Hand-written algorithms are identical copies; RANDOM draws each individual independently
    from its own subkey. The key is consumed.
    """
    if population_size < 1:
        raise ValueError(f"population_size must be >= 1, got {population_size}")
    size_init = tuple(_sizes(spec, sizes).values())  # Hashable, for the jit below.
    name = canonical_name(name)
    fn = INITIAL_ALGORITHMS[name]
    if name in DETERMINISTIC_ALGORITHMS:  # Identical copies: broadcast, no compile.
        one = fn(key, spec, size_init)
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (population_size, *np.shape(x))), one)
    return _population(key, fn, spec, size_init, int(population_size))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _population(key, fn, spec, sizes, population_size):
    subkeys = keys.split(key, population_size)
    return jax.vmap(lambda k: fn(k, spec, sizes))(subkeys)
