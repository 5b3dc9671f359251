"""Activations, softmax, dropout, merges (add, mul, concat) and zero-cost views.

Per-element costs (docs/conventions.md): every +, -, *, /, comparison and every call of a
transcendental function (exp, tanh, erf, sqrt, rsqrt) is 1 FLOP; a reduction over n terms is n FLOPs.
"""
from __future__ import annotations

from ..cost import Cost
from .registry import (Arg, Call, ShapeError, any_int, boolean, choice, elementwise, int_list, io_bytes,
    nonneg_int, numel, pos_int, probability, register, view)


def _same(a, s):
    return s[0]


# ---------------------------------------------------------------- activations
# name: (forward FLOPs per element, backward FLOPs per element, what backward keeps, derivation)
ACTIVATIONS = {
    "relu": (1, 1, "output", "max(x, 0); backward: select g where y > 0"),
    "relu6": (2, 2, "output", "min(max(x, 0), 6); backward: two comparisons select g where 0 < y < 6"),
    "sigmoid": (4, 3, "output", "1 / (1 + exp(-x)): neg, exp, add, div; backward g * y * (1 - y)"),
    "tanh": (1, 3, "output", "tanh call; backward g * (1 - y*y)"),
    "silu": (5, 9, "inputs", "x * sigmoid(x); backward recomputes s (4) then g * s * (1 + x * (1 - s)) (5)"),
}
# gelu: exact (erf) and tanh-approximation forms, torch.nn.GELU(approximate='none'|'tanh')
GELU = {
    "none": (5, 11, "0.5 * x * (1 + erf(x / sqrt 2)); backward g * (Phi(x) + x * phi(x))"),
    "tanh": (9, 14, "0.5 * x * (1 + tanh(c * (x + 0.044715 x^3))); backward by the chain rule"),
}


def _activation(name, fwd, bwd, saves):
    def cost(call: Call) -> Cost:
        return elementwise(call, fwd, bwd)
    cost.__doc__ = f"{name}: {fwd} FLOPs per element forward, {bwd} backward ({ACTIVATIONS[name][3]})."
    register(name, Arg("inplace", boolean, False), shape=_same, saves=(saves,))(cost)


for _name, (_f, _b, _saves, _why) in ACTIVATIONS.items():
    _activation(_name, _f, _b, _saves)


@register("gelu", Arg("approximate", choice("none", "tanh"), "none"), shape=_same, saves=("inputs",))
def _gelu(call: Call) -> Cost:
    """gelu: 5 FLOPs per element forward, 11 backward (erf form); 9 and 14 for approximate='tanh'."""
    fwd, bwd, _ = GELU[call.args["approximate"]]
    return elementwise(call, fwd, bwd)


# ---------------------------------------------------------------- softmax and dropout

def _softmax_shape(a, s):
    x = s[0]
    if not -len(x) <= a["dim"] < len(x):
        raise ShapeError(f"dim={a['dim']} is out of range for a {len(x)}-dim tensor {list(x)}")
    if a["dim"] % len(x) == 0:
        raise ShapeError("dim 0 is the batch dim; softmax over a feature dim (e.g. -1)")
    return x


@register("softmax", Arg("dim", any_int, -1), shape=_softmax_shape, saves=("output",))
def _softmax(call: Call) -> Cost:
    """Stable softmax, per element: max-reduce 1, subtract 1, exp 1, sum-reduce 1, divide 1 = 5.
    Backward y * (g - sum(g * y)): multiply 1, sum 1, subtract 1, multiply 1 = 4 per element."""
    return elementwise(call, 5, 4)


@register("dropout", Arg("p", probability, 0.5), Arg("inplace", boolean, False), shape=_same)
def _dropout(call: Call) -> Cost:
    """Training mode: multiply by a pre-scaled mask, 1 FLOP per element forward and 1 backward; the mask
    (1 byte per element) is kept for backward. Random number generation is not floating-point work.
    p = 0 is the identity (zero-cost by rule)."""
    if call.args["p"] == 0:
        return Cost()
    return elementwise(call, 1, 1, saved_bytes=call.out_elems)


register("identity", shape=_same)(view)


# ---------------------------------------------------------------- merges

def _broadcast_all(a, shapes):
    from .dense import _broadcast
    out = shapes[0]
    for s in shapes[1:]:
        out = _broadcast(out, s, what="shapes")
    return out


def _reduce_back(call: Call, i: int) -> int:
    """Adds needed to sum a gradient back to input i's shape when it was broadcast (0 when not)."""
    return call.out_elems if call.inputs[i] != call.output else 0


@register("add", shape=_broadcast_all, arity=(2, None))
def _add(call: Call) -> Cost:
    """Sum of n inputs with broadcasting: (n - 1) adds per output element. Backward passes the gradient
    through (0 FLOPs) except a broadcast input, whose gradient is summed back (1 add per output element)."""
    n = len(call.inputs)
    back = sum(_reduce_back(call, i) for i, g in enumerate(call.grad_inputs) if g)
    return Cost(flops=(n - 1) * call.out_elems, backward_flops=back, **io_bytes(call))


@register("mul", shape=_broadcast_all, arity=(2, None), saves=("inputs",))
def _mul(call: Call) -> Cost:
    """Product of n inputs with broadcasting: (n - 1) multiplies per output element. Backward: each input
    that needs a gradient costs (n - 1) multiplies per output element (g times the other inputs), plus the
    reduction of a broadcast input."""
    n = len(call.inputs)
    back = sum((n - 1) * call.out_elems + _reduce_back(call, i) for i, g in enumerate(call.grad_inputs) if g)
    return Cost(flops=(n - 1) * call.out_elems, backward_flops=back, **io_bytes(call))


def _concat_shape(a, s):
    rank = len(s[0])
    if not -rank <= a["dim"] < rank or a["dim"] % rank == 0:
        raise ShapeError(f"dim={a['dim']} must be a non-batch dim of a {rank}-dim tensor")
    d = a["dim"] % rank
    for other in s[1:]:
        if len(other) != rank or any(other[i] != s[0][i] for i in range(rank) if i != d):
            raise ShapeError(f"shapes {list(s[0])} and {list(other)} differ outside dim {a['dim']}")
    return s[0][:d] + (sum(x[d] for x in s),) + s[0][d + 1:]


@register("concat", Arg("dim", any_int, 1), shape=_concat_shape, arity=(2, None))
def _concat(call: Call) -> Cost:
    """torch.cat: zero FLOPs by rule (a copy); its traffic (read inputs, write output) is counted."""
    return Cost(**io_bytes(call))


# ---------------------------------------------------------------- views

def _flatten_shape(a, s):
    x = s[0]
    lo, hi = a["start_dim"] % len(x), a["end_dim"] % len(x)
    if lo == 0 or lo > hi:
        raise ShapeError(f"start_dim={a['start_dim']}, end_dim={a['end_dim']} must be non-batch dims in order")
    return x[:lo] + (numel(x[lo:hi + 1]),) + x[hi + 1:]


register("flatten", Arg("start_dim", any_int, 1), Arg("end_dim", any_int, -1), shape=_flatten_shape)(view)


def _reshape_shape(a, s):
    x, target = s[0], a["shape"]
    per_sample = numel(x[1:])
    if sum(1 for d in target if d == -1) > 1 or any(d == 0 or d < -1 for d in target):
        raise ShapeError(f"shape {list(target)} may hold positive sizes and at most one -1")
    known = numel([d for d in target if d != -1])
    if -1 in target:
        if per_sample % known:
            raise ShapeError(f"cannot reshape {per_sample} elements per sample into {list(target)}")
        target = tuple(per_sample // known if d == -1 else d for d in target)
    if numel(target) != per_sample:
        raise ShapeError(f"cannot reshape {list(x[1:])} ({per_sample} per sample) into {list(target)}")
    return (x[0], *target)


register("reshape", Arg("shape", int_list), shape=_reshape_shape)(view)


def _select_shape(a, s):
    x = s[0]
    if not -len(x) <= a["dim"] < len(x) or a["dim"] % len(x) == 0:
        raise ShapeError(f"dim={a['dim']} must be a non-batch dim of {list(x)}")
    d = a["dim"] % len(x)
    if not -x[d] <= a["index"] < x[d]:
        raise ShapeError(f"index={a['index']} is out of range for size {x[d]}")
    return x[:d] + x[d + 1:]


register("select", Arg("dim", any_int), Arg("index", any_int), shape=_select_shape)(view)


def _narrow_shape(a, s):
    x = s[0]
    if not -len(x) <= a["dim"] < len(x) or a["dim"] % len(x) == 0:
        raise ShapeError(f"dim={a['dim']} must be a non-batch dim of {list(x)}")
    d = a["dim"] % len(x)
    if a["start"] + a["length"] > x[d]:
        raise ShapeError(f"start={a['start']} + length={a['length']} is past size {x[d]} of dim {a['dim']}")
    return x[:d] + (a["length"],) + x[d + 1:]


def _expand_shape(a, s):
    x, target = s[0], a["shape"]
    if len(target) != len(x) - 1:
        raise ShapeError(f"shape {list(target)} must give all {len(x) - 1} non-batch dims of {list(x)}")
    out = [x[0]]
    for have, want in zip(x[1:], target):
        if want == -1:
            want = have
        elif want <= 0 or have not in (1, want):
            raise ShapeError(f"shape {list(target)}: each size must be -1 (kept), or a positive size where {list(x)} "
                             f"has that size or 1")
        out.append(want)
    return tuple(out)


@register("expand", Arg("shape", int_list), shape=_expand_shape)
def _expand(call: Call) -> Cost:
    """torch.Tensor.expand: size-1 dims repeated to ``shape`` (per sample; -1 keeps a dim) as a view, zero cost
    forward. Backward sums the gradient back to the input's shape, 1 add per output element when a dim was
    expanded (as add's broadcast input; autograd's sum_to_size). DeepSeek's MLA expands its one rotary key head
    over the heads."""
    back = call.out_elems if call.grad_inputs[0] and call.inputs[0] != call.output else 0
    return Cost(backward_flops=back)


# torch.narrow(x, dim, start, length): a view of ``length`` entries of one dim (the parts of a fused projection,
# as Phi-3's qkv_proj and gate_up_proj are split); zero cost by rule
register("narrow", Arg("dim", any_int), Arg("start", nonneg_int), Arg("length", pos_int), shape=_narrow_shape)(view)
