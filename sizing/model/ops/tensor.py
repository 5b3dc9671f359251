"""Ops that imported graphs (ONNX) need beyond PyTorch's modules: a permutation of dims, pointwise math with a
constant or a function, and a placeholder for a node the importer could not map.

Per-element costs follow docs/conventions.md: each + - * /, comparison and call of a transcendental function
(exp, log, erf, sqrt, pow) is 1 FLOP.
"""
from __future__ import annotations

from ..cost import Cost
from .registry import Arg, ArgError, Call, ShapeError, choice, elementwise, int_list, register, view

# fn: (forward FLOPs / element, backward FLOPs / element, what backward keeps, derivation)
POINTWISE = {
    "add_scalar": (1, 0, None, "x + c (and x - c); backward passes g through"),
    "mul_scalar": (1, 1, None, "x * c (and x / c); backward g * c"),
    "pow_scalar": (1, 3, "input", "x ** c; backward g * c * x ** (c - 1): pow 1, two multiplies"),
    "neg": (1, 1, None, "-x; backward -g"),
    "abs": (1, 2, "input", "|x|; backward g * sign(x): comparison 1, multiply 1"),
    "exp": (1, 1, "output", "exp(x); backward g * y"),
    "log": (1, 1, "input", "log(x); backward g / x"),
    "sqrt": (1, 2, "output", "sqrt(x); backward g / (2 y): multiply 1, divide 1"),
    "reciprocal": (1, 3, "output", "1 / x; backward -g * y * y: two multiplies, negation"),
    "erf": (1, 5, "input", "erf(x); backward g * 2/sqrt(pi) * exp(-x*x): square, negation, exp, two multiplies"),
}


def _same(a, s):
    return s[0]


@register("pointwise", Arg("fn", choice(*POINTWISE)), shape=_same)
def _pointwise(call: Call) -> Cost:
    """One elementwise function of x (and a constant): FLOPs per element from the POINTWISE table (forward 1;
    backward by the derivative written there). What backward needs (the input or the output) is kept, one
    element each, as an op-internal tensor. Source: docs/conventions.md per-element costs; torch.erf, exp, ..."""
    fwd, bwd, keeps, _ = POINTWISE[call.args["fn"]]
    return elementwise(call, fwd, bwd, saved_bytes=call.out_elems * call.itemsize if keeps else 0)


def _permute_shape(a, s):
    x, dims = s[0], a["dims"]
    if sorted(dims) != list(range(len(x))):
        raise ShapeError(f"dims {list(dims)} must order all {len(x)} dims of {list(x)}, each once")
    if dims[0] != 0:
        raise ShapeError("dims must keep the batch dim first (dims[0] = 0)")
    return tuple(x[d] for d in dims)


# torch.permute: a view (zero cost by rule); a later copy to make it contiguous is the consumer's read
register("permute", Arg("dims", int_list), shape=_permute_shape)(view)


def _name(v):
    if not isinstance(v, str) or not v or not v.isprintable():
        raise ArgError("a non-empty string")
    return v


def _unmapped_shape(a, s):
    if any(d <= 0 for d in a["shape"]):
        raise ShapeError(f"shape {list(a['shape'])} must hold positive sizes (one sample's output shape)")
    return (s[0][0], *a["shape"])


@register("unmapped", Arg("onnx_op", _name), Arg("shape", int_list), shape=_unmapped_shape, arity=(1, None),
          note=lambda call: f"ONNX op {call.args['onnx_op']} is not mapped: counted as zero (totals are partial)")
def _unmapped(call: Call) -> Cost:
    """A node of an imported graph with no formula yet (``--allow-unmapped``): it only carries its output shape
    (one sample's, ``shape``) so the layers after it are counted; its own cost is zero, and says so."""
    return Cost()
