"""The performance model (sizing/predict/training.py), its calibration table and `sizing estimate --device`.

Each check takes an independent route: layer times worked by hand from the op's formula and the device's
figures, a simulated ring all-reduce, the ZeRO paper's published figures, a brute-force search over device counts,
the pipeline-bubble and energy formulas written out, and predictions at sizes a loop over devices or steps could
never finish."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest
from click.testing import CliRunner

from sizing.predict.published import compare, fit_efficiency, transformer_spec
from sizing.predict.calibration import shipped
from sizing.cli import main
from sizing.hardware.devices import Device, load_hwdb
from sizing.common.errors import SizingError
from sizing.model.estimate import estimate_graph
from sizing.model.graph import build
from sizing.predict.training import evaluate
from sizing.predict.search import Pins, device_counts, search
from sizing.predict.setup import Factors, Layout, Setup
from sizing.predict.comm import (INTER_HOP_SECONDS, INTRA_HOP_SECONDS, allreduce_seconds, pipeline_bubble,
    ring_allreduce_seconds)
from sizing.predict.fit import device_memory, zero_memory
from sizing.predict.roofline import layer_times, peaks
from sizing.predict.inference import predict_inference
from sizing.predict.workload import Workload, parse_count

UNIT = Factors(compute_fraction=1.0, memory_fraction=1.0, framework_efficiency=1.0, network_gbs=50, overlap=0.9,
               pue=1.5)



def device(**kw) -> Device:
    """A made-up device with round figures: 10 TFLOP/s fp32, 100 bf16 (tensor), 1 TB/s, 1 GB, 8 per node."""
    fields = dict(id="testdev", vendor="Test", model="T1", kind="gpu", memory_gb=1, memory_bw_gbs=1000,
                  peak_tflops={"fp32": 10, "bf16": 100}, tdp_w=500, interconnect_gbs=200, devices_per_node=8,
                  sources={"record": "made up for tests"})
    return Device(**{**fields, **kw})


def est_of(spec: dict, **settings):
    return estimate_graph(build(spec, {}, "test", **settings))


def linear_spec(features=1024, out=4096):
    return {"name": "lin", "input": [features],
            "layers": [{"op": "linear", "name": "fc", "out_features": out}, {"op": "relu", "name": "act"}]}


def workload_of(est, **kw) -> Workload:
    s = est.settings
    return Workload(batch=s["batch"], dtype=s["dtype"], optimizer=s["optimizer"], **kw)


# ---------------------------------------------------------------- the layer roofline

def test_linear_layer_time_by_hand():
    b, i, o = 64, 1024, 4096
    est = est_of(linear_spec(i, o), batch=b, dtype="bf16")
    fc, act = layer_times(est, device(), "bf16", UNIT, training=False)
    flops = 2 * b * i * o + b * o                        # products, bias adds
    nbytes = 2 * (b * i + i * o + o + b * o)             # bf16: input, weight, bias read; output written
    assert (fc.flops, fc.bytes) == (flops, nbytes)
    assert fc.compute_s == flops / 100e12 and fc.memory_s == nbytes / 1000e9
    assert act.compute_s == b * o / 10e12                # relu, 1 FLOP per element, at the fp32 vector peak
    assert act.memory_s == 2 * 2 * b * o / 1000e9 and act.bound == "memory"


def test_wave_quantization_by_hand():
    """NVIDIA's guide (section 3.2): 256 x 128 tiles, one per SM a wave; the last partial wave costs a whole one.
    Worked by hand: 108 tiles on 108 SMs fill one wave; 109 take two (109 / 216); a 2048 x 6144 output is
    8 x 48 = 384 tiles = 4 waves of 108 (384 / 432)."""
    from sizing.predict.roofline import wave_efficiency
    assert wave_efficiency(256 * 12, 128 * 9, 108) == 1.0
    assert wave_efficiency(256 * 109, 128, 108) == 109 / 216
    assert wave_efficiency(2048, 6144, 108) == 384 / 432
    assert wave_efficiency(1, 1, 108) == 1 / 108            # one tile on a 108-SM device
    assert wave_efficiency(10 ** 7, 10 ** 5, 108) > 0.999    # many waves: the partial one no longer matters


def test_wave_quantization_slows_a_layer_by_its_tile_count():
    """A linear's compute time at 108 SMs is the plain roofline over the wave efficiency of its (tokens, out)
    output, worked by hand: 300 tokens x 4096 out = 2 x 32 = 64 tiles, one wave of 108 (64 / 108 busy); tensor
    parallelism of 2 splits a column-parallel output (32 tiles: 32 / 108) but keeps a row-parallel one whole."""
    est = est_of(linear_spec(1024, 4096), batch=300, dtype="bf16")
    plain = layer_times(est, device(), "bf16", UNIT, training=False)[0]
    waved = layer_times(est, device(), "bf16", replace(UNIT, compute_units=108), training=False)[0]
    assert waved.compute_s == pytest.approx(plain.compute_s * 108 / 64, rel=1e-12)
    split = layer_times(est, device(), "bf16", replace(UNIT, compute_units=108), t=2, training=False)[0]
    assert split.compute_s == pytest.approx(plain.compute_s / 2 * 108 / 32, rel=1e-12)
    mlp = dict(linear_spec(1024, 4096), layers=[*linear_spec()["layers"],
                                                 {"op": "linear", "name": "down", "out_features": 1024}])
    down = est_of(mlp, batch=300, dtype="bf16")         # its input is the column-parallel fc's: row-parallel
    d1 = layer_times(down, device(), "bf16", UNIT, t=2, training=False)[2]
    d2 = layer_times(down, device(), "bf16", replace(UNIT, compute_units=108), t=2, training=False)[2]
    assert d2.compute_s == pytest.approx(d1.compute_s * 108 / (2 * 8), rel=1e-12)   # 300 x 1024: 2 x 8 tiles


def test_kernel_issue_time_is_a_floor_per_kernel():
    """The limits of the launch term: a tiny layer takes (kernels) x (issue time), counted by hand (a weighted
    linear in training: forward, input gradient, weight gradient; relu: forward, backward; once more each with
    full recomputation); a large layer's time is its roofline, the floor far below it."""
    tiny = est_of(linear_spec(4, 4), batch=1, dtype="bf16")
    f = replace(UNIT, launch_seconds=5e-6)
    fc, act = layer_times(tiny, device(), "bf16", f, training=True)
    assert (fc.seconds, act.seconds) == (3 * 5e-6, 2 * 5e-6)
    fc, act = layer_times(tiny, device(), "bf16", f, training=True, recompute="full")
    assert (fc.seconds, act.seconds) == (4 * 5e-6, 3 * 5e-6)
    assert layer_times(tiny, device(), "bf16", f, training=False)[0].seconds == 5e-6
    big = est_of(linear_spec(8192, 8192), batch=4096, dtype="bf16")
    a, b = (layer_times(big, device(), "bf16", x, training=True)[0] for x in (UNIT, f))
    assert b.seconds == a.seconds == max(a.compute_s, a.memory_s)


def test_usable_memory_bounds_what_fits():
    """A layout fits when its bytes are within the usable share of the device's memory: at a share of 0.9, memory
    between 90% and 100% of the device no longer fits (why_not says so)."""
    from sizing.predict.fit import capacity
    est = est_of(linear_spec(4096, 4096), batch=8, dtype="bf16")
    layout = Layout(micro_batch=8)
    need = device_memory(est, layout).total
    dev = device(memory_gb=need / 0.95 / 1e9)
    work = workload_of(est)
    assert evaluate(est, layout, work, dev, UNIT).fits
    tight = replace(UNIT, usable_memory=0.9)
    assert capacity(dev, tight) == int(dev.memory_bytes * 0.9)
    pred = evaluate(est, layout, work, dev, tight)
    assert not pred.fits and "a framework can use" in pred.why


def test_training_adds_backward_and_recomputation():
    est = est_of(linear_spec(), batch=32, dtype="bf16")
    fwd = layer_times(est, device(), "bf16", UNIT, training=False)
    train = layer_times(est, device(), "bf16", UNIT, training=True)
    again = layer_times(est, device(), "bf16", UNIT, training=True, recompute=True)
    for f, t, r, row in zip(fwd, train, again, est.layers):
        assert t.flops == f.flops + row.cost.backward_flops
        assert t.bytes == 3 * f.bytes                   # backward moves twice the forward bytes
        assert (r.flops, r.bytes) == (t.flops + f.flops, t.bytes + f.bytes)


def test_bound_switches_at_the_ridge_point():
    """Weights dominate a linear layer's bytes at small batch (memory bound); its FLOPs grow with the batch while the
    weight bytes do not, so past the ridge point (peak / bandwidth = 100 FLOP/byte here) it is compute bound.
    Intensity (2 b i o + b o) / (2 (b i + i o + o + b o)) crosses 100 between batch 100 and 120 for i = o = 4096."""
    def bound(batch):
        est = est_of(linear_spec(4096, 4096), batch=batch, dtype="bf16")
        fc = layer_times(est, device(), "bf16", UNIT, training=False)[0]
        assert (fc.flops / fc.bytes > 100) == (fc.bound == "compute")
        return fc.bound
    assert [bound(b) for b in (1, 64, 100, 120, 512)] == ["memory"] * 3 + ["compute"] * 2


def test_tensor_peaks_only_for_matrix_products_at_precisions_that_have_them():
    db = load_hwdb(environ={})
    est = est_of(linear_spec(), batch=8, dtype="bf16")
    h100 = db["h100-sxm"]
    fc, act = layer_times(est, h100, "bf16", UNIT, training=False)
    assert fc.flops / fc.compute_s == pytest.approx(989.5e12)     # bf16 tensor cores
    assert act.flops / act.compute_s == pytest.approx(67e12)      # relu on the fp32 vector units
    assert peaks(h100, "fp64") == (67 * 10 ** 12, 34 * 10 ** 12)  # fp64 matmul on tensor cores, vector fp64
    assert peaks(h100, "fp32") == (67 * 10 ** 12, 67 * 10 ** 12)  # plain fp32 has no tensor-core peak
    assert peaks(h100, "tf32") == (494_500_000_000_000, 67 * 10 ** 12)
    assert peaks(db["tpu-v5e"], "bf16") == (197 * 10 ** 12,) * 2  # no fp32 unit listed: the only peak
    with pytest.raises(SizingError, match="has no bf16 peak; it has fp64, fp32, fp16"):
        peaks(db["v100-sxm2-32gb"], "bf16")


# ---------------------------------------------------------------- communication

def simulated_ring_allreduce(values: list[list[float]]) -> tuple[list[list[float]], list[int]]:
    """Run the ring algorithm chunk by chunk (reduce-scatter, then all-gather) and count elements each member
    sends; independent of the closed form."""
    n, size = len(values), len(values[0])
    bounds = [(k * size // n, (k + 1) * size // n) for k in range(n)]
    data = [list(v) for v in values]
    sent = [0] * n
    for phase in ("reduce", "gather"):
        for step in range(n - 1):
            moves = []
            for r in range(n):
                c = (r - step + (0 if phase == "reduce" else 1)) % n
                lo, hi = bounds[c]
                moves.append(((r + 1) % n, c, data[r][lo:hi]))
                sent[r] += hi - lo
            for dst, c, chunk in moves:
                lo, hi = bounds[c]
                data[dst][lo:hi] = ([a + x for a, x in zip(data[dst][lo:hi], chunk)] if phase == "reduce"
                                    else chunk)
    return data, sent


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_ring_allreduce_matches_a_simulated_ring(n):
    size = 40 * n
    values = [[float(r * 1000 + i) for i in range(size)] for r in range(n)]
    data, sent = simulated_ring_allreduce(values)
    total = [sum(v[i] for v in values) for i in range(size)]
    assert all(d == total for d in data)
    bw = 7.0
    assert ring_allreduce_seconds(size, n, bw) == pytest.approx(max(sent) / bw)
    assert max(sent) == 2 * (n - 1) * size // n


def test_hierarchical_allreduce_reduces_to_the_ring():
    assert allreduce_seconds(10 ** 9, 8, 8, 4e11, 5e10) == ring_allreduce_seconds(10 ** 9, 8, 4e11)
    assert allreduce_seconds(10 ** 9, 16, 1, 4e11, 5e10) == ring_allreduce_seconds(10 ** 9, 16, 5e10)
    two_level = allreduce_seconds(8 * 10 ** 9, 32, 8, 4e11, 5e10)
    assert two_level == pytest.approx(2 * 7 / 8 * 8e9 / 4e11 + 2 * 3 / 4 * 1e9 / 5e10)
    assert ring_allreduce_seconds(10 ** 9, 1, 1.0) == 0.0


def test_pipeline_bubble():
    assert pipeline_bubble(1, 7) == 0
    assert pipeline_bubble(16, 32) == 15 / 32


# ---------------------------------------------------------------- memory

def test_zero_memory_matches_the_zero_paper():
    """Rajbhandari et al. 2020, Figure 1: 7.5B parameters, Adam in mixed precision (K = 12), 64 GPUs ->
    120 GB, 31.4 GB, 16.6 GB, 1.88 GB per device for the baseline and stages 1, 2, 3."""
    psi, n = 7_500_000_000, 64
    published = {0: 120e9, 1: 31.4e9, 2: 16.6e9, 3: 1.88e9}
    for stage, gb in published.items():
        assert sum(zero_memory(2 * psi, 2 * psi, 12 * psi, stage, n)) == pytest.approx(gb, rel=0.006)


def test_device_memory_follows_the_zero_formulas_on_a_real_estimate():
    est = est_of(linear_spec(256, 512), batch=4, dtype="bf16", optimizer="adam")
    psi = est.trainable_params
    act = est.memory.activations
    for stage, expected in ((0, 16 * psi), (1, 4 * psi + -(-12 * psi // 8)), (2, 2 * psi + -(-2 * psi // 8)
                                                                               + -(-12 * psi // 8)),
                            (3, -(-2 * psi // 8) * 2 + -(-12 * psi // 8) + 2 * 2 * psi)):   # + FSDP's gathered layer

        mem = device_memory(est, Layout(data_parallel=8, micro_batch=4, zero=stage))
        assert mem.total - mem.activations == expected
        assert mem.activations == act


def test_fewest_devices_equals_a_brute_force_search():
    """The planner's fewest devices that fit, against every count the planner buys and every tensor-parallel
    degree and ZeRO stage tried by brute force (no pipeline: pinned to 1; micro-batch pinned to 2)."""
    spec = transformer_spec("t", 4, 256, 4, 1024, 1000, 64)
    est = est_of(spec, batch=2, dtype="bf16")
    dev = device(memory_gb=0.004)                               # 4 MB per device
    w = Workload(dtype="bf16", optimizer="adamw", tokens=10 ** 9)
    outcomes = set()
    for zero in (0, 1, 2, 3):
        pins = Pins(zero=zero, pipeline_parallel=1, micro_batch=2, recompute="none")
        brute = next((n for n in device_counts(8, 10 ** 5) for tp in (1, 2, 4) if n % tp == 0 and 64 % (n // tp) == 0
                      and n // tp <= 64 and device_memory(est, Layout(tp, 1, n // tp, 2, 64 * tp // n, zero, "none",
                                                                      tp > 1)).total <= dev.memory_bytes), None)
        outcomes.add(brute is None)
        if brute is None:
            with pytest.raises(SizingError, match="does not fit"):
                search(lambda b: est, w, dev, UNIT, pins, global_batch=2 * 64)
        else:
            pred = search(lambda b: est, w, dev, UNIT, pins, global_batch=2 * 64)
            assert pred.devices == brute and pred.fits
    assert outcomes == {True, False}            # some stages fit, some do not


def test_recompute_keeps_only_checkpoints():
    est = est_of(transformer_spec("t", 12, 128, 4, 512, 1000, 64), batch=4, dtype="bf16")
    full = device_memory(est, Layout(micro_batch=4)).activations
    ckpt = device_memory(est, Layout(micro_batch=4, recompute="full")).activations
    assert ckpt < full / 3


# ---------------------------------------------------------------- whole predictions

def test_step_time_energy_and_hours_compose():
    est = est_of(linear_spec(), batch=128, dtype="bf16", optimizer="sgd")
    dev = device(memory_gb=80)
    pred = evaluate(est, Layout(micro_batch=128), workload_of(est, samples=10_000, epochs=3), dev, UNIT)
    layers = sum(l.seconds for l in pred.layers)
    assert pred.compute_seconds == pytest.approx(layers)
    assert pred.step_seconds == pytest.approx(layers + pred.optimizer_seconds)
    assert pred.steps_per_epoch == math.ceil(10_000 / 128) and pred.steps == 3 * pred.steps_per_epoch
    assert pred.total_seconds == pytest.approx(pred.steps * pred.step_seconds)
    assert pred.device_hours == pytest.approx(pred.total_seconds / 3600)
    assert pred.energy_kwh == pytest.approx(pred.device_hours * 500 * 1.5 / 1000)
    assert pred.mfu == pytest.approx((est.totals.flops + est.totals.backward_flops) / (pred.step_seconds * 100e12))


def test_data_parallel_adds_only_exposed_gradient_time():
    est = est_of(linear_spec(), batch=128, dtype="bf16", optimizer="sgd")
    dev = device(memory_gb=80)
    one = evaluate(est, Layout(micro_batch=128), workload_of(est), dev, UNIT)
    many = evaluate(est, Layout(data_parallel=32, micro_batch=128), workload_of(est), dev, replace(UNIT, overlap=0.0))
    grads = est.trainable_params * 2
    assert many.dp_comm_seconds == pytest.approx(allreduce_seconds(grads, 32, 8, 100e9, 50e9, INTRA_HOP_SECONDS,
                                                                   INTER_HOP_SECONDS))
    assert many.step_seconds == pytest.approx(one.step_seconds + many.dp_comm_seconds)
    assert many.global_batch == 32 * 128


def test_tensor_parallel_splits_work_and_all_reduces_row_parallel_outputs():
    est = est_of(transformer_spec("t", 4, 256, 4, 1024, 1000, 64), batch=4, dtype="bf16")
    dev = device(memory_gb=80)
    one = evaluate(est, Layout(micro_batch=4), workload_of(est), dev, UNIT)
    four = evaluate(est, Layout(tensor_parallel=4, micro_batch=4, sequence_parallel=True), workload_of(est), dev, UNIT)
    assert [l.flops for l in four.layers] == [-(-l.flops // 4) for l in one.layers]
    # row-parallel layers: attention and MLP down projection, 2 per block of 4, one all-reduce each forward and
    # backward of the output, 4 x 64 x 256 bf16
    assert four.tp_comm_seconds == pytest.approx(
        2 * 2 * 4 * ring_allreduce_seconds(4 * 64 * 256 * 2, 4, 100e9, INTRA_HOP_SECONDS))
    plain = evaluate(est, Layout(tensor_parallel=4, micro_batch=4), workload_of(est), dev, UNIT)
    replicated = [l for l, row in zip(plain.layers, est.layers) if row.node.op in ("layernorm", "add")]
    assert replicated and all(l.flops == r.flops for l, r in zip(replicated, (x for x, row in zip(
        one.layers, est.layers) if row.node.op in ("layernorm", "add"))))    # whole on every rank without SP


def test_huge_models_on_huge_clusters_cost_what_tiny_ones_do():
    """No loop over devices or steps: a trillion-parameter model on a trillion devices for 10^18 tokens returns
    (and exact integer step counts come back)."""
    est = est_of(transformer_spec("huge", 100, 32768, 256, 131072, 32000, 2048), batch=1, dtype="bf16")
    db = load_hwdb(environ={})
    pred = evaluate(est, Layout(data_parallel=10 ** 12, zero=3, recompute="full"), workload_of(est, tokens=10 ** 18),
                    db["h100-sxm"], UNIT)
    assert pred.steps == -(-(10 ** 18 // 2048) // 10 ** 12)
    assert pred.fits and pred.data_parallel == 10 ** 12
    w = Workload(dtype="bf16", optimizer="adamw", tokens=10 ** 18)
    least = search(lambda b: est, w, db["h100-sxm"], UNIT, Pins(micro_batch=1), global_batch=10 ** 6)
    assert least.fits and least.devices > 8


def test_inference_latency_and_devices_for_a_throughput():
    est = est_of(linear_spec(), batch=16, dtype="bf16")
    dev = device(memory_gb=80)
    w = Workload(kind="inference", batch=16, dtype="bf16", optimizer=est.settings["optimizer"], throughput=1e7)
    inf = predict_inference(est, w, dev, Setup(), UNIT)
    fwd = layer_times(est, dev, "bf16", UNIT, training=False)
    assert inf.latency_s == pytest.approx(sum(l.seconds for l in fwd))
    assert inf.devices == inf.replicas == math.ceil(1e7 / (16 / inf.latency_s))
    slow = predict_inference(est, replace(w, throughput=None, latency_s=inf.latency_s / 100), dev, Setup(), UNIT)
    assert not slow.meets_target and "the target is" in slow.why


# ---------------------------------------------------------------- calibration

def test_stored_efficiency_is_the_fit_of_the_calibrate_runs():
    cal, db = shipped(), load_hwdb(environ={})
    assert {r.use for r in cal.runs} == {"calibrate", "validate"}
    assert fit_efficiency(cal, db) == pytest.approx(cal.framework_efficiency, abs=5e-4)


def test_published_figures_convert_to_the_same_mfu():
    """A run's figure in any published form (MFU, TFLOP/s, tokens/s, step time, device-hours) lands on the same
    MFU scale: build one run's figures from its published MFU and convert them back."""
    cal, db = shipped(), load_hwdb(environ={})
    run = next(r for r in cal.runs if r.id == "llama1-65b")
    base = compare(run, cal, db)
    mfu = base.published_mfu
    peak = 312e12
    est = base.prediction
    per_token = est.model_flops_per_step / (est.global_batch * 2048)
    hours = 1e12 * per_token / (mfu * peak * 3600)
    for kind, value, extra in (("mfu", mfu, {}), ("tflops", mfu * peak / 1e12, {}),
                               ("tokens_per_s", mfu * peak / per_token, {}),
                               ("device_hours", hours, {"tokens": 10 ** 12})):
        again = compare(replace(run, published=kind, value=value, **extra), cal, db)
        assert again.published_mfu == pytest.approx(mfu, rel=1e-9), kind


def test_calibrated_causes_reach_the_devices_they_are_stated_for():
    """The table's SM counts reach their devices only (an A100 has 108, NVIDIA's GEMM guide; a TPU has none
    listed, so no wave model); the CUDA kernel issue time reaches GPUs only; the usable share of memory every
    device."""
    cal, db = shipped(), load_hwdb(environ={})
    a100 = cal.factors(cal.device("a100-sxm-80gb", db), "bf16", db)
    tpu = cal.factors(cal.device("tpu-v4", db), "bf16", db)
    assert (a100.compute_units, a100.launch_seconds, a100.usable_memory) == (108, 5e-6, 0.9)
    assert (tpu.compute_units, tpu.launch_seconds, tpu.usable_memory) == (None, 0.0, 0.9)


def test_a_run_published_in_device_hours_is_compared_at_the_goodput():
    """Device-hours over a whole run include its interruptions; throughput figures do not. The same run published
    as MFU is predicted at the step's MFU, as device-hours at that x the table's goodput (0.9: Llama 3's 'higher
    than 90% effective training time')."""
    cal, db = shipped(), load_hwdb(environ={})
    run = next(r for r in cal.runs if r.published == "device_hours")
    whole = compare(run, cal, db)
    running = compare(replace(run, published="mfu", value=0.5), cal, db)
    assert cal.goodput == 0.9
    assert whole.predicted_mfu == pytest.approx(running.predicted_mfu * 0.9, rel=1e-12)
    assert running.predicted_mfu == running.prediction.mfu


def test_calibration_table_errors_are_located(tmp_path):
    from sizing.predict import calibration
    text = open(calibration.shipped_path()).read().replace("    use: validate\n    zoo: resnet50",
                                                           "    use: sometimes\n    zoo: resnet50", 1)
    bad = tmp_path / "cal.yaml"
    bad.write_text(text)
    with pytest.raises(SizingError, match="use must be one of calibrate, validate") as e:
        calibration.load(str(bad))
    assert e.value.file == str(bad) and e.value.line


# ---------------------------------------------------------------- workload and CLI

def test_parse_count_is_exact():
    assert parse_count("--tokens", "2e12") == 2 * 10 ** 12
    assert parse_count("--samples", "1.281167e6") == 1_281_167
    assert parse_count("--tokens", "15_000_000_000_001") == 15_000_000_000_001
    for bad in ("1.5", "abc", "-3", "0", "inf", "1e19"):
        with pytest.raises(SizingError):
            parse_count("--tokens", bad)


def run_cli(*args):
    return CliRunner().invoke(main, ["estimate", *map(str, args)])


def test_cli_json_prediction():
    r = run_cli("resnet50", "--device", "a100-sxm", "--devices", "8", "--samples", "1.281167e6", "--epochs", "2",
                "--dtype", "fp16", "--batch", "64", "--format", "json")
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)["prediction"]
    for key in ("device", "devices", "precision", "step_seconds", "total_seconds", "device_hours", "bound",
                "memory_per_device_bytes", "fits", "energy_kwh"):
        assert key in p
    assert (p["device"], p["devices"], p["precision"], p["fits"]) == ("a100-sxm-80gb", 8, "fp16", True)
    assert p["steps"] == 2 * math.ceil(1_281_167 / 64) and p["global_batch"] == 64      # --batch: the global one
    for key in ("tensor_parallel", "pipeline_parallel", "data_parallel", "expert_parallel", "zero", "recompute",
                "sequence_parallel", "micro_batch", "gradient_accumulation", "global_batch", "mfu", "alternatives"):
        assert key in p
    assert p["tensor_parallel"] * p["pipeline_parallel"] * p["data_parallel"] == 8
    assert p["micro_batch"] * p["gradient_accumulation"] * p["data_parallel"] == 64
    assert isinstance(p["memory_per_device_bytes"], int)


def test_cli_table_prediction():
    r = run_cli("resnet50", "--device", "h100-sxm", "--samples", "1e6")
    assert r.exit_code == 0, r.output
    assert "prediction: 1 x h100-sxm, fp32" in r.stdout and "memory / device" in r.stdout
    assert "assumption: " in r.stdout


def one_line_error(r, *fragments):
    assert r.exit_code == 2, r.output
    line, = r.stderr.splitlines()
    assert line.startswith("error: ") and all(f in line for f in fragments), line


def test_cli_bad_inputs():
    one_line_error(run_cli("resnet50", "--device", "mi3000x"), "unknown device", "mi300x")
    one_line_error(run_cli("resnet50", "--device", "v100-sxm2-32gb", "--dtype", "bf16"),
                   "has no bf16 peak; it has fp64, fp32, fp16")
    one_line_error(run_cli("resnet50", "--device", "l4", "--micro-batch", "100000", "--global-batch", "100000",
                           "--dtype", "bf16", "--devices", "1"), "does not fit on 1 l4", "activations")
    one_line_error(run_cli("resnet50", "--device", "h100-sxm", "--tensor-parallel", "16", "--devices", "16"),
                   "--tensor-parallel 16", "more than the 8 devices of a node")
    one_line_error(run_cli("resnet50", "--device", "h100-sxm", "--devices", "8", "--deadline", "1h", "--samples",
                           "1e6"), "give --devices or --deadline")
    one_line_error(run_cli("resnet50", "--device", "h100-sxm", "--tokens", "1e9"), "give --samples")
    one_line_error(run_cli("resnet50", "--samples", "100"), "name a --device")


def test_estimate_with_a_device_imports_no_numpy():
    code = ("import sys\nfrom sizing.cli import main\ntry:\n    main(['estimate', 'resnet50', '--device', 'h100-sxm',"
            " '--samples', '1000'])\nexcept SystemExit:\n    pass\nassert 'numpy' not in sys.modules\n"
            "assert 'numba' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)


def test_local_bench_profile_is_used_as_measured():
    """The device 'local' (sizing bench --save) holds sustained figures: no achieved fraction is applied."""
    import os

    from sizing.hardware.bench.profile import profile_model, this_machine
    from sizing.hardware.devices import local_profile_path, to_yaml
    from sizing.predict.plan import plan
    path = local_profile_path()
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:     # this machine's profile, so it is used as it is (a stale one is re-measured)
        f.write(to_yaml([device(id="local", memory_gb=None, kind="cpu", model=profile_model(this_machine()),
                                peak_tflops={"fp32": 0.01})]))     # within what this CPU can do
    est = est_of(linear_spec(), batch=32, dtype="fp32", optimizer="sgd")
    pred = plan(lambda b: est, "local", samples=320, global_batch=32, pins=Pins(micro_batch=32))
    assert (pred.factors.compute_fraction, pred.factors.memory_fraction) == (1.0, 1.0)
    assert pred.device == "local" and pred.steps == 10


def test_ring_latency_grows_with_members_so_scale_out_saturates():
    """alpha-beta: 2 (n - 1) hops of latency, so 10^4 members cost more than 8 even for a tiny message."""
    small = ring_allreduce_seconds(1024, 8, 1e11, INTER_HOP_SECONDS)
    huge = ring_allreduce_seconds(1024, 10_000, 1e11, INTER_HOP_SECONDS)
    assert small == pytest.approx(14 * INTER_HOP_SECONDS + 2 * 7 / 8 * 1024 / 1e11)
    assert huge > 1000 * small / 2


def test_lm_serving_decode_reads_weights_and_kv_cache_prefill_is_compute():
    """Hand-worked roofline on the made-up device (100 TFLOP/s bf16, 1 TB/s, unit fractions): decode of a batch
    of 4 at context 1000 reads 2 GB of weights + 4 x 1000 x 100 kB of cache = 2.4 GB -> 2.4 ms, memory bound;
    prefill of 4 prompts of 1000 tokens does 4 x 10^13 FLOPs -> 0.4 s, compute bound."""
    from fractions import Fraction

    from sizing.model.lm import LMFigures
    from sizing.predict.inference import lm_serving
    fig = LMFigures(batch=4, context=1000, dtype="bf16", kv_dtype="bf16", params=10 ** 9, active_params=10 ** 9,
                    training_flops_per_token=Fraction(6 * 10 ** 9), per_token_flops=Fraction(10 ** 10),
                    per_pair_flops=Fraction(0), per_sequence_flops=Fraction(0), kv_bytes_per_token=100_000,
                    weights_bytes=2 * 10 ** 9)
    from sizing.predict.serving import Efficiency
    one = Efficiency(1.0, 1.0)
    out = lm_serving(fig, device(memory_gb=80), "bf16", UNIT, one)
    assert out["decode"]["bound"] == "memory" and out["prefill"]["bound"] == "compute"
    assert out["decode"]["seconds"] == pytest.approx(2.4e9 / 1e12)
    assert out["decode"]["tokens_per_second"] == pytest.approx(4 / 2.4e-3)
    assert out["prefill"]["seconds"] == pytest.approx(4 * 10 ** 13 / 1e14)
    assert out["fits"] and not lm_serving(fig, device(memory_gb=2), "bf16", UNIT, one)["fits"]
    slow = lm_serving(fig, device(memory_gb=80), "bf16", UNIT, Efficiency(0.5, 0.8))        # each phase its own
    assert slow["prefill"]["seconds"] == pytest.approx(2 * out["prefill"]["seconds"])
    assert slow["decode"]["seconds"] == pytest.approx(out["decode"]["seconds"] / 0.8)


def test_the_calibration_table_defines_only_devices_the_hardware_database_lacks():
    """The table's own device records are for retired parts; a record the database also has would be shadowed by
    the database's (Calibration.device prefers it), so a run's figures could change with an unrelated hwdb edit."""
    from sizing.predict.calibration import shipped
    db = load_hwdb(environ={})
    assert not set(shipped().devices) & set(db)
