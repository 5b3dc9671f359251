"""The Numba kernels ``sizing bench`` times. Every one is compiled with ``cache=True`` (the first run of
``sizing bench`` compiles them, later runs load them from Numba's cache).

- ``fma_kernel(k)``: ``k`` independent multiply-add chains, each element updated DEPTH times per pass:
  x <- x * a + b. Per call: 2 x DEPTH x k x n FLOPs. With ``fastmath`` the constant-length inner loop is
  vectorised and its k accumulators are kept in vector registers across passes, so enough of them
  (k = chains x lanes, chains >= FMA latency x FMA pipes) keep every pipe busy. DEPTH > 1 keeps LLVM from
  unrolling the k loop before vectorising it (which, for short k, gave scalar code).
- ``clock_chain``: a dependent chain of integer add and xor (register operands: 64-bit constants), two
  1-cycle operations per iteration on every x86-64 and AArch64 core, so iterations x 2 / seconds is the clock.
- STREAM kernels (McCalpin's copy, scale, add, triad) as ``prange`` loops over all threads.
"""
from __future__ import annotations

from functools import lru_cache

from numba import njit, prange

DEPTH = 4
CLOCK_OPS_PER_ITERATION = 2
_ADD = 0x2545F4914F6CDD1D    # both constants exceed 32 bits: they live in registers, never as immediates a
_XOR = 0x5DEECE66D           # renamer could fold


@lru_cache(maxsize=None)
def fma_kernel(k: int):
    """``run(n, a, b, acc)``: n passes over the k chains of ``acc`` (length k, fp32 or fp64), in place; releases
    the GIL so threads run it on every core. After n passes each element is a^m x0 + b (a^m - 1)/(a - 1),
    m = DEPTH x n (x0 + m b when a = 1)."""
    @njit(fastmath={"contract"}, cache=True, nogil=True)
    def run(n, a, b, acc):
        for _ in range(n):
            for j in range(k):
                x = acc[j]
                for _d in range(DEPTH):
                    x = x * a + b
                acc[j] = x
        return acc

    return run


@njit(cache=True, nogil=True)
def clock_chain(n, x):
    """n iterations of x <- (x + _ADD) ^ _XOR: 2n dependent single-cycle operations."""
    for _ in range(n):
        x = (x + _ADD) ^ _XOR
    return x


@njit(cache=True, parallel=True)
def fill(a, value):
    """a[:] = value, by the threads that will read it (first touch places pages near them)."""
    for i in prange(a.size):
        a[i] = value


@njit(cache=True, parallel=True)
def stream_copy(c, a):
    """c = a: 2 arrays moved (16 B per fp64 element)."""
    for i in prange(a.size):
        c[i] = a[i]


@njit(cache=True, parallel=True)
def stream_scale(b, c, s):
    """b = s c: 2 arrays moved."""
    for i in prange(c.size):
        b[i] = s * c[i]


@njit(cache=True, parallel=True)
def stream_add(c, a, b):
    """c = a + b: 3 arrays moved."""
    for i in prange(a.size):
        c[i] = a[i] + b[i]


@njit(cache=True, parallel=True)
def stream_triad(a, b, c, s):
    """a = b + s c: 3 arrays moved."""
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]
