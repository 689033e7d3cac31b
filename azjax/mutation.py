"""Mutations of programs: the original's eight mutation types (REFERENCE.md §6, mutator.cc).

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
import functools
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
# ALTER_PARAM (REFERENCE.md §6.4), table-driven over op ids.

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
    Set ops: 1/2 new out, 1/2 AlterData (REFERENCE.md §6.4). New addresses may equal the old.

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
# Per-component operations: (draws, params) -> component. Under vmap every allowed type is
# computed and one is selected, so the random pieces they share are drawn once, in `_Draws`.

_POS, _POS2, _NEW, _SCRATCH = 0, 1, 2, 2 + max(ALTER_BITS, generator.BITS_PER_INSTRUCTION)


class _Draws:
    """The random pieces of one component's mutation, from its pool of uint32 bits.

    The pool is [L * BITS_PER_INSTRUCTION + _SCRATCH]: the first L * 7 words feed a whole new
    component, the scratch words single draws. The mutation types are exclusive, so they share it.
    """

    def __init__(self, pool: jax.Array, comp: Component, spec: ProgramSpec, name: str):
        self.comp, self.spec, self.name = comp, spec, name
        self.size = comp.code.shape[0]
        self.words = pool[: self.size * generator.BITS_PER_INSTRUCTION].reshape(self.size, -1)
        self.scratch = pool[self.size * generator.BITS_PER_INSTRUCTION :]

    @staticmethod
    def pool_size(spec: ProgramSpec, name: str) -> int:
        return spec.component(name).size * generator.BITS_PER_INSTRUCTION + _SCRATCH

    @functools.cached_property
    def position(self) -> jax.Array:  # An existing instruction: [0, length).
        return generator.bits_below(self.scratch[_POS], self.comp.length)

    @functools.cached_property
    def gap(self) -> jax.Array:  # An insertion point: [0, length].
        return generator.bits_below(self.scratch[_POS], self.comp.length + 1)

    @functools.cached_property
    def new_instruction(self) -> tuple[jax.Array, jax.Array]:
        bits = self.scratch[_NEW : _NEW + generator.BITS_PER_INSTRUCTION]
        return generator.instruction_from_bits(bits, self.spec, self.name)

    @functools.cached_property
    def new_component(self) -> Component:
        return generator.component_from_bits(self.words, self.spec, self.name, self.comp.length)


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


def _alter_param(d: _Draws, params: MutationParams) -> Component:
    comp, pos = d.comp, d.position
    bits = d.scratch[_NEW : _NEW + ALTER_BITS]
    return _replace_at(comp, pos, *alter_from_bits(bits, comp.code[pos], comp.consts[pos], d.spec))


def _randomize_instruction(d: _Draws, params: MutationParams) -> Component:
    return _replace_at(d.comp, d.position, *d.new_instruction)


def _randomize_component(d: _Draws, params: MutationParams) -> Component:
    return d.new_component


def _identity(d: _Draws, params: MutationParams) -> Component:
    return d.comp


def _insert(d: _Draws, params: MutationParams) -> Component:
    # The slot capacity also bounds growth: a full component is treated as at size_max - 1.
    comp, (code, consts) = d.comp, d.new_instruction
    size_max = params.size_max[COMPONENTS.index(d.name)]
    room = (comp.length < size_max - 1) & (comp.length < d.size)
    grown = Component(
        _shift_in(comp.code, d.gap, code), _shift_in(comp.consts, d.gap, consts), comp.length + 1
    )
    return _select(room, grown, comp)


def _remove(d: _Draws, params: MutationParams) -> Component:
    comp, pos = d.comp, d.position
    size_min = params.size_min[COMPONENTS.index(d.name)]
    shrunk = Component(_shift_out(comp.code, pos), _shift_out(comp.consts, pos), comp.length - 1)
    return _select(comp.length > size_min, shrunk, comp)


def _trade(d: _Draws, params: MutationParams) -> Component:
    # Insert then delete on a buffer one slot longer, so a full component can trade too.
    comp = d.comp
    pos_out = generator.bits_below(d.scratch[_POS2], comp.length + 1)
    out = []
    for x, row in zip((comp.code, comp.consts), d.new_instruction, strict=True):
        x = jnp.concatenate([x, jnp.zeros_like(x[:1])])
        out.append(_shift_out(_shift_in(x, d.gap, row), pos_out)[:-1])
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


def mutate_with_info(
    key: jax.Array, parent: Program, spec: ProgramSpec, params: MutationParams
) -> tuple[Program, MutationInfo]:
    """`mutate`, also returning what was drawn (`MutationInfo`). The key is consumed."""
    mutable = params.validate(spec)
    types = params.allowed_mutation_types
    distinct = sorted(set(types))
    # One threefry call feeds every draw: 3 words here, then one pool per mutable component.
    pool_sizes = {i: _Draws.pool_size(spec, COMPONENTS[i]) for i in mutable}
    bits = keys.key_bits(key, (3 + sum(pool_sizes.values()),))
    if params.mutate_prob >= 1.0:
        mutated = jnp.bool_(True)
    else:
        mutated = generator.bits_uniform(bits[0]) < jnp.float32(params.mutate_prob)
    mutation_type = jnp.asarray(types, jnp.int32)[generator.bits_below(bits[1], len(types))]
    component = jnp.asarray(mutable, jnp.int32)[generator.bits_below(bits[2], len(mutable))]
    children, start = [], 3
    for i, name in enumerate(COMPONENTS):
        comp = _as_component(getattr(parent, name), spec, name)
        if i in mutable:
            draws = _Draws(bits[start : start + pool_sizes[i]], comp, spec, name)
            start += pool_sizes[i]
            child = _OPERATIONS[distinct[0]](draws, params)
            for t in distinct[1:]:
                child = _select(mutation_type == t, _OPERATIONS[t](draws, params), child)
            chosen = (component == i) | (mutation_type == MutationType.RANDOMIZE_ALGORITHM)
            comp = _select(chosen & mutated, child, comp)
        children.append(comp)
    return Program(*children), MutationInfo(mutated, mutation_type, component)


def mutate(key: jax.Array, parent: Program, spec: ProgramSpec, params: MutationParams) -> Program:
    """One child of one unbatched parent (REFERENCE.md §6). The key is consumed.

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
    """`mutate` vmapped over a population (leading axis P), one subkey per parent."""
    subkeys = keys.split(key, np.shape(parents.predict.length)[0])
    return jax.vmap(lambda k, p: mutate(k, p, spec, params))(subkeys, parents)
