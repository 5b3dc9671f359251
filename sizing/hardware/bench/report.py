"""``sizing bench``'s output: the JSON document and the table (pure)."""
from __future__ import annotations

from .cpu import vendor_name
from .measure import PRECISIONS, STREAM_KERNELS, BenchResult, chain_name


def _r(x: float, digits: int = 2) -> float:
    return round(x, digits)


def to_dict(r: BenchResult) -> dict:
    """The keys of issue 4 (peaks, GEMM, STREAM, ridge, the raw ``runs``), plus the microarchitecture and its
    source, numpy's BLAS, one-core peaks and the GEMM shapes. GFLOP/s, GB/s, GHz; theoretical peaks count
    the physical cores the threads fill."""
    m = r.machine
    per = {p: {} for p in ("flops_per_cycle", "peak_theoretical_gflops", "peak_measured_gflops", "gemm_gflops",
                           "ridge_flops_per_byte")}
    for p in PRECISIONS:
        per["flops_per_cycle"][p] = r.flops_per_cycle(p)
        per["peak_theoretical_gflops"][p] = _r(r.peak_theoretical(p))
        per["peak_measured_gflops"][p] = _r(r.peak_measured(p))
        per["gemm_gflops"][p] = _r(r.gemm_best(p))
        per["ridge_flops_per_byte"][p] = _r(r.ridge(p))
    return {
        "cpu": m.cpu.model_name,
        "vendor": vendor_name(m.cpu),
        "cores": m.cores,
        "threads": r.config.threads,
        "clock_ghz": _r(r.clock_ghz, 3),
        "simd": m.simd,
        **{k: per[k] for k in ("flops_per_cycle", "peak_theoretical_gflops", "peak_measured_gflops",
                               "gemm_gflops")},
        "stream_gbs": {k: _r(r.stream_gbs(k)) for k in STREAM_KERNELS},
        "ridge_flops_per_byte": per["ridge_flops_per_byte"],
        "microarch": {"name": m.microarch.name, "fma_units": m.microarch.units,
                      "width_bits": m.microarch.width_bits, "source": m.microarch.source},
        "one_core": {"peak_theoretical_gflops": {p: _r(r.peak_theoretical(p, 1)) for p in PRECISIONS},
                     "peak_measured_gflops": {p: _r(r.peak_series(p, "1core").best) for p in PRECISIONS},
                     "fma_chains": {p: r.chains(p) for p in PRECISIONS}},
        "gemm_shapes": {s.name: {"m": s.m, "k": s.k, "n": s.n, "flops": s.flops} for s in r.config.gemm},
        "blas": r.blas,
        "stream_array_bytes": r.config.stream_elements * 8,
        "sampling": {"rounds": r.config.rounds, "repeats_per_round": r.config.repeats, "sample_s": r.config.sample_s,
                     "statistic": {"peak_measured_gflops": "best", "gemm_gflops": "best median over the square sizes",
                                   "stream_gbs": "median"}},
        "call_overhead_us": _overhead(r),
        "executors": r.executor_terms(),
        "date": r.date,
        "runs": {name: [_r(v, 3) for v in s.values] for name, s in r.runs.items()},
    }


def _overhead(r: BenchResult) -> dict | None:
    """{'kernel': us per kernel call, 'step': us per step} of our executor; None when not timed."""
    o = r.call_overhead()
    return None if o is None else {"kernel": _r(o.kernel_s * 1e6, 3), "step": _r(o.step_s * 1e6, 1)}


def _row(label: str, s, peak: float | None = None, value=None) -> list:
    shown = s.best if value is None else value
    return [label, f"{s.min:,.1f}", f"{s.median:,.1f}", f"{s.best:,.1f}", s.unit,
            f"{100 * shown / peak:.1f}%" if peak else ""]


def table(r: BenchResult) -> str:
    """The inputs of the theoretical peak, then every figure (min / median / best) with its share of the peak
    (FMA rows: best; GEMM rows: median), then the roofline's ridge point (measured peak / median triad)."""
    from tabulate import tabulate

    m, ua = r.machine, r.machine.microarch
    cpu = m.cpu
    clock = r.runs["clock_ghz"]
    head = [
        f"CPU      {cpu.model_name}: {ua.name}, {m.simd}, {m.cores} cores in the affinity mask, "
        f"{r.config.threads} threads" + (", under a hypervisor" if cpu.hypervisor else ""),
        f"clock    {r.clock_ghz:.2f} GHz measured (best of {len(clock.values)}; median {clock.median:.2f})"
        + (f"; /proc/cpuinfo says {cpu.mhz:.0f} MHz" if cpu.mhz else ""),
        f"BLAS     {r.blas.get('library')} {r.blas.get('version') or ''}, kernel {r.blas.get('kernel') or '?'}"
        + (f" (OPENBLAS_CORETYPE={r.blas['OPENBLAS_CORETYPE']})" if r.blas.get("OPENBLAS_CORETYPE") else "")
        + f", {r.blas.get('threads') or '?'} threads",
        "",
        f"theoretical peak = cores x clock x FLOPs/cycle; FLOPs/cycle = {ua.units} "
        f"{'FMA' if ua.fma else 'add/multiply'} pipes x {ua.width_bits} bit / element bits{' x 2' if ua.fma else ''}",
    ]
    for p in PRECISIONS:
        head.append(f"  {p}  {r.cores_used} x {r.clock_ghz:.2f} GHz x {r.flops_per_cycle(p)} = "
                    f"{r.peak_theoretical(p):,.1f} GFLOP/s  (1 core: {r.peak_theoretical(p, 1):,.1f})")
    head.append(f"  source: {ua.source}")
    rows = []
    for p in PRECISIONS:
        rows.append(_row(f"FMA {p}, 1 core ({r.chains(p)} chains)", r.peak_series(p, "1core"),
                         r.peak_theoretical(p, 1)))
        rows.append(_row(f"FMA {p}, {r.config.threads} threads", r.peak_series(p, "all"), r.peak_theoretical(p)))
    for p in PRECISIONS:
        for s in r.config.gemm:
            series = r.gemm_series(p, s)
            rows.append(_row(f"GEMM {p} {s.name} ({s.m}x{s.k}x{s.n})", series, r.peak_theoretical(p),
                             series.median))
    for k in STREAM_KERNELS:
        rows.append(_row(f"STREAM {k}", r.runs[f"stream_{k}"], value=r.stream_gbs(k)))
    for n in (r.config.chain_pairs if r.kernels_per_pair else ()):
        rows.append(_row(f"executor step, {n} (linear, relu) pairs", r.runs[chain_name(n)]))
    body = tabulate(rows, ["figure", "min", "median", "best", "unit", "of peak"], tablefmt="simple",
                    disable_numparse=True, colalign=("left", "right", "right", "right", "left", "right"))
    ridge = "; ".join(f"{p} {r.peak_measured(p):,.1f} GFLOP/s / {r.stream_gbs('triad'):,.1f} GB/s = "
                      f"{r.ridge(p):.1f} FLOP/byte" for p in PRECISIONS)
    o = r.call_overhead()
    calls = ([] if o is None else [f"executor overhead (line through the chains' best steps): "
                                   f"{o.kernel_s * 1e6:.2f} us per kernel call ({r.kernels_per_pair} a pair), "
                                   f"{o.step_s * 1e6:.0f} us per step"])
    for ex, terms in (r.executor_terms() or {}).items():
        shapes = ", ".join(f"{sh} {us:.4g}" for sh, us in terms.get("shapes_us", {}).items())
        calls.append(f"{ex}{' (' + terms['version'] + ')' if terms.get('version') else ''}: per layer class, fixed us "
                     "per layer in a step / us of work of the bench's wide layer: " + ", ".join(
                         f"{c} {us:.3g}/{terms['wide_us'][c]:.4g}" if c in terms["wide_us"] else f"{c} {us:.3g}"
                         for c, us in terms["layer_us"].items()) + f"; {terms.get('step_us', 0):.3g} us per step"
                     + (f"; us of work of its other shapes: {shapes}" if shapes else ""))
    return "\n".join(head + ["", body, "", f"ridge point (measured peak / median triad): {ridge}"] + calls)
