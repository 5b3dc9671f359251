"""Issue 4's targets for `sizing bench`, measured on this machine; prints figures and ratios.

1. `sizing bench --quick`: wall time of the first (compiling: an empty NUMBA_CACHE_DIR) and of warm runs
   (target: warm under 5 s).
2. Two default `sizing bench` runs in fresh processes: each series' median in both and their difference, the
   same for the reported (JSON) figures, and for the compute figures per clock cycle (a hypervisor moves the
   clock between runs) (target: under 5% on an idle machine); the Numba FMA peaks against the theoretical
   peak (target: >= 90%) and against numpy's GEMM in the same run (target: >= 1).
3. STREAM triad against an independent reference: a C triad (a[i] = b[i] + s*c[i], OpenMP, gcc -O3
   -march=native) over the same array length and thread count, and a plain numpy `a[:] = b + s*c` (a floor:
   one thread and a temporary). Rounds alternate the C reference and sizing's triad so that a slow spell of
   a shared machine hits both (target: within 15% of the reference).

4. With --trace SECONDS: is this machine quiet enough for target 2 at all? sizing's triad, sampled without a
   break for SECONDS, as medians of 2-second windows; their spread is the drift of the memory bandwidth this
   host gives, which no measurement inside one run can remove.

    python benchmarks/bench_bench.py [--rounds 5] [--skip-full] [--trace 60]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

C_TRIAD = r"""
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    int reps = atoi(argv[2]);
    double *a = malloc(n * sizeof(double)), *b = malloc(n * sizeof(double)), *c = malloc(n * sizeof(double));
    const double s = 3.0;
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) { a[i] = 1.0; b[i] = 2.0; c[i] = 0.5; }
    for (int r = 0; r < reps; r++) {
        double t = omp_get_wtime();
        #pragma omp parallel for schedule(static)
        for (long i = 0; i < n; i++) a[i] = b[i] + s * c[i];
        t = omp_get_wtime() - t;
        printf("%.4f\n", 3.0 * sizeof(double) * n / t / 1e9);
    }
    for (long i = 0; i < n; i += n / 7 + 1) if (a[i] != 3.5) { fprintf(stderr, "wrong a[%ld]\n", i); return 1; }
    return 0;
}
"""


def sizing_bench(*args, env=None) -> tuple[dict, float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "sizing.cli", "bench", "--format", "json", "--no-save", *args],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out), time.perf_counter() - t0


def quick_times(warm_runs: int = 3) -> None:
    cache = tempfile.mkdtemp(prefix="numba-cache-")
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    try:
        _, cold = sizing_bench("--quick", env=env)
        warm = [sizing_bench("--quick", env=env)[1] for _ in range(warm_runs)]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(f"sizing bench --quick: first run (empty Numba cache, compiles) {cold:.2f} s; warm "
          f"min / median / max {min(warm):.2f} / {statistics.median(warm):.2f} / {max(warm):.2f} s "
          f"(target < 5 s: {'met' if statistics.median(warm) < 5 else 'NOT met'})")


def medians(d: dict) -> dict:
    return {name: statistics.median(v) for name, v in d["runs"].items()}


def headline(d: dict) -> dict:
    """The figures `sizing bench --format json` reports (clock, peaks, GEMM, STREAM), flat."""
    out = {"clock_ghz": d["clock_ghz"]}
    for key in ("peak_measured_gflops", "gemm_gflops", "stream_gbs"):
        out.update({f"{key}.{k}": v for k, v in d[key].items()})
    return out


def full_runs() -> None:
    (a, ta), (b, tb) = sizing_bench(), sizing_bench()
    print(f"\nsizing bench (default), two runs: {ta:.1f} s and {tb:.1f} s")
    ma, mb = medians(a), medians(b)
    print(f"{'figure (median of repeats)':38} {'run 1':>9} {'run 2':>9} {'diff':>7}")
    worst, diffs = 0.0, []
    for name in ma:
        diff = abs(ma[name] - mb[name]) / max(ma[name], mb[name])
        worst = max(worst, diff)
        diffs.append(diff)
        print(f"{name:38} {ma[name]:9.2f} {mb[name]:9.2f} {100 * diff:6.1f}%")
    print(f"largest run-to-run difference of a median: {100 * worst:.1f}%, median difference "
          f"{100 * statistics.median(diffs):.1f}% (target < 5%)")
    ha, hb = headline(a), headline(b)
    hd = {k: abs(ha[k] - hb[k]) / max(ha[k], hb[k]) for k in ha}
    print("the reported figures (--format json): " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in hd.items()))
    print(f"largest run-to-run difference of a reported figure: {100 * max(hd.values()):.1f}% (target < 5%)")
    per_cycle = {k: abs(ha[k] / a["clock_ghz"] - hb[k] / b["clock_ghz"]) / max(ha[k] / a["clock_ghz"],
                                                                          hb[k] / b["clock_ghz"])
                 for k in ha if k.startswith(("peak", "gemm"))}
    print(f"the same per clock cycle (the host moved the clock {100 * hd['clock_ghz']:.1f}% between the runs): "
          + ", ".join(f"{k} {100 * v:.1f}%" for k, v in per_cycle.items()))
    for label, d in (("run 1", a), ("run 2", b)):
        print(f"\n{label}: clock {d['clock_ghz']} GHz, {d['cores']} cores, {d['threads']} threads, {d['simd']}, "
              f"BLAS kernel {d['blas'].get('kernel')}")
        for p in ("fp64", "fp32"):
            peak, theory, gemm = (d["peak_measured_gflops"][p], d["peak_theoretical_gflops"][p],
                                  d["gemm_gflops"][p])
            print(f"  {p}: Numba peak {peak:.1f} / theoretical {theory:.1f} = {peak / theory:.3f} "
                  f"(target >= 0.90); Numba peak / numpy GEMM {gemm:.1f} = {peak / gemm:.2f} (target >= 1); "
                  f"1 core {d['one_core']['peak_measured_gflops'][p]:.1f} / "
                  f"{d['one_core']['peak_theoretical_gflops'][p]:.1f} = "
                  f"{d['one_core']['peak_measured_gflops'][p] / d['one_core']['peak_theoretical_gflops'][p]:.3f}")


def c_reference(elements: int, threads: int, reps: int, workdir: str) -> list[float] | None:
    exe = os.path.join(workdir, "triad")
    if not os.path.exists(exe):
        src = os.path.join(workdir, "triad.c")
        with open(src, "w") as f:
            f.write(C_TRIAD)
        cc = shutil.which("gcc") or shutil.which("cc")
        if not cc or subprocess.run([cc, "-O3", "-march=native", "-fopenmp", src, "-o", exe]).returncode:
            return None
    out = subprocess.run([exe, str(elements), str(reps)], check=True, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_PROC_BIND": "false"}).stdout
    return [float(x) for x in out.split()]


def numpy_floor(elements: int, reps: int) -> list[float]:
    import numpy as np

    a, b, c = np.ones(elements), np.full(elements, 2.0), np.full(elements, 0.5)
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        a[:] = b + 3.0 * c
        out.append(24 * elements / (time.perf_counter() - t) / 1e9)
    return out


def triad_vs_reference(rounds: int) -> None:
    from sizing.hardware.bench.measure import BenchConfig, measure, numba_threads, stream_jobs, this_machine

    machine = this_machine()
    config = BenchConfig.for_machine(machine)
    n, threads = config.stream_elements, config.threads
    ours, ref, floor = [], [], []
    with tempfile.TemporaryDirectory() as work:
        for _ in range(rounds):
            got = c_reference(n, threads, config.repeats, work)
            if got is None:
                print("\nno C compiler with OpenMP: no independent triad reference")
                return
            ref += got
            with numba_threads(threads):
                ours += measure(stream_jobs(n), config.repeats, config.sample_s)["stream_triad"].values
            floor += numpy_floor(n, config.repeats)
    print(f"\nSTREAM triad, {n * 8 // 2 ** 20} MiB per array, {threads} threads, {rounds} alternating rounds "
          f"of {config.repeats} repeats (GB/s):")
    print(f"{'':28} {'min':>7} {'median':>7} {'best':>7}")
    for label, v in (("C reference (gcc, OpenMP)", ref), ("sizing bench (Numba)", ours),
                     ("numpy a[:] = b + s*c", floor)):
        print(f"{label:28} {min(v):7.1f} {statistics.median(v):7.1f} {max(v):7.1f}")
    best, med = max(ours) / max(ref), statistics.median(ours) / statistics.median(ref)
    print(f"sizing / C reference: best {best:.3f}, median {med:.3f} (the reported figure is the median; target "
          f"within 15%: {'met' if abs(med - 1) <= 0.15 else 'NOT met'}); sizing / numpy floor (median): "
          f"{statistics.median(ours) / statistics.median(floor):.2f}")


def bandwidth_trace(seconds: float, window_s: float = 2.0) -> None:
    from sizing.hardware.bench.measure import BenchConfig, calibrate, numba_threads, stream_jobs, this_machine

    machine = this_machine()
    config = BenchConfig.for_machine(machine)
    triad = stream_jobs(config.stream_elements)[3]
    windows, current, start = [], [], time.perf_counter()
    with numba_threads(config.threads):
        reps = calibrate(triad.fn, config.sample_s)
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            triad.fn(reps)
            current.append(triad.work * reps / (time.perf_counter() - t) / 1e9)
            if time.perf_counter() - start >= window_s * (len(windows) + 1):
                windows.append(statistics.median(current))
                current = []
    print(f"\nSTREAM triad for {seconds:.0f} s, medians of {window_s:.0f}-second windows (GB/s): "
          + " ".join(f"{w:.1f}" for w in windows))
    print(f"spread of the window medians: min {min(windows):.1f}, max {max(windows):.1f} "
          f"({100 * (max(windows) - min(windows)) / max(windows):.1f}% of the max; two runs of `sizing bench` can "
          "differ by up to that)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of the triad comparison")
    p.add_argument("--skip-full", action="store_true", help="skip the two default runs (about 40 s)")
    p.add_argument("--trace", type=float, default=0, metavar="SECONDS", help="trace the triad bandwidth")
    a = p.parse_args()
    quick_times()
    if not a.skip_full:
        full_runs()
    triad_vs_reference(a.rounds)
    if a.trace:
        bandwidth_trace(a.trace)


if __name__ == "__main__":
    main()
