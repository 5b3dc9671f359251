"""The op registry: each op type defined once, keyed by its PyTorch module name in lower snake case.

An ``OpDef`` holds, side by side, the argument schema (PyTorch's names), the shape rule, the weight
shapes and a pure cost function. Counting, the spec loader and later the executor and importers all
look ops up here by name; adding an op is one ``@register`` block in one module.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..cost import Cost

Shape = tuple[int, ...]
REQUIRED = object()


class ShapeError(ValueError):
    """An op cannot take the shapes it was given; the message says what it needs."""


class ArgError(ValueError):
    """An argument value is invalid; the message says what would be valid."""


@dataclass(frozen=True)
class Arg:
    name: str
    check: Callable[[Any], Any]          # returns the normalised value or raises ArgError
    default: Any = REQUIRED


@dataclass(frozen=True)
class Call:
    """What a cost formula sees: one application of an op to concrete shapes (batch included)."""
    args: Mapping[str, Any]
    inputs: tuple[Shape, ...]
    output: Shape
    grad_inputs: tuple[bool, ...]        # which inputs need a gradient (never the model's own input)
    trainable: bool                      # the op has weights and they receive gradients
    itemsize: int                        # bytes per floating-point element at the chosen dtype
    weight_elems: int = 0                # elements of all weights the op reads (tied ones included)
    index_itemsize: int = 8              # bytes per integer id (int64)

    @property
    def out_elems(self) -> int:
        return numel(self.output)

    def in_elems(self, i: int = 0) -> int:
        return numel(self.inputs[i])


@dataclass(frozen=True)
class OpDef:
    name: str
    args: tuple[Arg, ...]
    shape: Callable[[Mapping[str, Any], tuple[Shape, ...]], Shape]
    cost: Callable[[Call], Cost]
    weights: Callable[[Mapping[str, Any], tuple[Shape, ...]], dict[str, Shape]] = lambda a, s: {}
    buffers: Callable[[Mapping[str, Any], tuple[Shape, ...]], dict[str, Shape]] = lambda a, s: {}
    # weights that take no gradient even when the layer trains (a LoRA-adapted op's base weights)
    frozen: Callable[[Mapping[str, Any], tuple[Shape, ...]], frozenset] = lambda a, s: frozenset()
    arity: tuple[int, int | None] = (1, 1)       # (min, max) inputs; None = any number
    takes_ids: bool = False                       # the input is integer ids (embedding)
    matrix: bool = False                          # a matrix product: runs on tensor cores where a device has them
    # kept for backward: "inputs", "output", or "inputs_for_weights" (the inputs only when the layer's weights get a
    # gradient: a product's input gradient needs its weights, not its input, so a frozen layer keeps nothing)
    saves: frozenset = field(default_factory=frozenset)
    note: Callable[[Call], str | None] = lambda call: None
    doc: str = ""

    def arg_names(self) -> list[str]:
        return [a.name for a in self.args]


REGISTRY: dict[str, OpDef] = {}


def register(name: str, *args: Arg, shape, weights=None, buffers=None, frozen=None, arity=(1, 1), takes_ids=False,
             saves=(), note=None, matrix=False):
    """Decorator: register ``cost_fn`` as the cost formula of op ``name`` with its schema and rules."""
    def deco(cost_fn):
        if name in REGISTRY:
            raise RuntimeError(f"op {name!r} registered twice")
        extra = {k: v for k, v in (("weights", weights), ("buffers", buffers), ("frozen", frozen), ("note", note))
                 if v}
        REGISTRY[name] = OpDef(name=name, args=tuple(args), shape=shape, cost=cost_fn, arity=arity,
                               takes_ids=takes_ids, matrix=matrix, saves=frozenset(saves), doc=(cost_fn.__doc__ or "").strip(),
                               **extra)
        return cost_fn
    return deco


# ---------------------------------------------------------------- small shared helpers

def numel(shape: Shape) -> int:
    return math.prod(shape)


def io_bytes(call: Call, read_ids: bool = False) -> dict[str, int]:
    """Forward traffic of an op that reads every input and weight once and writes its output once."""
    size = call.index_itemsize if read_ids else call.itemsize
    read = sum(numel(s) for s in call.inputs) * size + call.weight_elems * call.itemsize
    return {"bytes_read": read, "bytes_written": call.out_elems * call.itemsize}


def elementwise(call: Call, fwd_per_elem: int, bwd_per_elem: int, saved_bytes: int = 0) -> Cost:
    """Cost of a one-input elementwise op: per-element forward and backward FLOPs from the table."""
    n = call.out_elems
    back = bwd_per_elem * n if call.grad_inputs[0] else 0
    return Cost(flops=fwd_per_elem * n, backward_flops=back, saved_bytes=saved_bytes, **io_bytes(call))


def view(call: Call) -> Cost:
    """Zero-cost by rule: a view or a copy moves data but does no arithmetic (and, as a view, no traffic)."""
    return Cost()


# ---------------------------------------------------------------- argument checkers

def pos_int(v):
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ArgError("a positive integer")
    return v


def nonneg_int(v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ArgError("an integer >= 0")
    return v


def any_int(v):
    if isinstance(v, bool) or not isinstance(v, int):
        raise ArgError("an integer")
    return v


def boolean(v):
    if not isinstance(v, bool):
        raise ArgError("true or false")
    return v


def probability(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
        raise ArgError("a number in [0, 1)")
    return float(v)


def pos_float(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v != v or v == float("inf"):
        raise ArgError("a positive number")
    return float(v)


def choice(*options):
    def check(v):
        if v not in options:
            raise ArgError("one of " + ", ".join(repr(o) for o in options))
        return v
    return check


def optional(check):
    def inner(v):
        return None if v is None else check(v)
    return inner


def tuple_of(n: int, item=pos_int):
    """An int (repeated n times) or a list of n ints, as PyTorch's ``_pair``."""
    def check(v):
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v] * n
        if not isinstance(v, (list, tuple)) or len(v) != n:
            raise ArgError(f"an integer or a list of {n} integers")
        try:
            return tuple(item(x) for x in v)
        except ArgError as e:
            raise ArgError(f"an integer or a list of {n} integers, each {e}") from None
    return check


def int_list(v):
    if not isinstance(v, (list, tuple)) or not v:
        raise ArgError("a non-empty list of integers")
    return tuple(any_int(x) for x in v)
