"""Where a training step's time goes, layer by layer and phase by phase: our Numba kernels against PyTorch's CPU
step for the same graph (the instance `sizing check` runs, as benchmarks/bench_check.py picks it).

Ours: every layer's forward and backward kernel timed inside real training steps (the runner's own calls).
PyTorch (``--torch-python``): module forward and backward hooks around the same layers in its eager step
(sizing/hardware/bench/torch_steps.py); adds and concats are not modules, so they have no PyTorch figure.
Each side: the best of ``--steps`` timed steps after a warm-up step, per layer and phase; a summary by op and
phase; ms. Thread counts are the environment's (pin with taskset and NUMBA_NUM_THREADS / --threads).

Beside each side's measured forward + backward, the performance model's seconds for that row and executor
(sizing/predict/roofline.py ``layer_times`` with the executor's terms from this machine's bench profile, the device
'local': one figure per row, forward and backward together) and measured / predicted. The step's own fixed cost
and loss (which the model carries on the last row) and the optimizer are shown apart, as '(rest of step)': predicted
against the measured step less its layers' sum (the runner's work between kernels, the loss and the update). The
step is timed both with the per-layer timers (hooks) and without them.

    python benchmarks/bench_layers.py resnet18 [--batch 8] [--steps 3] [--threads 2] [--torch-python PY] [--top 25]
        [--sort ours|miss]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import replace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def graph_of(spec: str, batch: int):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from bench_check import instance
    from sizing.model.estimate import resolve

    return instance(resolve(spec), batch).graph


def ours(spec: str, batch: int, steps: int) -> dict:
    """{layer name: [forward s, backward s]}, best per layer over the timed steps."""
    import numpy as np

    from sizing.execute.model import Model

    model = Model(graph_of(spec, batch), np.float32)
    plain = step_seconds(lambda: model.step(0.01), steps)
    now: dict = defaultdict(lambda: [0.0, 0.0])

    def timed(layer):
        k, name = layer.kernel, layer.node.name

        def forward(*a):
            t0 = time.perf_counter()
            out = k.forward(*a)
            now[name][0] += time.perf_counter() - t0
            return out

        def backward(*a):
            t0 = time.perf_counter()
            out = k.backward(*a)
            now[name][1] += time.perf_counter() - t0
            return out

        return replace(k, forward=forward, backward=backward)

    for layer in model.layers:
        layer.kernel = timed(layer)
    return {**best_of(lambda: model.step(0.01), now, steps), "(step, no timers)": [plain, 0.0]}


def step_seconds(step, steps: int) -> float:
    """The best of ``steps`` timed steps after a warm-up step."""
    step()
    best = float("inf")
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return best


def best_of(step, now, steps) -> dict:
    step()
    best, total = None, []
    for _ in range(steps):
        now.clear()
        t0 = time.perf_counter()
        step()
        total.append(time.perf_counter() - t0)
        best = {k: list(v) for k, v in now.items()} if best is None else {
            k: [min(a, b) for a, b in zip(best.get(k, v), v)] for k, v in now.items()}
    best["(step)"] = [min(total), 0.0]
    return best


def torch_side(spec: str, batch: int, steps: int, threads: int | None) -> dict:
    import torch

    from sizing.hardware.bench import torch_steps

    if threads:
        torch.set_num_threads(threads)
    graph = graph_of(spec, batch)
    built = {}
    make = torch_steps.torch_model

    def model(g):
        net = make(g)
        built["net"] = net
        return net

    torch_steps.torch_model = model
    step = torch_steps.trainer(graph, None)
    plain = step_seconds(step, steps)
    net = built["net"]
    now: dict = defaultdict(lambda: [0.0, 0.0])
    start = {}
    names = {f"n{i}_{k}": n.name for i, n in enumerate(graph.nodes) for k in range(n.repeat)}
    for key, m in net.layers.items():
        name = names[key]

        def fpre(mod, inp, key=key):
            start[key] = time.perf_counter()

        def fpost(mod, inp, out, key=key, name=name):
            now[name][0] += time.perf_counter() - start[key]

        def bpre(mod, gout, key=key):
            start["b" + key] = time.perf_counter()

        def bpost(mod, gin, gout, key=key, name=name):
            now[name][1] += time.perf_counter() - start["b" + key]

        m.register_forward_pre_hook(fpre)
        m.register_forward_hook(fpost)
        m.register_full_backward_pre_hook(bpre)
        m.register_full_backward_hook(bpost)
    return {**best_of(step, now, steps), "(step, no timers)": [plain, 0.0]}


def predicted(graph, executor: str):
    """({layer name: seconds}, seconds of the rest of the step) of the performance model for ``executor`` on this
    machine's bench profile (the prediction `sizing check` makes: fp32, SGD, one device): each row's time from
    ``layer_times`` with the executor's terms, less the step's fixed cost and loss that the model adds to the last
    row; the rest is those and the optimizer (the predicted step less the rows). None without a profile or
    without the executor's terms in it."""
    from sizing.execute.check import predicted_step_seconds
    from sizing.hardware.devices import load_hwdb, local_profile_path
    from sizing.model.estimate import estimate_graph
    from sizing.model.ops import numel
    from sizing.predict.calibration import shipped
    from sizing.predict.roofline import layer_times

    if not os.path.exists(local_profile_path()):
        return None
    db = load_hwdb()
    device = db["local"]
    if executor not in (device.executors or {}):
        return None
    est = estimate_graph(replace(graph, settings={**graph.settings, "dtype": "fp32", "optimizer": "sgd"}))
    factors = shipped().factors(device, "fp32", db, executor=executor)
    rows = {lt.name: lt.seconds for lt in layer_times(est, device, "fp32", factors)}
    ex = factors.executor
    if rows:
        rows[est.layers[-1].node.name] -= ex.step_s + ex.loss_s * numel(graph.node(graph.output).out.shape)
    return rows, predicted_step_seconds(graph, executor) - sum(rows.values())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("spec")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int)
    p.add_argument("--torch-python")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--sort", choices=("ours", "miss"), default="ours",
                   help="the layers list: by our measured time, or by the larger miss |measured - predicted| of "
                        "either side")
    p.add_argument("--worker", choices=("ours", "torch"))
    a = p.parse_args()
    if a.worker == "ours":
        return print(json.dumps(ours(a.spec, a.batch, a.steps)))
    if a.worker == "torch":
        return print(json.dumps(torch_side(a.spec, a.batch, a.steps, a.threads)))
    args = [a.spec, "--batch", str(a.batch), "--steps", str(a.steps)] + (["--threads", str(a.threads)] if a.threads
                                                                         else [])
    env = {**os.environ, **({"NUMBA_NUM_THREADS": str(a.threads)} if a.threads else {})}
    run = lambda py, w: json.loads(subprocess.run([py, __file__, *args, "--worker", w], env=env, check=True,
                                                  capture_output=True, text=True).stdout)
    sides = {"ours": run(sys.executable, "ours")}
    if a.torch_python:
        sides["pt"] = run(a.torch_python, "torch")
    graph = graph_of(a.spec, a.batch)
    model = {"ours": predicted(graph, "sizing"), "pt": predicted(graph, "pytorch")}
    report(graph, a, sides, model)


def report(graph, a, sides: dict, model: dict) -> None:
    """The tables: the step, the summary by op, the slowest (or most missed) layers; measured fwd, bwd, the
    model's prediction and measured / predicted per side."""
    ms = lambda v: f"{v * 1e3:8.2f}" if v is not None else f"{'-':>8}"
    ratio = lambda m, q: f"{m / q:5.2f}" if m and q else f"{'-':>5}"
    side_names = [s for s in ("ours", "pt") if s in sides]

    def measured(side, name):
        v = sides[side].get(name)
        return (v[0], v[1]) if v else (None, None)

    def pred(side, name):
        return model[side][0].get(name) if model[side] else None

    print(f"{a.spec} batch {graph.settings['batch']}, ms")
    head = f"{'':20}" + "".join(f" | {s + ' step':>8} {'no tmrs':>8} {'layers':>8} {'rest':>8} {'pred rst':>8} "
                                f"{'pred':>8} {'m/p':>5}" for s in side_names)
    print(head)
    line = f"{'(step)':20}"
    for s in side_names:
        v, step = sides[s], sides[s]["(step)"][0]
        layers = sum(f + b for k, (f, b) in v.items() if not k.startswith("("))
        plain = v["(step, no timers)"][0]
        total = sum(model[s][0].values()) + model[s][1] if model[s] else None
        line += (f" | {ms(step)} {ms(plain)} {ms(layers)} {ms(step - layers)} "
                 f"{ms(model[s][1] if model[s] else None)} {ms(total)} {ratio(plain, total)}")
    print(line)
    by_op: dict = defaultdict(lambda: defaultdict(float))
    for n in graph.nodes:
        for s in side_names:
            f, b = measured(s, n.name)
            q = pred(s, n.name)
            row = by_op[n.op]
            row[s + "f"] += f or 0.0
            row[s + "b"] += b or 0.0
            row[s + "m"] += (f + b) if f is not None else 0.0
            row[s + "p"] += q if (q is not None and f is not None) else 0.0
            row[s + "P"] += q or 0.0
    cols = "".join(f" | {s + ' fwd':>8} {s + ' bwd':>8} {'pred':>8} {'m/p':>5}" for s in side_names)
    print(f"\n{'op':20}{cols}   (pred: the model's rows of the op; m/p over the rows measured)")
    for op, row in sorted(by_op.items(), key=lambda kv: -(kv[1]["oursf"] + kv[1]["oursb"])):
        print(f"{op:20}" + "".join(f" | {ms(row[s + 'f'])} {ms(row[s + 'b'])} {ms(row[s + 'P'])} "
                                   f"{ratio(row[s + 'm'], row[s + 'p'])}" for s in side_names))

    def miss(n):
        out = 0.0
        for s in side_names:
            f, b = measured(s, n.name)
            q = pred(s, n.name)
            if f is not None and q is not None:
                out = max(out, abs(f + b - q))
        return out

    key = miss if a.sort == "miss" else (lambda n: sum(x or 0.0 for x in measured("ours", n.name)))
    rows = sorted(graph.nodes, key=key, reverse=True)[:a.top]
    print(f"\nthe {a.top} {'most missed' if a.sort == 'miss' else 'slowest (ours, forward + backward)'} layers, ms")
    print(f"{'layer':28} {'op':12} {'in shape':22} {'args':14}{cols}")
    for n in rows:
        kw = n.kwargs
        args = f"k{kw['kernel_size']} s{kw['stride']} g{kw['groups']}" if n.op == "conv2d" else ""
        cells = ""
        for s in side_names:
            f, b = measured(s, n.name)
            q = pred(s, n.name)
            cells += f" | {ms(f)} {ms(b)} {ms(q)} {ratio((f + b) if f is not None else None, q)}"
        print(f"{n.name[:28]:28} {n.op:12} {str(list(n.in_types[0].shape)):22} {args[:14]:14}{cells}")


if __name__ == "__main__":
    main()
