"""The op table: the one declaration of AutoML-Zero's 65 ops (docs/ops.md).

Every consumer reads this table: the NumPy reference interpreter (`azjax.reference`), the JAX VM
kernels (`azjax.vm`), the program printer/parser (`azjax.program_io`), the random-instruction
generator and the mutator (`azjax.generator`, `azjax.mutation`), and the train budget
(`azjax.evaluation`). Ids equal the original's enum values (and the paper's OP ids, Table S1).
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class Kind(enum.IntEnum):
    """The type of an operand or output: nothing, scalar, vector (F) or matrix (F x F)."""

    NONE = 0
    SCALAR = 1
    VECTOR = 2
    MATRIX = 3

    @property
    def letter(self) -> str:
        return "-svm"[self]


class Data(enum.IntEnum):
    """What the per-instruction float constants hold (docs/ops.md).

    Constants live in `consts[..., 3]`:
      CONST_SCALAR: c0 = value (the original's `activation_data`).
      CONST_VECTOR: c0 = index fraction, c1 = value.
      CONST_MATRIX: c0 = row fraction, c1 = column fraction, c2 = value.
      UNIFORM:      c0 = low, c1 = high.
      GAUSSIAN:     c0 = mean, c1 = stdev.
    """

    NONE = 0
    CONST_SCALAR = 1
    CONST_VECTOR = 2
    CONST_MATRIX = 3
    UNIFORM = 4
    GAUSSIAN = 5


NUM_CONSTS = 3  # float constants per instruction (the original's float_data_0..2).


class OpSpec(NamedTuple):
    """One op: its id, name, operand and output kinds, constant layout, text form and cost.

    `template` is the paper-notation text with `{o}`, `{a}`, `{b}` for the output and input
    addresses (e.g. ``{o} = dot({a}, {b})`` prints as ``s3 = dot(v1, v0)``) and `{c0}`..`{c2}`
    for constants. `cost` is the original's compute-cost units (compute_cost.cc, §4.9).
    """

    id: int
    name: str
    in1: Kind
    in2: Kind
    out: Kind
    data: Data
    template: str
    cost: int

    @property
    def num_inputs(self) -> int:
        return (self.in1 != Kind.NONE) + (self.in2 != Kind.NONE)

    @property
    def is_set_op(self) -> bool:
        return self.data != Data.NONE

    @property
    def is_random(self) -> bool:
        return self.data in (Data.UNIFORM, Data.GAUSSIAN)


_N, _S, _V, _M = Kind.NONE, Kind.SCALAR, Kind.VECTOR, Kind.MATRIX
_D = Data

# fmt: off
OPS: tuple[OpSpec, ...] = tuple(OpSpec(*row) for row in (
    (0, "NO_OP", _N, _N, _N, _D.NONE, "NoOp()", 3013921),
    (1, "SCALAR_SUM_OP", _S, _S, _S, _D.NONE, "{o} = {a} + {b}", 4703759),
    (2, "SCALAR_DIFF_OP", _S, _S, _S, _D.NONE, "{o} = {a} - {b}", 5102027),
    (3, "SCALAR_PRODUCT_OP", _S, _S, _S, _D.NONE, "{o} = {a} * {b}", 4418347),
    (4, "SCALAR_DIVISION_OP", _S, _S, _S, _D.NONE, "{o} = {a} / {b}", 3963916),
    (5, "SCALAR_ABS_OP", _S, _N, _S, _D.NONE, "{o} = abs({a})", 3684352),
    (6, "SCALAR_RECIPROCAL_OP", _S, _N, _S, _D.NONE, "{o} = 1 / {a}", 4212086),
    (7, "SCALAR_SIN_OP", _S, _N, _S, _D.NONE, "{o} = sin({a})", 7538523),
    (8, "SCALAR_COS_OP", _S, _N, _S, _D.NONE, "{o} = cos({a})", 7452807),
    (9, "SCALAR_TAN_OP", _S, _N, _S, _D.NONE, "{o} = tan({a})", 7583203),
    (10, "SCALAR_ARCSIN_OP", _S, _N, _S, _D.NONE, "{o} = arcsin({a})", 9145616),
    (11, "SCALAR_ARCCOS_OP", _S, _N, _S, _D.NONE, "{o} = arccos({a})", 7673039),
    (12, "SCALAR_ARCTAN_OP", _S, _N, _S, _D.NONE, "{o} = arctan({a})", 9273978),
    (13, "SCALAR_EXP_OP", _S, _N, _S, _D.NONE, "{o} = exp({a})", 11755929),
    (14, "SCALAR_LOG_OP", _S, _N, _S, _D.NONE, "{o} = log({a})", 11627725),
    (15, "SCALAR_HEAVYSIDE_OP", _S, _N, _S, _D.NONE, "{o} = heaviside({a}, 1.0)", 4057075),
    (16, "VECTOR_HEAVYSIDE_OP", _V, _N, _V, _D.NONE, "{o} = heaviside({a}, 1.0)", 3965743),
    (17, "MATRIX_HEAVYSIDE_OP", _M, _N, _M, _D.NONE, "{o} = heaviside({a}, 1.0)", 6728311),
    (18, "SCALAR_VECTOR_PRODUCT_OP", _S, _V, _V, _D.NONE, "{o} = {a} * {b}", 3705015),
    (19, "SCALAR_BROADCAST_OP", _S, _N, _V, _D.NONE, "{o} = bcast({a})", 4165814),
    (20, "VECTOR_RECIPROCAL_OP", _V, _N, _V, _D.NONE, "{o} = 1 / {a}", 6311851),
    (21, "VECTOR_NORM_OP", _V, _N, _S, _D.NONE, "{o} = norm({a})", 4810562),
    (22, "VECTOR_ABS_OP", _V, _N, _V, _D.NONE, "{o} = abs({a})", 3713533),
    (23, "VECTOR_SUM_OP", _V, _V, _V, _D.NONE, "{o} = {a} + {b}", 4701519),
    (24, "VECTOR_DIFF_OP", _V, _V, _V, _D.NONE, "{o} = {a} - {b}", 4165747),
    (25, "VECTOR_PRODUCT_OP", _V, _V, _V, _D.NONE, "{o} = {a} * {b}", 4504555),
    (26, "VECTOR_DIVISION_OP", _V, _V, _V, _D.NONE, "{o} = {a} / {b}", 4556237),
    (27, "VECTOR_INNER_PRODUCT_OP", _V, _V, _S, _D.NONE, "{o} = dot({a}, {b})", 4294617),
    (28, "VECTOR_OUTER_PRODUCT_OP", _V, _V, _M, _D.NONE, "{o} = outer({a}, {b})", 9833707),
    (29, "SCALAR_MATRIX_PRODUCT_OP", _S, _M, _M, _D.NONE, "{o} = {a} * {b}", 5986302),
    (30, "MATRIX_RECIPROCAL_OP", _M, _N, _M, _D.NONE, "{o} = 1 / {a}", 24336141),
    (31, "MATRIX_VECTOR_PRODUCT_OP", _M, _V, _V, _D.NONE, "{o} = dot({a}, {b})", 9310002),
    (32, "VECTOR_COLUMN_BROADCAST_OP", _V, _N, _M, _D.NONE, "{o} = bcast({a}, axis=0)", 10993088),
    (33, "VECTOR_ROW_BROADCAST_OP", _V, _N, _M, _D.NONE, "{o} = bcast({a}, axis=1)", 11087322),
    (34, "MATRIX_NORM_OP", _M, _N, _S, _D.NONE, "{o} = norm({a})", 6422746),
    (35, "MATRIX_COLUMN_NORM_OP", _M, _N, _V, _D.NONE, "{o} = norm({a}, axis=0)", 6682187),
    (36, "MATRIX_ROW_NORM_OP", _M, _N, _V, _D.NONE, "{o} = norm({a}, axis=1)", 13351123),
    (37, "MATRIX_TRANSPOSE_OP", _M, _N, _M, _D.NONE, "{o} = transpose({a})", 9394756),
    (38, "MATRIX_ABS_OP", _M, _N, _M, _D.NONE, "{o} = abs({a})", 4630926),
    (39, "MATRIX_SUM_OP", _M, _M, _M, _D.NONE, "{o} = {a} + {b}", 5579381),
    (40, "MATRIX_DIFF_OP", _M, _M, _M, _D.NONE, "{o} = {a} - {b}", 5429452),
    (41, "MATRIX_PRODUCT_OP", _M, _M, _M, _D.NONE, "{o} = {a} * {b}", 5475227),
    (42, "MATRIX_DIVISION_OP", _M, _M, _M, _D.NONE, "{o} = {a} / {b}", 18234378),
    (43, "MATRIX_MATRIX_PRODUCT_OP", _M, _M, _M, _D.NONE, "{o} = matmul({a}, {b})", 14516296),
    (44, "SCALAR_MIN_OP", _S, _S, _S, _D.NONE, "{o} = minimum({a}, {b})", 3677265),
    (45, "VECTOR_MIN_OP", _V, _V, _V, _D.NONE, "{o} = minimum({a}, {b})", 3989956),
    (46, "MATRIX_MIN_OP", _M, _M, _M, _D.NONE, "{o} = minimum({a}, {b})", 5457728),
    (47, "SCALAR_MAX_OP", _S, _S, _S, _D.NONE, "{o} = maximum({a}, {b})", 4573695),
    (48, "VECTOR_MAX_OP", _V, _V, _V, _D.NONE, "{o} = maximum({a}, {b})", 3974229),
    (49, "MATRIX_MAX_OP", _M, _M, _M, _D.NONE, "{o} = maximum({a}, {b})", 5840952),
    (50, "VECTOR_MEAN_OP", _V, _N, _S, _D.NONE, "{o} = mean({a})", 4280443),
    (51, "MATRIX_MEAN_OP", _M, _N, _S, _D.NONE, "{o} = mean({a})", 4595196),
    (52, "MATRIX_ROW_MEAN_OP", _M, _N, _V, _D.NONE, "{o} = mean({a}, axis=1)", 9763956),
    (53, "MATRIX_ROW_ST_DEV_OP", _M, _N, _V, _D.NONE, "{o} = std({a}, axis=1)", 16766477),
    (54, "VECTOR_ST_DEV_OP", _V, _N, _S, _D.NONE, "{o} = std({a})", 5585730),
    (55, "MATRIX_ST_DEV_OP", _M, _N, _S, _D.NONE, "{o} = std({a})", 10640216),
    (56, "SCALAR_CONST_SET_OP", _N, _N, _S, _D.CONST_SCALAR, "{o} = {c0}", 3691108),
    (57, "VECTOR_CONST_SET_OP", _N, _N, _V, _D.CONST_VECTOR, "{o}[{c0}] = {c1}", 3991421),
    (58, "MATRIX_CONST_SET_OP", _N, _N, _M, _D.CONST_MATRIX, "{o}[{c0}, {c1}] = {c2}", 3693035),
    (59, "SCALAR_UNIFORM_SET_OP", _N, _N, _S, _D.UNIFORM, "{o} = uniform({c0}, {c1})", 26610704),
    (60, "VECTOR_UNIFORM_SET_OP", _N, _N, _V, _D.UNIFORM,
     "{o} = uniform({c0}, {c1}, n_features)", 57817372),
    (61, "MATRIX_UNIFORM_SET_OP", _N, _N, _M, _D.UNIFORM,
     "{o} = uniform({c0}, {c1}, (n_features, n_features))", 208339446),
    (62, "SCALAR_GAUSSIAN_SET_OP", _N, _N, _S, _D.GAUSSIAN, "{o} = gaussian({c0}, {c1})", 20775635),
    (63, "VECTOR_GAUSSIAN_SET_OP", _N, _N, _V, _D.GAUSSIAN,
     "{o} = gaussian({c0}, {c1}, n_features)", 77483018),
    (64, "MATRIX_GAUSSIAN_SET_OP", _N, _N, _M, _D.GAUSSIAN,
     "{o} = gaussian({c0}, {c1}, (n_features, n_features))", 277690384),
))
# fmt: on

NUM_OPS = len(OPS)
NO_OP = 0
BY_NAME: dict[str, OpSpec] = {op.name: op for op in OPS}
ALL_OPS: tuple[int, ...] = tuple(op.id for op in OPS)

# The demo's op set (run_demo.sh): const-set, dot, s-diff, s-mul, s*v, v-add.
DEMO_OPS: tuple[int, ...] = (56, 27, 2, 3, 18, 23)

assert all(op.id == i for i, op in enumerate(OPS)) and NUM_OPS == 65


def op_ids(names_or_ids) -> tuple[int, ...]:
    """Resolves a list of op names (e.g. 'VECTOR_SUM_OP' or 'VECTOR_SUM') or ids to ids."""
    out = []
    for x in names_or_ids:
        if isinstance(x, str) and not x.strip().lstrip("-").isdigit():
            name = x.strip().upper()
            spec = BY_NAME.get(name) or BY_NAME.get(name + "_OP")
            if spec is None:
                raise ValueError(
                    f"unknown op name {x!r}; expected one of the 65 names in azjax.ops"
                )
            out.append(spec.id)
        else:
            i = int(x)
            if not 0 <= i < NUM_OPS:
                raise ValueError(f"unknown op id {i}; op ids are 0..{NUM_OPS - 1}")
            out.append(i)
    return tuple(out)
