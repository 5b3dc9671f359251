"""What every kernel shares: the work counter, counted products, and the few loops several ops reuse.

Each layer owns a counter, an int64 array ``cnt`` of three cells: ``cnt[MACS]`` forward multiply-accumulates,
``cnt[FLOPS]`` forward FLOPs (2 per MAC plus every other operation), ``cnt[BACK]`` backward FLOPs. Kernels add
to it from what they really did: a product adds m*k*n from the shapes of the blocks that reach BLAS gemm; a
loop adds its trip count times the operations written in its body (1 per ``+ - * /``, comparison or call of
exp, tanh, erf, sqrt, rsqrt, as docs/conventions.md). Nothing here reads the analytic formulas of ``sizing.model.ops``.

A product accumulated block by block (BLAS with beta = 1) is one reduction, each term added once. col2im's adds
complete a convolution's product over kernel taps (the partial sums of one reduction), so they are the
product's own and not counted again.
"""
from __future__ import annotations

import ctypes
import glob
import os
from dataclasses import dataclass
from typing import Callable

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import _helperlib, cfunc, config, get_num_threads, njit, prange, types
from numba.np.linalg import ensure_blas

from ...common.errors import SizingError

MACS, FLOPS, BACK = 0, 1, 2


def counter() -> np.ndarray:
    return np.zeros(3, np.int64)


@njit(cache=True)
def count_product(cnt, work, backward):
    """``work`` multiply-accumulates: MACs and 2 FLOPs each forward, 2 FLOPs each backward."""
    if backward:
        cnt[BACK] += 2 * work
    else:
        cnt[MACS] += work
        cnt[FLOPS] += 2 * work


# BLAS gemm by symbol name, so functions calling it stay cacheable, on strided blocks (no copies), with beta (C += A B).
# Two symbols with CBLAS's row-major signature (64-bit integers), registered at import: numpy's own OpenBLAS
# where numpy bundles scipy-openblas64 (numpy >= 2 wheels), set to one thread; else shims over Numba's C helper
# numba_xxgemm (what np.dot calls inside @njit: scipy's cython_blas). numpy's (OpenBLAS 0.3.31 here) multiplies a
# 64 x 576 by 576 x 25088 fp32 product 1.4x as fast as scipy's (0.3.30) on one core of this machine, 2026-12-02.
# Matrices go by address (uintp), so the parallel ``gemm`` compiles once for every dtype and layout.
ensure_blas()
if "xxgemm" not in _helperlib.c_helpers:
    raise SizingError(f"sizing check needs Numba's BLAS helper numba_xxgemm (what np.dot calls inside @njit), "
                      f"which Numba {numba.__version__} does not have: install a Numba that does "
                      "(0.58 to 0.68 do), e.g. pip install 'numba>=0.58,<0.69'")
_XXGEMM = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char, types.intp, types.intp, types.intp, types.uintp, types.uintp,
    types.intp, types.uintp, types.intp, types.uintp, types.uintp, types.intp))
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112          # CBLAS's enums


def _gemm_signature(real):
    i, p = types.int64, types.uintp
    return types.void(types.intc, types.intc, types.intc, i, i, i, real, p, i, p, i, real, p, i)


_SGEMM = types.ExternalFunction("sizing_sgemm", _gemm_signature(types.float32))
_DGEMM = types.ExternalFunction("sizing_dgemm", _gemm_signature(types.float64))


def _numpy_openblas():
    """Addresses of numpy's bundled OpenBLAS cblas sgemm and dgemm (its BLAS then set to one thread), or None."""
    root = os.path.dirname(np.__file__)
    for path in glob.glob(os.path.join(root, "..", "numpy.libs", "*openblas64*")) + glob.glob(
            os.path.join(root, ".dylibs", "*openblas64*")):
        try:
            lib = ctypes.CDLL(path)
            found = [ctypes.cast(getattr(lib, f"scipy_cblas_{kind}gemm64_"), ctypes.c_void_p).value for kind in "sd"]
            lib.scipy_openblas_set_num_threads64_(1)
        except (OSError, AttributeError):
            continue
        return found
    return None


@njit(cache=True)
def _xxgemm_row_major(kind, ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, dtype):
    """A row-major CBLAS gemm as numba_xxgemm (column-major BLAS: C^T = op(B)^T op(A)^T)."""
    consts = np.array([alpha, beta], dtype)
    pk = consts.ctypes.data
    _XXGEMM(kind, ord("t") if tb == TRANS else ord("n"), ord("t") if ta == TRANS else ord("n"), n, m, k, pk, pb, ldb,
            pa, lda, pk + consts.itemsize, pc, ldc)


def _xxgemm_shims():
    """The C addresses of row-major sgemm and dgemm over numba_xxgemm (compiled only where numpy's is absent)."""
    @cfunc(_gemm_signature(types.float32), cache=True)
    def sgemm(order, ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc):
        _xxgemm_row_major(ord("s"), ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, np.float32)

    @cfunc(_gemm_signature(types.float64), cache=True)
    def dgemm(order, ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc):
        _xxgemm_row_major(ord("d"), ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, np.float64)

    return [sgemm.address, dgemm.address]


for _name, _address in zip(("sizing_sgemm", "sizing_dgemm"), _numpy_openblas() or _xxgemm_shims()):
    llvm.add_symbol(_name, _address)
SPLIT_WORK = 1 << 20        # m*k*n from which a product is split over the threads
# Sums that may be reassociated into vector lanes (LLVM's reassoc, nsz, contract): the same operations counted, in
# another order; NaN and Inf keep their meaning (no nnan, ninf), so the runner's check still sees them.
SUMS = {"reassoc", "nsz", "contract"}
PARTS = config.NUMBA_NUM_THREADS    # a compile-time constant (get_num_threads() would defeat the disk cache)
# A serial kernel loaded from the disk cache may hold parallel code inlined from a callee (mm -> gemm); Numba
# starts its thread pool only for functions it knows are parallel, so start it now (get_num_threads does).
get_num_threads()


@njit(cache=True)
def _blas(single, ta, tb, m, n, k, pa, lda, pb, ldb, pc, ldc, beta):
    """C (m x n at pc, row stride ldc) = op(A) @ op(B) + beta * C, A and B row-major at pa, pb (op transposes
    where ta / tb), float32 when ``single`` else float64: one single-threaded BLAS call."""
    if m <= 0 or n <= 0:
        return
    a, b = TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS
    lda, ldb, ldc = max(lda, 1), max(ldb, 1), max(ldc, 1)
    if single:
        _SGEMM(ROW_MAJOR, a, b, m, n, k, np.float32(1.0), pa, lda, pb, ldb, np.float32(beta), pc, ldc)
    else:
        _DGEMM(ROW_MAJOR, a, b, m, n, k, 1.0, pa, lda, pb, ldb, beta, pc, ldc)


@njit(cache=True)
def _operand(x):
    """(address, transposed, row stride) of a 2-D view as a row-major block: a view with unit column stride is
    one; a view with unit row stride is the transpose of one."""
    s0, s1 = x.strides[0] // x.itemsize, x.strides[1] // x.itemsize
    if s1 == 1 or x.shape[1] == 1:
        return x.ctypes.data, False, max(s0, x.shape[1])
    return x.ctypes.data, True, max(s1, x.shape[0])


@njit(cache=True, parallel=True)
def gemm(single, ta, tb, m, n, k, pa, lda, pb, ldb, pc, ldc, beta):
    """As ``_blas``; a large product split over Numba's threads along the longer side of C, each part one
    single-threaded BLAS call on its block (BLAS's own threads are off: one thread pool, no contention)."""
    if PARTS < 2 or m * k * n < SPLIT_WORK:
        _blas(single, ta, tb, m, n, k, pa, lda, pb, ldb, pc, ldc, beta)
        return
    item = 4 if single else 8
    side = m if m >= n else n
    step = (side + PARTS - 1) // PARTS
    for t in prange(PARTS):
        lo, hi = t * step, min(side, (t + 1) * step)
        if lo < hi and m >= n:
            _blas(single, ta, tb, hi - lo, n, k, pa + (lo if ta else lo * lda) * item, lda, pb, ldb,
                  pc + lo * ldc * item, ldc, beta)
        elif lo < hi:
            _blas(single, ta, tb, m, hi - lo, k, pa, lda, pb + (lo * ldb if tb else lo) * item, ldb,
                  pc + lo * item, ldc, beta)


@njit(cache=True)
def _product(a, b, out, beta, threads):
    pa, ta, lda = _operand(a)
    pb, tb, ldb = _operand(b)
    args = (out.itemsize == 4, ta, tb, out.shape[0], out.shape[1], a.shape[1], pa, lda, pb, ldb, out.ctypes.data,
            max(out.strides[0] // out.itemsize, out.shape[1]), beta)
    if threads:
        gemm(*args)
    else:
        _blas(*args)
    return a.shape[0] * a.shape[1] * b.shape[1]


@njit(cache=True)
def dot(a, b, out, beta):
    """out = a @ b + beta * out on 2-D views (out with unit column stride), single-threaded, for use inside
    parallel loops; returns m*k*n, the multiply-accumulates of the shapes it got."""
    return _product(a, b, out, beta, False)


@njit(cache=True)
def mm(a, b, out, cnt, backward):
    """out (m, n) = a (m, k) @ b (k, n) over the threads; counts m*k*n MACs (forward) or 2*m*k*n FLOPs
    (backward) from the shapes that reach the product."""
    count_product(cnt, _product(a, b, out, 0.0, True), backward)
    return out


_SCRATCH: dict = {}


def scratch(tag: str, shape, dtype) -> np.ndarray:
    """A reusable work array (contents undefined) for a kernel's temporaries such as im2col columns: one
    buffer per tag and dtype, grown when needed, so large temporaries are not mapped and page-faulted anew for
    every layer and step. Only for arrays that die inside the kernel that asked (never returned or saved)."""
    n = int(np.prod(shape))
    key = (tag, np.dtype(dtype).str)
    buf = _SCRATCH.get(key)
    if buf is None or buf.size < n:
        buf = _SCRATCH[key] = np.empty(n, dtype)
    return buf[:n].reshape(shape)


def matmul2(a, b, cnt, backward):
    """a @ b into a new array, counted as ``mm``."""
    return mm(a, b, np.empty((a.shape[0], b.shape[1]), a.dtype), cnt, backward)


@njit(cache=True)
def add_into(acc, x, cnt, slot):
    """acc += x elementwise (flat arrays of one size): 1 FLOP per element into cnt[slot]."""
    for i in range(acc.size):
        acc[i] += x[i]
    cnt[slot] += acc.size


def added(a, b, cnt, slot):
    """a + b as a new flat array (neither operand changes: gradients may be shared), counted as ``add_into``."""
    out = a.reshape(-1).copy()
    add_into(out, b.reshape(-1), cnt, slot)
    return out.reshape(a.shape)


@njit(cache=True)
def mul_into(acc, x, cnt, slot):
    """acc *= x elementwise (flat arrays of one size): 1 FLOP per element into cnt[slot]."""
    for i in range(acc.size):
        acc[i] *= x[i]
    cnt[slot] += acc.size


@njit(cache=True)
def reduce_to(g, index, out, cnt):
    """out[index[j]] += g[j] over a zeroed ``out``: the sum of a broadcast gradient back to its input's shape,
    1 add per element of ``g`` (backward)."""
    out[:] = 0
    for j in range(g.size):
        out[index[j]] += g[j]
    cnt[BACK] += g.size


@njit(cache=True)
def scale_into(x, factor, cnt, slot):
    """x *= factor: 1 FLOP per element into cnt[slot]."""
    for i in range(x.size):
        x[i] *= factor
    cnt[slot] += x.size


@njit(cache=True)
def sum_rows(g, out, cnt):
    """out[j] = sum over rows of g (rows, n): a bias gradient, rows*n adds from a zero start (backward)."""
    out[:] = 0
    for r in range(g.shape[0]):
        for j in range(g.shape[1]):
            out[j] += g[r, j]
    cnt[BACK] += g.size


def bias_grad(g2, cnt):
    """The gradient of a bias added to every row of g2 (rows, n)."""
    out = np.empty(g2.shape[1], g2.dtype)
    sum_rows(g2, out, cnt)
    return out


@njit(cache=True)
def add_rows(y, b, cnt):
    """y (rows, n) += b (n): a bias add, 1 FLOP per element of y (forward)."""
    for r in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[r, j] += b[j]
    cnt[FLOPS] += y.size


@njit(cache=True, fastmath=SUMS)
def _finite(x):
    """sum of x * 0 is 0 exactly when every element is finite (Inf * 0 and NaN * 0 are NaN; without LLVM's nnan
    the multiply is not folded away): a branch-free sum, in vector lanes at one core's memory bandwidth."""
    s = 0.0
    for i in range(x.size):
        s += x[i] * 0.0
    return s == 0.0


def all_finite(x) -> bool:
    """Whether every element of a flat array is finite (not a layer's work: uncounted). One thread: a 25 MiB
    fp32 array took 0.9 ms (the parallel count it replaced took 1.1 ms on one thread, 7.7 ms CPU on two, and
    woke the thread pool for every check), 2026-12-02."""
    return bool(_finite(x))


@njit(cache=True)
def sgd(p, g, lr):
    """p -= lr * g (the optimizer step; not a layer's work)."""
    for i in range(p.size):
        p[i] -= lr * g[i]


@njit(cache=True)
def copy_block(src, dst, offset):
    """dst[:, offset:offset + w] = src (rows, w): a copy (concat, select), no arithmetic."""
    for r in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[r, offset + j] = src[r, j]


@njit(cache=True)
def take_block(src, dst, offset):
    """dst (rows, w) = src[:, offset:offset + w]: the reverse copy, no arithmetic."""
    for r in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[r, j] = src[r, offset + j]


# ---------------------------------------------------------------- the kernel table and gradient slots

@dataclass(frozen=True)
class OpKernel:
    """One op's pair of kernels, called by the runner with a graph node:

    ``forward(node, xs, params, cnt, seed) -> (y, saved)``; ``backward(node, saved, gy, need, params, grads, cnt)
    -> [gradient of each input, or None where ``need`` is false]``. ``grads`` maps each weight name to its
    ``Grad`` (None when the weights take no gradient); ``seed`` fixes the dropout masks of this call.
    ``refuse(node)`` names an argument value the kernels do not run (None when they run it). ``keeps_finite``:
    finite inputs (and output gradient) give a finite output (and input gradients) whatever the values (a
    select, a bounded function, a copy), so the runner's NaN/Inf check may skip them: the layer that made a
    non-finite value is still the first one checked that holds it."""
    forward: Callable
    backward: Callable
    refuse: Callable = lambda node: None
    keeps_finite: bool = False


KERNELS: dict[str, OpKernel] = {}


class Grad:
    """The gradient of one weight tensor in one step. The first kernel to write it sets it; a later one (a
    layer that ties to the weight) adds its dense gradient to it, numel adds counted in ``cnt``, the counter
    of the layer that owns the weight (autograd's InputBuffer sum before AccumulateGrad)."""

    def __init__(self, shape, dtype, cnt):
        self.shape, self.dtype, self.cnt = tuple(shape), dtype, cnt
        self.array = None              # set by the first kernel that writes it in a step
        self.fresh = True

    def reset(self):
        self.fresh = True

    @property
    def value(self) -> np.ndarray:
        """The gradient of this step: zeros when no kernel wrote one (a layer no gradient reached)."""
        return np.zeros(self.shape, self.dtype) if self.fresh else self.array

    def put(self, value):
        value = np.ascontiguousarray(value).reshape(self.shape)
        if self.fresh:
            self.array, self.fresh = value, False
        else:
            add_into(self.array.reshape(-1), value.reshape(-1), self.cnt, BACK)

    def buffer(self) -> np.ndarray:
        """An array of this gradient's shape (contents undefined) for a kernel to fill and then ``put``. While no
        kernel has written it this step: the array of the step before (dead once the SGD update has read it), so
        that a large gradient is not mapped and page-faulted anew every step (GPT-2's 50257 x 768 lm_head: 57 of
        549 ms of its weight-gradient product, one core, 2026-12-02); else a new one (``put`` adds it)."""
        if self.fresh and self.array is not None:
            return self.array
        return np.empty(self.shape, self.dtype)

    def zeros(self) -> np.ndarray:
        """A dense zero array of this gradient's shape, for a kernel to scatter-add into and then ``put`` (as
        torch's embedding_dense_backward does: the gradient of a table is a dense tensor): ``buffer``'s array
        zeroed, or, when another kernel wrote first this step (a tie), a reused work array (``put`` adds it)."""
        out = self.buffer() if self.fresh else scratch("dense gradient", self.shape, self.dtype)
        out.fill(0)
        return out
