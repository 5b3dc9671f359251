"""This machine as a device record: ``sizing bench`` turns its result into a ``sizing.hardware.devices.Device`` (hwdb
format, hwdb/README.md), keeps it as the profile $XDG_CACHE_HOME/sizing/local.yaml (the device 'local') and,
with ``--save FILE``, writes it where the user says.

A record's ``model`` ends with the cores it was measured on ('EPYC (2 cores)'): a profile whose model is not this
machine's (another CPU, another core count) is stale; one that does not load is corrupt. ``local_device`` never
trusts either: it says so on stderr and measures again.
"""
from __future__ import annotations

import os
import re
import sys

import yaml

from ..devices import LOCAL_ID, Device, device_from_record, local_profile_path, read_records, to_yaml
from ...common.errors import SizingError
from ...common.files import write_text
from .cpu import vendor_name
from .measure import PRECISIONS, STREAM_KERNELS, BenchConfig, BenchResult, Machine, run_bench, this_machine


def profile_model(machine: Machine, cores: int | None = None) -> str:
    """The record's model: the CPU's name less its vendor, and the cores measured (default: all usable)."""
    vendor = vendor_name(machine.cpu)
    name = machine.cpu.model_name
    if name.lower().startswith(vendor.lower() + " "):
        name = name[len(vendor) + 1:]
    n = machine.cores if cores is None else cores
    return f"{name} ({n} core{'' if n == 1 else 's'})"


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def to_device(result: BenchResult, device_id: str = LOCAL_ID) -> Device:
    """The measured machine as a CPU record of sustained figures, the ones a step-time prediction divides by:
    ``peak_tflops`` = numpy's GEMM (the best median over the square sizes), ``memory_bw_gbs`` = the STREAM
    triad (median repeat), ``memory_gb`` = /proc/meminfo's MemTotal. The notes keep the FMA peak and the
    theoretical peak, so the record says how far real layers sit below the machine's limit."""
    m, r = result.machine, result
    how = f"`sizing bench` on {r.date}, {r.config.threads} threads, {r.config.samples} repeats"
    theory = "; ".join(f"{p} {r.cores_used} cores x {r.clock_ghz:.2f} GHz x {r.flops_per_cycle(p)} = "
                       f"{r.peak_theoretical(p):.1f} GFLOP/s" for p in PRECISIONS)
    notes = (f"Measured, not a datasheet. Theoretical peak ({m.microarch.name}, {m.simd}): {theory}. "
             "FMA kernel peak: " + ", ".join(f"{p} {r.peak_measured(p):.1f}" for p in PRECISIONS)
             + " GFLOP/s. STREAM (GB/s): " + ", ".join(f"{k} {r.stream_gbs(k):.1f}" for k in STREAM_KERNELS) + ".")
    blas = f"{r.blas.get('library')} {r.blas.get('kernel') or ''}".strip()
    sources = {"record": f"measured by {how}",
               "peak_tflops": f"numpy matmul ({blas}), best median over square sizes "
                              + ", ".join(str(s.n) for s in r.config.gemm if s.square),
               "memory_bw_gbs": f"STREAM triad over {r.config.stream_elements * 8 // 2 ** 20} MiB arrays, median"}
    if m.memory_bytes:
        sources["memory_gb"] = "/proc/meminfo MemTotal"
    sources["gemm_sweep"] = "numpy matmul, median rate of each shape timed"
    calls = r.call_overhead()
    if calls:
        lengths = ", ".join(map(str, r.config.chain_pairs))
        sources["call_overhead_us"] = (f"our executor's training step over chains of {lengths} tiny (linear, relu) "
                                       f"pairs: slope / {r.kernels_per_pair} kernels a pair")
        sources["step_overhead_us"] = "the same line's intercept"
    executors = r.executor_terms()
    if executors:
        sources["executors"] = ("per executor and layer class (sizing/hardware/bench/chains.py): the slope of the "
                                "line through the best steps of chains of tiny layers (layer_us; the linear "
                                "chain's intercept: step_us) and of wide ones and other shapes, less the tiny slope "
                                "(wide_us, shapes_us)")
        executors = {ex: {k: ({c: _sig(v) for c, v in t.items()} if isinstance(t, dict) else
                              _sig(t) if isinstance(t, float) else t) for k, t in terms.items()}
                     for ex, terms in executors.items()}
    return Device(id=device_id, vendor=vendor_name(m.cpu), model=profile_model(m, r.cores_used), kind="cpu",
                  memory_gb=_sig(m.memory_bytes / 1e9) if m.memory_bytes else None,
                  memory_bw_gbs=_sig(r.stream_gbs("triad")),
                  peak_tflops={p: _sig(r.gemm_best(p) / 1000) for p in PRECISIONS},
                  call_overhead_us=_sig(calls.kernel_s * 1e6) if calls else None,
                  step_overhead_us=_sig(max(calls.step_s * 1e6, 0.001)) if calls else None,
                  gemm_sweep={p: [[m, k, n, _sig(g)] for m, k, n, g in r.gemm_sweep(p)] for p in PRECISIONS},
                  executors=executors,
                  sources=sources, notes=notes)


def device_id_for(path: str) -> str:
    """The id ``--save FILE`` gives the record: FILE's name as a slug ('My Server.yaml' -> 'my-server')."""
    stem = os.path.splitext(os.path.basename(path))[0].lower()
    return re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._") or LOCAL_ID


def require_writable(path: str) -> None:
    """SizingError, one line, before anything is measured, when a record could not be written at ``path``: a
    directory, a pipe or a device is there, or its folder can be neither found nor made (a file in the way, no
    write permission)."""
    if os.path.lexists(path) and not os.path.isfile(path):
        raise SizingError("is not a regular file (a directory, pipe or device); give a file to write", path)
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise SizingError(f"cannot write: {folder} is a file, not a folder", path)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SizingError(f"cannot write: the folder {folder} is not writable", path)


def write_device(device: Device, path: str, keep_others: bool) -> None:
    """Write ``device`` as a hardware file at ``path`` (its folder made when missing), through a temporary file
    renamed into place (none is left behind when a write fails). With ``keep_others`` an existing hardware file
    keeps its other records (the one with the same id is replaced); a file that is not one is refused."""
    records = []
    if keep_others and os.path.exists(path):
        records = [rec for rec, _, _ in read_records(path) if rec["id"] != device.id]
    text = to_yaml([device])
    if records:
        text = yaml.safe_dump({"devices": records + [device.to_record()]}, sort_keys=False, allow_unicode=True,
                              width=110)
    require_writable(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as e:
        raise SizingError(f"cannot write: {e.strerror}", path) from None
    write_text(path, text, force=True, what="sizing bench")


def check_profile(path: str, machine: Machine) -> tuple[Device | None, str | None]:
    """(the profile, None) when ``path`` holds this machine's; (None, why) when it is corrupt or stale;
    (None, None) when there is none."""
    if not os.path.exists(path):
        return None, None
    try:
        records = read_records(path)
        if [rec["id"] for rec, _, _ in records] != [LOCAL_ID]:
            return None, f"corrupt: holds {len(records)} records, not the one device '{LOCAL_ID}'"
        rec, at, lines = records[0]
        device = device_from_record(rec, path, lines, at)
    except SizingError as e:
        return None, f"corrupt: {e}"
    expected = profile_model(machine)
    if device.model != expected:
        return None, f"stale: measured on '{device.model}', this machine is '{expected}'"
    for precision, tflops in device.peak_tflops.items():
        bound = physical_bound_tflops(machine, precision)
        if bound is not None and tflops > bound:
            return None, (f"corrupt: claims {tflops:,.4g} TFLOP/s {precision}, more than this machine's "
                          f"{machine.cores} cores can do ({bound:,.4g} at {MAX_CLOCK_GHZ:g} GHz)")
    return device, None


MAX_CLOCK_GHZ = 6.0          # no shipping CPU core sustains more (a bound, not a measurement)


def physical_bound_tflops(machine: Machine, precision: str) -> float | None:
    """What ``machine``'s physical cores could do at most in ``precision``: cores x MAX_CLOCK_GHZ x the
    microarchitecture's FLOPs per cycle (TFLOP/s); None for a precision the table does not describe."""
    try:
        per_cycle = machine.microarch.flops_per_cycle(precision)
    except KeyError:
        return None
    return machine.cores * MAX_CLOCK_GHZ * per_cycle / 1000


def local_device(quick: bool = True, say=None) -> Device:
    """This machine's profile from the cache when it is this machine's; else (missing, corrupt or stale, said
    on stderr) measured again with ``sizing bench --quick`` settings and saved. For ``--device local``."""
    say = say or (lambda text: print(text, file=sys.stderr))
    machine, path = this_machine(), local_profile_path()
    device, problem = check_profile(path, machine)
    if device:
        return device
    require_writable(path)
    say(f"{path}: {problem}; measuring this machine again" if problem
        else f"no bench profile yet ({path}); measuring this machine")
    device = to_device(run_bench(BenchConfig.for_machine(machine, quick=quick), machine))
    write_device(device, path, keep_others=False)
    return device
