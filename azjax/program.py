"""Program encoding: fixed-width integer instruction tensors plus float constants.

An algorithm is three components, Setup, Predict and Learn (docs/ops.md). Each component is
a `Component`: `code` int32 `[..., L, 4]` rows `(op, in1, in2, out)`, `consts` float32
`[..., L, NUM_CONSTS]` and `length` int32 `[...]`. Slots at or past `length` are padding and must
be all-zero NO_OP rows, so the VM never needs `length`; mutation uses it to insert and remove. A
population is the same pytree with a leading `P` axis.

`ProgramSpec` is the search space a program lives in: address counts and, per component, the slot
capacity `L` and the ops that may appear there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from azjax import ops as ops_lib

COMPONENTS: tuple[str, ...] = ("setup", "predict", "learn")
FIELDS: tuple[str, ...] = ("op", "in1", "in2", "out")

# Reserved addresses (docs/ops.md).
LABEL_SCALAR = 0  # s0: the label (0 during Predict).
PREDICTION_SCALAR = 1  # s1: the prediction.
FEATURES_VECTOR = 0  # v0: the features.


class Instruction(NamedTuple):
    """One instruction, host side. Unused addresses and constants are 0."""

    op: int
    in1: int = 0
    in2: int = 0
    out: int = 0
    consts: tuple[float, ...] = (0.0,) * ops_lib.NUM_CONSTS

    def __str__(self) -> str:  # paper notation, e.g. "s3 = dot(v1, v0)"
        from azjax.program_io import format_instruction

        return format_instruction(self)


class Component(NamedTuple):
    """One component function: code [..., L, 4] int32, consts [..., L, 3] f32, length [...]."""

    code: np.ndarray
    consts: np.ndarray
    length: np.ndarray


class Program(NamedTuple):
    """Setup, Predict and Learn. With a leading axis on every leaf, a population."""

    setup: Component
    predict: Component
    learn: Component


class ComponentSpec(NamedTuple):
    """Slot capacity and op lists of one component.

    `ops` is what random instructions are drawn from (duplicates raise an op's probability, as in
    the original; empty means the component is frozen: never randomized nor mutated).
    `extra_ops` may appear (e.g. in a hand-written initial model) but are never drawn.
    `fixed`: for a frozen component, the instructions every program holds there (NO_OP padded
    to `size`). The VM then runs them as straight-line code with static addresses, computing only
    the ops they use instead of every allowed op per slot (the nonlinear config's hand-written
    Predict and Learn), and scores a program holding anything else there NaN.
    """

    size: int
    ops: tuple[int, ...] = ()
    extra_ops: tuple[int, ...] = ()
    fixed: tuple[Instruction, ...] | None = None

    @property
    def valid_ops(self) -> tuple[int, ...]:
        """Sorted ids of every op allowed in this component, NO_OP (padding) included."""
        return tuple(sorted(set(self.ops) | set(self.extra_ops) | {ops_lib.NO_OP}))


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
    """The space of programs: memory address counts and the three components' specs.

    Defaults are the demo's (run_demo.sh): 4 scalars, 3 vectors, 1 matrix; sizes 10/2/8; the six
    demo ops everywhere. The feature size F is not part of a program (index constants are
    fractions, docs/ops.md): it comes from the tasks.
    """

    num_scalars: int = 4
    num_vectors: int = 3
    num_matrices: int = 1
    setup: ComponentSpec = ComponentSpec(10, ops_lib.DEMO_OPS)
    predict: ComponentSpec = ComponentSpec(2, ops_lib.DEMO_OPS)
    learn: ComponentSpec = ComponentSpec(8, ops_lib.DEMO_OPS)

    def __post_init__(self):
        for name in ("num_scalars", "num_vectors", "num_matrices"):
            if getattr(self, name) < 1:
                raise ValueError(f"ProgramSpec.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_scalars < 2:
            raise ValueError("ProgramSpec.num_scalars must be >= 2 (s0 = label, s1 = prediction)")
        for c in COMPONENTS:
            cs = getattr(self, c)
            if cs.size < 1:
                raise ValueError(f"ProgramSpec.{c}.size must be >= 1, got {cs.size}")
            ops_lib.op_ids(cs.ops + cs.extra_ops)  # Raises on unknown ids.
            if cs.fixed is not None:
                self._check_fixed(c, cs)

    def _check_fixed(self, name: str, cs: ComponentSpec) -> None:
        if cs.ops:
            raise ValueError(f"ProgramSpec.{name}: fixed instructions need an empty op list")
        if len(cs.fixed) > cs.size:
            raise ValueError(f"ProgramSpec.{name}: {len(cs.fixed)} fixed instructions > size")
        for ins in cs.fixed:
            op = ops_lib.OPS[ins.op]
            if ins.op not in cs.valid_ops:
                raise ValueError(f"ProgramSpec.{name}: fixed op {op.name} is not in its op lists")
            for kind, addr in ((op.in1, ins.in1), (op.in2, ins.in2), (op.out, ins.out)):
                if kind != ops_lib.Kind.NONE and not 0 <= addr < self.bank_size(kind):
                    raise ValueError(f"ProgramSpec.{name}: fixed instruction {ins} out of memory")

    def component(self, name: str) -> ComponentSpec:
        return getattr(self, name)

    def bank_size(self, kind: ops_lib.Kind) -> int:
        """Number of addresses of a kind."""
        return {
            ops_lib.Kind.SCALAR: self.num_scalars,
            ops_lib.Kind.VECTOR: self.num_vectors,
            ops_lib.Kind.MATRIX: self.num_matrices,
        }[kind]

    def out_range(self, kind: ops_lib.Kind) -> tuple[int, int]:
        """[lo, hi) of writable addresses: s0 and v0 are never written (docs/ops.md)."""
        lo = 0 if kind == ops_lib.Kind.MATRIX else 1
        return lo, self.bank_size(kind)

    def replace(self, **changes) -> ProgramSpec:
        return dataclasses.replace(self, **changes)


def empty_component(size: int, batch_shape: tuple[int, ...] = ()) -> Component:
    """An all-NO_OP component of `size` slots."""
    return Component(
        code=np.zeros(batch_shape + (size, 4), np.int32),
        consts=np.zeros(batch_shape + (size, ops_lib.NUM_CONSTS), np.float32),
        length=np.zeros(batch_shape, np.int32),
    )


def make_component(instructions: Sequence[Instruction], size: int) -> Component:
    """Encodes a list of instructions into a `size`-slot component (NO_OP padded)."""
    if len(instructions) > size:
        raise ValueError(f"{len(instructions)} instructions do not fit in {size} slots")
    comp = empty_component(size)
    for i, ins in enumerate(instructions):
        ins = Instruction(*ins)
        comp.code[i] = (ins.op, ins.in1, ins.in2, ins.out)
        consts = tuple(ins.consts) + (0.0,) * (ops_lib.NUM_CONSTS - len(ins.consts))
        comp.consts[i] = np.asarray(consts, np.float32)
    return comp._replace(length=np.asarray(len(instructions), np.int32))


def make_program(
    spec: ProgramSpec,
    setup: Sequence[Instruction] = (),
    predict: Sequence[Instruction] = (),
    learn: Sequence[Instruction] = (),
) -> Program:
    """Encodes three instruction lists into a single (unbatched) `Program` for `spec`."""
    lists = dict(setup=setup, predict=predict, learn=learn)
    return Program(*(make_component(lists[c], spec.component(c).size) for c in COMPONENTS))


def instructions(component: Component) -> list[Instruction]:
    """Decodes an unbatched component into its `length` instructions."""
    code = np.asarray(component.code)
    consts = np.asarray(component.consts, np.float32)
    return [
        Instruction(*(int(x) for x in code[i]), tuple(float(c) for c in consts[i]))
        for i in range(int(component.length))
    ]


def stack(programs: Sequence[Program]) -> Program:
    """Stacks unbatched programs into a population (leading axis P)."""
    if not programs:
        raise ValueError("cannot stack an empty list of programs")
    return Program(
        *(
            Component(
                *(np.stack([np.asarray(getattr(p, c)[f]) for p in programs]) for f in range(3))
            )
            for c in COMPONENTS
        )
    )


def population_size(population: Program) -> int:
    """P, read from the leading axis of a batched program."""
    return int(np.shape(population.predict.length)[0])


def index(population: Program, i) -> Program:
    """Program i (or a sub-population, for an index array) of a population."""
    return Program(
        *(Component(*(np.asarray(x)[i] for x in getattr(population, c))) for c in COMPONENTS)
    )


def unstack(population: Program) -> list[Program]:
    """The inverse of `stack`."""
    return [index(population, i) for i in range(population_size(population))]
