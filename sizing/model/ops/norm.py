"""Normalisation layers: batchnorm1d/2d, layernorm, rmsnorm, groupnorm (training mode).

All share one accounting (docs/conventions.md), over ``groups`` statistics of ``n`` elements each:
forward per element: mean-sum 1, subtract 1, square 1, var-sum 1, scale by rstd 1 = 5 (RMSNorm: square 1,
sum 1, scale 1 = 3), plus 1 per affine weight and 1 per affine bias; per statistic: divide the two sums
by n and add eps, rsqrt = 4 (RMSNorm: 3).
backward per element (input gradient): g*gamma 1 (only with a weight), two sums 2, dxhat*xhat 1, xhat*mean 1,
two subtracts 2, scale 1 = 8 (RMSNorm 6: one sum, one subtract); per statistic one divide per mean: 2 (RMSNorm 1);
weight gradient: g*xhat 1 + sum 1; bias: sum 1. Kept: mean and rstd per statistic (RMSNorm: rstd), fp32.
"""
from __future__ import annotations

from ..cost import Cost
from .registry import (Arg, Call, ShapeError, boolean, int_list, io_bytes, numel, optional, pos_float, pos_int,
    probability, register)

_FWD = {"mean_var": (5, 4), "rms": (3, 3)}     # (per element, per statistic)
_BWD = {"mean_var": (8, 2), "rms": (6, 1)}


def _norm_cost(call: Call, stats: int, kind: str, weight: bool, bias: bool, extra_flops: int = 0) -> Cost:
    n = call.out_elems
    fe, fs = _FWD[kind]
    be, bs = _BWD[kind]
    fwd = n * (fe + weight + bias) + stats * fs + extra_flops
    back = n * (be - 1 + weight) + stats * bs if call.grad_inputs[0] else 0    # g*gamma only with a weight
    if call.trainable:
        back += n * (2 * weight + bias)
    # kept for backward: the input (in ``saves``) and mean (not for RMSNorm) and rstd per statistic
    kept_stats = 2 if kind == "mean_var" else 1
    return Cost(flops=fwd, backward_flops=back, saved_bytes=kept_stats * stats * 4, **io_bytes(call))


def _affine_weights(size_of, affine_arg, has_bias=lambda a: True):
    """weight (and bias, when ``has_bias(args)``) of the size ``size_of`` gives, when ``affine_arg`` is true."""
    def weights(a, s):
        if not a[affine_arg]:
            return {}
        size = size_of(a, s)
        w = {"weight": size}
        if has_bias(a):
            w["bias"] = size
        return w
    return weights


# ---------------------------------------------------------------- batchnorm

def _bn_shape(ranks):
    def shape(a, s):
        x = s[0]
        if len(x) not in ranks:
            raise ShapeError(f"needs {' or '.join(str(r) for r in ranks)} dims (batch, channels, ...), "
                             f"got {list(x)}")
        return x
    return shape


def _bn_buffers(a, s):
    return {"running_mean": (s[0][1],), "running_var": (s[0][1],)} if a["track_running_stats"] else {}


def _batchnorm_cost(call: Call) -> Cost:
    """Statistics per channel over (batch, *spatial); running-stat update 7 FLOPs per channel when tracked
    (two lerps of 3 and the unbiased-variance factor). Source: torch.nn.BatchNorm2d (training mode)."""
    a = call.args
    c = call.inputs[0][1]
    update = 7 * c if a["track_running_stats"] else 0
    return _norm_cost(call, c, "mean_var", a["affine"], a["affine"], update)


for _name, _ranks in (("batchnorm1d", (2, 3)), ("batchnorm2d", (4,))):
    register(_name, Arg("eps", pos_float, 1e-5), Arg("momentum", optional(probability), 0.1),
             Arg("affine", boolean, True), Arg("track_running_stats", boolean, True),
             shape=_bn_shape(_ranks), weights=_affine_weights(lambda a, s: (s[0][1],), "affine"), buffers=_bn_buffers,
             saves=("inputs",))(_batchnorm_cost)


# ---------------------------------------------------------------- layernorm and rmsnorm

def _normalized(a, x):
    """normalized_shape: PyTorch's argument; when omitted, the last dim (it is inferred, never required)."""
    ns = a["normalized_shape"]
    if ns is None:
        return x[-1:]
    ns = (ns,) if isinstance(ns, int) else tuple(ns)
    if len(ns) >= len(x) or x[len(x) - len(ns):] != ns:
        raise ShapeError(f"normalized_shape {list(ns)} must equal the trailing dims of {list(x)}")
    return ns


def _ln_shape(a, s):
    _normalized(a, s[0])
    return s[0]


def _normalized_shape_arg(v):
    if isinstance(v, int) and not isinstance(v, bool):
        return pos_int(v)
    return tuple(pos_int(d) for d in int_list(v))


_LN_ARGS = (Arg("normalized_shape", optional(_normalized_shape_arg), None), Arg("eps", pos_float, 1e-5),
            Arg("elementwise_affine", boolean, True))


@register("layernorm", *_LN_ARGS, Arg("bias", boolean, True), shape=_ln_shape,
          weights=_affine_weights(lambda a, s: _normalized(a, s[0]), "elementwise_affine", lambda a: a["bias"]),
          saves=("inputs",))
def _layernorm(call: Call) -> Cost:
    """Statistics per row over normalized_shape (default: the last dim). Source: torch.nn.LayerNorm."""
    a = call.args
    stats = call.out_elems // numel(_normalized(a, call.inputs[0]))
    affine = a["elementwise_affine"]
    return _norm_cost(call, stats, "mean_var", affine, affine and a["bias"])


@register("rmsnorm", *_LN_ARGS, shape=_ln_shape,
          weights=_affine_weights(lambda a, s: _normalized(a, s[0]), "elementwise_affine", lambda a: False),
          saves=("inputs",))
def _rmsnorm(call: Call) -> Cost:
    """x / sqrt(mean(x^2) + eps) * weight, no mean and no bias. Source: torch.nn.RMSNorm; Zhang & Sennrich 2019."""
    a = call.args
    stats = call.out_elems // numel(_normalized(a, call.inputs[0]))
    return _norm_cost(call, stats, "rms", a["elementwise_affine"], False)


# ---------------------------------------------------------------- groupnorm

def _gn_shape(a, s):
    x = s[0]
    if len(x) < 2 or x[1] % a["num_groups"]:
        raise ShapeError(f"num_groups={a['num_groups']} must divide the channels of {list(x)}")
    return x


@register("groupnorm", Arg("num_groups", pos_int), Arg("eps", pos_float, 1e-5), Arg("affine", boolean, True),
          shape=_gn_shape, weights=_affine_weights(lambda a, s: (s[0][1],), "affine"), saves=("inputs",))
def _groupnorm(call: Call) -> Cost:
    """Statistics per (sample, group) over (channels / groups) * spatial. Source: torch.nn.GroupNorm."""
    a = call.args
    stats = call.inputs[0][0] * a["num_groups"]
    return _norm_cost(call, stats, "mean_var", a["affine"], a["affine"])
