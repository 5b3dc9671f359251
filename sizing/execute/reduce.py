"""Which instance of a spec a check runs.

The count-and-speed instance is the spec at the size asked for, unless it would not fit in half of this
machine's free memory or would run longer than about a minute: then it is scaled down, batch first, then
sequence length, then the repeat counts of folded groups (never by changing a layer type), and every
reduction is recorded. The analytic counts are then computed for that same reduced graph.

The gradient check's instance is small by design: batch 2, at most 16 positions, at most 2 copies of each
folded group, and, when asked, every hidden width divided by a factor (``shrink``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable

from ..model.counting import count, trained_weights, updated_params
from ..model.cost import total
from ..common.errors import SizingError
from ..model.graph import Graph, TensorType
from ..model.memory import training_memory
from ..model.ops import REGISTRY, ShapeError

PLANNING_FLOPS_PER_S = 40e9     # a conservative share of the kernels' fp32 speed on 2 cores (they reach
                                # 100+ GFLOPS on the zoo's big models), used only to plan the size
# The kernels' float64 forward pass, as a roofline that never under-plans the zoo's gradient instances: it plans
# 1.06x (mobilenet_v2, depthwise) to 2.2x (alexnet) the measured pass on 2 cores; FLOPs alone planned
# mobilenet_v2 at 0.4x, and its check ran 72 s instead of the budget's half minute.
DIFFERENCE_FLOPS_PER_S, DIFFERENCE_BYTES_PER_S = 40e9, 4e9
TIME_BUDGET_S = 60.0
CALL_SECONDS = 30e-6            # the executor's cost per layer call, forward and backward, beside its FLOPs
                                # (measured here: a 500-copy block of 4-wide layers steps in 31 ms, 1001 calls)
MEMORY_SHARE = 0.5
EXECUTOR_OVERHEAD = 3           # the kernels keep more than the analytic activations (im2col columns, copies)
GRADIENT_BATCH, GRADIENT_SEQ_LEN, GRADIENT_REPEAT = 2, 16, 2
_WIDTH_ARG = {"linear": "out_features", "conv1d": "out_channels", "conv2d": "out_channels",
              "conv_transpose2d": "out_channels", "embedding": "embedding_dim", "lstm": "hidden_size",
              "gru": "hidden_size"}


@dataclass(frozen=True)
class Reduction:
    what: str            # 'batch', 'seq_len', a folded group's name (its repeat count), or 'width':
    before: int          # hidden widths divided by ``before`` (after = 1)
    after: int


@dataclass(frozen=True)
class Instance:
    graph: Graph
    reductions: tuple[Reduction, ...] = ()

    def describe(self) -> dict | None:
        """{'batch': {'from': 64, 'to': 8}, 'repeat': {'h.1-11': {'from': 11, 'to': 2}}, 'width':
        {'divided_by': 4}}, or None."""
        if not self.reductions:
            return None
        out: dict = {}
        for r in self.reductions:
            entry = {"from": r.before, "to": r.after}
            if r.what == "width":
                out["width"] = {"divided_by": r.before}
            elif r.what in ("batch", "seq_len"):
                out[r.what] = entry
            else:
                out.setdefault("repeat", {})[r.what] = entry
        return out


def free_memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _too_big(graph: Graph, steps: int) -> bool:
    rows, input_kept = count(graph, "fp32")
    t = total(r.cost for r in rows)
    memory = training_memory(t.params, updated_params(rows), t.buffers, t.saved_bytes + input_kept, "fp32",
                             "sgd").total
    calls = sum(n.repeat for n in graph.nodes)
    seconds = ((t.flops + t.backward_flops) / PLANNING_FLOPS_PER_S + calls * CALL_SECONDS) * (steps + 1)
    return EXECUTOR_OVERHEAD * memory > MEMORY_SHARE * free_memory_bytes() or seconds > TIME_BUDGET_S


def with_repeats(graph: Graph, most: int) -> Graph:
    """Every folded group cut to at most ``most`` copies."""
    cut = {g.name: min(g.repeat, most) for g in graph.groups}
    groups = tuple(replace(g, repeat=cut[g.name]) for g in graph.groups)
    nodes = tuple(replace(n, repeat=cut[n.group]) if n.group else n for n in graph.nodes)
    return replace(graph, nodes=nodes, groups=groups)


def _sizes(graph: Graph) -> dict:
    return {"batch": graph.settings["batch"], "seq_len": graph.settings["seq_len"],
            **{g.name: g.repeat for g in graph.groups}}


def _instance(graph: Graph, start: dict, extra: tuple[Reduction, ...] = ()) -> Instance:
    now = _sizes(graph)
    return Instance(graph, tuple(Reduction(k, v, now[k]) for k, v in start.items() if now.get(k, v) != v) + extra)


def plan(load: Callable[..., Graph], batch: int | None, seq_len: int | None, steps: int, full: bool) -> Instance:
    """The count-and-speed instance. ``load(batch=, seq_len=)`` builds the spec's graph at a size."""
    graph = load(batch=batch, seq_len=seq_len)
    start = _sizes(graph)
    while not full and _too_big(graph, steps):
        b, t = graph.settings["batch"], graph.settings["seq_len"]
        most = max((g.repeat for g in graph.groups), default=1)
        if b > 1:
            graph = load(batch=b // 2, seq_len=t)
        elif t and t > 1:
            graph = load(batch=b, seq_len=t // 2)
        elif most > 1:
            graph = with_repeats(graph, most // 2)
        else:
            break
    return _instance(graph, start)


def gradient_instance(load: Callable[..., Graph], batch: int | None, seq_len: int | None,
                      factor: int | None, measure: Callable[[Graph], float] | None = None) -> Instance:
    """Batch 2, at most 16 positions and 2 copies of each folded group; hidden widths divided by ``factor``,
    or, when ``factor`` is None, by the smallest power of two that brings the finite differences within half
    the time budget, among the factors the graph can take (a view to a fixed head count, as Qwen3's per-head
    norms, keeps its widths: then no narrower instance): first by their planned seconds
    (``_difference_seconds``, cheap, so no instance too big to build is built), then, from that factor on, by
    ``measure(graph)``, their seconds measured on this machine as it is now (sizing/execute/check.py
    ``difference_seconds``: the plan's roofline misses the float64 kernels' speed by 2-5x on some graphs and
    knows nothing of the machine's load)."""
    graph = load(batch=batch, seq_len=seq_len)
    start = _sizes(graph)
    t = graph.settings["seq_len"]
    graph = load(batch=GRADIENT_BATCH, seq_len=min(t, GRADIENT_SEQ_LEN) if t else None)
    graph = with_repeats(graph, GRADIENT_REPEAT)
    if factor is None:
        factor, small = _narrowest(graph, 1, _difference_seconds)
        if measure is not None:
            factor, small = _narrowest(graph, factor, measure)
    else:
        small = shrink(graph, factor) if factor > 1 else graph
    if factor == 1:
        return _instance(small, start)
    return _instance(small, start, (Reduction("width", factor, 1),))


def _narrowest(graph: Graph, factor: int, seconds: Callable[[Graph], float]) -> tuple[int, Graph]:
    """(factor, the graph's widths divided by it): the smallest power of two from ``factor`` up to 64 at which
    ``seconds`` is within half the time budget, or the narrowest that builds."""
    small = shrink(graph, factor) if factor > 1 else graph
    while factor < 64 and seconds(small) > TIME_BUDGET_S / 2:
        try:
            narrower = shrink(graph, factor * 2)
        except SizingError:
            break                       # the widest instance that still builds
        factor, small = factor * 2, narrower
    return factor, small


def _difference_seconds(graph: Graph) -> float:
    """Planned seconds of the finite differences: two float64 forward passes per weight tensor (and three more),
    each layer's pass timed by a roofline of the kernels' float64 speed, max(FLOPs / DIFFERENCE_FLOPS_PER_S,
    bytes / DIFFERENCE_BYTES_PER_S); the byte term is what keeps depthwise convolutions from looking free."""
    rows, _ = count(graph, "fp64")
    tensors = sum(len(trained_weights(r.node)) * r.node.repeat for r in rows if r.node.trainable)
    forward = sum(max(r.cost.flops / DIFFERENCE_FLOPS_PER_S,
                      (r.cost.bytes_read + r.cost.bytes_written) / DIFFERENCE_BYTES_PER_S) for r in rows)
    return forward * (2 * tensors + 3)


def shrink(graph: Graph, factor: int) -> Graph:
    """Every hidden width (out_features, out_channels, embedding_dim, hidden_size) divided by ``factor``,
    shapes inferred again; the output layer and tied layers keep theirs. Depthwise convolutions stay
    depthwise; a narrow view keeps its share of a narrowed dim (start and length scaled when they divide
    exactly). A layer that cannot take the narrower shapes is named in the error."""
    types = {"input": graph.input}
    nodes = []
    for n in graph.nodes:
        args = n.kwargs
        key = _WIDTH_ARG.get(n.op)
        if key and n.name != graph.output and not n.tie:
            args[key] = max(1, args[key] // factor)
        in_types = tuple(types[i] for i in n.inputs)
        shapes = tuple(t.shape for t in in_types)
        if args.get("groups", 1) > 1 and args["groups"] == n.in_types[0].shape[1]:
            args["groups"] = shapes[0][1]
        if n.op == "narrow":                # a part of a fused projection narrows with it, in proportion
            dim = args["dim"] % len(shapes[0])
            old, new = n.in_types[0].shape[dim], shapes[0][dim]
            if new != old and args["start"] * new % old == 0 and args["length"] * new % old == 0:
                args["start"], args["length"] = args["start"] * new // old, args["length"] * new // old
        try:
            out = TensorType(tuple(REGISTRY[n.op].shape(args, shapes)))
        except ShapeError as e:
            raise SizingError(f"--shrink {factor}: layer '{n.name}' ({n.op}) cannot take the narrower shapes: {e}",
                              graph.source, n.line) from None
        types[n.name] = out
        nodes.append(replace(n, args=tuple(args.items()), in_types=in_types, out=out))
    return replace(graph, nodes=tuple(nodes))
