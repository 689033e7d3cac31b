"""azjax: AutoML-Zero on JAX."""

from azjax import ops
from azjax.program import (
    COMPONENTS,
    Component,
    ComponentSpec,
    Instruction,
    Program,
    ProgramSpec,
    make_program,
)

__all__ = [
    "COMPONENTS",
    "Component",
    "ComponentSpec",
    "Instruction",
    "Program",
    "ProgramSpec",
    "make_program",
    "ops",
]
