"""Where a training step's time goes, layer by layer and phase by phase: our Numba kernels against PyTorch's CPU
step for the same graph (the instance `sizing check` runs, as benchmarks/bench_check.py picks it).

Ours: every layer's forward and backward kernel timed inside real training steps (the runner's own calls).
PyTorch (``--torch-python``): module forward and backward hooks around the same layers in its eager step
(sizing/hardware/bench/torch_steps.py); adds and concats are not modules, so they have no PyTorch figure.
Each side: the best of ``--steps`` timed steps after a warm-up step, per layer and phase; a summary by op and
phase; ms. Thread counts are the environment's (pin with taskset and NUMBA_NUM_THREADS / --threads).

    python benchmarks/bench_layers.py resnet18 [--batch 8] [--steps 3] [--threads 2] [--torch-python PY] [--top 25]
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
    return best_of(lambda: model.step(0.01), now, steps)


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
    return best_of(step, now, steps)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("spec")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int)
    p.add_argument("--torch-python")
    p.add_argument("--top", type=int, default=25)
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
    mine = run(sys.executable, "ours")
    theirs = run(a.torch_python, "torch") if a.torch_python else {}
    graph = graph_of(a.spec, a.batch)
    ms = lambda v: f"{v * 1e3:8.2f}" if v is not None else f"{'-':>8}"
    rows, by_op = [], defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for n in graph.nodes:
        o, t = mine.get(n.name, [0.0, 0.0]), theirs.get(n.name)
        rows.append((n, o, t))
        s = by_op[n.op]
        s[0] += o[0]
        s[1] += o[1]
        if t:
            s[2] += t[0]
            s[3] += t[1]
    print(f"{a.spec} batch {graph.settings['batch']}: step ours {ms(mine['(step)'][0])} ms, PyTorch "
          f"{ms(theirs.get('(step)', [None])[0])} ms (sum of layers: ours {ms(sum(v[0] + v[1] for k, v in mine.items() if k != '(step)'))})")
    print(f"\n{'op':20} {'ours fwd':>8} {'ours bwd':>8} | {'pt fwd':>8} {'pt bwd':>8} | ours/pt")
    for op, s in sorted(by_op.items(), key=lambda kv: -(kv[1][0] + kv[1][1])):
        ratio = (s[0] + s[1]) / (s[2] + s[3]) if s[2] + s[3] else float("nan")
        print(f"{op:20} {ms(s[0])} {ms(s[1])} | {ms(s[2])} {ms(s[3])} | {ratio:6.2f}")
    print(f"\nthe {a.top} slowest layers (ours, forward + backward), ms")
    print(f"{'layer':28} {'op':12} {'in shape':22} {'args':26} {'ours fwd':>8} {'ours bwd':>8} | {'pt fwd':>8} "
          f"{'pt bwd':>8}")
    for n, o, t in sorted(rows, key=lambda r: -(r[1][0] + r[1][1]))[:a.top]:
        kw = n.kwargs
        args = (f"k{kw['kernel_size']} s{kw['stride']} g{kw['groups']}" if n.op == "conv2d" else "")
        print(f"{n.name[:28]:28} {n.op:12} {str(list(n.in_types[0].shape)):22} {args[:26]:26} {ms(o[0])} {ms(o[1])} | "
              f"{ms(t[0] if t else None)} {ms(t[1] if t else None)}")


if __name__ == "__main__":
    main()
