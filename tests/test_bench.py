"""`sizing bench`: the kernels compute what their closed forms say, the theoretical-peak table reproduces
published and hwdb peaks, the rate arithmetic is right on a fake clock, the profile round-trips through the hwdb
loader and is re-measured when stale or corrupt, and the JSON has the issue's keys. Tiny sizes only: speed is
measured by benchmarks/bench_bench.py, never here."""
from __future__ import annotations

import json
import os
import statistics

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from sizing.hardware.bench import cpu as cpumod
from sizing.hardware.bench import kernels, profile
from sizing.hardware.bench import measure as measure_mod
from sizing.hardware.bench.cpu import (ARM_TABLE, X86_TABLE, CpuInfo, clean_model_name, count_cores, microarch,
    parse_cpuinfo, peak_gflops, simd_level)
from sizing.hardware.bench.measure import (CONV3X3, LINEAR_B8, BenchConfig, BenchResult, Job, Machine, Series,
    measure, run_bench, square)
from sizing.hardware.bench.report import table, to_dict
from sizing.cli import main
from sizing.hardware.devices import LOCAL_ID, load_hwdb, local_profile_path, shipped_devices



# ---------------------------------------------------------------- kernels against closed forms

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fma_kernel_with_a_one_adds_m_times_b_exactly(dtype):
    k, n = 64, 50
    x0 = np.arange(k, dtype=dtype)
    out = kernels.fma_kernel(k)(n, dtype(1), dtype(0.25), x0.copy())
    m = kernels.DEPTH * n                           # multiply-adds applied to each element
    assert out.dtype == dtype and np.array_equal(out, x0 + m * 0.25)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_fma_kernel_equals_the_geometric_closed_form(dtype, rtol):
    k, n, a, b = 128, 3, 0.75, 1.5
    x0 = np.linspace(-4, 4, k)
    out = kernels.fma_kernel(k)(n, dtype(a), dtype(b), x0.astype(dtype))
    m = kernels.DEPTH * n
    expected = a ** m * x0 + b * (1 - a ** m) / (1 - a)     # x_m of x <- a x + b
    np.testing.assert_allclose(out, expected, rtol=rtol)


def test_clock_chain_equals_python_integers_mod_2_to_64():
    x = 12345
    for _ in range(1000):                                   # brute force with Python's unbounded ints
        x = ((x + kernels._ADD) % 2 ** 64) ^ kernels._XOR
    signed = x - 2 ** 64 if x >= 2 ** 63 else x
    assert kernels.clock_chain(1000, 12345) == signed


def test_stream_kernels_compute_stream():
    n, s = 1001, 3.0
    rng = np.random.default_rng(1)
    a, b, c = rng.random(n), rng.random(n), rng.random(n)
    out = np.empty(n)
    kernels.stream_triad(out, b, c, s)
    np.testing.assert_array_equal(out, b + s * c)
    kernels.stream_add(out, a, b)
    np.testing.assert_array_equal(out, a + b)
    kernels.stream_scale(out, c, s)
    np.testing.assert_array_equal(out, s * c)
    kernels.stream_copy(out, a)
    np.testing.assert_array_equal(out, a)
    kernels.fill(out, 7.0)
    assert (out == 7.0).all()


def test_measure_on_a_fake_clock(monkeypatch):
    """fn(reps) takes 2 ms per unit of work on a virtual clock, a second job 5 ms: every rate is work / time per
    unit, a sample lasts about sample_s, and the jobs take turns."""
    now, calls = [0.0], []
    monkeypatch.setattr(measure_mod.time, "perf_counter", lambda: now[0])

    def job(name, seconds):
        def fn(reps):
            calls.append((name, reps))
            now[0] += seconds * reps
        return Job(name, "GFLOP/s", fn, 3_000_000_000)

    got = measure([job("a", 0.002), job("b", 0.005)], repeats=4, sample_s=0.5)
    assert got["a"].values == pytest.approx((3 / 0.002,) * 4) and got["b"].values == pytest.approx((3 / 0.005,) * 4)
    assert calls[-8:] == [("a", 250), ("b", 100)] * 4       # 250 x 2 ms = 100 x 5 ms = the 0.5 s sample


@pytest.mark.parametrize("shape, spec", [
    (CONV3X3, "input: [256, 14, 14]\nlayers:\n  - {op: conv2d, out_channels: 256, kernel_size: 3, padding: 1, "
              "bias: false}\n"),
    (LINEAR_B8, "input: [4096]\nlayers:\n  - {op: linear, out_features: 4096, bias: false}\n")])
def test_layer_shaped_products_do_the_layers_flops(shape, spec, tmp_path):
    """The GEMM shapes are the layers they stand for: sizing's own count of that layer at batch 8."""
    import sizing

    path = tmp_path / "layer.yaml"
    path.write_text("name: layer\n" + spec)
    assert shape.flops == sizing.estimate(str(path), batch=8).to_dict()["forward"]["flops"]


# ---------------------------------------------------------------- theoretical peak: table, sources, arithmetic

def x86(vendor, family, model, flags=("avx2", "fma", "avx512f"), name="cpu"):
    return CpuInfo(arch="x86_64", vendor=vendor, model_name=name, flags=frozenset(flags), family=family,
                   model=model)


# hwdb's CPU records (their fp64 peaks are vendor figures or derived by the hwdb's authors from vendor core
# counts and base clocks, hwdb/reference): (id, this core's CPUID identity, cores, base GHz)
PUBLISHED = [
    ("epyc-9654", x86("AuthenticAMD", 0x19, 0x11), 96, 2.4),        # Genoa, Zen 4
    ("epyc-9754", x86("AuthenticAMD", 0x19, 0xA0), 128, 2.25),      # Bergamo, Zen 4c
    ("epyc-7763", x86("AuthenticAMD", 0x19, 0x01, ("avx2", "fma")), 64, 2.45),   # Milan, Zen 3
    ("xeon-8480plus", x86("GenuineIntel", 6, 0x8F), 56, 2.0),      # Sapphire Rapids
    ("xeon-6980p", x86("GenuineIntel", 6, 0xAD), 128, 2.0),        # Granite Rapids
    ("xeon-8380", x86("GenuineIntel", 6, 0x6A), 40, 2.3),          # Ice Lake-SP
    ("grace-superchip", CpuInfo(arch="aarch64", vendor="", model_name="", flags=frozenset({"asimd", "sve"}),
                                implementer=0x41, part=0xD4F), 144, 3.1),   # NVIDIA: 7.1 TFLOP/s fp64
]


@pytest.mark.parametrize("device_id, cpu, cores, ghz", PUBLISHED)
def test_table_reproduces_published_cpu_peaks(device_id, cpu, cores, ghz):
    published = {d.id: d for d in shipped_devices()}[device_id].peak_tflops
    ua = microarch(cpu)
    assert not ua.name.startswith("unknown")
    for p in ("fp64", "fp32"):
        ours = peak_gflops(cores, ghz, ua.flops_per_cycle(p)) / 1000
        assert ours == pytest.approx(published[p], rel=0.01), (p, ours, published[p])   # as printed


def test_flops_per_cycle_is_units_times_lanes_times_two():
    # Haswell: 2 FMA x 4 fp64 lanes x 2; Zen 1: 2 FMA x 2 lanes x 2; Skylake-SP: 2 x 8 x 2 (fp32 twice as many)
    for cpu, fp64 in ((x86("GenuineIntel", 6, 0x3F), 16), (x86("AuthenticAMD", 0x17, 0x01), 8),
                      (x86("GenuineIntel", 6, 0x55), 32), (x86("AuthenticAMD", 0x1A, 0x02), 32)):
        assert microarch(cpu).flops_per_cycle("fp64") == fp64
        assert microarch(cpu).flops_per_cycle("fp32") == 2 * fp64


def test_every_table_entry_has_a_source_and_each_core_matches_one_entry():
    for *_, ua in X86_TABLE + tuple((i, p, u) for i, p, u in ARM_TABLE):
        assert ua.source.strip() and ua.units >= 1 and ua.width_bits in (128, 256, 512)
    seen = {}
    for vendor, family, models, ua in X86_TABLE:
        for model in models:
            assert (vendor, family, model) not in seen, (ua.name, seen.get((vendor, family, model)))
            seen[(vendor, family, model)] = ua.name


@pytest.mark.parametrize("flags, level, fp64", [
    (("avx512f", "avx2", "fma", "avx"), "avx512+fma", 32), (("avx2", "fma", "avx"), "avx2+fma", 16),
    (("avx",), "avx", 8), (("sse2",), "sse2", 4)])
def test_unknown_cores_fall_back_on_their_simd_flags(flags, level, fp64):
    cpu = x86("GenuineIntel", 6, 0x01, flags)
    assert simd_level(cpu) == level
    ua = microarch(cpu)
    assert ua.flops_per_cycle("fp64") == fp64 and "assumed" in ua.source


X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 106
model name\t: Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz
cpu MHz\t\t: 2300.000
flags\t\t: fpu sse2 avx avx2 fma avx512f hypervisor

processor\t: 1
vendor_id\t: AuthenticAMD
"""

ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 2000.00
Features\t: fp asimd evtstrm sve
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd4f
"""


def test_parse_cpuinfo_x86_and_arm():
    c = parse_cpuinfo(X86_CPUINFO, "x86_64")
    assert (c.vendor, c.family, c.model, c.model_name, c.mhz) == (
        "GenuineIntel", 6, 0x6A, "Intel Xeon Platinum 8380", 2300.0)
    assert c.hypervisor and simd_level(c) == "avx512+fma" and microarch(c).name == "Ice Lake-SP"
    a = parse_cpuinfo(ARM_CPUINFO, "aarch64")
    assert (a.implementer, a.part, a.model_name, simd_level(a)) == (0x41, 0xD4F, "Neoverse V2", "sve")
    assert cpumod.vendor_name(a) == "Arm" and cpumod.vendor_name(c) == "Intel"
    assert clean_model_name("AMD EPYC 7763 64-Core Processor") == "AMD EPYC 7763 64-Core Processor"


def test_smt_siblings_count_as_one_core():
    assert count_cores({0: ("0", "0"), 1: ("0", "1"), 2: ("0", "0"), 3: ("0", "1")}) == 2
    assert count_cores({0: ("0", "0"), 1: ("1", "0")}) == 2            # same core id, other package
    assert count_cores({0: None, 1: None}) == 2


# ---------------------------------------------------------------- a result without measuring

def fake_result(cores=2, threads=2, name="AMD EPYC 9654 96-Core Processor", memory=64 * 10 ** 9):
    cpu = x86("AuthenticAMD", 0x19, 0x11, name=name)                    # Zen 4: 16 fp64 FLOPs/cycle
    machine = Machine(cpu, microarch(cpu), simd_level(cpu), tuple(range(threads)), cores, 32 * 2 ** 20, memory)
    config = BenchConfig(threads=threads, repeats=3, gemm=(square(64), square(128), CONV3X3), chains=(8, 12),
                         stream_elements=1 << 20)
    series = {
        "clock_ghz": (2.9, 3.0, 2.8),
        "peak_fp64_1core_8chains": (40.0, 45.0, 44.0), "peak_fp64_1core_12chains": (46.0, 47.0, 45.0),
        "peak_fp64_all": (90.0, 92.0, 91.0),
        "peak_fp32_1core_8chains": (95.0, 94.0, 93.0), "peak_fp32_1core_12chains": (90.0, 91.0, 92.0),
        "peak_fp32_all": (180.0, 185.0, 183.0),
        "gemm_fp64_n64": (10.0, 20.0, 30.0), "gemm_fp64_n128": (50.0, 60.0, 55.0),
        "gemm_fp64_conv3x3_c256_14x14_b8": (70.0, 70.0, 70.0),
        "gemm_fp32_n64": (20.0, 40.0, 60.0), "gemm_fp32_n128": (100.0, 120.0, 110.0),
        "gemm_fp32_conv3x3_c256_14x14_b8": (1.0, 1.0, 1.0),
        "stream_copy": (20.0, 22.0, 21.0), "stream_scale": (19.0, 20.0, 21.0),
        "stream_add": (23.0, 22.0, 24.0), "stream_triad": (22.5, 23.0, 20.0),
    }
    runs = {k: Series(k, "GHz" if k == "clock_ghz" else "x", v) for k, v in series.items()}
    blas = {"library": "openblas", "version": "0", "kernel": "Haswell", "threads": threads,
            "OPENBLAS_CORETYPE": None}
    return BenchResult(machine, config, runs, blas, date="2025-01-02")


ISSUE_KEYS = {"cpu": None, "cores": None, "threads": None, "clock_ghz": None, "simd": None,
              "flops_per_cycle": ("fp64", "fp32"), "peak_theoretical_gflops": ("fp64", "fp32"),
              "peak_measured_gflops": ("fp64", "fp32"), "gemm_gflops": ("fp64", "fp32"),
              "stream_gbs": ("copy", "scale", "add", "triad"), "ridge_flops_per_byte": ("fp64", "fp32"),
              "runs": None}


def test_json_has_the_issue_keys_and_figures_follow_from_the_runs():
    d = json.loads(json.dumps(to_dict(fake_result())))
    for key, sub in ISSUE_KEYS.items():
        assert key in d, key
        if sub:
            assert set(d[key]) == set(sub), key
    assert (d["cores"], d["threads"], d["clock_ghz"], d["simd"]) == (2, 2, 3.0, "avx512+fma")
    assert d["flops_per_cycle"] == {"fp64": 16, "fp32": 32}
    assert d["peak_theoretical_gflops"] == {"fp64": 2 * 3.0 * 16, "fp32": 2 * 3.0 * 32}
    assert d["peak_measured_gflops"] == {"fp64": 92.0, "fp32": 185.0}            # best repeat
    assert d["gemm_gflops"] == {"fp64": 55.0, "fp32": 110.0}       # best median of the square sizes only
    assert d["stream_gbs"] == {"copy": 21.0, "scale": 20.0, "add": 23.0, "triad": 22.5}     # median repeat
    assert d["ridge_flops_per_byte"] == {"fp64": round(92 / 22.5, 2), "fp32": round(185 / 22.5, 2)}
    assert d["one_core"]["fma_chains"] == {"fp64": 12, "fp32": 8}
    assert d["runs"]["peak_fp64_1core_8chains"] == [40.0, 45.0, 44.0]
    text = table(fake_result())
    assert "2 x 3.00 GHz x 16 = 96.0 GFLOP/s" in text and "STREAM triad" in text


def test_theoretical_peak_counts_physical_cores_not_smt_threads():
    r = fake_result(cores=2, threads=4)
    assert r.cores_used == 2 and r.peak_theoretical("fp64") == pytest.approx(2 * 3.0 * 16)
    assert fake_result(cores=4, threads=1).peak_theoretical("fp64") == pytest.approx(3.0 * 16)


# ---------------------------------------------------------------- the profile

def test_profile_round_trip_through_the_hwdb_loader(tmp_path):
    r = fake_result()
    device = profile.to_device(r)
    path = local_profile_path()
    profile.write_device(device, path, keep_others=False)
    loaded, problem = profile.check_profile(path, r.machine)
    assert problem is None and loaded == device
    local = load_hwdb()[LOCAL_ID]
    assert local == device and local.model == "EPYC 9654 96-Core Processor (2 cores)"
    # sustained figures: GEMM's best median over the square sizes, STREAM triad's best repeat
    assert local.peak_per_s("fp64") == 55 * 10 ** 9 and local.peak_per_s("fp32") == 110 * 10 ** 9
    assert local.memory_bw_bytes_per_s == 22.5 * 10 ** 9
    assert local.memory_bytes == 64 * 10 ** 9


@pytest.mark.parametrize("other, why", [
    (dict(cores=4), "stale"), (dict(name="Intel Xeon Platinum 8380"), "stale")])
def test_profile_of_another_machine_is_stale(other, why):
    path = local_profile_path()
    profile.write_device(profile.to_device(fake_result()), path, keep_others=False)
    device, problem = profile.check_profile(path, fake_result(**other).machine)
    assert device is None and problem.startswith(why) and "this machine is" in problem


@pytest.mark.parametrize("text", [
    "devices: [\n", "{}\n", "devices:\n  - {id: local, vendor: AMD}\n",
    "devices:\n  - {id: other, vendor: AMD, model: x, kind: cpu, memory_bw_gbs: 10, peak_tflops: {fp64: 1},"
    " sources: {record: me}}\n"])
def test_corrupt_profile_is_reported_and_measured_again(text, monkeypatch):
    path = local_profile_path()
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write(text)
    r = fake_result()
    assert profile.check_profile(path, r.machine)[1].startswith("corrupt")
    said = []
    monkeypatch.setattr(profile, "this_machine", lambda: r.machine)
    monkeypatch.setattr(profile, "run_bench", lambda config, machine: r)
    device = profile.local_device(say=said.append)
    assert len(said) == 1 and "corrupt" in said[0] and "measuring" in said[0]
    assert profile.check_profile(path, r.machine) == (device, None)
    assert profile.local_device(say=said.append) == device and len(said) == 1    # now trusted, not re-measured


def test_save_file_keeps_the_other_devices_and_names_the_record_after_the_file(tmp_path):
    path = str(tmp_path / "My Server.yaml")
    other = {"id": "h100-sxm", "price": {"usd": 1000, "kind": "quote", "date": "2025-01", "source": "me"}}
    with open(path, "w") as f:
        yaml.safe_dump({"devices": [other]}, f)
    device = profile.to_device(fake_result(), profile.device_id_for(path))
    profile.write_device(device, path, keep_others=True)
    db = load_hwdb([path])
    assert db["my-server"] == device and db["h100-sxm"].price.usd == 1000


# ---------------------------------------------------------------- a real (tiny) run, library and CLI

TINY = dict(repeats=2, sample_s=0.002, gemm=(square(64),), stream_elements=4096, chains=(8,), chain_pairs=(1, 16),
            classes=("linear",))


def test_tiny_run_measures_every_series():
    r = run_bench(BenchConfig(threads=1, **TINY))
    names = {"clock_ghz", "peak_fp64_1core_8chains", "peak_fp64_all", "peak_fp32_1core_8chains",
             "peak_fp32_all", "gemm_fp64_n64", "gemm_fp32_n64"} | {f"stream_{k}" for k in
                                                                     ("copy", "scale", "add", "triad")}
    assert set(r.runs) == names
    assert len(r.runs["clock_ghz"].values) == 3 * 2      # sampled at the start and after each 1-core FMA set
    assert all(v > 0 for s in r.runs.values() for v in s.values)
    assert r.blas["library"]


def test_another_interpreter_s_chains_are_timed_once_a_round_and_pooled():
    """PyTorch's chains run in a child interpreter: once a round (a slow spell lowers one round's repeats), each
    run giving the round's repeats, pooled as every other figure is."""
    from sizing.hardware.bench.measure import LayerChains

    calls = []

    def child(config):
        calls.append(config.repeats)
        return {"pytorch_linear_tiny_2": [100.0 + len(calls)] * config.repeats}

    from sizing.hardware.bench.measure import pool, steps, this_machine

    config = BenchConfig(threads=1, rounds=2, **TINY)
    runs = {}
    todo = [fn for label, fn in steps(config, this_machine(), runs, None, [LayerChains("pytorch", measure=child)])
            if label == "layer classes (pytorch, its own interpreter)"]
    for _ in range(config.rounds):          # run_bench runs every step once a round
        for fn in todo:
            pool(runs, fn())
    assert calls == [2, 2] and runs["pytorch_linear_tiny_2"].values == (101.0, 101.0, 102.0, 102.0)


def test_cli_json_save_and_profile(tmp_path, monkeypatch):
    monkeypatch.setattr(BenchConfig, "for_machine",
                        classmethod(lambda cls, machine, quick=False, threads=None: cls(threads or 1, **TINY)))
    out = str(tmp_path / "box.yaml")
    res = CliRunner().invoke(main, ["bench", "--format", "json", "--threads", "1", "--save", out])
    assert res.exit_code == 0, (res.output, res.exception)
    d = json.loads(res.stdout)
    assert set(ISSUE_KEYS) <= set(d) and d["threads"] == 1
    assert "saved device 'box'" in res.stderr and os.path.exists(local_profile_path())
    assert load_hwdb([out])["box"].kind == "cpu" and LOCAL_ID in load_hwdb()
    # the executor's layer calls were timed, and the profile keeps their fixed costs
    assert {"executor_step_1pairs", "executor_step_16pairs"} <= set(d["runs"])
    local = load_hwdb()[LOCAL_ID]
    assert local.call_overhead_us == pytest.approx(d["call_overhead_us"]["kernel"], rel=1e-3)
    assert local.call_overhead_us > 0 and local.step_overhead_us >= 0
    # the layer-class chains (linear only here): our executor's fixed costs per layer and per step
    assert {"sizing_linear_tiny_2", "sizing_linear_tiny_16", "sizing_linear_wide_1", "sizing_linear_wide_3"} <= set(
        d["runs"])
    assert set((local.executors or {}).get("sizing", {}).get("layer_us", {})) <= {"linear"}
    # and the GEMM sweep: each timed shape with its median rate
    assert [row[:3] for row in local.gemm_sweep["fp32"]] == [[64, 64, 64]]
    assert local.gemm_sweep["fp32"][0][3] == pytest.approx(
        statistics.median(d["runs"]["gemm_fp32_n64"]), rel=2e-3)


@pytest.mark.parametrize("args, fragment", [
    (["--threads", "100000"], "--threads"), (["--save", "--no-save"], "--no-save"),
    (["--save", "NOTES"], "a hardware file is a mapping")])
def test_cli_user_errors(args, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "NOTES").write_text("just some notes\n")
    monkeypatch.setattr(measure_mod, "run_bench", lambda *a: pytest.fail("measured before refusing"))
    res = CliRunner().invoke(main, ["bench", *args])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and fragment in res.stderr, res.output


def test_progress_bar_draws_on_a_terminal_only():
    import io

    from sizing.common.progress import progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert progress_bar(io.StringIO()) is None
    out = Terminal()
    show = progress_bar(out)
    show(1, 4, "FMA fp64")
    assert "[" + "#" * 7 + "." * 23 + "] 1/4 FMA fp64" in out.getvalue()
    show(4, 4, "done")
    assert out.getvalue().endswith("\r") and "#" * 30 in out.getvalue()
