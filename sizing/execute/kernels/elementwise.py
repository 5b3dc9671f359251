"""Kernels of activations, softmax, dropout, merges (add, mul, concat) and views.

Each loop's FLOPs per element are written beside it and added once per trip (the 1-FLOP rules of
docs/conventions.md). Views (identity, flatten, reshape) do no work and are plain reshapes.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .common import BACK, FLOPS, KERNELS, PARTS, SUMS, OpKernel, add_into, copy_block, mul_into, reduce_to, take_block
from .vecmath import like, quotient, row_max, uniform, verf, vexp, vtanh

# activation kinds; backward reads the output (relu, relu6, sigmoid, tanh) or the input (silu, gelu)
RELU, RELU6, SIGMOID, TANH, SILU, GELU, GELU_TANH = range(7)
_KIND = {"relu": RELU, "relu6": RELU6, "sigmoid": SIGMOID, "tanh": TANH, "silu": SILU}
_KEEPS_OUTPUT = (RELU, RELU6, SIGMOID, TANH)
_INV_SQRT2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_C = math.sqrt(2 / math.pi)          # tanh form: 0.5 x (1 + tanh(C (x + A x^3)))
_A = 0.044715


@njit(cache=True)
def activation_forward(x, y, kind, cnt):
    """y = f(x) in x's precision (constants of its dtype; exp, tanh, erf in vector lanes for float32)."""
    n = x.size
    one, half = like(x, 1.0), like(x, 0.5)
    if kind == RELU:
        per = 1                                              # max(x, 0)
        for i in range(n):
            y[i] = x[i] if x[i] > 0 else 0.0
    elif kind == RELU6:
        per = 2                                              # min(max(x, 0), 6)
        for i in range(n):
            y[i] = min(max(x[i], 0.0), 6.0)
    elif kind == SIGMOID:
        per = 4                                              # neg, exp, add, divide
        for i in range(n):
            y[i] = quotient(one, one + vexp(-x[i]))
    elif kind == TANH:
        per = 1
        for i in range(n):
            y[i] = vtanh(x[i])
    elif kind == SILU:
        per = 5                                              # sigmoid 4, times x 1
        for i in range(n):
            y[i] = quotient(x[i], one + vexp(-x[i]))
    elif kind == GELU:
        per = 5                                              # x*c, erf, 1+, 0.5*x, times
        c = like(x, _INV_SQRT2)
        for i in range(n):
            y[i] = half * x[i] * (one + verf(x[i] * c))
    else:
        per = 9                                              # x*x*x 2, A* 1, x+ 1, C* 1, tanh, 1+, 0.5*x, times
        c, a = like(x, _C), like(x, _A)
        for i in range(n):
            v = x[i]
            y[i] = half * v * (one + vtanh(c * (v + a * (v * v * v))))
    cnt[FLOPS] += per * n


@njit(cache=True)
def activation_backward(s, g, gx, kind, cnt):
    """gx = g * f'(.) from ``s``, the output (relu, relu6, sigmoid, tanh) or the input (silu, gelu), in s's
    precision."""
    n = s.size
    one, half = like(s, 1.0), like(s, 0.5)
    if kind == RELU:
        per = 1                                              # select where y > 0
        for i in range(n):
            gx[i] = g[i] if s[i] > 0 else 0.0
    elif kind == RELU6:
        per = 2                                              # two comparisons
        for i in range(n):
            gx[i] = g[i] if 0.0 < s[i] < 6.0 else 0.0
    elif kind == SIGMOID:
        per = 3                                              # g * y * (1 - y)
        for i in range(n):
            gx[i] = g[i] * s[i] * (one - s[i])
    elif kind == TANH:
        per = 3                                              # g * (1 - y*y)
        for i in range(n):
            gx[i] = g[i] * (one - s[i] * s[i])
    elif kind == SILU:
        per = 9                                              # sigmoid 4; g * sg * (1 + x * (1 - sg)) 5
        for i in range(n):
            sg = quotient(one, one + vexp(-s[i]))
            gx[i] = g[i] * sg * (one + s[i] * (one - sg))
    elif kind == GELU:
        per = 11                                             # Phi 4, phi 4, g * (Phi + x*phi) 3
        c, d = like(s, _INV_SQRT2), like(s, _INV_SQRT_2PI)
        for i in range(n):
            v = s[i]
            cdf = half * (one + verf(v * c))
            pdf = vexp(-half * (v * v)) * d
            gx[i] = g[i] * (cdf + v * pdf)
    else:
        # y' = t1 * (0.5 + x (2 - t1)(C/2 + 1.5 A C x^2)), t1 = 1 + tanh(x (C + A C x^2)):
        # x*x 1, p 1, C+p 1, x* 1, tanh 1, 1+ 1, 2- 1, 1.5p + C/2 2, x* 1, * 1, 0.5+ 1, t1* 1, g* 1 = 14
        per = 14
        ac, c, hc, two, three_half = like(s, _A * _C), like(s, _C), like(s, 0.5 * _C), like(s, 2.0), like(s, 1.5)
        for i in range(n):
            v = s[i]
            p = ac * (v * v)
            t1 = one + vtanh(v * (c + p))
            gx[i] = g[i] * (t1 * (half + v * (two - t1) * (three_half * p + hc)))
    cnt[BACK] += per * n


PARALLEL_MIN = 1 << 15      # elements from which an activation is split over the threads


@njit(cache=True, parallel=True)
def activation_forward_split(x, y, kind, cnt):
    """``activation_forward`` on PARTS slices at once, their counts summed."""
    step = (x.size + PARTS - 1) // PARTS
    counts = np.zeros((PARTS, 3), np.int64)
    for t in prange(PARTS):
        activation_forward(x[t * step:(t + 1) * step], y[t * step:(t + 1) * step], kind, counts[t])
    cnt += counts.sum(axis=0)


@njit(cache=True, parallel=True)
def activation_backward_split(s, g, gx, kind, cnt):
    """``activation_backward`` on PARTS slices at once, their counts summed."""
    step = (s.size + PARTS - 1) // PARTS
    counts = np.zeros((PARTS, 3), np.int64)
    for t in prange(PARTS):
        lo, hi = t * step, (t + 1) * step
        activation_backward(s[lo:hi], g[lo:hi], gx[lo:hi], kind, counts[t])
    cnt += counts.sum(axis=0)


def _kind(node):
    if node.op == "gelu":
        return GELU if node.kwargs["approximate"] == "none" else GELU_TANH
    return _KIND[node.op]


def _activation_forward(node, xs, p, cnt, seed):
    x = xs[0]
    y = np.empty_like(x)
    kind = _kind(node)
    run = activation_forward_split if x.size >= PARALLEL_MIN else activation_forward
    run(x.reshape(-1), y.reshape(-1), kind, cnt)
    return y, (y if kind in _KEEPS_OUTPUT else x)


def _activation_backward(node, s, gy, need, p, grads, cnt):
    gx = np.empty_like(gy)
    run = activation_backward_split if gy.size >= PARALLEL_MIN else activation_backward
    run(s.reshape(-1), gy.reshape(-1), gx.reshape(-1), _kind(node), cnt)
    return [gx]


for _name in (*_KIND, "gelu"):          # relu, relu6 select or clip; sigmoid, tanh are bounded with bounded slopes
    KERNELS[_name] = OpKernel(_activation_forward, _activation_backward,
                              keeps_finite=_name in ("relu", "relu6", "sigmoid", "tanh"))


# ---------------------------------------------------------------- softmax

def _around(shape, dim):
    """shape as (outer, n, inner) around ``dim``."""
    d = dim % len(shape)
    return int(np.prod(shape[:d])), shape[d], int(np.prod(shape[d + 1:]))


@njit(cache=True, fastmath=SUMS)
def softmax_row(x, y):
    """y = softmax(x) over one contiguous row, in x's precision, the sum in vector lanes: max 1, subtract 1,
    exp 1, sum 1, divide 1 per element."""
    m = row_max(x)
    s = like(x, 0.0)
    for j in range(x.size):
        e = vexp(x[j] - m)
        y[j] = e
        s += e
    for j in range(x.size):
        y[j] = quotient(y[j], s)


@njit(cache=True)
def softmax_forward(x, y, cnt):
    """x, y (outer, n, inner), softmax over n: max 1, subtract 1, exp 1, sum 1, divide 1 per element."""
    no, n, ni = x.shape
    if ni == 1:                                     # contiguous rows
        x2, y2 = x.reshape(no, n), y.reshape(no, n)
        for o in range(no):
            softmax_row(x2[o], y2[o])
        cnt[FLOPS] += 5 * x.size
        return
    for o in range(no):
        for k in range(ni):
            m = -np.inf
            for j in range(n):
                m = max(m, x[o, j, k])
            s = 0.0
            for j in range(n):
                e = vexp(x[o, j, k] - m)
                y[o, j, k] = e
                s += e
            for j in range(n):
                y[o, j, k] = y[o, j, k] / s
    cnt[FLOPS] += 5 * x.size


@njit(cache=True, fastmath=SUMS)
def softmax_backward_row(y, g, gx):
    """gx = y * (g - sum(g * y)) over one contiguous row, the sum in vector lanes."""
    dot = like(y, 0.0)
    for j in range(y.size):
        dot += g[j] * y[j]
    for j in range(y.size):
        gx[j] = y[j] * (g[j] - dot)


@njit(cache=True)
def softmax_backward(y, g, gx, cnt):
    """gx = y * (g - sum(g * y)): multiply 1, sum 1, subtract 1, multiply 1 per element."""
    no, n, ni = y.shape
    if ni == 1:                                     # contiguous rows
        y2, g2, gx2 = y.reshape(no, n), g.reshape(no, n), gx.reshape(no, n)
        for o in range(no):
            softmax_backward_row(y2[o], g2[o], gx2[o])
        cnt[BACK] += 4 * y.size
        return
    for o in range(no):
        for k in range(ni):
            dot = 0.0
            for j in range(n):
                dot += g[o, j, k] * y[o, j, k]
            for j in range(n):
                gx[o, j, k] = y[o, j, k] * (g[o, j, k] - dot)
    cnt[BACK] += 4 * y.size


def _softmax_forward(node, xs, p, cnt, seed):
    x = xs[0]
    y = np.empty_like(x)
    shape3 = _around(x.shape, node.kwargs["dim"])
    softmax_forward(x.reshape(shape3), y.reshape(shape3), cnt)
    return y, y


def _softmax_backward(node, y, gy, need, p, grads, cnt):
    gx = np.empty_like(gy)
    shape3 = _around(y.shape, node.kwargs["dim"])
    softmax_backward(y.reshape(shape3), gy.reshape(shape3), gx.reshape(shape3), cnt)
    return [gx]


KERNELS["softmax"] = OpKernel(_softmax_forward, _softmax_backward)


# ---------------------------------------------------------------- dropout

@njit(cache=True)
def dropout_mask(mask, p, seed):
    """mask[i] = 1 / (1 - p) with probability 1 - p, else 0: element i's draw of stream ``seed``
    (vecmath.uniform), so the same seed gives the same mask. Random number generation is not floating-point
    work."""
    keep, zero = like(mask, 1.0 / (1.0 - p)), like(mask, 0.0)
    for i in range(mask.size):
        mask[i] = keep if uniform(seed, i) >= p else zero


@njit(cache=True)
def dropped_row(src, dst, p, seed, start):
    """dst = src * mask over one row, the mask's elements start, start + 1, ... of stream ``seed`` drawn as
    ``dropout_mask`` draws them: a kernel that keeps no mask draws the same one again (1 multiply per element)."""
    keep, zero = like(src, 1.0 / (1.0 - p)), like(src, 0.0)
    for c in range(src.size):
        dst[c] = src[c] * (keep if uniform(seed, start + c) >= p else zero)


def masked(x, p, seed, cnt):
    """(x * mask, mask): dropout with a pre-scaled mask, 1 multiply per element (forward)."""
    mask = np.empty(x.size, x.dtype)
    dropout_mask(mask, p, seed)
    y = x.reshape(-1).copy()
    mul_into(y, mask, cnt, FLOPS)
    return y.reshape(x.shape), mask


def unmasked(g, mask, cnt):
    """g * mask: dropout's backward, 1 multiply per element."""
    gx = g.reshape(-1).copy()
    mul_into(gx, mask, cnt, BACK)
    return gx.reshape(g.shape)


def _dropout_forward(node, xs, p, cnt, seed):
    if node.kwargs["p"] == 0:
        return xs[0], None
    return masked(xs[0], node.kwargs["p"], seed, cnt)


def _dropout_backward(node, mask, gy, need, p, grads, cnt):
    return [gy if mask is None else unmasked(gy, mask, cnt)]


KERNELS["dropout"] = OpKernel(_dropout_forward, _dropout_backward)


# ---------------------------------------------------------------- add, mul (with broadcasting), concat

def _broadcast_index(shape, out_shape) -> np.ndarray:
    own = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    return np.ascontiguousarray(np.broadcast_to(np.arange(int(np.prod(own))).reshape(own), out_shape).ravel())


def _expanded(x, out_shape):
    """x broadcast to out_shape as a flat contiguous copy (a copy: no arithmetic)."""
    if x.shape == tuple(out_shape):
        return x.reshape(-1)
    return np.ascontiguousarray(np.broadcast_to(x, out_shape)).reshape(-1)


def _reduced(g, shape, cnt):
    """g summed back to an input of ``shape`` it was broadcast from (itself when not broadcast)."""
    if g.shape == tuple(shape):
        return g
    out = np.empty(int(np.prod(shape)), g.dtype)
    reduce_to(g.reshape(-1), _broadcast_index(shape, g.shape), out, cnt)
    return out.reshape(shape)


def _merge_forward(into):
    def forward(node, xs, p, cnt, seed):
        out_shape = node.out.shape
        flat = [_expanded(x, out_shape) for x in xs]
        y = flat[0].copy()
        for x in flat[1:]:
            into(y, x, cnt, FLOPS)                               # n - 1 FLOPs per output element
        return y.reshape(out_shape), flat
    return forward


def _add_backward(node, flat, gy, need, p, grads, cnt):
    return [_reduced(gy, t.shape, cnt) if n else None for t, n in zip(node.in_types, need)]


def _mul_backward(node, flat, gy, need, p, grads, cnt):
    out = []
    for i, (t, n) in enumerate(zip(node.in_types, need)):
        if not n:
            out.append(None)
            continue
        gi = gy.reshape(-1).copy()
        for k, x in enumerate(flat):
            if k != i:
                mul_into(gi, x, cnt, BACK)                       # n - 1 multiplies per output element
        out.append(_reduced(gi.reshape(gy.shape), t.shape, cnt))
    return out


KERNELS["add"] = OpKernel(_merge_forward(add_into), _add_backward)
KERNELS["mul"] = OpKernel(_merge_forward(mul_into), _mul_backward)


def _blocks(node):
    """concat along dim: each input as (outer, width) blocks of an (outer, total) output, and their offsets."""
    d = node.kwargs["dim"] % len(node.out.shape)
    outer = int(np.prod(node.out.shape[:d]))
    widths = [int(np.prod(t.shape[d:])) for t in node.in_types]
    return outer, widths, np.cumsum([0, *widths[:-1]])


def _concat_forward(node, xs, p, cnt, seed):
    outer, widths, offsets = _blocks(node)
    y = np.empty((outer, sum(widths)), xs[0].dtype)
    for x, w, o in zip(xs, widths, offsets):
        copy_block(x.reshape(outer, w), y, o)
    return y.reshape(node.out.shape), None


def _concat_backward(node, saved, gy, need, p, grads, cnt):
    outer, widths, offsets = _blocks(node)
    g2 = gy.reshape(outer, -1)
    out = []
    for t, w, o, n in zip(node.in_types, widths, offsets, need):
        gi = np.empty((outer, w), gy.dtype) if n else None
        if n:
            take_block(g2, gi, o)
        out.append(gi.reshape(t.shape) if n else None)
    return out


KERNELS["concat"] = OpKernel(_concat_forward, _concat_backward)


# ---------------------------------------------------------------- views and select

def _select_plan(node):
    """(rows, row width, offset, taken width) of the input seen as rows: select takes one entry of its dim,
    narrow ``length`` entries from ``start``."""
    x, a = node.in_types[0].shape, node.kwargs
    d = a["dim"] % len(x)
    inner = int(np.prod(x[d + 1:]))
    start, length = (a["start"], a["length"]) if "length" in a else (a["index"] % x[d], 1)
    return int(np.prod(x[:d])), x[d] * inner, start * inner, length * inner


def _select_forward(node, xs, p, cnt, seed):
    outer, width, offset, inner = _select_plan(node)
    y = np.empty((outer, inner), xs[0].dtype)
    take_block(xs[0].reshape(outer, width), y, offset)
    return y.reshape(node.out.shape), None


def _select_backward(node, saved, gy, need, p, grads, cnt):
    outer, width, offset, inner = _select_plan(node)
    gx = np.zeros((outer, width), gy.dtype)
    copy_block(gy.reshape(outer, inner), gx, offset)
    return [gx.reshape(node.in_types[0].shape)]


KERNELS["select"] = KERNELS["narrow"] = OpKernel(_select_forward, _select_backward)


def _expand_forward(node, xs, p, cnt, seed):
    return _expanded(xs[0], node.out.shape).reshape(node.out.shape), None


def _expand_backward(node, saved, gy, need, p, grads, cnt):
    return [_reduced(gy, node.in_types[0].shape, cnt)]


KERNELS["expand"] = OpKernel(_expand_forward, _expand_backward)


def _view_forward(node, xs, p, cnt, seed):
    return xs[0].reshape(node.out.shape), None


def _view_backward(node, saved, gy, need, p, grads, cnt):
    return [gy.reshape(node.in_types[0].shape)]


for _name in ("identity", "flatten", "reshape"):
    KERNELS[_name] = OpKernel(_view_forward, _view_backward, keeps_finite=True)
