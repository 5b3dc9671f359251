"""Kernels of the products: linear, conv1d/conv2d (im2col + GEMM), conv_transpose2d (GEMM + col2im), matmul.

Every product goes through BLAS (``mm``, ``dot``), counted from the shapes of the blocks it multiplies. A
convolution is W (C_out/g, C_in/g * kh*kw) @ col (C_in/g * kh*kw, B*H_out*W_out) per group, padding taps
included as zeros: forward one product per tile of a sample's output rows (large maps) or over the batch;
backward the weight gradient is one reduction over the batch (accumulated chunk by chunk in BLAS), the input
gradient W^T @ gy then col2im. A 1 x 1 convolution of stride 1 skips im2col (x is its own column matrix).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .common import (BACK, FLOPS, KERNELS, PARTS, SUMS, OpKernel, add_rows, bias_grad, count_product, dot, matmul2, mm,
    scratch)

_MODES = {"zeros": 0, "reflect": 1, "replicate": 2, "circular": 3}
BY_SAMPLE = 512             # output pixels per sample from which a forward goes by tiles of a sample (when the batch
                            # has a sample per thread: a 64-channel 56 x 56 batch-1 layer took 7.1 ms by tiles, 5.4
                            # ms by the whole-batch split, forward and backward, 2 threads, 2026-12-02)
TILE_BYTES = 2 << 20       # a forward im2col tile: 1, 2, 4 MiB took 35, 25, 28 ms for a 64-channel 56 x 56 batch-8
                            # 3 x 3 convolution on one core (2026-12-02)
BACK_TILE_BYTES = 1 << 20   # a backward thread's im2col tile (its rows of a few samples or output rows), and
BACK_COLUMNS = 512          # at least this many columns, so that the products accumulating dW^T tile by tile stay
                            # long in their inner dimension
DW_TRANSPOSED = 256         # output channels below which dW is made as dW^T = col @ gt^T and transposed: OpenBLAS
                            # ran 576 x 3136 x 64 at 125 GFLOPS and 64 x 3136 x 576 at 99 (one core, 2026-12-02);
                            # from 256 on the two orientations ran alike and the transpose costs more


# ---------------------------------------------------------------- linear

def _linear_forward(node, xs, p, cnt, seed):
    x = xs[0]
    x2 = x.reshape(-1, x.shape[-1])
    w = p["weight"]
    y = matmul2(x2, w.T, cnt, False)
    if "bias" in p:
        add_rows(y, p["bias"], cnt)
    return y.reshape(x.shape[:-1] + (w.shape[0],)), x2


def _linear_backward(node, x2, gy, need, p, grads, cnt):
    g2 = gy.reshape(-1, gy.shape[-1])
    if grads is not None:
        dw = grads["weight"].buffer()
        grads["weight"].put(mm(g2.T, x2, dw, cnt, True))
        if "bias" in grads:
            grads["bias"].put(bias_grad(g2, cnt))
    if not need[0]:
        return [None]
    return [matmul2(g2, p["weight"], cnt, True).reshape(gy.shape[:-1] + (x2.shape[1],))]


KERNELS["linear"] = OpKernel(_linear_forward, _linear_backward)


# ---------------------------------------------------------------- im2col, col2im and grouped GEMM

@njit(cache=True)
def _source(i, n, mode):
    """Index of padded position i in a dim of size n: -1 for a zero pad, else the tap it reads."""
    if 0 <= i < n:
        return i
    if mode == 0:
        return -1
    if mode == 1:
        return -i if i < 0 else 2 * (n - 1) - i
    if mode == 2:
        return 0 if i < 0 else n - 1
    return i % n


@njit(cache=True)
def _inside(w, ow, sw, off):
    """The output columns ox whose tap ox*sw + off lies in [0, w): the range [lo, hi)."""
    lo = max(0, (-off + sw - 1) // sw)
    hi = min(ow, (w - 1 - off) // sw + 1)
    return lo, max(lo, hi)


@njit(cache=True)
def _rows_inside(h, oy0, oy1, sh, off):
    """The output rows oy of [oy0, oy1) whose tap row oy*sh + off lies in [0, h): the range [ya, yb)."""
    ya = min(max(oy0, (-off + sh - 1) // sh), oy1)
    return ya, max(ya, min(oy1, (h - 1 - off) // sh + 1))


@njit(cache=True)
def _span(geo, w):
    """Whether a tap's rows of im2col are one shifted copy of the input plane: stride 1, zero padding, and an
    output as wide as the input (a 'same' convolution), so output rows follow each other as input rows do."""
    return geo[2] == 1 and geo[3] == 1 and geo[9] == w and geo[10] == 0


@njit(cache=True)
def _zero_wrapped(row, d0, rows, ow, lo, hi):
    """row[d0 + r*ow + ox] = 0 for the rows r < ``rows`` and the columns ox outside [lo, hi): those a tap's run
    carried round a row's edge. A column at a time, strided (a loop per row cost more than the run's copy)."""
    for ox in range(ow):
        if lo <= ox < hi:
            continue
        for e in range(d0 + ox, d0 + rows * ow, ow):
            row[np.uint64(e)] = 0


@njit(cache=True)
def _im2col_tile(x, col, geo, r0, b0, b1, oy0, oy1):
    """Rows r0, r0 + 1, ... of im2col over the samples [b0, b1) and output rows [oy0, oy1): col[r - r0, ((b - b0) *
    (oy1 - oy0) + oy - oy0) * W_out + ox] = x[b, c, oy*sh - pt + i*dh, ox*sw - pl + j*dw] for r = (c, i, j) (0 on
    zero padding, the padding mode's source otherwise). x C-contiguous. A copy: no arithmetic. A 'same' stride-1
    convolution (``_span``) copies each tap's plane in one run and then zeroes the columns that wrapped round a
    row's edge; otherwise row by row. Flat unsigned indices spare Numba's negative-index checks, which keep LLVM
    from vectorising the copies."""
    nb, nc, h, w = x.shape
    kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, mode = geo
    ny, plane, span = oy1 - oy0, h * w, _span(geo, w)
    xf = x.ravel()
    for rr in range(col.shape[0]):
        r = r0 + rr
        c, i, j = r // (kh * kw), (r // kw) % kh, r % kw
        off = j * dw - pl
        lo, hi = _inside(w, ow, sw, off)
        row = col[rr]
        for b in range(b0, b1):
            q0, base = (b - b0) * ny * ow, (b * nc + c) * plane
            if span:
                ya, yb = _rows_inside(h, oy0, oy1, 1, i * dh - pt)
                for t in range(q0, q0 + (ya - oy0) * ow):
                    row[np.uint64(t)] = 0
                for t in range(q0 + (yb - oy0) * ow, q0 + ny * ow):
                    row[np.uint64(t)] = 0
                s, d0 = base + (ya - pt + i * dh) * w + off, q0 + (ya - oy0) * ow       # x index of (ya, 0), its column
                for t in range(max(0, base - s), min((yb - ya) * ow, base + plane - s)):
                    row[np.uint64(d0 + t)] = xf[np.uint64(s + t)]
                _zero_wrapped(row, d0, yb - ya, ow, lo, hi)
                continue
            for oy in range(oy0, oy1):
                iy = _source(oy * sh - pt + i * dh, h, mode)
                q = q0 + (oy - oy0) * ow
                if iy < 0:
                    for ox in range(ow):
                        row[np.uint64(q + ox)] = 0
                    continue
                sb = base + iy * w + off
                for ox in range(lo, hi):                        # ox * sw + off >= 0 here (_inside)
                    row[np.uint64(q + ox)] = xf[np.uint64(sb + ox * sw)]
                for ox in range(ow - (hi - lo)):                 # the padded edges: lo left, ow - hi right
                    e = ox if ox < lo else ox - lo + hi
                    ix = _source(e * sw + off, w, mode)
                    row[np.uint64(q + e)] = xf[np.uint64(base + iy * w + ix)] if ix >= 0 else 0


@njit(cache=True, parallel=True)
def im2col(x, col, geo):
    """col (C*kh*kw, B*H_out*W_out) of x (B, C, H, W), C-contiguous; geo = (kh, kw, sh, sw, pt, pl, dh, dw,
    out_h, out_w, padding mode). Blocks of rows over the threads."""
    step = (col.shape[0] + PARTS - 1) // PARTS
    for t in prange(PARTS):
        r0, r1 = t * step, min(col.shape[0], (t + 1) * step)
        if r0 < r1:
            _im2col_tile(x, col[r0:r1], geo, r0, 0, x.shape[0], 0, geo[8])


@njit(cache=True)
def _col2im_tile(col, x, geo, r0, c0, c1, b0, b1, oy0, oy1):
    """The transpose of ``_im2col_tile`` for the channels [c0, c1): x[b, c, tap position] += the col entries that
    read it (col's rows from r0 on, x C-contiguous). The 'same' stride-1 case adds each tap's run at once, after
    zeroing the col entries that wrapped round a row's edge (padding taps, whose gradient has nowhere to go; the
    zeros they add leave x as it was). These adds complete the product's reduction over kernel taps (see
    common.py) and are counted there."""
    nb, nc, h, w = x.shape
    kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, mode = geo
    ny, plane, span = oy1 - oy0, h * w, _span(geo, w)
    xf = x.ravel()
    for c in range(c0, c1):
        for i in range(kh):
            for j in range(kw):
                row = col[(c * kh + i) * kw + j - r0]
                off = j * dw - pl
                lo, hi = _inside(w, ow, sw, off)
                for b in range(b0, b1):
                    q0, base = (b - b0) * ny * ow, (b * nc + c) * plane
                    if span:
                        ya, yb = _rows_inside(h, oy0, oy1, 1, i * dh - pt)
                        s, d0 = base + (ya - pt + i * dh) * w + off, q0 + (ya - oy0) * ow
                        _zero_wrapped(row, d0, yb - ya, ow, lo, hi)
                        for t in range(max(0, base - s), min((yb - ya) * ow, base + plane - s)):
                            xf[np.uint64(s + t)] += row[np.uint64(d0 + t)]
                        continue
                    for oy in range(oy0, oy1):
                        iy = _source(oy * sh - pt + i * dh, h, mode)
                        if iy < 0:
                            continue
                        q, sb = q0 + (oy - oy0) * ow, base + iy * w + off
                        for ox in range(lo, hi):
                            xf[np.uint64(sb + ox * sw)] += row[np.uint64(q + ox)]
                        for ox in range(ow - (hi - lo)):         # the padded edges: lo left, ow - hi right
                            e = ox if ox < lo else ox - lo + hi
                            ix = _source(e * sw + off, w, mode)
                            if ix >= 0:
                                xf[np.uint64(base + iy * w + ix)] += row[np.uint64(q + e)]


@njit(cache=True, parallel=True)
def col2im(col, x, geo):
    """The transpose of ``im2col`` into x (zeroed first): x[b, c, tap position] = sum of the col entries that read
    it. Blocks of channels over the threads."""
    nb, nc = x.shape[0], x.shape[1]
    step = (nc + PARTS - 1) // PARTS
    for t in prange(PARTS):
        c0, c1 = t * step, min(nc, (t + 1) * step)
        for b in range(nb if c0 < c1 else 0):
            x[b, c0:c1] = 0
        if c0 < c1:
            _col2im_tile(col, x, geo, 0, c0, c1, 0, nb, 0, geo[8])


@njit(cache=True)
def grouped_mm(a, b, out, groups, ta, tb, cnt, backward):
    """For each group g of row blocks: out_g = op(a_g) @ op(b_g), op transposing when ``ta`` / ``tb``."""
    ra, rb, ro = a.shape[0] // groups, b.shape[0] // groups, out.shape[0] // groups
    for g in range(groups):
        ag, bg, og = a[g * ra:(g + 1) * ra], b[g * rb:(g + 1) * rb], out[g * ro:(g + 1) * ro]
        if ta:
            mm(ag.T, bg, og, cnt, backward)
        elif tb:
            mm(ag, bg.T, og, cnt, backward)
        else:
            mm(ag, bg, og, cnt, backward)


@njit(cache=True)
def to_batch_major(src, dst, bias, has_bias, cnt):
    """dst[b, c, s] = src[c, b*S + s] (+ bias[c], 1 FLOP per element, when has_bias)."""
    nb, nc, ns = dst.shape
    for c in range(nc):
        add = bias[c] if has_bias else 0
        for b in range(nb):
            for s in range(ns):
                dst[b, c, s] = src[c, b * ns + s] + add
    if has_bias:
        cnt[FLOPS] += dst.size


@njit(cache=True, parallel=True)
def conv_by_samples(x, w2, bias, has_bias, geo, groups, tile, cols, y, cnt):
    """The forward convolution in tiles of ``tile`` output rows of one sample, spread over the threads: per tile
    an im2col small enough to stay in cache (TILE_BYTES), one product per group straight into its columns of
    y[b] (C_out, S), and the bias."""
    nb, nc, parts = x.shape[0], x.shape[1], cols.shape[0]
    ncol, cout, oh, ow = nc * geo[0] * geo[1], w2.shape[0], geo[8], geo[9]
    ra, rb = cout // groups, ncol // groups
    tiles = (oh + tile - 1) // tile
    work = np.zeros(parts, np.int64)
    for p in prange(parts):
        for q in range(p, nb * tiles, parts):
            b, oy0 = q // tiles, q % tiles * tile
            oy1 = min(oh, oy0 + tile)
            n = (oy1 - oy0) * ow
            col = cols[p, :ncol * n].reshape(ncol, n)
            _im2col_tile(x, col, geo, 0, b, b + 1, oy0, oy1)
            out = y[b, :, oy0 * ow:oy1 * ow]
            for g in range(groups):
                work[p] += dot(w2[g * ra:(g + 1) * ra], col[g * rb:(g + 1) * rb], out[g * ra:(g + 1) * ra], 0.0)
            if has_bias:
                for c in range(cout):
                    out[c] += bias[c]
    count_product(cnt, work.sum(), False)
    if has_bias:
        cnt[FLOPS] += y.size


@njit(cache=True, parallel=True)
def conv_backward_by_channels(x, gt, w2, geo, chunk, tile, need_x, want_w, rows, dwt, dw, dx, cnt):
    """The backward of a convolution with groups = 1, im2col rows (whole input channels when dx is needed)
    spread over the threads, each taking a tile of the columns at a time (``chunk`` whole samples, or ``tile``
    output rows of one sample): it im2col's its rows of the tile (small enough to stay in cache), adds
    gt_tile @ rows^T into its columns of dW (BLAS accumulating over the tiles: one reduction over the batch, each
    product term added once; into its rows of dW^T, rows @ gt_tile^T, then transposed, where ``dwt`` is not
    empty), and for dx takes W[:, its rows]^T @ gt_tile back onto its channels (col2im).
    gt: the output gradient channel-major (C_out, B*S); x, dx C-contiguous."""
    nb, nc = x.shape[0], x.shape[1]
    kk, oh, ow, parts = geo[0] * geo[1], geo[8], geo[9], rows.shape[0]
    unit = kk if need_x else 1                    # dx needs whole channels per thread; dW alone any rows
    per = (nc * kk // unit + parts - 1) // parts * unit
    tiles, batches = (oh + tile - 1) // tile, (nb + chunk - 1) // chunk
    work = np.zeros(parts, np.int64)
    for t in prange(parts):
        r0, r1 = t * per, min(nc * kk, (t + 1) * per)
        c0, c1 = r0 // kk, r1 // kk
        for b in range(nb if need_x and r0 < r1 else 0):
            dx[b, c0:c1] = 0
        for q in range(batches * tiles if r0 < r1 else 0):
            b0, oy0 = q // tiles * chunk, q % tiles * tile
            b1, oy1 = min(nb, b0 + chunk), min(oh, oy0 + tile)
            n, first = (b1 - b0) * (oy1 - oy0) * ow, (b0 * oh + oy0) * ow
            col = rows[t, :(r1 - r0) * n].reshape(r1 - r0, n)
            g = gt[:, first:first + n]
            if want_w:
                _im2col_tile(x, col, geo, r0, b0, b1, oy0, oy1)
                if dwt.size:
                    work[t] += dot(col, g.T, dwt[r0:r1], 0.0 if q == 0 else 1.0)
                else:
                    work[t] += dot(g, col.T, dw[:, r0:r1], 0.0 if q == 0 else 1.0)
            if need_x:
                work[t] += dot(w2[:, r0:r1].T, g, col, 0.0)          # col now holds dcol
                _col2im_tile(col, dx, geo, r0, c0, c1, b0, b1, oy0, oy1)
        if want_w and dwt.size and r0 < r1:
            _transpose(dwt[r0:r1], dw[:, r0:r1])
    count_product(cnt, work.sum(), True)


@njit(cache=True)
def _transpose(src, dst):
    """dst = src^T in 32 x 32 blocks (numpy's strided copy of a 4608 x 512 fp32 transpose took 18 ms here: its
    rows' power-of-two strides thrash the cache). A copy: no arithmetic."""
    n0, n1 = src.shape
    for i0 in range(0, n0, 32):
        for j0 in range(0, n1, 32):
            for j in range(j0, min(n1, j0 + 32)):
                for i in range(i0, min(n0, i0 + 32)):
                    dst[j, i] = src[i, j]


@njit(cache=True)
def to_channel_major(src, dst, db, want_db, cnt):
    """dst[c, b*S + s] = src[b, c, s]; when want_db also db[c] = sum over (b, s) (1 add per element)."""
    nb, nc, ns = src.shape
    for c in range(nc):
        acc = 0.0
        for b in range(nb):
            for s in range(ns):
                v = src[b, c, s]
                dst[c, b * ns + s] = v
                acc += v
        if want_db:
            db[c] = acc
    if want_db:
        cnt[BACK] += src.size


@njit(cache=True)
def add_channel_bias(y, bias, cnt):
    """y[b, c, s] += bias[c]: 1 FLOP per element (forward)."""
    nb, nc, ns = y.shape
    for b in range(nb):
        for c in range(nc):
            for s in range(ns):
                y[b, c, s] += bias[c]
    cnt[FLOPS] += y.size


@njit(cache=True)
def channel_sums(g, out, cnt):
    """out[c] = sum over (b, s) of g[b, c, s]: a bias gradient, 1 add per element (backward)."""
    nb, nc, ns = g.shape
    out[:] = 0
    for b in range(nb):
        for c in range(nc):
            for s in range(ns):
                out[c] += g[b, c, s]
    cnt[BACK] += g.size


# ---------------------------------------------------------------- pointwise convolution (1 x 1, stride 1, no padding)

def _pointwise(geo, groups) -> bool:
    """A 1 x 1 convolution of stride 1 without padding, groups = 1: x[b] (C_in, S) is its own im2col matrix."""
    return groups == 1 and geo[0] == geo[1] == geo[2] == geo[3] == 1 and geo[4] == geo[5] == 0


@njit(cache=True, parallel=True)
def pointwise_backward(x3, g3, w2, need_x, want_w, dw, dx3, cnt):
    """dW = sum over samples of g[b] @ x[b]^T (one reduction, BLAS accumulating sample by sample) and dx[b] =
    W^T @ g[b], input channels spread over the threads (each its columns of dW and rows of dx)."""
    nb, nc = x3.shape[0], x3.shape[1]
    step = (nc + PARTS - 1) // PARTS
    work = np.zeros(PARTS, np.int64)
    for t in prange(PARTS):
        c0, c1 = t * step, min(nc, (t + 1) * step)
        for b in range(nb if c0 < c1 else 0):
            if want_w:
                work[t] += dot(g3[b], x3[b, c0:c1].T, dw[:, c0:c1], 0.0 if b == 0 else 1.0)
            if need_x:
                work[t] += dot(w2[:, c0:c1].T, g3[b], dx3[b, c0:c1], 0.0)
    count_product(cnt, work.sum(), True)


# ---------------------------------------------------------------- depthwise convolution (groups = C_in)
# A sample's channel plane is padded into a flat work plane split by column phase: padded column xx of row yy sits
# at (yy*sw + xx % sw) * wq + xx // sw (wq = ceil(padded width / sw)), so that the columns one tap reads across
# an output row, xx = ox*sw + j*dw, are contiguous at every stride (they vectorise; a stride-2 gather or scatter
# did not).

@njit(cache=True)
def _reach(geo):
    """(rows, columns, columns per phase) of the padded plane the taps reach."""
    kh, kw, sh, sw, dh, dw, oh, ow = geo[0], geo[1], geo[2], geo[3], geo[6], geo[7], geo[8], geo[9]
    wp = (ow - 1) * sw + (kw - 1) * dw + 1
    return (oh - 1) * sh + (kh - 1) * dh + 1, wp, (wp + sw - 1) // sw


@njit(cache=True)
def _tap_starts(geo, wq):
    """Where the run of padded columns read by tap (i, j) across output row 0 starts in the work plane (output row
    oy: oy * sh * sw * wq further), one entry per tap; worked out once per call (the divisions per row cost more
    than the row's MACs on small planes)."""
    kh, kw, sw, dh, dw = geo[0], geo[1], geo[3], geo[6], geo[7]
    out = np.empty(kh * kw, np.int64)
    for i in range(kh):
        for j in range(kw):
            out[i * kw + j] = (i * dh * sw + j * dw % sw) * wq + j * dw // sw
    return out


@njit(cache=True)
def _padded_plane(src, dst, geo):
    """dst (the work plane, flat) = the plane src (H, W) with its padding: padded (yy, xx) = src[yy - pt, xx - pl]
    inside, the padding mode's source outside (0 for zeros, whose inside copies in runs). A copy: no arithmetic."""
    h, w = src.shape
    sw, pt, pl, mode = geo[3], geo[4], geo[5], geo[10]
    hp, wp, wq = _reach(geo)
    for yy in range(hp):
        iy = _source(yy - pt, h, mode)
        for ph in range(sw):
            e = (yy * sw + ph) * wq
            if mode == 0:                           # inside: 0 <= m*sw + ph - pl < w
                lo = min(wq, max(0, (pl - ph + sw - 1) // sw))
                hi = max(lo, min(wq, (w + pl - ph + sw - 1) // sw)) if iy >= 0 else lo
                for m in range(e, e + lo):
                    dst[np.uint64(m)] = 0
                if iy >= 0:
                    row = src[iy]
                    for m in range(lo, hi):
                        dst[np.uint64(e + m)] = row[np.uint64(m * sw + ph - pl)]
                for m in range(e + hi, e + wq):
                    dst[np.uint64(m)] = 0
                continue
            for m in range(wq):
                ix = _source(m * sw + ph - pl, w, mode)
                dst[np.uint64(e + m)] = src[iy, ix] if iy >= 0 and ix >= 0 else 0


@njit(cache=True)
def _fold_plane(src, dst, geo):
    """dst (H, W) = the gradient of the work plane src folded back onto the plane it was padded from: the inside
    copied (0 beyond the taps' reach), the padding added onto its sources (a non-zero mode; zeros: dropped). Those adds complete the
    product's reduction (as col2im's)."""
    h, w = dst.shape
    sw, pt, pl, mode = geo[3], geo[4], geo[5], geo[10]
    hp, wp, wq = _reach(geo)
    for iy in range(h):
        row, reach = dst[iy], min(w, wp - pl) if iy + pt < hp else 0       # beyond the taps' reach: no gradient
        for ix in range(reach, w):
            row[np.uint64(ix)] = 0
        for ph in range(sw if reach > 0 else 0):        # ix = m*sw + ph - pl in [0, reach)
            e = ((iy + pt) * sw + ph) * wq
            lo = max(0, (pl - ph + sw - 1) // sw)
            for m in range(lo, (reach + pl - ph + sw - 1) // sw):
                row[np.uint64(m * sw + ph - pl)] = src[np.uint64(e + m)]
    if mode == 0:
        return
    for yy in range(hp):
        iy = _source(yy - pt, h, mode)
        for xx in range(wp):
            ix = _source(xx - pl, w, mode)
            if iy >= 0 and ix >= 0 and not (0 <= yy - pt < h and 0 <= xx - pl < w):
                dst[iy, ix] += src[np.uint64((yy * sw + xx % sw) * wq + xx // sw)]


@njit(cache=True, parallel=True)
def depthwise_forward(x, w2, bias, has_bias, geo, y, cnt):
    """y[b, o] = sum over taps (i, j) of w[o, i, j] * padded x[b, o // m] at (oy*sh + i*dh, ox*sw + j*dw),
    m = C_out / C_in output channels per input channel: a direct loop, every tap a MAC (padding taps multiply
    the padded zeros, as im2col's columns do), planes spread over the threads, each output row summed over the
    taps while it is in cache; + bias (1 FLOP per element). Flat unsigned indices spare Numba's negative-index
    checks, which keep LLVM from vectorising the rows."""
    nb, nc = x.shape[0], x.shape[1]
    kh, kw, oh, ow = geo[0], geo[1], geo[8], geo[9]
    mult = w2.shape[0] // nc
    hp, wp, wq = _reach(geo)
    starts, step = _tap_starts(geo, wq), geo[2] * geo[3] * wq
    for bc in prange(nb * nc):
        b, c = bc // nc, bc % nc
        pf = np.empty(hp * geo[3] * wq, x.dtype)
        _padded_plane(x[b, c], pf, geo)
        for o in range(c * mult, (c + 1) * mult):
            out = y[b, o]
            for oy in range(oh):
                ob = np.uint64(oy * ow)
                for ox in range(ow):
                    out[ob + np.uint64(ox)] = 0
                for i in range(kh):
                    for j in range(kw):
                        wv, pb = w2[o, i * kw + j], np.uint64(oy * step + starts[i * kw + j])
                        for ox in range(ow):
                            out[ob + np.uint64(ox)] += wv * pf[pb + np.uint64(ox)]
            if has_bias:
                out += bias[o]
    count_product(cnt, nb * w2.shape[0] * oh * ow * kh * kw, False)
    if has_bias:
        cnt[FLOPS] += y.size


@njit(cache=True, parallel=True, fastmath=SUMS)
def depthwise_backward(x, g3, w2, geo, need_x, want_w, dw2, dx, cnt):
    """The two products of ``depthwise_forward`` backward, input channels spread over the threads, row by row
    while a row is in cache: dW[o, tap] = sum over (b, oy, ox) of g * padded x (one reduction over the batch, in
    vector lanes), and d(padded x) = sum of w * g over the taps that read it, folded back onto dx (the
    padding's sources for a non-zero mode: those adds complete the product's reduction, as col2im's). g3: the
    output gradient (B, C_out, OH*OW)."""
    nb, nc = x.shape[0], x.shape[1]
    kh, kw, oh, ow = geo[0], geo[1], geo[8], geo[9]
    mult = w2.shape[0] // nc
    hp, wp, wq = _reach(geo)
    starts, step = _tap_starts(geo, wq), geo[2] * geo[3] * wq
    for c in prange(nc):
        pf, df = np.empty(hp * geo[3] * wq, x.dtype), np.empty(hp * geo[3] * wq, x.dtype)
        if want_w:
            dw2[c * mult:(c + 1) * mult] = 0
        for b in range(nb):
            if want_w:
                _padded_plane(x[b, c], pf, geo)
            if need_x:
                df[:] = 0
            for o in range(c * mult, (c + 1) * mult):
                g = g3[b, o]
                for oy in range(oh):
                    gb = np.uint64(oy * ow)
                    for i in range(kh):
                        for j in range(kw):
                            t = i * kw + j
                            pb = np.uint64(oy * step + starts[t])
                            if want_w:
                                acc = dw2[o, t]
                                for ox in range(ow):
                                    acc += g[gb + np.uint64(ox)] * pf[pb + np.uint64(ox)]
                                dw2[o, t] = acc
                            if need_x:
                                wv = w2[o, t]
                                for ox in range(ow):
                                    df[pb + np.uint64(ox)] += wv * g[gb + np.uint64(ox)]
            if need_x:
                _fold_plane(df, dx[b, c], geo)
    macs = nb * w2.shape[0] * oh * ow * kh * kw
    count_product(cnt, macs * (int(want_w) + int(need_x)), True)


# ---------------------------------------------------------------- conv1d, conv2d

def _pads(padding, kernel, dilation, nd):
    """(begin, end) padding per dim; 'same' pads d*(k-1) in all, the odd one at the end (as PyTorch)."""
    if padding == "valid":
        return [(0, 0)] * nd
    if padding == "same":
        return [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation)]
    return [(p, p) for p in padding]


def _conv_geometry(node):
    """(x as 4-D shape, geometry array, output spatial dims). conv1d runs as conv2d with a height of 1."""
    a = node.kwargs
    x = node.in_types[0].shape
    nd = len(x) - 2
    pads = _pads(a["padding"], a["kernel_size"], a["dilation"], nd)
    spatial = x[2:]
    outs = tuple((n + p0 + p1 - d * (k - 1) - 1) // s + 1
                 for n, (p0, p1), k, s, d in zip(spatial, pads, a["kernel_size"], a["stride"], a["dilation"]))
    lift = (lambda t, fill=1: (fill, *t)) if nd == 1 else (lambda t, fill=1: tuple(t))
    k, s, d, o = lift(a["kernel_size"]), lift(a["stride"]), lift(a["dilation"]), lift(outs)
    p = lift(tuple(p0 for p0, _ in pads), 0)
    geo = np.array([k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], o[0], o[1], _MODES[a["padding_mode"]]],
                   np.int64)
    return (x[0], x[1], *lift(spatial)), geo, outs


def _depthwise(node) -> bool:
    """A depthwise convolution: groups = C_in > 1 (each output channel reads one input channel)."""
    groups = node.kwargs["groups"]
    return groups > 1 and groups == node.in_types[0].shape[1]


def _conv_forward(node, xs, p, cnt, seed):
    shape4, geo, outs = _conv_geometry(node)
    x4 = np.ascontiguousarray(xs[0]).reshape(shape4)
    w2 = p["weight"].reshape(p["weight"].shape[0], -1)
    nb, n_out, ncol = shape4[0], geo[8] * geo[9], shape4[1] * geo[0] * geo[1]
    y = np.empty((nb, w2.shape[0], n_out), x4.dtype)
    bias = p.get("bias", w2[0])
    tile = max(1, TILE_BYTES // (ncol * geo[9] * x4.itemsize))          # output rows per im2col tile
    if _depthwise(node):                            # one input channel per group: a direct loop
        depthwise_forward(x4, w2, bias, "bias" in p, geo, y, cnt)
    elif _pointwise(geo, node.kwargs["groups"]):    # no im2col: one product per sample, split over the threads
        x3 = x4.reshape(nb, shape4[1], n_out)
        for b in range(nb):
            mm(w2, x3[b], y[b], cnt, False)
        if "bias" in p:
            add_channel_bias(y, bias, cnt)
    elif n_out >= BY_SAMPLE and nb >= PARTS:        # tiles of a sample's output rows over the threads
        parts = min(PARTS, nb * -(-geo[8] // tile))
        conv_by_samples(x4, w2, bias, "bias" in p, geo, node.kwargs["groups"], tile,
                        scratch("col", (parts, ncol * min(tile, geo[8]) * geo[9]), x4.dtype), y, cnt)
    else:                                           # the whole batch: im2col rows and the product split
        col = scratch("col", (ncol, nb * n_out), x4.dtype)
        im2col(x4, col, geo)
        out2 = scratch("product", (w2.shape[0], col.shape[1]), x4.dtype)
        grouped_mm(w2, col, out2, node.kwargs["groups"], False, False, cnt, False)
        to_batch_major(out2, y, bias, "bias" in p, cnt)
    return y.reshape((nb, w2.shape[0], *outs)), x4


def _conv_backward(node, x4, gy, need, p, grads, cnt):
    _, geo, _ = _conv_geometry(node)
    groups = node.kwargs["groups"]
    w2 = p["weight"].reshape(p["weight"].shape[0], -1)
    g3 = np.ascontiguousarray(gy).reshape(gy.shape[0], gy.shape[1], -1)
    nb, ncol, ns = g3.shape[0], w2.shape[1] * groups, g3.shape[2]
    db = np.empty(g3.shape[1], gy.dtype)
    want_db = grads is not None and "bias" in grads
    pointwise, depthwise = _pointwise(geo, groups), _depthwise(node)
    if not (pointwise or depthwise):                # the products read the gradient channel-major
        gt = scratch("product", (g3.shape[1], nb * ns), gy.dtype)
        to_channel_major(g3, gt, db, want_db, cnt)
    elif want_db:                                   # theirs read g3 itself
        channel_sums(g3, db, cnt)
    if want_db:
        grads["bias"].put(db)
    dw = np.empty(w2.shape, gy.dtype)
    dx = np.empty(x4.shape, gy.dtype) if need[0] else x4[:0]
    if pointwise:
        pointwise_backward(x4.reshape(nb, -1, ns), g3, w2, need[0], grads is not None, dw,
                           dx.reshape(dx.shape[0], x4.shape[1], ns), cnt)
    elif depthwise:
        depthwise_backward(x4, g3, w2, geo, need[0], grads is not None, dw, dx, cnt)
    elif groups == 1:
        unit = geo[0] * geo[1] if need[0] else 1
        per = -(-ncol // unit // PARTS) * unit                          # im2col rows per thread
        columns = max(BACK_COLUMNS, BACK_TILE_BYTES // (per * gy.itemsize))         # per tile
        chunk, tile = (min(nb, columns // ns), geo[8]) if columns >= ns else (1, max(1, columns // geo[9]))
        rows = scratch("col", (PARTS, per * chunk * tile * geo[9]), gy.dtype)
        dwt = scratch("dwt", (ncol, w2.shape[0]) if w2.shape[0] < DW_TRANSPOSED else (0, 0), gy.dtype)
        conv_backward_by_channels(x4, gt, w2, geo, chunk, tile, need[0], grads is not None, rows, dwt, dw, dx, cnt)
    else:
        col = scratch("col", (ncol, gt.shape[1]), gy.dtype)
        if grads is not None:
            im2col(x4, col, geo)
            grouped_mm(gt, col, dw, groups, False, True, cnt, True)      # per group gt_g @ col_g^T
        if need[0]:
            grouped_mm(w2, gt, col, groups, True, False, cnt, True)      # col now holds dcol
            col2im(col, dx, geo)
    if grads is not None:
        grads["weight"].put(dw)
    return [dx.reshape(node.in_types[0].shape) if need[0] else None]


KERNELS["conv1d"] = KERNELS["conv2d"] = OpKernel(_conv_forward, _conv_backward)


# ---------------------------------------------------------------- conv_transpose2d

def _convt_geometry(node):
    """col2im geometry from the output (B, C_out, H_out, W_out) to the input grid (H, W)."""
    a = node.kwargs
    b, c, h, w = node.in_types[0].shape
    k, s, pad, d, op = a["kernel_size"], a["stride"], a["padding"], a["dilation"], a["output_padding"]
    outs = tuple((n - 1) * s[i] - 2 * pad[i] + d[i] * (k[i] - 1) + op[i] + 1 for i, n in enumerate((h, w)))
    geo = np.array([k[0], k[1], s[0], s[1], pad[0], pad[1], d[0], d[1], h, w, 0], np.int64)
    return geo, outs


def _convt_forward(node, xs, p, cnt, seed):
    geo, (oh, ow) = _convt_geometry(node)
    x = xs[0]
    nb, cin = x.shape[:2]
    xt = np.empty((cin, nb * x.shape[2] * x.shape[3]), x.dtype)
    to_channel_major(x.reshape(nb, cin, -1), xt, xt[0], False, cnt)
    w2 = p["weight"].reshape(cin, -1)
    groups = node.kwargs["groups"]
    col = scratch("col", (w2.shape[1] * groups, xt.shape[1]), x.dtype)
    grouped_mm(w2, xt, col, groups, True, False, cnt, False)
    cout = node.kwargs["out_channels"]
    y = np.empty((nb, cout, oh, ow), x.dtype)
    col2im(col, y, geo)
    if "bias" in p:
        add_channel_bias(y.reshape(nb, cout, -1), p["bias"], cnt)
    return y, xt


def _convt_backward(node, xt, gy, need, p, grads, cnt):
    geo, _ = _convt_geometry(node)
    groups = node.kwargs["groups"]
    nb, cin, h, w = node.in_types[0].shape
    w2 = p["weight"].reshape(cin, -1)
    col = scratch("col", (w2.shape[1] * groups, xt.shape[1]), gy.dtype)
    im2col(gy, col, geo)
    if grads is not None:
        if "bias" in grads:
            db = np.empty(gy.shape[1], gy.dtype)
            channel_sums(gy.reshape(nb, gy.shape[1], -1), db, cnt)
            grads["bias"].put(db)
        dw = np.empty(w2.shape, gy.dtype)
        grouped_mm(xt, col, dw, groups, False, True, cnt, True)
        grads["weight"].put(dw)
    if not need[0]:
        return [None]
    dxt = np.empty(xt.shape, gy.dtype)
    grouped_mm(w2, col, dxt, groups, False, False, cnt, True)
    dx = np.empty((nb, cin, h * w), gy.dtype)
    to_batch_major(dxt, dx, dxt[0], False, cnt)
    return [dx.reshape(nb, cin, h, w)]


def _convt_refuse(node):
    mode = node.kwargs["padding_mode"]
    return None if mode == "zeros" else f"padding_mode '{mode}' (PyTorch's transposed convolution pads with zeros only)"


KERNELS["conv_transpose2d"] = OpKernel(_convt_forward, _convt_backward, _convt_refuse)


# ---------------------------------------------------------------- matmul

def _batch_index(batch: tuple, full: tuple) -> np.ndarray:
    """For each index of the broadcast batch ``full``, the flat index into an operand's own ``batch``."""
    own = (1,) * (len(full) - len(batch)) + tuple(batch)
    return np.ascontiguousarray(np.broadcast_to(np.arange(int(np.prod(own))).reshape(own), full).ravel())


def _matmul_plan(node):
    (sa, sb), out = (t.shape for t in node.in_types), node.out.shape
    return _batch_index(sa[:-2], out[:-2]), _batch_index(sb[:-2], out[:-2])


@njit(cache=True)
def batched_mm(a3, b3, ia, ib, out, cnt):
    for q in range(out.shape[0]):
        mm(a3[ia[q]], b3[ib[q]], out[q], cnt, False)


@njit(cache=True)
def matmul_grads(a3, b3, ia, ib, g3, da, db, need_a, need_b, cnt):
    """dA[j] = sum over q with ia[q] = j of g[q] @ B[ib[q]]^T, as one product over the concatenated terms
    (a broadcast operand's gradient is part of its reduction, no separate adds); dB likewise."""
    n, m = g3.shape[1], g3.shape[2]
    if need_a:
        for j in range(a3.shape[0]):
            qs = np.nonzero(ia == j)[0]
            left = np.empty((n, len(qs) * m), g3.dtype)
            right = np.empty((len(qs) * m, a3.shape[2]), g3.dtype)
            for t in range(len(qs)):
                left[:, t * m:(t + 1) * m] = g3[qs[t]]
                right[t * m:(t + 1) * m, :] = b3[ib[qs[t]]].T
            mm(left, right, da[j], cnt, True)
    if need_b:
        for j in range(b3.shape[0]):
            qs = np.nonzero(ib == j)[0]
            left = np.empty((a3.shape[2], len(qs) * n), g3.dtype)
            right = np.empty((len(qs) * n, m), g3.dtype)
            for t in range(len(qs)):
                left[:, t * n:(t + 1) * n] = a3[ia[qs[t]]].T
                right[t * n:(t + 1) * n, :] = g3[qs[t]]
            mm(left, right, db[j], cnt, True)


def _as3(x):
    return x.reshape(-1, x.shape[-2], x.shape[-1])


def _matmul_forward(node, xs, p, cnt, seed):
    ia, ib = _matmul_plan(node)
    a3, b3 = _as3(xs[0]), _as3(xs[1])
    out = np.empty((len(ia), a3.shape[1], b3.shape[2]), a3.dtype)
    batched_mm(a3, b3, ia, ib, out, cnt)
    return out.reshape(node.out.shape[:-2] + out.shape[1:]), (a3, b3)


def _matmul_backward(node, saved, gy, need, p, grads, cnt):
    a3, b3 = saved
    ia, ib = _matmul_plan(node)
    da, db = np.empty(a3.shape, gy.dtype), np.empty(b3.shape, gy.dtype)
    matmul_grads(a3, b3, ia, ib, _as3(gy), da, db, need[0], need[1], cnt)
    return [d.reshape(t.shape) if n else None for d, t, n in zip((da, db), node.in_types, need)]


KERNELS["matmul"] = OpKernel(_matmul_forward, _matmul_backward)
