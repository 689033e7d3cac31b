"""Mutations of programs: the original's eight mutation types (docs/ops.md, mutator.cc).

`mutate` makes one child from one unbatched parent: with probability `mutate_prob` (always when it
is >= 1) it applies exactly one mutation, else the child is an identical clone. The mutation type
is uniform over `MutationParams.allowed_mutation_types` (duplicates weight), the component uniform
over the non-frozen ones (non-empty op list), positions uniform. `mutate_batch` vmaps it.

Every function is pure and jit/vmap friendly (`spec` and `params` are static and hashable). All
draws come from one `rng.key_bits` call; per-op-class choices are table lookups, and every
allowed mutation type is computed (they are a few tiny array ops, and vmap would evaluate all
branches of a `lax.switch` anyway) and one is selected with `jnp.where`. Padding slots
(>= length) always stay all-zero.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from azjax import generator, keys
from azjax import ops as ops_lib
from azjax.program import COMPONENTS, Component, Program, ProgramSpec

Data = ops_lib.Data


class MutationType(enum.IntEnum):
    """The original's MutationType enum (mutator.proto)."""

    ALTER_PARAM = 0
    RANDOMIZE_INSTRUCTION = 1
    RANDOMIZE_COMPONENT_FUNCTION = 2
    IDENTITY = 3
    INSERT_INSTRUCTION = 4
    REMOVE_INSTRUCTION = 5
    TRADE_INSTRUCTION = 6
    RANDOMIZE_ALGORITHM = 7


def _mutation_type(x) -> int:
    if isinstance(x, str):
        name = x.strip().upper().removesuffix("_MUTATION_TYPE")
        if name not in MutationType.__members__:
            raise ValueError(
                f"unknown mutation type {x!r}; expected one of {list(MutationType.__members__)}"
            )
        return int(MutationType[name])
    if not isinstance(x, int | np.integer) or int(x) not in {int(t) for t in MutationType}:
        raise ValueError(f"unknown mutation type id {x!r}; ids are 0..{len(MutationType) - 1}")
    return int(x)


def _per_component(value, field: str) -> tuple[int, int, int]:
    if isinstance(value, Mapping):
        unknown = set(value) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"MutationParams.{field}: unknown component(s) {sorted(unknown)}")
        value = tuple(value.get(c, 0) for c in COMPONENTS)
    elif isinstance(value, int | np.integer):
        value = (value,) * len(COMPONENTS)
    value = tuple(int(v) for v in value)
    if len(value) != len(COMPONENTS) or min(value) < 0:
        raise ValueError(f"MutationParams.{field} must be 3 ints >= 0 (setup, predict, learn)")
    return value


@dataclasses.dataclass(frozen=True)
class MutationParams:
    """What mutations may do (the original's MutatorSpec fields). Static and hashable.

    Attributes:
      allowed_mutation_types: ids or names (e.g. "ALTER_PARAM"); duplicates raise a type's weight.
      mutate_prob: probability that a child is mutated at all (else an identical clone).
      size_min, size_max: per-component (setup, predict, learn) bounds used only by insert
        (no insert at length >= size_max - 1) and remove (no remove at length <= size_min). An int
        applies to every component, a mapping {component: int} defaults missing ones to 0.
    """

    allowed_mutation_types: tuple = (0, 1, 2)
    mutate_prob: float = 0.9
    size_min: tuple[int, int, int] = (0, 0, 0)
    size_max: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self):
        types = tuple(_mutation_type(t) for t in tuple(self.allowed_mutation_types))
        if not types:
            raise ValueError("MutationParams.allowed_mutation_types must not be empty")
        p = float(self.mutate_prob)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"MutationParams.mutate_prob must be in [0, 1], got {p}")
        object.__setattr__(self, "allowed_mutation_types", types)
        object.__setattr__(self, "mutate_prob", p)
        object.__setattr__(self, "size_min", _per_component(self.size_min, "size_min"))
        object.__setattr__(self, "size_max", _per_component(self.size_max, "size_max"))

    def validate(self, spec: ProgramSpec) -> tuple[int, ...]:
        """Checks the params against `spec`; returns the indices of the mutable components."""
        mutable = tuple(i for i, c in enumerate(COMPONENTS) if not generator.is_frozen(spec, c))
        if not mutable:
            raise ValueError("every component has an empty op list (frozen): nothing to mutate")
        resizing = {MutationType.INSERT_INSTRUCTION, MutationType.REMOVE_INSTRUCTION}
        for t in sorted(resizing & set(self.allowed_mutation_types)):
            for i in mutable:
                if self.size_max[i] <= 0:
                    raise ValueError(
                        f"{MutationType(t).name} is allowed but size_max of {COMPONENTS[i]} is "
                        f"{self.size_max[i]}; set MutationParams.size_max (the proto default 0 "
                        "is meaningless for insert/remove)"
                    )
        return mutable


class MutationInfo(NamedTuple):
    """What `mutate_with_info` drew: whether a mutation applied, its type and component index."""

    mutated: jax.Array  # bool []
    mutation_type: jax.Array  # int32 []
    component: jax.Array  # int32 [], index into COMPONENTS


# ------------------------------------------------------------------------------------------------
# ALTER_PARAM (docs/ops.md), table-driven over op ids.

_IN1, _IN2, _OUT, _DATA = 1, 2, 3, 4  # Fields; 1..3 are also the code columns.
_REDRAW, _LOG_SCALE_OR_FLIP, _LOG_SCALE = 0, 1, 2
SIGN_FLIP_PROB = 0.1  # kSignFlipProb


def _alter_fields(op: ops_lib.OpSpec) -> tuple[int, ...]:
    if op.is_set_op:
        return (_OUT, _DATA)
    return ((), (_IN1, _OUT), (_IN1, _IN2, _OUT))[op.num_inputs]


ALTER_FIELDS = np.zeros((ops_lib.NUM_OPS, 3), np.int32)  # field per (op, choice); 0 = nothing
ALTER_CHOICES = np.zeros((ops_lib.NUM_OPS,), np.int32)
for _op in ops_lib.OPS:
    _f = _alter_fields(_op)
    ALTER_FIELDS[_op.id, : len(_f)], ALTER_CHOICES[_op.id] = _f, len(_f)

# AlterData per Data kind: a uniform choice among (constant slot, action) pairs.
_DATA_ACTIONS = {
    Data.CONST_SCALAR: [(0, _LOG_SCALE_OR_FLIP)],
    Data.CONST_VECTOR: [(0, _REDRAW), (1, _LOG_SCALE_OR_FLIP)],
    Data.CONST_MATRIX: [(0, _REDRAW), (1, _REDRAW), (2, _LOG_SCALE_OR_FLIP)],
    Data.GAUSSIAN: [(0, _LOG_SCALE_OR_FLIP), (1, _LOG_SCALE)],
    Data.UNIFORM: [(0, _LOG_SCALE_OR_FLIP), (1, _LOG_SCALE_OR_FLIP)],  # Then re-sorted.
}
DATA_SLOT = np.zeros((len(Data), 3), np.int32)
DATA_ACTION = np.zeros((len(Data), 3), np.int32)
DATA_CHOICES = np.zeros((len(Data),), np.int32)
for _d, _acts in _DATA_ACTIONS.items():
    DATA_CHOICES[_d] = len(_acts)
    for _j, (_slot, _act) in enumerate(_acts):
        DATA_SLOT[_d, _j], DATA_ACTION[_d, _j] = _slot, _act


ALTER_BITS = 8  # field, in1, in2, out, data choice, flip, normal, redraw


def log_scale(x: jax.Array, noise: jax.Array) -> jax.Array:
    """x <- sign(x) * exp(log|x| + noise), noise ~ N(0, 1): a log-normal factor; 0 stays 0."""
    return jnp.sign(x) * jnp.exp(jnp.log(jnp.abs(x)) + noise)


def alter_from_bits(bits: jax.Array, code: jax.Array, consts: jax.Array, spec: ProgramSpec):
    """`alter_instruction` from uint32 bits [ALTER_BITS]."""
    op = code[0]
    field = jnp.asarray(ALTER_FIELDS)[
        op, generator.bits_below(bits[0], jnp.asarray(ALTER_CHOICES)[op])
    ]
    addresses = generator.addresses_from_bits(bits[1:4], op, spec)
    columns = jnp.arange(1, 4, dtype=jnp.int32)
    new_code = code.at[1:].set(jnp.where(columns == field, addresses, code[1:]))

    data = jnp.asarray(generator.DATA_KINDS)[op]
    sub = generator.bits_below(bits[4], jnp.asarray(DATA_CHOICES)[data])
    slot, action = jnp.asarray(DATA_SLOT)[data, sub], jnp.asarray(DATA_ACTION)[data, sub]
    x = consts[slot]
    scaled = log_scale(x, generator.bits_normal(bits[6]))
    flip = generator.bits_uniform(bits[5]) < SIGN_FLIP_PROB
    value = jnp.where(action == _LOG_SCALE, scaled, jnp.where(flip, -x, scaled))
    value = jnp.where(action == _REDRAW, generator.bits_uniform(bits[7]), value)
    altered = consts.at[slot].set(value)
    low, high = altered[0], altered[1]  # As std::min / std::max: the first on ties and NaN.
    ordered = altered.at[0].set(jnp.where(high < low, high, low))
    ordered = ordered.at[1].set(jnp.where(low < high, high, low))
    altered = jnp.where(data == Data.UNIFORM, ordered, altered)
    return new_code, jnp.where(field == _DATA, altered, consts)


def alter_instruction(key: jax.Array, code: jax.Array, consts: jax.Array, spec: ProgramSpec):
    """The original's Instruction::AlterParam on one instruction. The key is consumed.

    NO_OP: unchanged. One input: 1/2 new in1, 1/2 new out. Two inputs: 1/3 each in1/in2/out.
    Set ops: 1/2 new out, 1/2 AlterData (docs/ops.md). New addresses may equal the old.

    Args:
      code: int32 [4] (op, in1, in2, out); consts: float32 [3].

    Returns:
      (code, consts) of the altered instruction.
    """
    bits = keys.key_bits(key, (ALTER_BITS,))
    return alter_from_bits(
        bits, jnp.asarray(code, jnp.int32), jnp.asarray(consts, jnp.float32), spec
    )


# ------------------------------------------------------------------------------------------------
# Per-component operations: (component, draws, params, name) -> component. Under vmap every
# allowed type is computed and one is selected, so the random pieces they share are drawn once.

_POS, _POS2, _NEW, _SCRATCH = 0, 1, 2, 2 + max(ALTER_BITS, generator.BITS_PER_INSTRUCTION)
T = MutationType
_NEEDS = {  # Which draws each mutation type uses.
    "position": {T.ALTER_PARAM, T.RANDOMIZE_INSTRUCTION, T.REMOVE_INSTRUCTION},
    "gap": {T.INSERT_INSTRUCTION, T.TRADE_INSTRUCTION},
    "position2": {T.TRADE_INSTRUCTION},
    "new": {T.RANDOMIZE_INSTRUCTION, T.INSERT_INSTRUCTION, T.TRADE_INSTRUCTION},
    "altered": {T.ALTER_PARAM},
    "component": {T.RANDOMIZE_COMPONENT_FUNCTION, T.RANDOMIZE_ALGORITHM},
}


class _Draws(NamedTuple):
    """The random pieces of one component's mutation (None where no allowed type uses them).

    position: an existing instruction, [0, length); gap: an insertion point, [0, length];
    position2: trade's removal point, [0, length]; new: a random instruction (code [4], consts
    [3]); altered: the instruction at `position` after AlterParam; component: a new random
    component (of the same length).
    """

    position: jax.Array | None
    gap: jax.Array | None
    position2: jax.Array | None
    new: tuple[jax.Array, jax.Array] | None
    altered: tuple[jax.Array, jax.Array] | None
    component: Component | None

    @staticmethod
    def pool_size(spec: ProgramSpec, name: str) -> int:
        """uint32 words a component's draws take: L * 7 for a new component, then scratch."""
        return spec.component(name).size * generator.BITS_PER_INSTRUCTION + _SCRATCH


def _draw_component(pool, comp: Component, spec: ProgramSpec, name: str, types) -> _Draws:
    """The draws of one component from its pool of uint32 bits (`_Draws.pool_size` words; the
    mutation types are exclusive, so they share it)."""
    need = {field for field, users in _NEEDS.items() if users & set(types)}
    size = comp.code.shape[0]
    words = pool[: size * generator.BITS_PER_INSTRUCTION].reshape(size, -1)
    scratch = pool[size * generator.BITS_PER_INSTRUCTION :]
    position = generator.bits_below(scratch[_POS], comp.length)
    return _Draws(
        position=position if "position" in need else None,
        gap=generator.bits_below(scratch[_POS], comp.length + 1) if "gap" in need else None,
        position2=(
            generator.bits_below(scratch[_POS2], comp.length + 1) if "position2" in need else None
        ),
        new=(
            generator.instruction_from_bits(
                scratch[_NEW : _NEW + generator.BITS_PER_INSTRUCTION], spec, name
            )
            if "new" in need
            else None
        ),
        altered=(
            alter_from_bits(
                scratch[_NEW : _NEW + ALTER_BITS], comp.code[position], comp.consts[position], spec
            )
            if "altered" in need
            else None
        ),
        component=(
            generator.component_from_bits(words, spec, name, comp.length)
            if "component" in need
            else None
        ),
    )


def _shift_in(x: jax.Array, pos: jax.Array, row: jax.Array) -> jax.Array:
    """Rows [L, k] with `row` inserted at `pos` and the tail shifted right (last row dropped)."""
    i = jnp.arange(x.shape[0])[:, None]
    shifted = jnp.concatenate([jnp.zeros_like(x[:1]), x[:-1]])
    return jnp.where(i < pos, x, jnp.where(i == pos, row[None], shifted))


def _shift_out(x: jax.Array, pos: jax.Array) -> jax.Array:
    """Rows [L, k] with row `pos` deleted, the tail shifted left and a zero row appended."""
    i = jnp.arange(x.shape[0])[:, None]
    return jnp.where(i < pos, x, jnp.concatenate([x[1:], jnp.zeros_like(x[:1])]))


def _replace_at(comp: Component, pos: jax.Array, code: jax.Array, consts: jax.Array):
    """`comp` with slot `pos` replaced; unchanged when the component is empty."""
    live = comp.length > 0
    return comp._replace(
        code=jnp.where(live, comp.code.at[pos].set(code), comp.code),
        consts=jnp.where(live, comp.consts.at[pos].set(consts), comp.consts),
    )


def _select(pred: jax.Array, a: Component, b: Component) -> Component:
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def _alter_param(comp, d: _Draws, params, name) -> Component:
    return _replace_at(comp, d.position, *d.altered)


def _randomize_instruction(comp, d: _Draws, params, name) -> Component:
    return _replace_at(comp, d.position, *d.new)


def _randomize_component(comp, d: _Draws, params, name) -> Component:
    return d.component


def _identity(comp, d: _Draws, params, name) -> Component:
    return comp


def _insert(comp, d: _Draws, params, name) -> Component:
    # The slot capacity also bounds growth: a full component is treated as at size_max - 1.
    code, consts = d.new
    size_max = params.size_max[COMPONENTS.index(name)]
    room = (comp.length < size_max - 1) & (comp.length < comp.code.shape[0])
    grown = Component(
        _shift_in(comp.code, d.gap, code), _shift_in(comp.consts, d.gap, consts), comp.length + 1
    )
    return _select(room, grown, comp)


def _remove(comp, d: _Draws, params, name) -> Component:
    pos = d.position
    size_min = params.size_min[COMPONENTS.index(name)]
    shrunk = Component(_shift_out(comp.code, pos), _shift_out(comp.consts, pos), comp.length - 1)
    return _select(comp.length > size_min, shrunk, comp)


def _trade(comp, d: _Draws, params, name) -> Component:
    # Insert then delete on a buffer one slot longer, so a full component can trade too.
    out = []
    for x, row in zip((comp.code, comp.consts), d.new, strict=True):
        x = jnp.concatenate([x, jnp.zeros_like(x[:1])])
        out.append(_shift_out(_shift_in(x, d.gap, row), d.position2)[:-1])
    return Component(out[0], out[1], comp.length)


_OPERATIONS = {
    MutationType.ALTER_PARAM: _alter_param,
    MutationType.RANDOMIZE_INSTRUCTION: _randomize_instruction,
    MutationType.RANDOMIZE_COMPONENT_FUNCTION: _randomize_component,
    MutationType.IDENTITY: _identity,
    MutationType.INSERT_INSTRUCTION: _insert,
    MutationType.REMOVE_INSTRUCTION: _remove,
    MutationType.TRADE_INSTRUCTION: _trade,
    MutationType.RANDOMIZE_ALGORITHM: _randomize_component,  # Applied to every mutable one.
}


# ------------------------------------------------------------------------------------------------
# Entry points.


def _as_component(comp: Component, spec: ProgramSpec, name: str) -> Component:
    size = spec.component(name).size
    if np.shape(comp.code) != (size, 4) or np.shape(comp.consts) != (size, ops_lib.NUM_CONSTS):
        raise ValueError(
            f"parent {name} has code shape {np.shape(comp.code)} / consts shape "
            f"{np.shape(comp.consts)}; expected an unbatched ({size}, 4) / ({size}, "
            f"{ops_lib.NUM_CONSTS}) for this spec (use mutate_batch for populations)"
        )
    return Component(
        jnp.asarray(comp.code, jnp.int32),
        jnp.asarray(comp.consts, jnp.float32),
        jnp.asarray(comp.length, jnp.int32),
    )


class _Drawn(NamedTuple):
    """Everything random about one child: `MutationInfo` and per mutable component its draws."""

    info: MutationInfo
    components: dict[str, _Draws]


def _draw(key: jax.Array, parent: Program, spec: ProgramSpec, params: MutationParams) -> _Drawn:
    """One child's draws (the key is consumed). One `keys.key_bits` call feeds every draw:
    3 words here, then one pool per mutable component."""
    mutable = params.validate(spec)
    types = params.allowed_mutation_types
    pool_sizes = {i: _Draws.pool_size(spec, COMPONENTS[i]) for i in mutable}
    bits = keys.key_bits(key, (3 + sum(pool_sizes.values()),))
    if params.mutate_prob >= 1.0:
        mutated = jnp.bool_(True)
    else:
        mutated = generator.bits_uniform(bits[0]) < jnp.float32(params.mutate_prob)
    mutation_type = jnp.asarray(types, jnp.int32)[generator.bits_below(bits[1], len(types))]
    component = jnp.asarray(mutable, jnp.int32)[generator.bits_below(bits[2], len(mutable))]
    draws, start = {}, 3
    for i in mutable:
        name = COMPONENTS[i]
        pool = bits[start : start + pool_sizes[i]]
        draws[name] = _draw_component(pool, getattr(parent, name), spec, name, types)
        start += pool_sizes[i]
    return _Drawn(MutationInfo(mutated, mutation_type, component), draws)


def _apply(parent: Program, drawn: _Drawn, params: MutationParams) -> Program:
    """The child of `parent` that `drawn` describes (no randomness left)."""
    info, distinct = drawn.info, sorted(set(params.allowed_mutation_types))
    children = []
    for i, name in enumerate(COMPONENTS):
        comp = getattr(parent, name)
        if name in drawn.components:
            d = drawn.components[name]
            child = _OPERATIONS[distinct[0]](comp, d, params, name)
            for t in distinct[1:]:
                child = _select(
                    info.mutation_type == t, _OPERATIONS[t](comp, d, params, name), child
                )
            chosen = (info.component == i) | (info.mutation_type == T.RANDOMIZE_ALGORITHM)
            comp = _select(chosen & info.mutated, child, comp)
        children.append(comp)
    return Program(*children)


def _as_program(parent: Program, spec: ProgramSpec) -> Program:
    return Program(*(_as_component(getattr(parent, c), spec, c) for c in COMPONENTS))


def mutate_with_info(
    key: jax.Array, parent: Program, spec: ProgramSpec, params: MutationParams
) -> tuple[Program, MutationInfo]:
    """`mutate`, also returning what was drawn (`MutationInfo`). The key is consumed."""
    parent = _as_program(parent, spec)
    drawn = _draw(key, parent, spec, params)
    return _apply(parent, drawn, params), drawn.info


def mutate(key: jax.Array, parent: Program, spec: ProgramSpec, params: MutationParams) -> Program:
    """One child of one unbatched parent (docs/ops.md). The key is consumed.

    Args:
      key: a PRNG key.
      parent: an unbatched `Program` laid out for `spec` (code [L, 4] per component).
      spec: the search space (static); components with an empty op list never change.
      params: the mutation settings (static).

    Returns:
      The child `Program` (jax arrays, same shapes as the parent).
    """
    return mutate_with_info(key, parent, spec, params)[0]


def mutate_batch(
    key: jax.Array, parents: Program, spec: ProgramSpec, params: MutationParams
) -> Program:
    """`mutate` over a population (leading axis K), one subkey per parent (`keys.split`).

    The draws of all children are computed first, into arrays (`_computed_once`), then applied.
    Computed in place, XLA:CPU fused each child's draws (hashes, table lookups, a log and an
    exp) into every slot of every component of the output, recomputing them there: 4,000 demo
    children took 23 ms on one core, and 11-15 ms drawn once.
    """
    subkeys = keys.split(key, np.shape(parents.predict.length)[0])
    parents = jax.vmap(lambda p: _as_program(p, spec))(parents)
    drawn = _computed_once(
        jax.vmap(lambda k, p: _draw(k, p, spec, params)), subkeys, parents, token=subkeys
    )
    return jax.vmap(lambda p, d: _apply(p, d, params))(parents, drawn)


def _computed_once(fn, *args, token):
    """`fn(*args)` computed into buffers once, inside a loop whose trip count (1) XLA cannot
    know (it comes from the data of `token`, a key array), so that fusion cannot copy the
    computation into each of its consumers."""
    word = jax.random.key_data(token).reshape(-1)[0].astype(jnp.uint32)
    trips = ((word | 1) & 1).astype(jnp.int32)
    shapes = jax.eval_shape(fn, *args)
    init = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return jax.lax.fori_loop(0, trips, lambda i, _: fn(*args), init)
