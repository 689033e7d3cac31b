"""Process-level JAX setup for entry points: CPU devices, the compile cache, the program mesh.

Call `configure` at the start of a script's `main` (before any JAX computation), never on import.
On CPU, XLA's intra-op threading slows this workload down (docs/vm.md: ~100 tiny kernels per
instruction step), so azjax exposes one CPU device per core and splits the work over them with
`shard_map` (`azjax.search`, `azjax.scoring`): each device runs its share on its own thread. On a
GPU or TPU host the mesh is simply the local accelerators.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PROGRAMS_AXIS = "programs"
DEFAULT_CACHE_DIR = os.environ.get(
    "AZJAX_COMPILATION_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "azjax", "jax")
)


# XLA:CPU compiles a while loop that accesses fewer bytes than this threshold (and has no scatter,
# sort or custom call) into one function, instead of dispatching a thunk per fused op and
# iteration. The VM's loops over slots and examples are exactly that, and ~1 us of dispatch per
# op dominated them: with the threshold raised the demo's VM calls ran 1.8x faster and compiled in
# 40% less time (same results, bit for bit), and a demo search generation took 111 instead of
# 250 ms (one core). It can only be set through XLA_FLAGS, before the backend starts.
XLA_CPU_FLAGS = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000000000"


def set_xla_flags() -> None:
    """Adds `XLA_CPU_FLAGS` to the XLA_FLAGS environment variable (unless the threshold is
    already set there). Takes effect only before JAX's CPU backend starts."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_small_while_loop_byte_threshold" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_CPU_FLAGS}".strip()


def configure(*, num_cpu_devices: int | None = None, cache_dir: str | None = DEFAULT_CACHE_DIR):
    """Sets the CPU device count (default: one per available core) and the persistent cache
    (default: $AZJAX_COMPILATION_CACHE_DIR, else ~/.cache/azjax/jax).

    Must run before JAX initializes its backends; a later call raises a RuntimeError naming the fix.
    Also sets the XLA:CPU flags of `set_xla_flags`.
    """
    set_xla_flags()
    if num_cpu_devices is None:
        num_cpu_devices = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1)
        )
    try:
        jax.config.update("jax_num_cpu_devices", int(num_cpu_devices))
    except RuntimeError as e:  # Backends already initialized.
        if jax.device_count("cpu") != num_cpu_devices:
            raise RuntimeError(
                "azjax.runtime.configure() must be called before any JAX computation "
                f"(wanted {num_cpu_devices} CPU devices, JAX already has {jax.device_count('cpu')})"
            ) from e
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def program_mesh(devices=None) -> Mesh:
    """A 1-D mesh over the (local) devices; populations are split along its `programs` axis."""
    devices = jax.local_devices() if devices is None else devices
    return Mesh(np.asarray(devices), (PROGRAMS_AXIS,))


def replicate(tree, mesh: Mesh):
    """Places a pytree on every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",  # Includes the read on a persistent-cache hit.
)
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


class CompileLog:
    """Wall time JAX spends tracing, lowering and compiling, and persistent-cache hits.

    Listens to jax.monitoring's event spans and measures their union: nested jits record nested
    trace spans, so summing the durations would count them twice.
    """

    def __init__(self):
        self.reset()
        jax.monitoring.register_event_time_span_listener(self._on_span)
        jax.monitoring.register_event_listener(self._on_event)

    def reset(self):
        self.spans, self.cache_hits = [], 0

    @property
    def seconds(self) -> float:
        total, covered = 0.0, -np.inf
        for start, end in sorted(self.spans):
            total += max(0.0, end - max(start, covered))
            covered = max(covered, end)
        return total

    def _on_span(self, event, start_time, end_time, **kwargs):
        if event in COMPILE_EVENTS:
            self.spans.append((start_time, end_time))

    def _on_event(self, event, **kwargs):
        self.cache_hits += event == CACHE_HIT_EVENT
