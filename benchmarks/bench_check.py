"""Speed of `sizing check`'s kernels against PyTorch's CPU training step, and its JIT cache (issue 3 targets).

1. Training step (fp32, SGD, the loss `sizing check` picks) of the Numba kernels and of PyTorch for the same
   graph and batch, each in a fresh process, in alternating rounds; each side's best median over ``--steps``
   timed steps after a warm-up step. ratio = PyTorch step time / ours: our throughput as a share of PyTorch's
   (target >= 0.5). Ours runs under this environment's BLAS settings and, when the CPU has AVX-512 and the
   environment pins OpenBLAS to other kernels (OPENBLAS_CORETYPE), once more with OPENBLAS_CORETYPE=SkylakeX,
   the setting sizing.execute makes where nothing is pinned.
   With a `sizing bench` profile of this machine, the performance model's step time beside both (how far the
   roofline of the local device sits from a real training step).
2. The JIT cache: `sizing check SPEC --steps 1` twice in fresh processes sharing an empty NUMBA_CACHE_DIR;
   the first compiles every kernel it uses, the second must only load them.

PyTorch is not a dependency of sizing: give a python whose `import torch` works with --torch-python (its own
environment needs numpy and pyyaml; this checkout is put on its PYTHONPATH). Without one, the script says so
and prints our figures alone.

    python benchmarks/bench_check.py [--models lenet5 resnet18 ...] [--batch 1 8] [--steps 5] [--rounds 2]
        [--torch-python /path/to/venv/bin/python] [--cache-model lenet5 | --no-cache-run]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- ours (run in a fresh process)

CHECK_STEPS = 3         # `sizing check`'s default --steps: the instance it plans for them


def instance(spec: str, batch: int):
    """The graph `sizing check SPEC --batch B` runs at its default steps (sizing/execute/reduce.py ``plan``: cut
    down, batch first, when the full size would not fit in memory or would run past about a minute)."""
    from sizing.execute.reduce import plan
    from sizing.model.estimate import load_graph

    return plan(lambda **size: load_graph(spec, **size), batch, None, CHECK_STEPS, False)


def ours_worker(spec: str, batch: int, steps: int) -> None:
    import sizing.execute  # noqa: F401  (its BLAS settings before numpy loads BLAS)

    import numpy as np

    from sizing.execute.model import Model

    model = Model(instance(spec, batch).graph, np.float32)
    model.step(0.01)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        model.step(0.01)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"step_seconds": statistics.median(times)}))


# ---------------------------------------------------------------- PyTorch (run in its own interpreter)

def torch_model(graph):
    """An nn.Module computing ``graph`` (a folded group's copies each with their own weights)."""
    import torch
    from torch import nn

    def build(node):
        a, shape = node.kwargs, node.in_types[0].shape
        simple = {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(), "silu": nn.SiLU(),
                  "identity": nn.Identity()}
        if node.op in simple:
            return simple[node.op]
        if node.op == "linear":
            return nn.Linear(shape[-1], a["out_features"], bias=a["bias"])
        if node.op == "conv2d":
            return nn.Conv2d(shape[1], a["out_channels"], a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                             a["groups"], a["bias"], a["padding_mode"])
        if node.op == "batchnorm2d":
            return nn.BatchNorm2d(shape[1], a["eps"], a["momentum"], a["affine"], a["track_running_stats"])
        if node.op == "maxpool2d":
            return nn.MaxPool2d(a["kernel_size"], a["stride"], a["padding"], a["dilation"], ceil_mode=a["ceil_mode"])
        if node.op == "avgpool2d":
            return nn.AvgPool2d(a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"], a["count_include_pad"])
        if node.op == "adaptive_avgpool2d":
            return nn.AdaptiveAvgPool2d(a["output_size"])
        if node.op == "flatten":
            return nn.Flatten(a["start_dim"], a["end_dim"])
        if node.op == "dropout":
            return nn.Dropout(a["p"])
        if node.op == "softmax":
            return nn.Softmax(a["dim"])
        if node.op == "gelu":
            return nn.GELU(a["approximate"])
        if node.op == "layernorm":
            return nn.LayerNorm(shape[-1], a["eps"], a["elementwise_affine"], a["bias"])
        if node.op in ("add", "mul", "concat"):
            return None
        raise NotImplementedError(f"the PyTorch side has no module for op '{node.op}'")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.copies = {n.name: n.repeat for n in graph.nodes}
            self.layers = nn.ModuleDict({f"{n.name}#{k}".replace(".", "_"): m for n in graph.nodes
                                         for k in range(n.repeat) if (m := build(n)) is not None})

        def run(self, node, k, xs):
            key = f"{node.name}#{k}".replace(".", "_")
            if node.op == "add":
                return sum(xs[1:], xs[0])
            if node.op == "mul":
                out = xs[0]
                for x in xs[1:]:
                    out = out * x
                return out
            if node.op == "concat":
                return torch.cat(xs, node.kwargs["dim"])
            return self.layers[key](xs[0])

        def forward(self, x):
            values, groups = {("input", 0): x}, {g.name: g for g in graph.groups}
            done = set()
            for n in graph.nodes:
                if n.group is None:
                    values[(n.name, 0)] = self.run(n, 0, [values[_key(graph, i, None, 0)] for i in n.inputs])
                elif n.group not in done:
                    done.add(n.group)
                    g = groups[n.group]
                    members = [m for m in graph.nodes if m.group == g.name]
                    for k in range(g.repeat):
                        for m in members:
                            xs = [values[_key(graph, i, g, k)] for i in m.inputs]
                            values[(m.name, k)] = self.run(m, k, xs)
            return values[_key(graph, graph.output, None, 0)]

    return Net()


def _key(graph, name, group, k):
    """As sizing.execute.model.Model._key: which copy of a tensor a layer reads."""
    if group is not None and name == group.input and k > 0:
        return group.output, k - 1
    node = next((n for n in graph.nodes if n.name == name), None)
    if node is None or node.group is None:
        return name, 0
    if group is not None and node.group == group.name:
        return name, k
    return name, next(g.repeat for g in graph.groups if g.name == node.group) - 1


def torch_worker(spec: str, batch: int, steps: int, kind: str) -> None:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    graph = instance(spec, batch).graph
    net = torch_model(graph)
    x = torch.randn(graph.input.shape)
    out_shape = graph.node(graph.output).out.shape
    target = torch.randn(out_shape) if kind == "mse" else torch.randint(0, out_shape[-1], out_shape[:-1])
    loss_fn = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss,
               "nll": lambda p, t: F.nll_loss(torch.log(p), t)}[kind]
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss_fn(net(x), target).backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    print(json.dumps({"step_seconds": statistics.median(times), "threads": torch.get_num_threads(),
                      "version": torch.__version__}))


def worker(python: str, mode: str, spec: str, batch: int, steps: int, env: dict, *extra) -> dict:
    env = {**os.environ, **env, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run([python, os.path.abspath(__file__), mode, spec, "--batch", str(batch), "--steps", str(steps),
                          *extra], capture_output=True, text=True, env=env)
    if run.returncode:
        raise RuntimeError(run.stderr.strip().splitlines()[-1])
    return json.loads(run.stdout)


def find_torch(given: str | None) -> str | None:
    for python in ([given] if given else [sys.executable]):
        if subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0:
            return python
    return None


# ---------------------------------------------------------------- the JIT cache

def cache_run(spec: str) -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        print(f"\nJIT cache: `sizing check {spec} --steps 1` twice in fresh processes, empty NUMBA_CACHE_DIR")
        for run in ("first (compiles)", "second (cached)"):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "sizing.cli", "check", spec, "--steps", "1", "--format",
                                  "json"], capture_output=True, text=True, env=env, check=True)
            wall = time.perf_counter() - t0
            first = json.loads(out.stdout)["first_step_seconds"]
            print(f"  {run:17} wall {wall:6.2f} s   first training step {first:6.3f} s")


def main() -> None:
    from sizing.model.estimate import zoo_names

    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=list(zoo_names()))
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--torch-python")
    p.add_argument("--cache-model", default="lenet5")
    p.add_argument("--no-cache-run", action="store_true")
    p.add_argument("--torch-worker", metavar="SPEC")
    p.add_argument("--ours-worker", metavar="SPEC")
    p.add_argument("--loss")
    a = p.parse_args()
    if a.torch_worker:
        return torch_worker(a.torch_worker, a.batch[0], a.steps, a.loss)
    if a.ours_worker:
        return ours_worker(a.ours_worker, a.batch[0], a.steps)
    from sizing.execute.check import predicted_step_seconds
    from sizing.model.estimate import load_graph, resolve
    from sizing.execute import AVX512, cpu_flags
    from sizing.execute.loss import choose_loss

    python = find_torch(a.torch_python)
    pinned = os.environ.get("OPENBLAS_CORETYPE")
    settings = {f"ours (OPENBLAS_CORETYPE={pinned or 'unset'})": {}}
    if pinned and pinned.lower() != "skylakex" and AVX512 <= cpu_flags():
        settings["ours (OPENBLAS_CORETYPE=SkylakeX)"] = {"OPENBLAS_CORETYPE": "SkylakeX"}
    print("PyTorch: " + (f"{python}" if python else "not importable here and no --torch-python given: "
                                                       "our figures only"))
    print("each model as `sizing check` runs it (its reduced instance where the full one is too big or slow); "
          "ms per step, best of the rounds' medians; predicted: the performance model on this machine's bench "
          "profile (device 'local'), a prediction of our step; torch/ours: PyTorch step time / ours (our "
          "throughput as a share of PyTorch's)")
    rows = []
    for spec in a.models:
        path, kind = resolve(spec), choose_loss(load_graph(spec))   # a path: the zoo is not on PYTHONPATH
        for batch in a.batch:
            inst = instance(path, batch)
            best, note = {}, ""
            for _ in range(a.rounds):
                for name, env in settings.items():
                    t = worker(sys.executable, "--ours-worker", path, batch, a.steps, env)["step_seconds"]
                    best[name] = min(best.get(name, t), t)
                if python:
                    try:
                        t = worker(python, "--torch-worker", path, batch, a.steps, {}, "--loss", kind)
                        best["torch"] = min(best.get("torch", t["step_seconds"]), t["step_seconds"])
                        note = f"torch {t['version']}, {t['threads']} threads"
                    except RuntimeError as e:
                        note = f"torch side failed: {e}"
            predicted = predicted_step_seconds(inst.graph)
            reduced = inst.describe()
            for name in settings:
                rows.append((spec, batch, json.dumps(reduced) if reduced else "-", name, best[name], predicted,
                             best.get("torch"), note))
    print(f"\n{'model':13} {'batch':>5} {'side':38} {'measured':>9} {'predicted':>9} {'meas/pred':>9} "
          f"{'torch':>9} {'torch/ours':>10}  reduced")
    for spec, batch, reduced, name, t, predicted, torch, note in rows:
        ratio = f"{t / predicted:9.2f}" if predicted else f"{'-':>9}"
        pred = f"{predicted * 1e3:9.2f}" if predicted else f"{'-':>9}"
        tor = f"{torch * 1e3:9.2f} {torch / t:10.2f}" if torch else f"{'-':>9} {'-':>10}"
        print(f"{spec:13} {batch:5} {name:38} {t * 1e3:9.2f} {pred} {ratio} {tor}  {reduced} {note}")
    if not a.no_cache_run:
        cache_run(a.cache_model)


if __name__ == "__main__":
    main()
