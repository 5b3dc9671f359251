"""Linear, convolutions and matmul: the multiply-accumulate ops.

Convention (docs/conventions.md): forward FLOPs = 2 * MACs + one add per output element for a bias.
Backward = input gradient (same MACs as forward, when the input needs a gradient) + weight gradient
(same MACs again, when the weights are trainable) + bias gradient (one add per output element).
"""
from __future__ import annotations

from ..cost import Cost
from .registry import (Arg, ArgError, Call, ShapeError, boolean, choice, io_bytes, nonneg_int, numel, pos_int,
    register, tuple_of)


def _dense_cost(call: Call, macs: int, bias_elems: int) -> Cost:
    """Forward 2*MACs + bias adds; backward 2*MACs per gradient taken (input, weight) + bias reduction."""
    back = 0
    if call.grad_inputs[0]:
        back += 2 * macs
    if call.trainable:
        back += 2 * macs + bias_elems
    return Cost(macs=macs, flops=2 * macs + bias_elems, backward_flops=back, **io_bytes(call))


# ---------------------------------------------------------------- linear

def _linear_shape(a, s):
    (x,) = s
    if len(x) < 2:
        raise ShapeError(f"needs (batch, ..., in_features), got {list(x)}")
    if len(x) >= 4:     # channels first (B, C, H, W): the last dim is the width, not the features
        raise ShapeError(f"applies to the last dim, which in {list(x)} is a spatial size, not features; "
                         "add {op: flatten} (or adaptive_avgpool2d then flatten) before it")
    return x[:-1] + (a["out_features"],)


def _linear_weights(a, s):
    w = {"weight": (a["out_features"], s[0][-1])}
    if a["bias"]:
        w["bias"] = (a["out_features"],)
    return w


@register("linear", Arg("out_features", pos_int), Arg("bias", boolean, True),
          shape=_linear_shape, weights=_linear_weights, saves=("inputs_for_weights",), matrix=True)
def _linear(call: Call) -> Cost:
    """y = x W^T + b over the last dim. MACs = N * in * out with N = rows (all leading dims).
    Source: torch.nn.Linear; PyTorch flop_counter counts 2 * N * in * out for addmm."""
    x = call.inputs[0]
    rows, fin = numel(x[:-1]), x[-1]
    macs = rows * fin * call.args["out_features"]
    return _dense_cost(call, macs, call.out_elems if call.args["bias"] else 0)


# ---------------------------------------------------------------- convolutions

def _padding(nd):
    pairs = tuple_of(nd, nonneg_int)

    def check(v):
        if v in ("valid", "same"):
            return v
        try:
            return pairs(v)
        except ArgError as e:
            raise ArgError(f"'valid', 'same' or {e}") from None
    return check


def _conv_args(nd, transposed=False):
    args = [Arg("out_channels", pos_int), Arg("kernel_size", tuple_of(nd)), Arg("stride", tuple_of(nd), 1),
            Arg("padding", tuple_of(nd, nonneg_int) if transposed else _padding(nd), 0),
            Arg("dilation", tuple_of(nd), 1), Arg("groups", pos_int, 1), Arg("bias", boolean, True),
            Arg("padding_mode", choice("zeros", "reflect", "replicate", "circular"), "zeros")]
    if transposed:
        args.insert(4, Arg("output_padding", tuple_of(nd, nonneg_int), 0))
    return tuple(args)


def _check_channels(a, x, nd):
    if len(x) != nd + 2:
        raise ShapeError(f"needs (batch, channels, {'length' if nd == 1 else 'height, width'}), got {list(x)}")
    g = a["groups"]
    if x[1] % g or a["out_channels"] % g:
        raise ShapeError(f"groups={g} must divide in_channels={x[1]} and out_channels={a['out_channels']}")


def _conv_out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_shape_fn(nd):
    def shape(a, s):
        (x,) = s
        _check_channels(a, x, nd)
        pad = a["padding"]
        if pad == "same" and any(st != 1 for st in a["stride"]):
            raise ShapeError("padding='same' needs stride 1 (as in PyTorch)")
        out = []
        for i in range(nd):
            k, d = a["kernel_size"][i], a["dilation"][i]
            if pad == "same":
                out.append(x[2 + i])
                continue
            p = 0 if pad == "valid" else pad[i]
            o = _conv_out(x[2 + i], k, a["stride"][i], p, d)
            if o <= 0:
                raise ShapeError(f"input size {x[2 + i]} is smaller than the dilated kernel {d * (k - 1) + 1}"
                                 f" with padding {p}")
            out.append(o)
        return (x[0], a["out_channels"], *out)
    return shape


def _conv_weights(a, s):
    x = s[0]
    w = {"weight": (a["out_channels"], x[1] // a["groups"], *a["kernel_size"])}
    if a["bias"]:
        w["bias"] = (a["out_channels"],)
    return w


def _conv_cost(call: Call) -> Cost:
    """MACs = batch * out_channels * prod(out_spatial) * (in_channels / groups) * prod(kernel).
    Depthwise (groups = in_channels) is the same formula; its backward is 2 x forward MACs, not the
    dense conv's. Source: torch.nn.Conv2d docs; PyTorch flop_counter conv_flop_count."""
    a, x = call.args, call.inputs[0]
    k = numel(a["kernel_size"])
    macs = call.out_elems * (x[1] // a["groups"]) * k
    return _dense_cost(call, macs, call.out_elems if a["bias"] else 0)


for _nd in (1, 2):
    register(f"conv{_nd}d", *_conv_args(_nd), shape=_conv_shape_fn(_nd), weights=_conv_weights,
             saves=("inputs_for_weights",), matrix=True)(_conv_cost)


def _convt_shape(a, s):
    (x,) = s
    _check_channels(a, x, 2)
    out = []
    for i in range(2):
        o = ((x[2 + i] - 1) * a["stride"][i] - 2 * a["padding"][i] + a["dilation"][i] * (a["kernel_size"][i] - 1)
             + a["output_padding"][i] + 1)
        if a["output_padding"][i] >= max(a["stride"][i], a["dilation"][i]):
            raise ShapeError("output_padding must be smaller than stride or dilation (as in PyTorch)")
        if o <= 0:
            raise ShapeError(f"output size would be {o}; reduce padding")
        out.append(o)
    return (x[0], a["out_channels"], *out)


def _convt_weights(a, s):
    x = s[0]
    w = {"weight": (x[1], a["out_channels"] // a["groups"], *a["kernel_size"])}
    if a["bias"]:
        w["bias"] = (a["out_channels"],)
    return w


@register("conv_transpose2d", *_conv_args(2, transposed=True), shape=_convt_shape, weights=_convt_weights,
          saves=("inputs_for_weights",), matrix=True)
def _conv_transpose2d(call: Call) -> Cost:
    """Each input element is multiplied by every tap of its group's kernels:
    MACs = batch * in_channels * H_in * W_in * (out_channels / groups) * kh * kw.
    Counting from the output side (out pixels * in_channels * k*k) overcounts by stride^2 when stride > 1.
    Source: torch.nn.ConvTranspose2d (gradient of conv2d); Dumoulin & Visin, arXiv:1603.07285."""
    a, x = call.args, call.inputs[0]
    macs = numel(x) * (a["out_channels"] // a["groups"]) * numel(a["kernel_size"])
    return _dense_cost(call, macs, call.out_elems if a["bias"] else 0)


# ---------------------------------------------------------------- matmul

def _broadcast(a: tuple, b: tuple, what="batch dims") -> tuple:
    out = []
    for i in range(max(len(a), len(b))):
        da = a[-1 - i] if i < len(a) else 1
        db = b[-1 - i] if i < len(b) else 1
        if da != db and 1 not in (da, db):
            raise ShapeError(f"{what} {list(a)} and {list(b)} do not broadcast")
        out.append(max(da, db))
    return tuple(reversed(out))


def _matmul_shape(a, s):
    x, y = s
    if len(x) < 2 or len(y) < 2:
        raise ShapeError(f"needs two tensors of at least 2 dims, got {list(x)} and {list(y)}")
    if x[-1] != y[-2]:
        raise ShapeError(f"inner sizes differ: {list(x)} @ {list(y)} ({x[-1]} != {y[-2]})")
    return _broadcast(x[:-2], y[:-2]) + (x[-2], y[-1])


@register("matmul", shape=_matmul_shape, arity=(2, 2), saves=("inputs",), matrix=True)
def _matmul(call: Call) -> Cost:
    """torch.matmul of (..., n, k) @ (..., k, m) with broadcast batch dims: MACs = prod(batch) * n * k * m.
    Backward: each input that needs a gradient costs the same MACs again."""
    n, k = call.inputs[0][-2:]
    macs = call.out_elems * k
    back = sum(2 * macs for g in call.grad_inputs if g)
    return Cost(macs=macs, flops=2 * macs, backward_flops=back, **io_bytes(call))
