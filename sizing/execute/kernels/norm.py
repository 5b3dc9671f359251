"""Kernels of batchnorm1d/2d (statistics per channel) and layernorm, rmsnorm, groupnorm (per row), training mode.

Forward per element: mean-sum 1, subtract 1, square 1, variance-sum 1, scale by rstd 1 (RMS: square, sum,
scale), then 1 per affine weight and 1 per bias; per statistic: the divides by n, + eps, rsqrt (1 FLOP).
Backward per element: g * weight (when there is a weight), the sums, then rstd * (dxhat - mean1 - xhat * mean2).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .common import BACK, FLOPS, KERNELS, PARTS, SUMS, OpKernel
from .vecmath import like


@njit(cache=True, parallel=True, fastmath=SUMS)
def batchnorm_forward(x, w, b, affine, eps, y, xhat, mean, var, rstd, cnt):
    """x (B, C, S): statistics per channel over B*S elements."""
    nb, nc, ns = x.shape
    n = nb * ns
    for c in prange(nc):
        s = 0.0
        for i in range(nb):
            for k in range(ns):
                s += x[i, c, k]
        mu = s / n
        v = 0.0
        for i in range(nb):
            for k in range(ns):
                d = x[i, c, k] - mu
                xhat[i, c, k] = d
                v += d * d
        var[c] = v / n
        r = 1.0 / math.sqrt(var[c] + eps)
        mean[c], rstd[c] = mu, r
        for i in range(nb):
            for k in range(ns):
                h = xhat[i, c, k] * r
                xhat[i, c, k] = h
                y[i, c, k] = h * w[c] + b[c] if affine else h
    cnt[FLOPS] += x.size * (5 + 2 * affine) + 4 * nc


@njit(cache=True)
def running_update(run_mean, run_var, mean, var, momentum, unbias, cnt):
    """run += momentum * (stat - run) for the mean (3) and the unbiased variance (1 + 3): 7 per channel."""
    for c in range(mean.size):
        run_mean[c] += momentum * (mean[c] - run_mean[c])
        run_var[c] += momentum * (var[c] * unbias - run_var[c])
    cnt[FLOPS] += 7 * mean.size


@njit(cache=True, parallel=True, fastmath=SUMS)
def batchnorm_backward(g, xhat, w, affine, rstd, need_x, want_w, gx, dw, db, cnt):
    nb, nc, ns = g.shape
    n = nb * ns
    for c in prange(nc):
        s1 = s2 = sw = sb = 0.0
        for i in range(nb):
            for k in range(ns):
                gi, h = g[i, c, k], xhat[i, c, k]
                if want_w:
                    sw += gi * h
                    sb += gi
                if need_x:
                    d = gi * w[c] if affine else gi
                    gx[i, c, k] = d
                    s1 += d
                    s2 += d * h
        if want_w:
            dw[c], db[c] = sw, sb
        if need_x:
            m1, m2 = s1 / n, s2 / n
            for i in range(nb):
                for k in range(ns):
                    gx[i, c, k] = rstd[c] * (gx[i, c, k] - m1 - xhat[i, c, k] * m2)
    if want_w:
        cnt[BACK] += 3 * g.size
    if need_x:
        cnt[BACK] += g.size * (7 + affine) + 2 * nc


def _bn_forward(node, xs, p, cnt, seed):
    a = node.kwargs
    x = xs[0]
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    nc = x3.shape[1]
    affine = "weight" in p
    w, b = (p["weight"], p["bias"]) if affine else (np.empty(nc, x.dtype), np.empty(nc, x.dtype))
    y, xhat = np.empty_like(x3), np.empty_like(x3)
    mean, var, rstd = (np.empty(nc, x.dtype) for _ in range(3))
    batchnorm_forward(x3, w, b, affine, a["eps"], y, xhat, mean, var, rstd, cnt)
    if "running_mean" in p:
        n = x3.shape[0] * x3.shape[2]
        tracked = p.setdefault("num_batches_tracked", np.zeros(1, np.int64))
        tracked += 1
        momentum = a["momentum"] if a["momentum"] is not None else 1.0 / tracked[0]   # cumulative average
        running_update(p["running_mean"], p["running_var"], mean, var, momentum, n / max(n - 1, 1), cnt)
    return y.reshape(x.shape), (xhat, rstd)


def _bn_backward(node, saved, gy, need, p, grads, cnt):
    xhat, rstd = saved
    nc = xhat.shape[1]
    gx = np.empty_like(xhat)
    dw, db = np.empty(nc, gy.dtype), np.empty(nc, gy.dtype)
    affine = "weight" in p
    w = p["weight"] if affine else dw
    batchnorm_backward(gy.reshape(xhat.shape), xhat, w, affine, rstd, need[0], grads is not None, gx, dw, db, cnt)
    if grads is not None:
        grads["weight"].put(dw)
        grads["bias"].put(db)
    return [gx.reshape(gy.shape) if need[0] else None]


KERNELS["batchnorm1d"] = KERNELS["batchnorm2d"] = OpKernel(_bn_forward, _bn_backward)


# ---------------------------------------------------------------- layernorm, rmsnorm, groupnorm

@njit(cache=True)
def _affine_index(r, j, groups, cg, spatial):
    """The affine weight an element uses: per element of the row (layernorm: groups = spatial = 1, cg = n)
    or per channel (groupnorm: rows are (sample, group), a row holds cg channels of ``spatial`` elements). The
    per-element case spares an integer division per element (it kept the loops scalar)."""
    if groups == 1 and spatial == 1:
        return j
    return (r % groups) * cg + j // spatial


@njit(cache=True)
def _normed_row(h, y, rs, w, b, has_w, has_b):
    """h *= rs, y = h * w + b over a row with per-element weights (each as present): one loop per case, so
    that no test is left inside a loop that LLVM puts in vector lanes (a 512 x 768 layernorm forward took 1.16
    ms with the tests inside, 0.25 without, one core, 2026-12-02)."""
    for j in range(h.size):
        h[j] *= rs
    if has_w and has_b:
        for j in range(h.size):
            y[j] = h[j] * w[j] + b[j]
    elif has_w:
        for j in range(h.size):
            y[j] = h[j] * w[j]
    elif has_b:
        for j in range(h.size):
            y[j] = h[j] + b[j]
    else:
        y[:] = h


@njit(cache=True, parallel=True, fastmath=SUMS)
def rownorm_forward(x, w, b, has_w, has_b, center, eps, groups, spatial, y, xhat, rstd, cnt):
    """x (rows, n), statistics per row; ``center`` subtracts the mean (layernorm, groupnorm), else RMS. Rows are
    independent: spread over the threads."""
    nr, n = x.shape
    cg = n // spatial
    per_column = groups == 1 and spatial == 1
    for r in prange(nr):
        mu = 0.0
        if center:
            s = 0.0
            for j in range(n):
                s += x[r, j]
            mu = s / n
        v = 0.0
        for j in range(n):
            d = x[r, j] - mu if center else x[r, j]
            xhat[r, j] = d
            v += d * d
        rs = 1.0 / math.sqrt(v / n + eps)
        rstd[r] = rs
        if per_column:
            _normed_row(xhat[r], y[r], like(x, rs), w, b, has_w, has_b)
            continue
        for j in range(n):
            h = xhat[r, j] * rs
            xhat[r, j] = h
            k = _affine_index(r, j, groups, cg, spatial)
            if has_w:
                h = h * w[k]
            if has_b:
                h = h + b[k]
            y[r, j] = h
    per_elem = (5 if center else 3) + has_w + has_b
    cnt[FLOPS] += x.size * per_elem + nr * (4 if center else 3)


@njit(cache=True, parallel=True, fastmath=SUMS)
def rownorm_backward(g, xhat, w, has_w, has_b, center, rstd, groups, spatial, need_x, want_w, gx, dw, db, part, cnt):
    """One pass over the rows, spread over the threads in blocks: per row the sums of d = g * weight and d * xhat,
    then gx = rstd * (d - xhat * mean(d * xhat) - mean(d)) while the row is in cache, and the affine
    gradients. Per-column weights (layernorm, rmsnorm): each thread sums its block's rows into its row of
    ``part`` (parts x 2n, the threads' share of the rows split as its rows; a weight gradient implies a weight), then dw = the sum of the parts; thread 0 starts from zero, a later thread from its
    first row's terms, so the adds are the serial loop's, rows x columns (the order differs). Per-channel weights
    (groupnorm): one serial loop over the rows."""
    nr, n = g.shape
    cg = n // spatial
    per_column = groups == 1 and spatial == 1
    parts = part.shape[0]        # the caller's PARTS: a kernel loaded from the disk cache may have another one
    step = (nr + parts - 1) // parts
    for t in prange(parts):
        pw, pb = part[t, :n], part[t, n:]
        for r in range(t * step, min(nr, (t + 1) * step)):
            if want_w and per_column:
                if r == t * step and t > 0:             # a later thread's first row starts its part
                    for j in range(n):
                        pw[j] = g[r, j] * xhat[r, j]
                        if has_b:
                            pb[j] = g[r, j]
                else:
                    if r == 0:
                        pw[:] = 0
                        pb[:] = 0
                    for j in range(n):
                        pw[j] += g[r, j] * xhat[r, j]
                        if has_b:
                            pb[j] += g[r, j]
            if need_x:
                s1 = s2 = 0.0
                if per_column and has_w:                # the weight's index is the column: vector lanes
                    for j in range(n):
                        d = g[r, j] * w[j]
                        gx[r, j] = d
                        s1 += d
                        s2 += d * xhat[r, j]
                else:
                    for j in range(n):
                        d = g[r, j] * w[_affine_index(r, j, groups, cg, spatial)] if has_w else g[r, j]
                        gx[r, j] = d
                        s1 += d
                        s2 += d * xhat[r, j]
                m1, m2 = s1 / n, s2 / n
                for j in range(n):
                    d = gx[r, j] - xhat[r, j] * m2
                    gx[r, j] = rstd[r] * (d - m1 if center else d)
    if want_w and per_column:
        used = min(parts, (nr + step - 1) // step)
        for t in range(1, used):
            for j in range(n):
                part[0, j] += part[t, j]
                if has_b:
                    part[0, n + j] += part[t, n + j]
        dw[:] = part[0, :dw.size]
        db[:] = part[0, n:n + db.size]
    elif want_w:
        dw[:] = 0
        db[:] = 0
        for r in range(nr):
            for j in range(n):
                k = _affine_index(r, j, groups, cg, spatial)
                if has_w:
                    dw[k] += g[r, j] * xhat[r, j]
                if has_b:
                    db[k] += g[r, j]
    if want_w:
        cnt[BACK] += g.size * (2 * has_w + has_b)
    if need_x:
        # g*w, sum d*h (2), xhat*m2, subtract, scale; mean: sum d, subtract m1; per row the divides
        cnt[BACK] += g.size * (has_w + 2 + 3 + 2 * center) + nr * (1 + center)


def _rownorm_plan(node):
    """(rows, n, groups, spatial, center) of a layernorm, rmsnorm or groupnorm input."""
    a, x = node.kwargs, node.in_types[0].shape
    if node.op == "groupnorm":
        spatial = int(np.prod(x[2:]))
        return x[0] * a["num_groups"], x[1] // a["num_groups"] * spatial, a["num_groups"], spatial, True
    ns = a["normalized_shape"]
    width = x[-1] if ns is None else int(np.prod((ns,) if isinstance(ns, int) else ns))
    return int(np.prod(x)) // width, width, 1, 1, node.op == "layernorm"


def _rownorm_forward(node, xs, p, cnt, seed):
    rows, n, groups, spatial, center = _rownorm_plan(node)
    x2 = xs[0].reshape(rows, n)
    empty = np.empty(0, x2.dtype)
    w, b = p.get("weight", empty).reshape(-1), p.get("bias", empty).reshape(-1)
    y, xhat, rstd = np.empty_like(x2), np.empty_like(x2), np.empty(rows, x2.dtype)
    rownorm_forward(x2, w, b, w.size > 0, b.size > 0, center, node.kwargs["eps"], groups, spatial, y, xhat,
                    rstd, cnt)
    return y.reshape(xs[0].shape), (xhat, rstd)


def _rownorm_backward(node, saved, gy, need, p, grads, cnt):
    xhat, rstd = saved
    rows, n, groups, spatial, center = _rownorm_plan(node)
    empty = np.empty(0, gy.dtype)
    w = p.get("weight", empty).reshape(-1)
    has_b = "bias" in p
    dw, db = np.empty(w.size, gy.dtype), np.empty(p["bias"].size if has_b else 0, gy.dtype)
    gx = np.empty_like(xhat) if need[0] else xhat[:0]
    part = np.empty((PARTS, 2 * n) if grads is not None and groups == 1 and spatial == 1 else (PARTS, 0), gy.dtype)
    rownorm_backward(gy.reshape(rows, n), xhat, w, w.size > 0, has_b, center, rstd, groups, spatial, need[0],
                     grads is not None, gx, dw, db, part, cnt)
    if grads is not None:
        for name, value in (("weight", dw), ("bias", db)):
            if name in grads:
                grads[name].put(value)
    return [gx.reshape(gy.shape) if need[0] else None]


for _name in ("layernorm", "rmsnorm", "groupnorm"):
    KERNELS[_name] = OpKernel(_rownorm_forward, _rownorm_backward)
