"""The train budget: reject programs far costlier than a baseline (docs/ops.md).

The original's `TrainBudget` sums per-op compute costs (the `cost` column of `azjax.ops.OPS`, from
compute_cost.cc) over each component. With setup cost C_s and train cost C_t = cost(Predict) +
cost(Learn), a candidate trains on all N examples if

    C_s + N * C_t <= factor * (C_s0 + N * C_t0)

for the baseline's (C_s0, C_t0), else on 0 examples (fitness 0). The default baseline is the
NEURAL_NET algorithm padded with NO_OPs to the experiment's `*_size_init`, and factor = 2.0.

Only slots < `length` count. The original counts every instruction that exists, explicit NO_OPs
included (NO_OP costs 3013921), so a baseline padded to size_init with NO_OP *instructions* (inside
its length) pays for them; our padding slots past `length` do not exist and cost nothing.
Everything is vectorized over any leading batch axes (e.g. a population's P).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from azjax import ops as ops_lib
from azjax import wide
from azjax.program import Component, Program

OP_COSTS: np.ndarray = np.array([op.cost for op in ops_lib.OPS], np.int64)  # [NUM_OPS]
DEFAULT_FACTOR = 2.0


def component_cost(code, length) -> np.ndarray:
    """Summed op costs of the slots < length.

    Args:
      code: int [..., L, 4] instruction rows (op, in1, in2, out).
      length: int [...] number of real instructions.

    Returns:
      int64 [...] compute-cost units.
    """
    code = np.asarray(code)
    if code.ndim < 2 or code.shape[-1] != 4:
        raise ValueError(f"code must have shape [..., L, 4], got {code.shape}")
    ops = code[..., 0]
    length = np.asarray(length)
    if length.shape != ops.shape[:-1]:
        raise ValueError(f"length shape {length.shape} does not match code batch {ops.shape[:-1]}")
    live = np.arange(ops.shape[-1]) < length[..., None]  # [..., L]
    bad = live & ((ops < 0) | (ops >= ops_lib.NUM_OPS))
    if bad.any():
        ids = np.unique(ops[bad]).tolist()
        raise ValueError(f"code holds op ids {ids} outside 0..{ops_lib.NUM_OPS - 1}")
    costs = OP_COSTS[np.where(live, ops, ops_lib.NO_OP)]
    return np.sum(np.where(live, costs, 0), axis=-1, dtype=np.int64)


def _cost(component: Component) -> np.ndarray:
    return component_cost(component.code, component.length)


def program_costs(program: Program) -> tuple[np.ndarray, np.ndarray]:
    """(setup cost C_s, train cost C_t = Predict + Learn), each int64 [...] for a [...] batch."""
    return _cost(program.setup), _cost(program.predict) + _cost(program.learn)


def train_examples(
    population: Program,
    baseline: Program,
    num_examples: int,
    factor: float = DEFAULT_FACTOR,
) -> np.ndarray:
    """Training examples each program may use: `num_examples` if within budget, else 0.

    Args:
      population: programs with any leading batch shape [...] (e.g. [P]), or one program.
      baseline: one unbatched program (e.g. NEURAL_NET padded to size_init).
      num_examples: N, the task's training examples (MaxTrainExamples).
      factor: the threshold factor (the original's default 2.0).

    Returns:
      int64 [...]: N or 0 per program.
    """
    setup0, train0 = (float(c) for c in program_costs(baseline))
    setup, train = (c.astype(np.float64) for c in program_costs(population))
    n = float(num_examples)
    # Costs combine in float64, as the original's doubles do.
    within = setup + n * train <= factor * (setup0 + n * train0)
    # Deviation: the original CHECK-fails on C_t == 0 (empty Predict and Learn). In a search such
    # a child simply gets 0 examples, hence fitness 0.
    within &= train > 0
    return np.where(within, np.int64(num_examples), np.int64(0))


def device_train_examples(
    population: Program, baseline: tuple[int, int], num_examples: int, factor: float
) -> jax.Array:
    """`train_examples` on the device, exact: int32 `[...]`, N or 0 per program.

    baseline: the baseline's (setup cost, train cost) (`program_costs`, as Python ints). Costs
    are summed as 64-bit integers (`azjax.wide`): a program's costs reach ~10^10 and N times that
    ~10^14, beyond float32's exact integers.
    """
    costs = jnp.asarray(OP_COSTS.astype(np.uint32))  # Each op's cost < 2^32.

    def cost(comp: Component) -> jax.Array:
        live = jnp.arange(comp.code.shape[-2]) < comp.length[..., None]
        per_slot = wide.from_u32(jnp.where(live, costs[comp.code[..., 0]], 0))
        return wide.sum(per_slot, axis=-2)

    setup, train = (
        cost(population.setup),
        wide.add(cost(population.predict), cost(population.learn)),
    )
    setup0, train0 = (float(c) for c in baseline)
    bound = math.floor(factor * (setup0 + float(num_examples) * train0))  # float64, as the original
    total = wide.add(setup, wide.multiply(train, int(num_examples)))
    within = ~wide.greater_equal(total, bound + 1) & jnp.any(train != 0, axis=-1)
    return jnp.where(within, jnp.int32(num_examples), jnp.int32(0))
