"""Execution: a Graph run for real in Numba kernels, its work counted and timed (``sizing check``).

``kernels`` (one forward and one backward kernel per op of the registry), ``model`` (the runner: weights,
synthetic data, training steps), ``loss``, ``gradcheck`` (finite differences), ``reduce`` (the instance a
check runs). Nothing here is imported by the analytic side.

BLAS settings, for every BLAS library loaded after this import (set only where the environment does not):
- OPENBLAS_NUM_THREADS=1: the kernels split large products over Numba's threads themselves (one thread pool;
  two pools on two cores fight);
- OPENBLAS_CORETYPE=SkylakeX on a CPU with AVX-512 (F, CD, BW, DQ, VL): OpenBLAS up to 0.3.31 does not know
  AMD Zen 4/5 and falls back to its AVX2 (Haswell) kernels, at about 60% of the speed of its AVX-512 ones.

Memory (glibc only, ``keep_freed_memory``, called when a Model is built: sizing/execute/model.py; importing this
package changes nothing of the process's allocator): a training step frees and allocates the same large arrays every step,
and glibc maps each large one afresh, which the kernel then zeroes page by page at first touch: 28% of the
samples of a GPT-2 small check's process were the kernel's clear_page_erms, and a step spent 0.1 to 0.6 s in
the kernel (one core, 2026-12-02). So every allocation comes from the heap and the heap's top is kept:
what a step frees, the next one reuses, untouched by the kernel (the process keeps its peak, as it reaches it
every step anyway).
"""
import ctypes
import os

AVX512 = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}


def cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
if "OPENBLAS_CORETYPE" not in os.environ and AVX512 <= cpu_flags():
    os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4      # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """glibc's malloc told never to map an allocation of its own (M_MMAP_MAX 0) and to keep up to 2 GiB free at
    the heap's top (M_TRIM_THRESHOLD); False where there is no glibc ``mallopt`` (nothing changes there)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))

