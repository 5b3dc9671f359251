"""Run the measurements of ``sizing bench`` and keep every raw repeat.

A figure is a ``Series``: its repeats in GHz, GFLOP/s or GB/s (min / median / max; peaks report the best).
Each repeat times a sample long enough to swamp timer and call overheads: ``measure`` first finds how many
units of work fill ``sample_s`` seconds (``calibrate``, once per figure), then times ``repeats`` samples of that
many units, the jobs of a step taking turns. The whole sequence of steps runs ``rounds`` times and each figure
pools its repeats from every round: on a shared or virtual machine a slow spell of a second or two then lowers
a few repeats of every figure instead of every repeat of one, and the median stays put.

- clock: ``kernels.clock_chain`` on one core, best of the samples (a sample the hypervisor or another process
  interrupted only reads low).
- FMA peak, fp64 and fp32: ``kernels.fma_kernel`` with 8, 12 and 16 vector-width chains on one core (the best
  count depends on FMA latency x pipes and on register count); the best count then runs on every thread at
  once, one Python thread per core calling the same compiled kernel without the GIL (a ``prange`` version made
  LLVM inline the kernel and, for some chain counts, keep the accumulators in memory: half the peak).
- GEMM: numpy's matmul (its BLAS) over square sizes and two layer-shaped products; work 2 m k n FLOPs.
- layer calls: a training step of our executor over chains of tiny layers (``CallChain``, from sizing/execute/calls.py,
  handed in by the CLI: this stage cannot import the executor) at ``chain_pairs`` lengths, steps per second;
  the line through their best repeats, t = step overhead + pairs x pair cost (Hockney's t = t0 + n / r_inf with
  the work per layer negligible), gives the fixed cost of one kernel call and of one step (``CallOverhead``).
- STREAM: copy, scale, add, triad over three fp64 arrays of at least 4x the last-level cache each
  (McCalpin's rule); bytes counted as STREAM does (2, 2, 3, 3 arrays; no write-allocate traffic); twice the
  repeats of the other figures, and reported as the median (``BenchResult.stream_gbs``).

Heavy modules (numpy, numba) are imported inside the functions that use them.
"""
from __future__ import annotations

import datetime
import math
import os
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from ...common.errors import SizingError
from .cpu import (PRECISION_BITS, SIMD_BITS, CpuInfo, Microarch, llc_bytes, memory_bytes, microarch, peak_gflops,
    physical_cores, simd_level, this_cpu, usable_cpus)

PRECISIONS = ("fp64", "fp32")
STREAM_KERNELS = ("copy", "scale", "add", "triad")
STREAM_ARRAYS = {"copy": 2, "scale": 2, "add": 3, "triad": 3}
CHAIN_CANDIDATES = (8, 12, 16)
CHAIN_PAIRS = (8, 64)           # layer-call chains: lengths in (linear, relu) pairs


@dataclass(frozen=True)
class CallChain:
    """Our executor, as the bench times it: ``steps(pairs)`` returns ``run(reps)``, ``reps`` training steps of a
    chain of ``pairs`` tiny (linear, relu) pairs; each pair runs ``kernels_per_pair`` kernels a step."""
    steps: object
    kernels_per_pair: int


@dataclass(frozen=True)
class LayerChains:
    """An executor as the bench times it by layer class (sizing/hardware/bench/chains.py): ``steps(cls, n, wide)``
    returns ``run(reps)``, ``reps`` training steps of that chain; ``measure(config)``, when given, times every
    chain itself (another interpreter: PyTorch) and returns {chain_name: [steps per second, ...]}."""
    name: str
    steps: object = None
    measure: object = None
    version: str | None = None


@dataclass(frozen=True)
class CallOverhead:
    """Fixed costs beside the work: of one training step, and of one kernel call within it (seconds)."""
    step_s: float
    kernel_s: float


def fit_line(points) -> tuple[float, float]:
    """Least-squares (a, b) of t = a + b n through ``points`` (n, t), closed form:
    b = sum (n - mean n)(t - mean t) / sum (n - mean n)^2, a = mean t - b mean n."""
    ns, ts = [n for n, _ in points], [t for _, t in points]
    mn, mt = sum(ns) / len(ns), sum(ts) / len(ts)
    b = sum((n - mn) * (t - mt) for n, t in points) / sum((n - mn) ** 2 for n in ns)
    return mt - b * mn, b


@dataclass(frozen=True)
class Series:
    """The raw repeats of one figure; ``best`` is the largest (a rate can only be lowered by interference)."""
    name: str
    unit: str
    values: tuple

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def best(self) -> float:
        return max(self.values)


@dataclass(frozen=True)
class GemmShape:
    """A product (m, k) @ (k, n): 2 m k n FLOPs."""
    name: str
    m: int
    k: int
    n: int
    square: bool = False

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n


def square(n: int) -> GemmShape:
    return GemmShape(f"n{n}", n, n, n, square=True)


# The 3x3 convolution of ResNet-50's conv4_x blocks (256 -> 256 channels at 14x14, padding 1, batch 8) as its
# im2col product (batch x positions, channels x taps, out channels), and a 4096 -> 4096 linear layer at batch 8
# (decoding-sized): what real layers hand to BLAS.
CONV3X3 = GemmShape("conv3x3_c256_14x14_b8", 8 * 14 * 14, 256 * 9, 256)
LINEAR_B8 = GemmShape("linear_4096_b8", 8, 4096, 4096)


@dataclass(frozen=True)
class BenchConfig:
    """What to run: threads, repeats per figure and round, rounds, seconds per repeat, the GEMM shapes,
    STREAM's array length."""
    threads: int
    repeats: int = 5
    sample_s: float = 0.1
    rounds: int = 1
    gemm: tuple = (square(256), square(512), square(1024), square(2048), CONV3X3, LINEAR_B8)
    stream_elements: int = 1 << 24
    chains: tuple = CHAIN_CANDIDATES
    chain_pairs: tuple = CHAIN_PAIRS
    classes: tuple = None               # layer classes timed through the executors (None: every class)

    @classmethod
    def for_machine(cls, machine: "Machine", quick: bool = False, threads: int | None = None) -> "BenchConfig":
        """The default run (3 rounds of 3 repeats, 9 per figure: about 20 s, and with the executors' layer-class
        chains 1.6 min on 2 quiet cores, 3.3 min on a busy one, measured 2026-12-02; with the chains' other shapes
        too, 8.5 min at load 5.4-6.2, against 5.5 min without them at load 1.1-5.9; 3.5 min quiet; with the ops
        timed on their own, the 16 Mi passes and norms and the batch-8 and deep products, 12.6 min at load 2.6-5.3;
        with oneDNN's tiny convolution, the 7 x 7 maps, the thin linears over 512 features and relu6, 6.6 min
        on one pinned core, --threads 1, at load 1.6-2.3, 6.4 min before the last three) or ``quick`` (about 3 s
        beside the first touch of the STREAM arrays; a thin product beside the big ones, so the GEMM sweep spans a
        small and a large smallest dimension); STREAM arrays of 4x the last-level cache (at least 64 MiB) each."""
        llc = machine.llc_bytes or 32 * 1024 ** 2
        elements = max(4 * llc, 64 * 1024 ** 2) // 8
        threads = machine.check_threads(threads or len(machine.cpus))
        if quick:
            return cls(threads, repeats=3, sample_s=0.03, gemm=(square(1024), CONV3X3, LINEAR_B8),
                       stream_elements=elements)
        return cls(threads, repeats=3, sample_s=0.06, rounds=3, stream_elements=elements)

    @property
    def samples(self) -> int:
        """Repeats per figure over all rounds."""
        return self.repeats * self.rounds


@dataclass(frozen=True)
class Machine:
    """This machine as the bench sees it: the CPU, its cores in this process's affinity mask, its caches."""
    cpu: CpuInfo
    microarch: Microarch
    simd: str
    cpus: tuple            # logical CPUs in the affinity mask
    cores: int             # physical cores among them
    llc_bytes: int | None
    memory_bytes: int | None

    def check_threads(self, threads: int) -> int:
        """``threads`` when this process may run that many at once (its affinity mask), else SizingError."""
        if not 1 <= threads <= len(self.cpus):
            raise SizingError(f"--threads: {threads} is not between 1 and the {len(self.cpus)} CPUs this process "
                              "may run on (its affinity mask)")
        return threads


def this_machine() -> Machine:
    cpu, cpus = this_cpu(), usable_cpus()
    return Machine(cpu, microarch(cpu), simd_level(cpu), cpus, physical_cores(cpus), llc_bytes(cpus),
                   memory_bytes())


@dataclass(frozen=True)
class BenchResult:
    """Every series of one run (``runs``, by name) and the facts that give them meaning."""
    machine: Machine
    config: BenchConfig
    runs: dict
    blas: dict
    kernels_per_pair: int | None = None     # the layer-call chains' (None: not timed)
    executors: dict | None = None           # executor -> its version (None: ours), the layer classes timed
    date: str = field(default_factory=lambda: datetime.date.today().isoformat())

    @property
    def cores_used(self) -> int:
        """Physical cores the threads can fill: threads beyond the cores are SMT siblings sharing FP pipes."""
        return min(self.config.threads, self.machine.cores)

    @property
    def clock_ghz(self) -> float:
        return self.runs["clock_ghz"].best

    def flops_per_cycle(self, precision: str) -> int:
        return self.machine.microarch.flops_per_cycle(precision)

    def peak_theoretical(self, precision: str, cores: int | None = None) -> float:
        """cores (default: those used) x measured clock x FLOPs per cycle, GFLOP/s."""
        return peak_gflops(self.cores_used if cores is None else cores, self.clock_ghz,
                           self.flops_per_cycle(precision))

    def chains(self, precision: str) -> int:
        """Vector-width chains of the best 1-core FMA kernel (the count the all-thread run used)."""
        return best_chains(self.runs, precision, self.config.chains)

    def peak_series(self, precision: str, scope: str) -> Series:
        """scope 'all' (every thread) or '1core' (the best chain count's series)."""
        if scope == "all":
            return self.runs[f"peak_{precision}_all"]
        return self.runs[f"peak_{precision}_1core_{self.chains(precision)}chains"]

    def peak_measured(self, precision: str) -> float:
        return self.peak_series(precision, "all").best

    def gemm_series(self, precision: str, shape: GemmShape) -> Series:
        return self.runs[f"gemm_{precision}_{shape.name}"]

    def gemm_best(self, precision: str) -> float:
        """Sustained GEMM: the best median over the square sizes."""
        return max(self.gemm_series(precision, s).median for s in self.config.gemm if s.square)

    def gemm_sweep(self, precision: str) -> list:
        """[m, k, n, median GFLOP/s] of every shape timed."""
        return [[s.m, s.k, s.n, self.gemm_series(precision, s).median] for s in self.config.gemm]

    def stream_gbs(self, kernel: str) -> float:
        """Sustained bandwidth: the median rate. (McCalpin's STREAM prints the best; on a shared or virtual
        machine the best is one lucky sample while the neighbours were quiet: measured 22-32% apart between
        two runs, against 6-8% for the median, benchmarks/bench_bench.py.)"""
        return self.runs[f"stream_{kernel}"].median

    def call_overhead(self) -> CallOverhead | None:
        """The line through the chains' step times (the best repeat of each length: interference only adds),
        t = step + pairs x kernels_per_pair x kernel; None when the chains were not timed (no ``chain``, or
        fewer than two ``chain_pairs`` lengths). A negative intercept
        (noise) is read as no step overhead."""
        if self.kernels_per_pair is None or len(self.config.chain_pairs) < 2:
            return None
        a, b = fit_line([(n, 1 / self.runs[chain_name(n)].best) for n in self.config.chain_pairs])
        return CallOverhead(max(0.0, a), b / self.kernels_per_pair)

    def executor_terms(self) -> dict | None:
        """{executor: {step_us, loss_us, layer_us: {class: us}, wide_us: {class: us}, shapes_us: {shape: us},
        threads, version}} from the layer-class chains (sizing/hardware/bench/chains.py): per class the line through
        the best repeat of each length, its slope one layer's time; ``layer_us`` the tiny chains' slope (the fixed
        cost of a layer; and under a fixed shape's name, ``chains.Shape.fixed``, its own slope: another code path's
        fixed cost), ``threads`` the threads it ran on, ``wide_us`` the wide chains' slope less it (the work of one wide layer), ``shapes_us`` the same for
        each of the class's other shapes; ``step_us`` the tiny linear chain's intercept (the fixed cost of a step;
        absent when noise makes it negative); ``loss_us`` the wide linear chain's intercept, plus the input gradient
        its first layer skips, less that: its loss, a cross-entropy over ``chains.LOSS_ELEMENTS`` more logits (absent
        when noise makes it negative). A tiny slope that noise made no larger than zero gives no fixed cost (the
        class's work figures stay, less nothing); a wide slope no larger than the tiny one gives no figure. None
        when not timed."""
        from ..devices import LAYER_CLASSES
        from .chains import SHAPES

        out = {}
        for ex, version in (self.executors or {}).items():
            terms = {"layer_us": {}, "wide_us": {}, "shapes_us": {}}
            for cls in LAYER_CLASSES:
                lines = {}
                for wide, lengths in class_chains(cls):
                    names = [layer_chain_name(ex, cls, n, wide) for n in lengths]
                    if all(n in self.runs for n in names):
                        lines[wide] = fit_line([(n, 1 / self.runs[name].best) for n, name in zip(lengths, names)])
                if False not in lines:
                    continue
                tiny = max(lines[False][1], 0.0)
                if tiny > 0:
                    terms["layer_us"][cls] = tiny * 1e6
                if cls == "linear" and lines[False][0] > 0:
                    terms["step_us"] = lines[False][0] * 1e6
                if cls == "linear" and True in lines:
                    # the first linear reads the input, so computes no input gradient: a third of a layer's work
                    # (its forward, input- and weight-gradient products do the same MACs) is missing from the
                    # intercept
                    loss = lines[True][0] + (lines[True][1] - tiny) / 3 - max(lines[False][0], 0.0)
                    if loss > 0:
                        terms["loss_us"] = loss * 1e6
                for wide, (_, slope) in lines.items():
                    if isinstance(wide, str) and SHAPES[wide].fixed:      # another path's fixed cost
                        if slope > 0:
                            terms["layer_us"][wide] = slope * 1e6
                    elif wide is not False and slope > tiny:
                        terms["wide_us" if wide is True else "shapes_us"][cls if wide is True else wide] = (
                            (slope - tiny) * 1e6)
            if not terms["shapes_us"]:
                del terms["shapes_us"]
            if terms["layer_us"] or terms["wide_us"]:
                out[ex] = {**terms, "threads": self.config.threads, **({"version": version} if version else {})}
        return out or None

    def ridge(self, precision: str) -> float:
        """The roofline's ridge point, FLOPs per byte: measured peak (GFLOP/s) / triad bandwidth (GB/s)."""
        return self.peak_measured(precision) / self.stream_gbs("triad")


# ---------------------------------------------------------------------------------------------------------------
# Timing

@dataclass(frozen=True)
class Job:
    """One figure to time: ``fn(reps)`` does ``reps`` units of ``work`` (an exact count of FLOPs, bytes or
    cycles) each; its rate is reported in ``unit`` (10**9 per second)."""
    name: str
    unit: str
    fn: object
    work: int


def _seconds(fn, reps: int) -> float:
    t0 = time.perf_counter()
    fn(reps)
    return time.perf_counter() - t0


def calibrate(fn, sample_s: float) -> int:
    """How many units ``fn(reps)`` needs to run for about ``sample_s`` seconds (after a first call that
    compiles or loads the kernel and touches the data)."""
    fn(1)
    reps, t = 1, _seconds(fn, 1)
    while t < sample_s / 4:
        reps = max(2 * reps, math.ceil(reps * sample_s / 2 / max(t, 1e-7)))
        t = _seconds(fn, reps)
    return max(1, round(reps * sample_s / t))


def measure(jobs, repeats: int, sample_s: float, calibrated: dict | None = None) -> dict:
    """{name: Series} of ``repeats`` rates per job. The jobs take turns, repeat by repeat (as STREAM's kernels
    do), so a slow spell of a shared machine lowers one repeat of each rather than every repeat of one.
    ``calibrated`` (job name -> units per sample) keeps calibrations for later rounds; a job calibrated before
    runs a quarter sample first, so that a core the previous step left idle is up to speed."""
    calibrated = {} if calibrated is None else calibrated
    counts = []
    for job in jobs:
        if job.name in calibrated:
            job.fn(max(1, calibrated[job.name] // 4))
        else:
            calibrated[job.name] = calibrate(job.fn, sample_s)
        counts.append(calibrated[job.name])
    samples: list[list[float]] = [[] for _ in jobs]
    for _ in range(repeats):
        for job, reps, out in zip(jobs, counts, samples):
            out.append(job.work * reps / _seconds(job.fn, reps) / 1e9)
    return {job.name: Series(job.name, job.unit, tuple(out)) for job, out in zip(jobs, samples)}


def on_threads(fn, args_per_thread) -> None:
    """Call ``fn(*args)`` for each args tuple at once, one thread each (fn must release the GIL)."""
    workers = [threading.Thread(target=fn, args=args) for args in args_per_thread]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


# ---------------------------------------------------------------------------------------------------------------
# The jobs

def _dtype(precision: str):
    import numpy as np

    return {"fp64": np.float64, "fp32": np.float32}[precision]


def fma_job(name: str, precision: str, lanes: int, chains: int, threads: int) -> Job:
    """``chains`` vector-width FMA chains (``lanes`` elements each) on ``threads`` threads at once:
    2 x DEPTH x chains x lanes FLOPs per pass and thread."""
    import numpy as np

    from .kernels import DEPTH, fma_kernel

    k = chains * lanes
    run = fma_kernel(k)
    dt = _dtype(precision)
    a, b = dt(1 - 2 ** -10), dt(2 ** -10)         # x -> 1: no overflow, no subnormals, however long
    accs = [np.linspace(0, 1, k).astype(dt) for _ in range(threads)]

    def fn(reps):
        on_threads(run, [(reps, a, b, acc) for acc in accs])

    return Job(name, "GFLOP/s", fn, 2 * DEPTH * k * threads)


def clock_job() -> Job:
    """The dependent add/xor chain on one core: CLOCK_OPS_PER_ITERATION cycles per iteration, so G-iterations x
    ops per second is the clock in GHz."""
    from .kernels import CLOCK_OPS_PER_ITERATION, clock_chain

    def fn(reps):
        clock_chain(reps, 1)

    return Job("clock_ghz", "GHz", fn, CLOCK_OPS_PER_ITERATION)


def gemm_job(precision: str, shape: GemmShape) -> Job:
    """numpy's matmul of ``shape``: 2 m k n FLOPs per call."""
    import numpy as np

    dt = _dtype(precision)
    a, b = np.full((shape.m, shape.k), 1 / 3, dt), np.full((shape.k, shape.n), 3 / 7, dt)   # BLAS speed does
    # not depend on the values (none is subnormal, inf or nan)
    out = np.empty((shape.m, shape.n), dt)

    def fn(reps):
        for _ in range(reps):
            np.matmul(a, b, out=out)

    return Job(f"gemm_{precision}_{shape.name}", "GFLOP/s", fn, shape.flops)


def chain_name(pairs: int) -> str:
    return f"executor_step_{pairs}pairs"


def chain_jobs(chain: CallChain, lengths) -> list:
    """A training step of each chain length; work 10**9 per step, so the figure reads in steps per second."""
    return [Job(chain_name(n), "steps/s", chain.steps(n), 10 ** 9) for n in lengths]


def layer_chain_name(executor: str, cls: str, n: int, wide: bool | str) -> str:
    """wide: False (tiny), True (the class's wide layer) or a shape's name (chains.SHAPES)."""
    return f"{executor}_{wide if isinstance(wide, str) else cls + ('_wide' if wide else '_tiny')}_{n}"


def class_chains(cls: str):
    """(wide, lengths) of every chain of the class: tiny, wide and its shapes (sizing/hardware/bench/chains.py)."""
    from .chains import LENGTHS, bench_layers

    return [(False, LENGTHS)] + bench_layers(cls)


def layer_chain_specs(executor: str, classes=None):
    """(name, class, n, wide) of every layer-class chain (sizing/hardware/bench/chains.py) of ``classes``
    (None: every class)."""
    from ..devices import LAYER_CLASSES

    return [(layer_chain_name(executor, cls, n, wide), cls, n, wide) for cls in classes or LAYER_CLASSES
            for wide, lengths in class_chains(cls) for n in lengths]


def layer_chain_jobs(chains: LayerChains, classes=None) -> list:
    """A training step of each layer-class chain through ``chains``; work 10**9 per step (steps per second)."""
    return [Job(name, "steps/s", chains.steps(cls, n, wide), 10 ** 9)
            for name, cls, n, wide in layer_chain_specs(chains.name, classes)]


def stream_jobs(elements: int) -> list:
    """STREAM's four kernels over three fp64 arrays of ``elements``, first touched by the threads that use them;
    bytes per call as STREAM counts them."""
    import numpy as np

    from . import kernels

    a, b, c = (np.empty(elements) for _ in range(3))
    for arr, value in zip((a, b, c), (1.0, 2.0, 0.0)):
        kernels.fill(arr, value)
    s = 3.0
    calls = {"copy": lambda: kernels.stream_copy(c, a), "scale": lambda: kernels.stream_scale(b, c, s),
             "add": lambda: kernels.stream_add(c, a, b), "triad": lambda: kernels.stream_triad(a, b, c, s)}

    def looped(call):
        def fn(reps):
            for _ in range(reps):
                call()
        return fn

    return [Job(f"stream_{k}", "GB/s", looped(calls[k]), STREAM_ARRAYS[k] * a.nbytes) for k in STREAM_KERNELS]


# ---------------------------------------------------------------------------------------------------------------
# numpy's BLAS: which library and kernel, and its threads

def _openblas_calls():
    """OpenBLAS's own C API in the loaded library (numpy's wheels ship scipy-openblas with prefixed, 64-bit
    integer symbols): {'corename': f, 'get_threads': f, 'set_threads': f}, or {} without OpenBLAS."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:
        return {}
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", "", "_64"):
                names = {"corename": f"{prefix}_get_corename{suffix}",
                         "get_threads": f"{prefix}_get_num_threads{suffix}",
                         "set_threads": f"{prefix}_set_num_threads{suffix}"}
                if all(hasattr(lib, n) for n in names.values()):
                    calls = {key: getattr(lib, n) for key, n in names.items()}
                    calls["corename"].restype = ctypes.c_char_p
                    return calls
    return {}


def blas_info() -> dict:
    """numpy's BLAS: library and version (numpy's build config), the kernel it chose for this CPU and its
    threads (threadpoolctl where installed, else OpenBLAS's C API), and OPENBLAS_CORETYPE when set (it
    overrides the kernel OpenBLAS would detect)."""
    import numpy as np

    info = {"library": None, "version": None, "kernel": None, "threads": None,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info.update(library=blas.get("name"), version=blas.get("version"))
    except (TypeError, KeyError):
        pass
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        calls = _openblas_calls()
        if calls:
            info.update(kernel=calls["corename"]().decode(), threads=calls["get_threads"]())
        return info
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            info.update(kernel=lib.get("architecture"), threads=lib.get("num_threads"))
            info["library"] = info["library"] or lib.get("internal_api")
            break
    return info


@contextmanager
def blas_threads(n: int):
    """numpy's BLAS uses ``n`` threads inside the block (threadpoolctl, else OpenBLAS's C API; else as it is)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        calls = _openblas_calls()
        before = calls["get_threads"]() if calls else None
        if calls:
            calls["set_threads"](n)
        try:
            yield
        finally:
            if calls:
                calls["set_threads"](before)
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


@contextmanager
def numba_threads(n: int):
    """Numba's parallel loops use ``n`` threads inside the block."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------------------

def prefer_wide_vectors(simd: str) -> bool:
    """Before Numba is imported: let LLVM use 512-bit vectors on an AVX-512 CPU. LLVM's tuning for Intel's
    AVX-512 cores prefers 256-bit vectors ('prefer-256-bit'), which halves the FMA peak the kernel can show;
    NUMBA_CPU_FEATURES = the host's features + '-prefer-256-bit' lifts it. Left alone when the user set
    NUMBA_CPU_NAME or NUMBA_CPU_FEATURES, or when Numba is already loaded. True when it was set."""
    if simd != "avx512+fma" or "numba" in sys.modules or any(
            k in os.environ for k in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")):
        return False
    import llvmlite.binding as llvm

    os.environ["NUMBA_CPU_FEATURES"] = llvm.get_host_cpu_features().flatten() + ",-prefer-256-bit"
    return True


def best_chains(runs: dict, precision: str, candidates) -> int:
    """The chain count whose 1-core series has the highest best."""
    return max(candidates, key=lambda c: runs[f"peak_{precision}_1core_{c}chains"].best)


def steps(config: BenchConfig, machine: Machine, runs: dict, chain: CallChain | None = None,
          layer_chains=()) -> list:
    """The run as (label, function) steps in order; each function returns {name: Series} of new repeats and may
    read the ``runs`` of the steps before it (the all-thread FMA runs the chain count that was best on one core
    when it first ran, in every round). The layer-call chains only with ``chain``; the layer-class chains of each
    of ``layer_chains`` (ours timed here; another interpreter's there, its repeats of the round in one run: a slow
    spell then lowers one round's repeats, not all of them)."""
    r, t = config.repeats, config.sample_s
    calibrated, chosen = {}, {}

    def clock():
        return measure([clock_job()], r, t / 2, calibrated)

    def chains(p):
        return chosen.setdefault(p, best_chains(runs, p, config.chains))

    out = [("clock", clock)]
    for p in PRECISIONS:
        lanes = SIMD_BITS[machine.simd] // PRECISION_BITS[p]
        out += [(f"FMA {p}, 1 core", lambda p=p, lanes=lanes: measure(
                    [fma_job(f"peak_{p}_1core_{c}chains", p, lanes, c, 1) for c in config.chains], r, t, calibrated)),
                ("clock", clock),
                (f"FMA {p}, {config.threads} threads", lambda p=p, lanes=lanes: measure(
                    [fma_job(f"peak_{p}_all", p, lanes, chains(p), config.threads)], r, t, calibrated))]
    out += [(f"GEMM {p}", lambda p=p: measure([gemm_job(p, s) for s in config.gemm], r, t, calibrated))
            for p in PRECISIONS]
    if chain is not None and len(config.chain_pairs) >= 2:
        built = {}          # the chains' models, made once (inside the run's thread settings), kept for later rounds

        def calls():
            if not built:
                built["jobs"] = chain_jobs(chain, config.chain_pairs)
            return measure(built["jobs"], r, t, calibrated)

        out.append(("layer calls", calls))
    for ex in layer_chains:
        if ex.steps is not None:
            made = {}

            def classes(ex=ex, made=made):
                if not made:
                    made["jobs"] = layer_chain_jobs(ex, config.classes)
                return measure(made["jobs"], r, t, calibrated)

            out.append((f"layer classes ({ex.name})", classes))
        elif ex.measure is not None:    # another interpreter (PyTorch): timed there once a round, repeats pooled
            out.append((f"layer classes ({ex.name}, its own interpreter)", lambda ex=ex: {
                name: Series(name, "steps/s", tuple(values)) for name, values in ex.measure(config).items()}))
    # memory bandwidth is the noisiest figure on a shared machine and its samples the cheapest: twice the repeats
    out.append(("STREAM", lambda: measure(stream_jobs(config.stream_elements), 2 * r, t, calibrated)))
    return out


def pool(runs: dict, new: dict) -> None:
    """Add each new Series' repeats to the figure's earlier ones."""
    for name, series in new.items():
        before = runs[name].values if name in runs else ()
        runs[name] = Series(name, series.unit, before + series.values)


def run_bench(config: BenchConfig, machine: Machine | None = None, progress=None,
              chain: CallChain | None = None, layer_chains=()) -> BenchResult:
    """Every measurement of ``config``, its steps ``config.rounds`` times; ``progress(done, total, label)`` is
    called before each step and at the end. ``chain``: our executor, to time its layer calls (else not timed)."""
    machine = machine or this_machine()
    machine.check_threads(config.threads)
    prefer_wide_vectors(machine.simd)
    runs: dict[str, Series] = {}
    first, *todo = steps(config, machine, runs, chain, layer_chains)
    todo = [(f"{label} (round {k + 1}/{config.rounds})" if config.rounds > 1 else label, fn)
            for k in range(config.rounds) for label, fn in todo]
    total = 1 + len(todo)
    progress = progress or (lambda done, total, label: None)
    progress(0, total, first[0])
    pool(runs, first[1]())             # the clock first, while no BLAS or Numba worker thread is spinning
    with numba_threads(config.threads), blas_threads(config.threads):
        for i, (label, fn) in enumerate(todo, 1):
            progress(i, total, label)
            pool(runs, fn())
        blas = blas_info()
    progress(total, total, "done")
    timed = chain is not None and len(config.chain_pairs) >= 2
    return BenchResult(machine, config, runs, blas, chain.kernels_per_pair if timed else None,
                       executors={ex.name: ex.version for ex in layer_chains} or None)
