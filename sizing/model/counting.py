"""Counting: the exact cost of every node of a graph, and what backward keeps.

Pure functions over a Graph; nothing here imports the executor or the CLI. Two graph-level rules
complete the per-op formulas (docs/conventions.md):
- gradient flow: a tensor needs a gradient when any weight upstream of it is trainable; the model's own
  input never does (as autograd), so the first layer computes no input gradient;
- reaching the output: a layer whose output no path takes to the model's output runs forward but gets no
  gradient, so it has no backward and keeps nothing for it (autograd's rule);
- fan-out: a tensor read by k layers that all send back a gradient gets k - 1 gradient additions
  (numel each), counted on the layer that produced it;
- tied weights: a weight shared by k layers that all compute a gradient for it (live and trainable) gets
  k - 1 dense additions of numel(weight) each, as autograd's input buffer sums the k gradients before
  AccumulateGrad, counted on the layer that owns the weight (the one the others tie to);
- activations kept for backward: every tensor some consumer keeps (its inputs) or whose producer keeps
  it (its output), once per distinct tensor, plus the op-internal tensors each op reports.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .cost import Cost
from .graph import DTYPES, Graph, Node, TensorType
from .ops import REGISTRY, Call, numel


@dataclass(frozen=True)
class LayerCost:
    node: Node
    cost: Cost                 # totals over node.repeat copies
    note: str | None = None
    backward: bool = True      # receives a gradient (some path of readers leads to the model's output)


def weight_shapes(node: Node) -> dict[str, tuple[int, ...]]:
    return REGISTRY[node.op].weights(node.kwargs, tuple(t.shape for t in node.in_types))


def trained_weights(node: Node) -> dict[str, tuple[int, ...]]:
    """The weights of ``node`` that take a gradient when it trains: all but the op's frozen ones (a LoRA-adapted
    op's base weights)."""
    shapes = tuple(t.shape for t in node.in_types)
    frozen = REGISTRY[node.op].frozen(node.kwargs, shapes)
    return {k: v for k, v in weight_shapes(node).items() if k not in frozen}


def trained_params(row: LayerCost) -> int:
    """Params of a row that train: none when the layer is frozen, else its own less the op's frozen weights."""
    node = row.node
    if not node.trainable:
        return 0
    frozen = REGISTRY[node.op].frozen(node.kwargs, tuple(t.shape for t in node.in_types))
    return row.cost.params - sum(numel(s) for k, s in weight_shapes(node).items() if k in frozen) * node.repeat


def expert_trained_params(row: LayerCost) -> int:
    """Params of a row that train and are split over expert-parallel ranks: a mixture of experts' trained weights
    of its experts (``experts.*``: the experts' own in full training, their LoRA adapters under LoRA). Its
    router's (``gate.*``, the router's adapter included) are on every rank, as every other layer's."""
    node = row.node
    if node.op != "mixture_of_experts" or not node.trainable:
        return 0
    return sum(numel(s) for k, s in trained_weights(node).items() if k.startswith("experts.")) * node.repeat


def _itemsize(t: TensorType, itemsize: int) -> int:
    return 8 if t.ids else itemsize


def count(graph: Graph, dtype: str | None = None) -> tuple[list[LayerCost], int]:
    """(per-layer costs, bytes of the model input kept for backward)."""
    itemsize = DTYPES[dtype or graph.settings["dtype"]]
    needs_grad = {"input": False}
    for n in graph.nodes:
        has_weights = bool(weight_shapes(n))
        needs_grad[n.name] = any(needs_grad[i] for i in n.inputs) or (has_weights and n.trainable)
    instances = _instances(graph)
    live = _reaches_output(graph, instances)
    types = {"input": graph.input, **{n.name: n.out for n in graph.nodes}}
    op_of = {n.name: n.op for n in graph.nodes}

    def keeps_inputs(c) -> bool:
        saves = REGISTRY[c.op].saves
        return "inputs" in saves or ("inputs_for_weights" in saves and c.trainable and bool(weight_shapes(c)))

    def kept_and_accumulated(tensor: str) -> tuple[int, int]:
        """(bytes kept for backward, gradient-accumulation adds) over every instance of ``tensor``."""
        t = types[tensor]
        kept = adds = 0
        producer_keeps = tensor in live and "output" in REGISTRY[op_of[tensor]].saves
        for copies, readers in instances[tensor]:
            consumers = [c for c in readers if c.name in live]
            if producer_keeps or any(keeps_inputs(c) for c in consumers):
                kept += copies * numel(t.shape) * _itemsize(t, itemsize)
            if needs_grad[tensor] and len(consumers) > 1:
                adds += copies * (len(consumers) - 1) * numel(t.shape)
        return kept, adds

    rows = []
    for n in graph.nodes:
        op = REGISTRY[n.op]
        shapes = tuple(t.shape for t in n.in_types)
        weights = weight_shapes(n)
        weight_elems = sum(numel(s) for s in weights.values())
        backward = n.name in live
        call = Call(n.kwargs, shapes, n.out.shape, tuple(backward and needs_grad[i] for i in n.inputs),
                    backward and bool(weights) and n.trainable, itemsize, weight_elems)
        own = 0 if n.tie else weight_elems
        if n.tie and "bias" in weights:
            own = numel(weights["bias"])
        buffers = sum(numel(s) for s in op.buffers(n.kwargs, shapes).values())
        c = replace(op.cost(call), params=own, buffers=buffers) * n.repeat
        if not backward:
            c = replace(c, saved_bytes=0)
        kept, adds = kept_and_accumulated(n.name)
        c = replace(c, backward_flops=c.backward_flops + adds, saved_bytes=c.saved_bytes + kept)
        rows.append(LayerCost(n, c, op.note(call), backward))
    input_kept, _ = kept_and_accumulated("input")
    return _tied_gradient_sums(rows), input_kept


def _owner(nodes: dict[str, Node], node: Node) -> str:
    """The layer that owns the weight ``node`` uses: the end of its chain of ties (itself when untied)."""
    while node.tie:
        node = nodes[node.tie]
    return node.name


def _tied_gradient_sums(rows: list[LayerCost]) -> list[LayerCost]:
    """Add, on each owner of a tied weight, (k - 1) * numel(weight) backward FLOPs, k the layers sharing it
    that compute its gradient (receive a gradient and are trainable). Each layer's gradient of the weight is a
    dense tensor of its shape (an embedding's too: torch's embedding_dense_backward scatters into zeros), and
    autograd's InputBuffer adds the k of them before AccumulateGrad stores the sum (torch/csrc/autograd)."""
    nodes = {r.node.name: r.node for r in rows}
    users: dict[str, int] = {}
    for r in rows:
        if r.backward and r.node.trainable:
            owner = _owner(nodes, r.node)
            users[owner] = users.get(owner, 0) + 1
    out = []
    for r in rows:
        k = users.get(r.node.name, 0)
        if k > 1:
            extra = (k - 1) * numel(weight_shapes(r.node)["weight"])
            r = replace(r, cost=replace(r.cost, backward_flops=r.cost.backward_flops + extra))
        out.append(r)
    return out


def updated_params(rows: list[LayerCost]) -> int:
    """Trainable parameters that receive a gradient, so have gradient memory, optimizer state and an update:
    a dead layer's do not (autograd leaves its .grad None and optimizers skip it), unless a layer that
    receives a gradient ties to them."""
    tied_live = {r.node.tie for r in rows if r.backward and r.node.tie}
    return sum(trained_params(r) for r in rows if r.backward or r.node.name in tied_live)


def _reaches_output(graph: Graph, instances) -> set[str]:
    """Names of the layers from which some path of readers leads to the model's output (a fixpoint: a
    group's output is read by the group's next iteration, a cycle of the folded graph)."""
    live, grew = {graph.output}, True
    while grew:
        grew = False
        for n in reversed(graph.nodes):
            if n.name not in live and any(c.name in live for _, readers in instances[n.name] for c in readers):
                live.add(n.name)
                grew = True
    return live


def _instances(graph: Graph) -> dict[str, list[tuple[int, list[Node]]]]:
    """For every tensor: (number of copies, the layers that read each copy).

    A node in a folded group of r repeats produces r copies. The group's output is read, for the first
    r - 1 copies, by the next iteration (the group's readers of its input) and, for the last copy, by the
    layers after the group. A group's input tensor is read by the group's first iteration only.
    """
    group_of = {g.name: g for g in graph.groups}
    readers: dict[str, list[Node]] = {"input": [], **{n.name: [] for n in graph.nodes}}
    for n in graph.nodes:
        for i in n.inputs:
            readers[i].append(n)
    out: dict[str, list[tuple[int, list[Node]]]] = {"input": [(1, readers["input"])]}
    for n in graph.nodes:
        g = group_of.get(n.group) if n.group else None
        if g is None:
            out[n.name] = [(1, readers[n.name])]
            continue
        inside = [r for r in readers[n.name] if r.group == g.name]
        if n.name != g.output:
            out[n.name] = [(g.repeat, inside)]
            continue
        outside = [r for r in readers[n.name] if r.group != g.name]
        next_iteration = [r for r in readers[g.input] if r.group == g.name]
        out[n.name] = [(g.repeat - 1, inside + next_iteration), (1, inside + outside)]
    return out
