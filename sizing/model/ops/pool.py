"""Pooling: maxpool2d, avgpool2d, adaptive_avgpool2d.

A window of k elements costs k FLOPs (max: k comparisons against a -inf start; sum: k adds), so
maxpool is k per output element and average pooling k + 1 (the divide). Windows are counted dense
(k*k taps), taps that fall on padding too: a convention that keeps the count a closed form of the shapes (and
is what a GPU kernel that masks padded taps executes), not what PyTorch's CPU kernel does, which clips each
window to the input and so does fewer comparisons at the borders.
"""
from __future__ import annotations

import math

from ..cost import Cost
from .registry import Arg, Call, ShapeError, boolean, io_bytes, nonneg_int, numel, optional, register, tuple_of


def _pool_out(size, k, s, p, d, ceil_mode):
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:   # PyTorch: the last window must start inside the input
        out -= 1
    return out


def _pool_shape(a, s):
    x = s[0]
    if len(x) != 4:
        raise ShapeError(f"needs (batch, channels, height, width), got {list(x)}")
    stride = a["stride"] or a["kernel_size"]
    out = []
    for i in range(2):
        k, p = a["kernel_size"][i], a["padding"][i]
        if p > k // 2:
            raise ShapeError(f"padding {p} must be at most half the kernel size {k} (as in PyTorch)")
        o = _pool_out(x[2 + i], k, stride[i], p, a.get("dilation", (1, 1))[i], a["ceil_mode"])
        if o <= 0:
            raise ShapeError(f"input size {x[2 + i]} is smaller than the kernel {k}")
        out.append(o)
    return (x[0], x[1], *out)


_POOL_ARGS = (Arg("kernel_size", tuple_of(2)), Arg("stride", optional(tuple_of(2)), None),
              Arg("padding", tuple_of(2, nonneg_int), 0))


@register("maxpool2d", *_POOL_ARGS, Arg("dilation", tuple_of(2), 1), Arg("ceil_mode", boolean, False),
          shape=_pool_shape, saves=("inputs",))
def _maxpool2d(call: Call) -> Cost:
    """k*k comparisons per output element; backward routes each output gradient to its argmax with 1 add
    per output element. The argmax indices (int64, one per output) are kept for backward."""
    k = numel(call.args["kernel_size"])
    back = call.out_elems if call.grad_inputs[0] else 0
    return Cost(flops=k * call.out_elems, backward_flops=back, saved_bytes=8 * call.out_elems, **io_bytes(call))


@register("avgpool2d", *_POOL_ARGS, Arg("ceil_mode", boolean, False), Arg("count_include_pad", boolean, True),
          shape=_pool_shape)
def _avgpool2d(call: Call) -> Cost:
    """k*k adds + 1 divide per output element; backward: 1 divide + k*k scatter-adds per output element."""
    per_out = numel(call.args["kernel_size"]) + 1
    back = per_out * call.out_elems if call.grad_inputs[0] else 0
    return Cost(flops=per_out * call.out_elems, backward_flops=back, **io_bytes(call))


def _adaptive_size(a, x):
    o = a["output_size"]
    return tuple(x[2 + i] if o[i] is None else o[i] for i in range(2))


def _output_size(v):
    if v is None or isinstance(v, int):
        v = [v, v]
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        from .registry import ArgError
        raise ArgError("an integer or a list of 2 integers (null keeps that dim)")
    return tuple(None if d is None else tuple_of(1)(d)[0] for d in v)


def _adaptive_shape(a, s):
    x = s[0]
    if len(x) != 4:
        raise ShapeError(f"needs (batch, channels, height, width), got {list(x)}")
    return (x[0], x[1], *_adaptive_size(a, x))


def _bins(size, out):
    """PyTorch's adaptive bins: [floor(i*size/out), ceil((i+1)*size/out)) for i < out; their total length,
    size + out - gcd(size, out) in closed form: each of the out - gcd inner bin edges that falls inside a cell
    (not on a cell boundary) counts that cell once more (Graham, Knuth & Patashnik, Concrete Mathematics 3.5)."""
    return size + out - math.gcd(size, out)


@register("adaptive_avgpool2d", Arg("output_size", _output_size), shape=_adaptive_shape)
def _adaptive_avgpool2d(call: Call) -> Cost:
    """Per output cell: its bin's area in adds + 1 divide. Bins may overlap and differ in size, so the count is
    sum over cells of (bin_h * bin_w + 1) = sum(bin_h) * sum(bin_w) + oh * ow, per (batch, channel).
    Backward mirrors it (1 divide + bin-area scatter-adds per cell)."""
    x = call.inputs[0]
    oh, ow = call.output[2:]
    per_map = _bins(x[2], oh) * _bins(x[3], ow) + oh * ow
    fwd = x[0] * x[1] * per_map
    return Cost(flops=fwd, backward_flops=fwd if call.grad_inputs[0] else 0, **io_bytes(call))
