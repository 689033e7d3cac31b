"""The naive VM, kept as a benchmark baseline: a per-lane `lax.switch` over the allowed ops.

This is design (a) of docs/vm.md, the "obvious" JAX interpreter: per lane, a `fori_loop` over
slots whose body is a `lax.switch` on the opcode, each branch returning the whole memory updated
with `.at[].set`, all `vmap`ed over lanes. Under `vmap` the switch becomes a select over every
branch's full memory, which is why `azjax.vm` groups results by output kind instead. It plugs into
`azjax.evaluation.evaluate_lanes(..., engine=ENGINE)` with the same protocol and semantics, and
shares the op kernels, so benchmarks compare the two execution strategies and nothing else.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from azjax import evaluation, rng
from azjax import ops as ops_lib
from azjax.kernels import neg_zero
from azjax.program import Component
from azjax.vm import Memory, apply_op
from azjax.vm_plan import ComponentPlan

_BANKS = {ops_lib.Kind.SCALAR: 0, ops_lib.Kind.VECTOR: 1, ops_lib.Kind.MATRIX: 2}


def decode(plan: ComponentPlan, component: Component) -> dict[str, jax.Array]:
    """Raw per-slot program fields `[L, P]`: op, in1, in2, out and the constants."""
    code, consts = jnp.asarray(component.code), jnp.asarray(component.consts)
    fields = {"op": code[..., 0], "in1": code[..., 1], "in2": code[..., 2], "out": code[..., 3]}
    fields.update({f"c{j}": consts[..., j] for j in range(ops_lib.NUM_CONSTS)})
    return {k: v.T for k, v in fields.items()}


def _branch(op_id: int, feature_size: int):
    """The switch branch of one op: reads operands, applies the kernel, returns the whole memory."""
    spec = ops_lib.OPS[op_id]

    def branch(banks, ins, key):
        if op_id == ops_lib.NO_OP:
            return banks
        result = apply_op(
            op_id,
            banks,
            ins["in1"],
            ins["in2"],
            ins["out"],
            consts=tuple(ins[f"c{j}"].reshape(1, 1) for j in range(ops_lib.NUM_CONSTS)),
            key=key,
            zero=neg_zero(ins["op"]).reshape(1, 1),
            feature_size=feature_size,
            dtype=banks[0].dtype,
        )
        banks = list(banks)
        out_bank = _BANKS[spec.out]
        banks[out_bank] = banks[out_bank].at[ins["out"]].set(result)
        return tuple(banks)

    return branch


def run_component(
    plan: ComponentPlan, mem: Memory, dec: dict, *, seeds, call, feature_size: int, num_slots=None
):
    """Same contract as `azjax.vm.run_component`, executed the naive way."""
    valid = sorted({ops_lib.NO_OP, *(i for g in plan.groups for i in g)})
    position = (
        jnp.zeros(ops_lib.NUM_OPS, jnp.int32).at[jnp.asarray(valid)].set(jnp.arange(len(valid)))
    )
    branches = [_branch(i, feature_size) for i in valid]

    def one_lane(banks, dec_lane, seed):
        # A lane's banks get trailing lane axes of size 1, so the shared kernels apply unchanged.
        banks = tuple(b[..., None, None] for b in banks)  # [S, 1, 1], [V, F, 1, 1], ...

        def body(i, banks):
            ins = {k: v[i] for k, v in dec_lane.items()}
            key = rng.draw_key(seed.reshape(1, 1), call, i, xp=jnp)
            return jax.lax.switch(position[ins["op"]], branches, banks, ins, key)

        upper = dec_lane["op"].shape[0] if num_slots is None else num_slots
        return tuple(b[..., 0, 0] for b in jax.lax.fori_loop(0, upper, body, banks))

    # Flat lanes b = t * P + p: [S, T * P], [V, F, T * P], [M, F, F, T * P].
    T, P = seeds.shape
    stacked = tuple(jnp.stack(bank) for bank in mem)
    stacked = tuple(x.reshape(x.shape[:-2] + (T * P,)) for x in stacked)
    dec = {k: jnp.tile(v, (1, T)) for k, v in dec.items()}
    out = jax.vmap(one_lane, in_axes=(-1, -1, 0), out_axes=-1)(stacked, dec, seeds.reshape(-1))
    return Memory(*(tuple(x.reshape(x.shape[:-1] + (T, P))) for x in out))


ENGINE = evaluation.Engine(decode, run_component)  # For `evaluation.evaluate_lanes(engine=...)`.
