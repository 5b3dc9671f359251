"""PyTorch's eager CPU training step of a sizing graph, for ``sizing bench`` (its layer-class chains, when torch is
importable) and benchmarks/bench_check.py (the zoo). PyTorch is not a dependency: this module imports torch only
inside its functions, and ``sizing bench`` runs it in a child interpreter (``torch_chains``), so that PyTorch's
OpenMP threads never share a process with the Numba kernels the bench times.

``torch_model`` builds an nn.Module that computes a graph as sizing's executor does (a folded group's copies each
with their own weights; a tied layer shares its weight); ``trainer`` makes one SGD training step of it with the
loss sizing's executor picks (sizing/execute/loss.py: cross-entropy after a final linear, NLL after a softmax,
else MSE).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time

LOSSES = ("cross_entropy", "mse", "nll")


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
        if node.op == "embedding":
            return embedding(a)
        if node.op in ("positional_embedding", "token_type_embedding"):
            return Table(node.op, a["num_embeddings"], shape[-1])
        if node.op == "multihead_attention":
            return Attention(shape[-1], a)
        if node.op == "select":
            return Select(a["dim"], a["index"])
        if node.op in ("add", "mul", "concat"):
            return None
        raise NotImplementedError(f"the PyTorch side has no module for op '{node.op}'")

    def embedding(a):
        """nn.Embedding with its table drawn N(0, 0.02^2), as our executor and Hugging Face's GPT-2 and BERT draw it
        (initializer_range 0.02). nn.Embedding's own N(0, 1) makes a tied output layer's logits spread so far
        (std 28 at width 768) that most softmax probabilities are subnormal floats, which run its backward
        products at 3-7 GFLOP/s instead of 50-230 (measured, torch 2.13 on 2 cores)."""
        e = nn.Embedding(a["num_embeddings"], a["embedding_dim"], a["padding_idx"], a["max_norm"])
        with torch.no_grad():
            e.weight.normal_(0.0, 0.02)
            if a["padding_idx"] is not None:
                e.weight[a["padding_idx"]] = 0.0
        return e

    class Table(nn.Module):
        """x + table[positions] (positional) or x + table[0] (token types, the synthetic input's type 0)."""
        def __init__(self, op, rows, width):
            super().__init__()
            self.op, self.weight = op, nn.Parameter(torch.randn(rows, width) * 0.02)

        def forward(self, x):
            return x + (self.weight[:x.shape[1]] if self.op == "positional_embedding" else self.weight[0])

    class Select(nn.Module):
        def __init__(self, dim, index):
            super().__init__()
            self.dim, self.index = dim, index

        def forward(self, x):
            return x.select(self.dim, self.index)

    class Attention(nn.Module):
        """As Hugging Face's GPT-2 / BERT with attn_implementation='sdpa' (their default on PyTorch 2): one fused
        q/k/v projection, F.scaled_dot_product_attention (PyTorch's fused CPU kernel), the output projection."""
        def __init__(self, width, a):
            super().__init__()
            self.heads, self.kv = a["num_heads"], a["num_kv_heads"] or a["num_heads"]
            self.causal, self.p = a["causal"], a["dropout"]
            d = width // self.heads
            self.qkv = nn.Linear(width, width + 2 * self.kv * d, bias=a["bias"])
            self.out = nn.Linear(width, width, bias=a["bias"])

        def forward(self, x):
            b, t, e = x.shape
            d = e // self.heads
            q, k, v = self.qkv(x).split([e, self.kv * d, self.kv * d], -1)
            q, k, v = (z.reshape(b, t, -1, d).transpose(1, 2) for z in (q, k, v))
            o = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=self.p, is_causal=self.causal,
                                                                 enable_gqa=self.kv != self.heads)
            return self.out(o.transpose(1, 2).reshape(b, t, e))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.copies = {n.name: n.repeat for n in graph.nodes}
            self.index = {n.name: i for i, n in enumerate(graph.nodes)}     # layer names may hold dots
            self.layers = nn.ModuleDict({f"n{i}_{k}": m for i, n in enumerate(graph.nodes)
                                         for k in range(n.repeat) if (m := build(n)) is not None})
            for n in graph.nodes:               # a tied layer shares its weight (GPT-2's lm_head and wte)
                if n.tie:
                    self.layers[f"n{self.index[n.name]}_0"].weight = self.layers[f"n{self.index[n.tie]}_0"].weight

        def run(self, node, k, xs):
            key = f"n{self.index[node.name]}_{k}"
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


def choose_loss(graph) -> str:
    """As sizing/execute/loss.py ``choose_loss`` (this stage cannot import the executor)."""
    return {"linear": "cross_entropy", "softmax": "nll"}.get(graph.node(graph.output).op, "mse")


def trainer(graph, kind: str | None = None, seed: int = 0):
    """``step()``: one training step (zero_grad, forward, loss, backward, SGD at lr 0.01) of ``graph`` in
    PyTorch on a fixed synthetic batch; ``kind``: the loss (default: the executor's choice)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    kind = kind or choose_loss(graph)
    net = torch_model(graph)
    vocab = [n.kwargs["num_embeddings"] for n in graph.nodes if n.op == "embedding"]
    x = torch.randint(0, min(vocab), graph.input.shape) if graph.input.ids else torch.randn(graph.input.shape)
    out_shape = graph.node(graph.output).out.shape
    target = torch.randn(out_shape) if kind == "mse" else torch.randint(0, out_shape[-1], out_shape[:-1])
    loss_fn = {"cross_entropy": lambda p, t: F.cross_entropy(p.reshape(-1, p.shape[-1]), t.reshape(-1)),
               "mse": F.mse_loss,
               "nll": lambda p, t: F.nll_loss(torch.log(p.reshape(-1, p.shape[-1])), t.reshape(-1))}[kind]
    opt = torch.optim.SGD(net.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        loss_fn(net(x), target).backward()
        opt.step()

    return step


# ---------------------------------------------------------------- the bench's layer-class chains

def torch_chains(python: str | None = None):
    """PyTorch as ``sizing bench`` times it (measure.LayerChains), in ``python`` (default: this interpreter);
    None when torch is not importable there."""
    from .measure import LayerChains

    python = python or sys.executable
    if python == sys.executable and importlib.util.find_spec("torch") is None:
        return None
    probe = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
    if probe.returncode:
        return None
    return LayerChains("pytorch", measure=lambda config: _measure_in(python, config),
                       version=f"torch {probe.stdout.strip()}")


def _measure_in(python: str, config) -> dict:
    """Every PyTorch chain timed in a child ``python`` -m this module, ``config.repeats`` times (one round of the
    bench): {name: [steps per second, ...]}."""
    from .measure import layer_chain_specs

    job = {"chains": layer_chain_specs("pytorch", config.classes), "repeats": config.repeats, "sample_s": config.sample_s,
           "threads": config.threads}
    run = subprocess.run([python, "-m", __name__], input=json.dumps(job), capture_output=True, text=True)
    if run.returncode:
        lines = run.stderr.strip().splitlines()
        raise RuntimeError(f"PyTorch's layer chains failed: {lines[-1] if lines else run.returncode}")
    return json.loads(run.stdout)


def _child() -> None:
    import torch

    from .chains import chain_graph
    from .measure import calibrate

    job = json.load(sys.stdin)
    torch.set_num_threads(job["threads"])
    out = {}
    runs = {}
    for name, cls, n, wide in job["chains"]:
        step = trainer(chain_graph(cls, n, wide))

        def fn(reps, step=step):
            for _ in range(reps):
                step()
        runs[name] = (fn, calibrate(fn, job["sample_s"]))
    for _ in range(job["repeats"]):           # the chains take turns, repeat by repeat (measure.measure)
        for name, (fn, reps) in runs.items():
            t0 = time.perf_counter()
            fn(reps)
            out.setdefault(name, []).append(reps / (time.perf_counter() - t0))
    print(json.dumps(out))


if __name__ == "__main__":
    _child()
