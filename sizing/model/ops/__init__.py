"""The op registry, filled by importing the op modules (each op defined once, in one of them)."""
from . import dense, elementwise, embedding, norm, pool, sequence, tensor, transformer  # noqa: F401  (registration)
from .registry import REGISTRY, Arg, ArgError, Call, OpDef, ShapeError, numel

__all__ = ["REGISTRY", "Arg", "ArgError", "Call", "OpDef", "ShapeError", "numel"]
