"""The CPU step model's fixed costs (issue 17): ``sizing bench`` fits the executor's cost per kernel call and per
step from chains of tiny layers, the profile keeps them, and the prediction for a device that has them adds
kernels x call cost to each layer (the kernels counted as sizing/predict/roofline.py ``kernels`` counts them).
A profile without them predicts as the plain roofline. No timing here: speed is in benchmarks/bench_check.py."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

from sizing.execute.calls import KERNELS_PER_PAIR, chain_graph
from sizing.hardware.bench.measure import BenchConfig, BenchResult, Series, chain_name, fit_line
from sizing.hardware.devices import Device
from sizing.model.estimate import estimate_graph
from sizing.predict.calibration import shipped
from sizing.predict.roofline import gemm_rate, kernels, layer_times, smallest_dim
from sizing.predict.search import Pins, search
from sizing.predict.setup import Layout, assumptions
from sizing.predict.workload import Workload


def cpu(**extra) -> Device:
    return Device(id="local", vendor="Intel", model="Xeon (2 cores)", kind="cpu", memory_gb=16.0,
                  memory_bw_gbs=10.0, peak_tflops={"fp64": 0.04, "fp32": 0.08}, sources={"record": "a test"},
                  **extra)


def test_fit_line_recovers_a_known_intercept_and_slope():
    step, per = 150e-6, 5 * 7e-6                     # t = 150 us + pairs x (5 kernels x 7 us)
    a, b = fit_line([(n, step + n * per) for n in (8, 32, 64, 100)])
    assert a == pytest.approx(step, rel=1e-9) and b == pytest.approx(per, rel=1e-9)


def test_call_overhead_from_synthetic_step_rates():
    """Steps per second as the bench records them (best repeat = least interference): the line through
    1 / best gives the per-kernel and per-step costs."""
    step, kernel = 200e-6, 9e-6
    pairs = (8, 64)
    rates = {n: 1 / (step + n * KERNELS_PER_PAIR * kernel) for n in pairs}
    runs = {chain_name(n): Series(chain_name(n), "steps/s", (rates[n] / 3, rates[n], rates[n] / 2)) for n in pairs}
    r = BenchResult(None, BenchConfig(threads=1, chain_pairs=pairs), runs, {}, KERNELS_PER_PAIR)
    o = r.call_overhead()
    assert o.kernel_s == pytest.approx(kernel, rel=1e-9) and o.step_s == pytest.approx(step, rel=1e-9)
    assert replace(r, kernels_per_pair=None).call_overhead() is None     # chains not timed: no figure


def test_chain_kernels_are_counted_as_the_roofline_counts_them():
    est = estimate_graph(chain_graph(3))
    assert sum(kernels(row, True, False) for row in est.layers) == 3 * KERNELS_PER_PAIR


def _step(device, pairs: int) -> float:
    est = estimate_graph(replace(chain_graph(pairs), settings={**chain_graph(pairs).settings, "optimizer": "sgd"}))
    factors = shipped().factors(device, "fp32", {})
    return search(lambda _: est, Workload(dtype="fp32", optimizer="sgd"), device, factors,
                  Pins(micro_batch=1, zero=0, recompute="none"), devices=1, global_batch=1, name="chain").step_seconds


def test_a_chain_of_tiny_layers_grows_by_its_calls_times_the_overhead():
    """Each extra pair adds its 5 kernels x the measured cost (through the framework efficiency the step is
    divided by, sizing/predict/training.py), beside the roofline's own tiny growth."""
    us = 20.0
    fe = shipped().framework_efficiency
    plain, timed = cpu(), cpu(call_overhead_us=us)
    for short, long in ((4, 12), (10, 50)):
        grown = (_step(timed, long) - _step(timed, short)) - (_step(plain, long) - _step(plain, short))
        assert grown == pytest.approx((long - short) * KERNELS_PER_PAIR * us * 1e-6 / fe, rel=1e-9)


def test_calls_add_to_each_layer_rather_than_bound_it():
    device = cpu(call_overhead_us=50.0)
    factors = shipped().factors(device, "fp32", {})
    assert factors.launch_serial and factors.launch_seconds == pytest.approx(50e-6)
    est = estimate_graph(chain_graph(2))
    for row, lt in zip(est.layers, layer_times(est, device, "fp32", factors)):
        assert lt.seconds == pytest.approx(max(lt.compute_s, lt.memory_s) + kernels(row, True, False) * 50e-6)
    lines = assumptions(device, factors, Layout(), 1, training=True)
    assert any("each kernel call costs 50 us beside its work" in line for line in lines)
    assert not any("issue time" in line for line in lines)        # not a floor


def test_a_profile_without_the_key_predicts_the_plain_roofline_and_says_so():
    device = cpu()
    factors = shipped().factors(device, "fp32", {})
    assert factors.launch_seconds == 0 and not factors.launch_serial
    assert any("no measured call overhead" in n for n in factors.notes)
    est = estimate_graph(chain_graph(2))
    mat = device.peak_per_s("fp32")
    for row, lt in zip(est.layers, layer_times(est, device, "fp32", factors)):
        c = row.cost
        compute = (c.flops + c.backward_flops) / mat          # fp32 CPU: one peak for every op
        memory = 3 * (c.bytes_read + c.bytes_written) / device.memory_bw_bytes_per_s
        assert lt.seconds == pytest.approx(max(compute, memory))


# ---------------------------------------------------------------- GEMM rate by shape

SWEEP = [[8, 4096, 4096, 40.0], [256, 256, 256, 160.0], [1568, 2304, 256, 200.0], [1024, 1024, 1024, 190.0]]


@pytest.mark.parametrize("smallest, gflops", [
    (1, 40.0), (8, 40.0),                                   # held at the thinnest shape's rate
    (64, 40.0 + (180.0 - 40.0) * 3 / 5),                    # log2(64 / 8) / log2(256 / 8) = 3 / 5
    (256, 180.0),                                           # the two shapes whose smallest dimension is 256, averaged
    (512, 185.0), (4096, 190.0)])                           # half way (in log) from 256 to 1024; beyond: held
def test_gemm_rate_is_log_linear_in_the_smallest_dimension(smallest, gflops):
    assert gemm_rate(SWEEP, smallest) == pytest.approx(gflops * 1e9)


def test_a_row_parallel_product_splits_its_inner_dimension():
    """A linear 64 -> 4096 over 8 x 16 tokens, (m, n, inner) = (128, 4096, 64): column-parallel over 4 devices its
    columns split (smallest 64, the inner); row-parallel its inner splits, ceil(64 / 4) = 16, and its output stays
    whole; over 128 devices the inner is 1."""
    from sizing.model.graph import build

    spec = {"name": "l", "input": [16, 64], "defaults": {"batch": 8, "dtype": "fp32"},
            "layers": [{"op": "linear", "name": "fc", "out_features": 4096}]}
    row = estimate_graph(build(spec, {}, "l")).layers[0]
    assert smallest_dim(row, 4) == 64 and smallest_dim(row, 4, inner_split=True) == 16
    assert smallest_dim(row, 128, inner_split=True) == 1 and smallest_dim(row, 128) == 32


def test_a_conv_reads_the_sweep_at_its_smallest_dimension():
    """lenet-like: a 5 x 5 conv from 1 to 6 channels at batch 8 on 32 x 32: (m, n, inner) = (8 x 28 x 28, 6, 25),
    so its smallest dimension is 6 and it runs at the thinnest rate; without a sweep, at the one peak."""
    from sizing.model.graph import build

    spec = {"name": "c", "input": [1, 32, 32], "defaults": {"batch": 8, "dtype": "fp32"},
            "layers": [{"op": "conv2d", "name": "c1", "out_channels": 6, "kernel_size": 5}]}
    est = estimate_graph(build(spec, {}, "c"))
    row = est.layers[0]
    assert smallest_dim(row, 1) == 6
    device = cpu(gemm_sweep={"fp32": SWEEP, "fp64": SWEEP})
    lt = layer_times(est, device, "fp32", shipped().factors(device, "fp32", {}))[0]
    c = row.cost
    assert lt.compute_s == pytest.approx((c.flops + c.backward_flops) / 40e9)
    plain = layer_times(est, cpu(), "fp32", shipped().factors(cpu(), "fp32", {}))[0]
    assert plain.compute_s == pytest.approx((c.flops + c.backward_flops) / cpu().peak_per_s("fp32"))


def test_profile_keeps_the_sweep_and_the_costs(tmp_path):
    from sizing.hardware.bench.profile import write_device
    from sizing.hardware.devices import load_hwdb

    device = cpu(call_overhead_us=11.0, step_overhead_us=120.0, gemm_sweep={"fp32": SWEEP})
    path = str(tmp_path / "box.yaml")
    write_device(replace(device, id="box"), path, keep_others=False)
    assert load_hwdb([path])["box"] == replace(device, id="box")


def test_an_old_profile_file_loads_without_the_new_keys(tmp_path):
    """A profile written before `sizing bench` timed the executor: no call_overhead_us, no gemm_sweep."""
    from sizing.hardware.devices import load_hwdb

    path = tmp_path / "old.yaml"
    path.write_text("devices:\n  - {id: box, vendor: Intel, model: Xeon (2 cores), kind: cpu, memory_bw_gbs: 8.1, "
                    "peak_tflops: {fp64: 0.038, fp32: 0.067}, sources: {record: sizing bench}}\n")
    db = load_hwdb([str(path)])
    old = db["box"]
    assert (old.call_overhead_us, old.step_overhead_us, old.gemm_sweep) == (None, None, None)
    factors = shipped().factors(old, "fp32", db)
    assert factors.launch_seconds == 0 and not factors.launch_serial


def test_no_chain_lengths_means_no_layer_call_figures():
    from sizing.execute.calls import call_chain
    from sizing.hardware.bench.measure import run_bench, square
    from sizing.hardware.bench.profile import to_device

    config = BenchConfig(threads=1, repeats=2, sample_s=0.002, gemm=(square(64),), stream_elements=4096,
                         chains=(8,), chain_pairs=())
    r = run_bench(config, chain=call_chain())
    assert r.call_overhead() is None and not any(name.startswith("executor_step") for name in r.runs)
    assert to_device(r).call_overhead_us is None


# ---------------------------------------------------------------- executor terms by layer class

def _class_runs(executor, step, layer, wide):
    """Steps per second of every layer-class chain, as the bench would record them for an executor whose step costs
    ``step`` s, each layer of a class ``layer[cls]`` s tiny and ``layer[cls] + wide[cls]`` s wide (a first layer
    costs as much as one of the class, so it lands in the intercept)."""
    from sizing.hardware.bench.chains import LENGTHS, WIDE_LENGTHS
    from sizing.hardware.bench.measure import layer_chain_name

    runs = {}
    for cls in layer:
        for is_wide, lengths in ((False, LENGTHS), (True, WIDE_LENGTHS)):
            per = layer[cls] + (wide[cls] if is_wide else 0)
            for n in lengths:
                name = layer_chain_name(executor, cls, n, is_wide)
                rate = 1 / (step + per * (n + (cls != "linear")))
                runs[name] = Series(name, "steps/s", (rate / 2, rate, rate / 3))     # the best repeat is the rate
    return runs


LAYER = {"linear": 30e-6, "conv": 40e-6, "depthwise": 35e-6, "batchnorm": 25e-6, "rownorm": 12e-6,
         "elementwise": 8e-6, "pool": 10e-6, "attention": 60e-6}
WIDE = {cls: 1e-3 * (i + 1) for i, cls in enumerate(LAYER)}


def test_executor_terms_recover_each_class_fixed_cost_and_wide_work():
    runs = _class_runs("sizing", 150e-6, LAYER, WIDE)
    r = BenchResult(None, BenchConfig(threads=1), runs, {}, executors={"sizing": None})
    terms = r.executor_terms()["sizing"]
    assert terms["step_us"] == pytest.approx(150.0, rel=1e-6)
    for cls in LAYER:
        assert terms["layer_us"][cls] == pytest.approx(LAYER[cls] * 1e6, rel=1e-6)
        assert terms["wide_us"][cls] == pytest.approx(WIDE[cls] * 1e6, rel=1e-6)
    assert BenchResult(None, BenchConfig(threads=1), runs, {}).executor_terms() is None      # not timed


def test_executor_terms_recover_a_shape_s_work_from_its_fanned_out_chains():
    """conv_s2 fans out at lengths 2 and 3 (chains.FAN_LENGTHS): its slope less the tiny conv slope is its work."""
    from sizing.hardware.bench.chains import FAN_LENGTHS
    from sizing.hardware.bench.measure import layer_chain_name

    runs = _class_runs("sizing", 150e-6, {"conv": 40e-6}, {"conv": 2e-3})
    for n in FAN_LENGTHS:
        name = layer_chain_name("sizing", "conv", n, "conv_s2")
        runs[name] = Series(name, "steps/s", (1 / (300e-6 + n * (40e-6 + 700e-6)),))
    terms = BenchResult(None, BenchConfig(threads=1), runs, {}, executors={"sizing": None}).executor_terms()["sizing"]
    assert terms["shapes_us"] == {"conv_s2": pytest.approx(700.0, rel=1e-6)}
    assert terms["wide_us"] == {"conv": pytest.approx(2000.0, rel=1e-6)}
    # noise that leaves the tiny chains no slope drops the fixed cost, not the work figures (taken less nothing)
    for name in [k for k in runs if "_tiny_" in k]:
        runs[name] = Series(name, "steps/s", (1 / 150e-6,))
    terms = BenchResult(None, BenchConfig(threads=1), runs, {}, executors={"sizing": None}).executor_terms()["sizing"]
    assert terms["layer_us"] == {} and terms["shapes_us"] == {"conv_s2": pytest.approx(740.0, rel=1e-6)}


def test_executor_terms_recover_the_loss_from_the_wide_linear_chain_s_intercept():
    """The wide linear chain's step is the step's cost, its loss over chains.LOSS_ELEMENTS more logits and n layers,
    less the input gradient its first layer does not compute (a third of a layer's work): the loss comes back."""
    from sizing.hardware.bench.chains import LENGTHS, WIDE_LENGTHS
    from sizing.hardware.bench.measure import layer_chain_name

    step, tiny, wide, loss = 150e-6, 30e-6, 3e-3, 2e-3
    runs = {}
    for is_wide, lengths in ((False, LENGTHS), (True, WIDE_LENGTHS)):
        for n in lengths:
            name = layer_chain_name("sizing", "linear", n, is_wide)
            t = step + n * tiny + ((loss + n * wide - wide / 3) if is_wide else 0.0)
            runs[name] = Series(name, "steps/s", (1 / t,))
    terms = BenchResult(None, BenchConfig(threads=1), runs, {}, executors={"sizing": None}).executor_terms()["sizing"]
    assert terms["loss_us"] == pytest.approx(loss * 1e6, rel=1e-6)
    assert terms["step_us"] == pytest.approx(step * 1e6, rel=1e-6)


def test_the_loss_adds_its_measured_cost_per_output_element_once():
    """loss_us over the bench's LOSS_ELEMENTS logits, times the graph's output elements, on the last row only."""
    from sizing.hardware.bench.chains import LOSS_ELEMENTS

    with_loss = cpu(executors={"sizing": {"step_us": 10.0, "loss_us": 5000.0, "layer_us": {"linear": 30.0}}})
    without = cpu(executors={"sizing": {"step_us": 10.0, "layer_us": {"linear": 30.0}}})
    est = estimate_graph(chain_graph(3))              # its output: one row of CHAIN_WIDTH (4) values
    a, b = (layer_times(est, d, "fp32", shipped().factors(d, "fp32", {})) for d in (with_loss, without))
    assert [x.seconds for x in a[:-1]] == [x.seconds for x in b[:-1]]
    assert a[-1].seconds - b[-1].seconds == pytest.approx(5000e-6 / LOSS_ELEMENTS * 4, rel=1e-9)


def test_an_op_the_bench_timed_on_its_own_reads_its_own_share_and_others_their_class_s():
    """tanh has its own chain (chains.SHAPES 'tanh'): a tanh row takes that layer's share; relu6, which no chain
    runs, the elementwise class's (its wide relu layer's)."""
    from sizing.hardware.bench.chains import slope_graphs
    from sizing.predict.roofline import executor_seconds, executor_terms

    device = cpu(executors={"sizing": {"layer_us": {"elementwise": 5.0},
                                       "wide_us": {"elementwise": 400.0}, "shapes_us": {"tanh": 4000.0}}})
    terms = executor_terms(device, "fp32", "sizing")
    assert set(terms.efficiency) == {"elementwise", "tanh"}
    (_, tanh_share), = terms.efficiency["tanh"]
    (_, relu_share), = terms.efficiency["elementwise"]
    assert tanh_share == pytest.approx(relu_share / 10, rel=0.05)    # the same pass, ten times the time
    spec = {"name": "e", "input": [64], "defaults": {"batch": 1, "dtype": "fp32"},
            "layers": [{"op": "tanh", "name": "t"}, {"op": "relu6", "name": "r"}]}
    from sizing.model.graph import build

    t, r = estimate_graph(build(spec, {}, "e")).layers
    assert executor_seconds(t, terms, 2)[0] == tanh_share and executor_seconds(r, terms, 2)[0] == relu_share
    (short, _), _ = slope_graphs("elementwise", "tanh")
    assert [row.node.op for row in short.layers] == ["layernorm", "tanh"]
    # an add's chain is a residual stream: each add reads the one before and the first layer (a fork each)
    (_, long), _ = slope_graphs("elementwise", "add")
    assert [r.node.inputs for r in long.layers[1:]] == [("first", "first"), ("l0", "first"), ("l1", "first")]


@pytest.mark.parametrize("spec, op, cls", [("resnet18", "conv2d", "conv"), ("mobilenet_v2", "conv2d", "depthwise"),
                                           ("resnet18", "batchnorm2d", "batchnorm"), ("gpt2_small", "layernorm", "rownorm"),
                                           ("gpt2_small", "multihead_attention", "attention"),
                                           ("gpt2_small", "gelu", "elementwise"), ("resnet18", "maxpool2d", "pool"),
                                           ("resnet18", "linear", "linear")])
def test_layer_class_of_zoo_rows(spec, op, cls):
    from sizing.model.estimate import estimate
    from sizing.predict.roofline import layer_class

    rows = [r for r in estimate(spec, batch=1, seq_len=8).layers if r.node.op == op]
    groups = [r.node.kwargs.get("groups", 1) for r in rows]
    if cls == "depthwise":
        rows = [r for r, g in zip(rows, groups) if g > 1]
    elif op == "conv2d":
        rows = [r for r, g in zip(rows, groups) if g == 1]
    assert rows and {layer_class(r) for r in rows} == {cls}


def _record(layer_us, wide_us, step_us=100.0):
    return {"sizing": {"step_us": step_us, "layer_us": layer_us, "wide_us": wide_us}}


def test_the_wide_bench_layer_is_predicted_as_it_was_measured():
    """The share of the roofline is the bench's wide layer's roofline / its measured work, so that layer's own row
    comes back as measured: work + fixed cost, + the step's cost on this last row (an independent route: the
    definition, not the code's output)."""
    from sizing.hardware.bench.chains import slope_graphs

    device = cpu(executors=_record({"batchnorm": 20.0}, {"batchnorm": 9000.0}))
    factors = shipped().factors(device, "fp32", {})
    assert factors.framework_efficiency == 1.0 and factors.executor.name == "sizing"
    (est, _), _ = slope_graphs("batchnorm", True)
    row = next(lt for lt in layer_times(est, device, "fp32", factors) if lt.name == "l0")
    assert row.seconds == pytest.approx(9000e-6 + 20e-6 + 100e-6, rel=1e-9)


def test_a_fanned_out_shape_sets_one_copy_and_one_add_input_against_its_measured_work():
    """A stride-2 convolution changes its input's shape, so its chain fans out: n copies of it read the first
    layer's output and an add sums them. Its share is the plain roofline's growth from 2 to 3 copies (one
    convolution and one more input of the add: its closed form written here) / the measured work."""
    from sizing.hardware.bench.chains import chain_graph
    from sizing.predict.roofline import executor_terms, shape_features

    device = cpu(executors={"sizing": {"layer_us": {"conv": 20.0}, "shapes_us": {"conv_s2": 3000.0}}})
    est = estimate_graph(chain_graph("conv", 3, "conv_s2"))
    assert [r.node.op for r in est.layers] == ["batchnorm2d"] + ["conv2d"] * 3 + ["add"]
    conv = est.layers[1]
    c = conv.cost
    conv_s = max((c.flops + c.backward_flops) / device.peak_per_s("fp32"),
                 3 * (c.bytes_read + c.bytes_written) / device.memory_bw_bytes_per_s)
    # one more (1, 128, 14, 14) fp32 input read; an add has no backward FLOPs, so the roofline moves no backward bytes
    add_s = 128 * 14 * 14 * 4 / device.memory_bw_bytes_per_s
    (features, share), = executor_terms(device, "fp32", "sizing").efficiency["conv"]
    assert features == shape_features(conv)
    assert share == pytest.approx((conv_s + add_s) / 3000e-6, rel=1e-9)


@pytest.mark.parametrize("at, expected", [
    ((1.0,), 0.5), ((5.0,), 2.0),                          # a measured layer's own share
    ((3.0,), 1.0),                                         # half way: the geometric mean of 0.5 and 2
    ((2.0,), math.exp((math.log(0.5) / 1 + math.log(2.0) / 9) / (1 + 1 / 9))),   # weights 1 / d^2: 1 and 1/9
    ((1.0, 1.0), 1.0)])                                    # no point of its kind: the plain roofline
def test_the_share_is_read_by_inverse_distance_in_log_space(at, expected):
    from sizing.predict.roofline import read_share

    assert read_share((((1.0,), 0.5), ((5.0,), 2.0)), at) == pytest.approx(expected, rel=1e-12)


def test_shape_features_of_a_conv_a_linear_attention_and_a_pass():
    from sizing.model.graph import build
    from sizing.predict.roofline import shape_features

    spec = {"name": "f", "input": [3, 32, 32], "defaults": {"batch": 2, "dtype": "fp32"},
            "layers": [{"op": "conv2d", "name": "c", "out_channels": 8, "kernel_size": 3, "stride": 2},
                       {"op": "relu", "name": "r"}, {"op": "flatten", "name": "f"},
                       {"op": "linear", "name": "fc", "out_features": 10}]}
    rows = {r.node.name: r for r in estimate_graph(build(spec, {}, "f")).layers}
    log2 = math.log2
    assert shape_features(rows["c"]) == pytest.approx((log2(2 * 15 * 15), log2(8), log2(3 * 9)))
    assert shape_features(rows["r"]) == pytest.approx((log2(2 * 8 * 15 * 15),))
    assert shape_features(rows["fc"]) == pytest.approx((log2(2), log2(10), log2(8 * 15 * 15)))
    att = {"name": "a", "input": [16, 32], "defaults": {"batch": 1, "dtype": "fp32"},
           "layers": [{"op": "multihead_attention", "name": "a", "num_heads": 2, "causal": True, "dropout": 0.1}]}
    assert shape_features(estimate_graph(build(att, {}, "a")).layers[0]) == (8.0, 8.0, 4.0)


def test_executor_rows_add_the_class_cost_per_copy_and_the_step_cost_once():
    device = cpu(executors=_record({"linear": 30.0, "elementwise": 5.0}, {}, step_us=400.0))
    factors = shipped().factors(device, "fp32", {})
    est = estimate_graph(chain_graph(3))              # (linear, relu) x 3
    times = layer_times(est, device, "fp32", factors)
    for i, (row, lt) in enumerate(zip(est.layers, times)):
        fixed = (30e-6 if row.node.op == "linear" else 5e-6) + (400e-6 if i == len(times) - 1 else 0)
        assert lt.seconds == pytest.approx(max(lt.compute_s, lt.memory_s) + fixed, rel=1e-9)
    lines = assumptions(device, factors, Layout(), 1, training=True)
    assert any("our Numba executor" in line and "400 us per step" in line for line in lines)


def test_an_executor_the_profile_lacks_is_said_and_predicts_the_plain_roofline():
    device = cpu(executors=_record({"linear": 30.0}, {}))
    factors = shipped().factors(device, "fp32", {}, executor="pytorch")
    assert factors.executor is None and any("no terms for the executor 'pytorch'" in n for n in factors.notes)


def test_profile_keeps_executor_terms_and_refuses_a_bad_one(tmp_path):
    from sizing.common.errors import SizingError
    from sizing.hardware.bench.profile import write_device
    from sizing.hardware.devices import load_hwdb

    device = cpu(executors={**_record({"conv": 12.5}, {"conv": 800.0}),
                            "pytorch": {"step_us": 90.0, "layer_us": {"conv": 30.0}, "version": "torch 2.13.0"}})
    path = str(tmp_path / "box.yaml")
    write_device(replace(device, id="box"), path, keep_others=False)
    assert load_hwdb([path])["box"] == replace(device, id="box")
    with pytest.raises(SizingError, match="executors.sizing.layer_us.convolution"):
        cpu(executors=_record({"convolution": 12.5}, {}))


# ---------------------------------------------------------------- PyTorch's convolution paths

def _conv_row(channels, size, kernel, batch=1, stride=1, groups=1):
    from sizing.model.graph import build

    spec = {"name": "c", "input": [channels, size, size], "defaults": {"batch": batch, "dtype": "fp32"},
            "layers": [{"op": "conv2d", "name": "c", "out_channels": channels, "kernel_size": kernel,
                        "stride": stride, "padding": kernel // 2, "groups": groups}]}
    return estimate_graph(build(spec, {}, "c")).layers[0]


@pytest.mark.parametrize("channels, size, kernel, batch, stride, groups, threads, onednn", [
    # what torch 2.13's profiler showed on this machine (aten::mkldnn_convolution or aten::_slow_conv2d_forward)
    (2, 4, 3, 1, 1, 1, 1, False), (2, 4, 3, 2, 1, 1, 1, True), (2, 4, 5, 1, 1, 1, 1, True),
    (2, 4, 3, 1, 1, 2, 1, True), (8, 50, 3, 1, 1, 1, 1, False), (8, 51, 3, 1, 1, 1, 1, True),
    (64, 14, 1, 1, 1, 1, 1, False), (64, 14, 1, 1, 2, 1, 1, False), (64, 14, 1, 8, 1, 1, 1, False),
    (64, 14, 1, 8, 1, 1, 2, True), (64, 14, 1, 16, 1, 1, 1, True), (64, 56, 1, 1, 1, 1, 2, True)])
def test_pytorch_s_convolution_path_follows_its_use_mkldnn_rule(channels, size, kernel, batch, stride, groups,
                                                                  threads, onednn):
    from sizing.predict.roofline import conv_path

    row = _conv_row(channels, size, kernel, batch, stride, groups)
    assert conv_path(row, threads) == ("conv_onednn" if onednn else "conv")


def test_pytorch_s_onednn_convolutions_take_that_path_s_fixed_cost_and_ours_the_class_s():
    """A 5 x 5 convolution (oneDNN's in PyTorch) pays the bench's conv_onednn cost per layer, a tiny batch-1 3 x 3
    one (PyTorch's native kernels) the tiny conv chain's; our executor has one path (the class's cost for both), and
    a profile made before conv_onednn was timed keeps the class's cost for every convolution. A oneDNN layer's
    measured work is taken less that path's extra fixed cost."""
    from sizing.predict.roofline import executor_seconds, executor_terms

    terms = {"layer_us": {"conv": 40.0, "conv_onednn": 250.0}, "wide_us": {"conv": 2000.0}, "threads": 1}
    device = cpu(executors={"sizing": terms, "pytorch": terms})
    big, small = _conv_row(6, 14, 5), _conv_row(2, 4, 3)
    pt, ours = (executor_terms(device, "fp32", ex) for ex in ("pytorch", "sizing"))
    launched = kernels(big, True, False)             # a training step's kernels: the cost per layer as measured
    assert executor_seconds(big, pt, launched)[1] == pytest.approx(250e-6)
    assert executor_seconds(small, pt, launched)[1] == pytest.approx(40e-6)
    assert executor_seconds(big, ours, launched)[1] == pytest.approx(40e-6)
    # the wide conv (oneDNN's in PyTorch) was timed less the tiny native cost: its work is 210 us less, as the row
    # pays the 210 us more as its fixed cost; ours keeps the measured work
    (_, pt_share), = pt.efficiency["conv"]
    (_, our_share), = ours.efficiency["conv"]
    assert pt_share == pytest.approx(our_share * 2000 / (2000 - 210), rel=1e-9)
    old = executor_terms(cpu(executors={"pytorch": {"layer_us": {"conv": 40.0}}}), "fp32", "pytorch")
    assert old.threads is None and executor_seconds(big, old, launched)[1] == pytest.approx(40e-6)


def test_executor_terms_take_a_fixed_shape_s_slope_as_its_path_s_cost_and_keep_the_threads():
    """conv_onednn runs at the tiny lengths; its slope is the cost per layer itself (not less the tiny conv's)."""
    from sizing.hardware.bench.chains import LENGTHS
    from sizing.hardware.bench.measure import layer_chain_name

    runs = _class_runs("pytorch", 150e-6, {"conv": 40e-6}, {"conv": 2e-3})
    for n in LENGTHS:
        name = layer_chain_name("pytorch", "conv", n, "conv_onednn")
        runs[name] = Series(name, "steps/s", (1 / (300e-6 + n * 260e-6),))
    result = BenchResult(None, BenchConfig(threads=2), runs, {}, executors={"pytorch": "torch 2.13.0"})
    terms = result.executor_terms()["pytorch"]
    assert terms["layer_us"] == {"conv": pytest.approx(40.0, rel=1e-6), "conv_onednn": pytest.approx(260.0, rel=1e-6)}
    assert "conv_onednn" not in terms.get("shapes_us", {}) and terms["threads"] == 2
    cpu(executors={"pytorch": terms})                # the profile takes them


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_with_executor_terms_the_step_adds_only_the_optimizer_s_work_beyond_sgd(optimizer):
    """The bench's chains train with SGD, so each layer's measured time holds its update: the step adds nothing
    for SGD and, for Adam, its traffic less SGD's (closed form: fp32, SGD reads w and g and writes w, 12 bytes a
    parameter; Adam reads and writes its two moments too, 28; at 10 GB/s both are memory bound on this device).
    Without executor terms the whole update is added, as before."""
    graph = chain_graph(3)
    est = estimate_graph(replace(graph, settings={**graph.settings, "optimizer": optimizer}))
    p = est.trainable_params

    def optimizer_s(device):
        factors = shipped().factors(device, "fp32", {})
        return search(lambda _: est, Workload(dtype="fp32", optimizer=optimizer), device, factors,
                      Pins(micro_batch=1, zero=0, recompute="none"), devices=1, global_batch=1,
                      name="chain").optimizer_seconds

    bw = 10e9
    whole = {"sgd": 12, "adam": 28}[optimizer] * p / bw
    assert optimizer_s(cpu(executors=_record({"linear": 30.0}, {}))) == pytest.approx(whole - 12 * p / bw, abs=1e-15)
    assert optimizer_s(cpu()) == pytest.approx(whole, rel=1e-9)
