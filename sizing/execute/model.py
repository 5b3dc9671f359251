"""The runner: a Graph made real. Seeded weights, synthetic inputs and targets, then training steps
(forward, loss, backward, SGD) through the kernels, with each layer's work counted and timed.

A folded repeat group runs its body ``repeat`` times (schedule.py), each iteration with its own weights (as
the unfolded model has).
Gradients follow autograd's rule: a tensor needs one when a trainable weight lies upstream; a tensor
read by several layers receives the sum of their gradients (the adds counted on the layer that made it).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..model.counting import trained_weights, weight_shapes
from ..model.graph import Graph, Node
from ..model.ops import REGISTRY
from . import keep_freed_memory
from .kernels import BACK, KERNELS, Grad, OpKernel, added, all_finite, counter, sgd
from .loss import choose_loss, loss_and_grad, make_target
from .schedule import Schedule


class CheckFailure(Exception):
    """The run itself failed a check (NaN/Inf, a shape the kernels disagree on); the message names the layer."""


class NoKernel(ValueError):
    """An op, or one of its argument values, that no kernel runs; the message names the layer and what."""


@dataclass
class Layer:
    node: Node
    kernel: OpKernel
    params: list[dict[str, np.ndarray]]        # weights and buffers, one dict per iteration of its group
    grads: list[dict[str, Grad]] | None        # None: no weight gradient (no weights, or trainable: false)
    cnt: np.ndarray = field(default_factory=counter)
    seconds: float = 0.0


@dataclass(frozen=True)
class Call:
    """One executed application of a layer, as the tape keeps it for backward."""
    layer: int
    iteration: int
    in_keys: tuple
    out_key: tuple
    saved: object


_NORMS = ("batchnorm1d", "batchnorm2d", "layernorm", "rmsnorm", "groupnorm")


def _init(op: str, name: str, shape: tuple, weights: dict, rng, dtype) -> np.ndarray:
    """PyTorch-like: norm scales 1 and shifts 0; embedding tables N(0, 0.02^2) (GPT-2, BERT); every other
    weight, and its bias, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in from the weight's shape."""
    if op in _NORMS:
        return np.full(shape, 1.0 if name == "weight" else 0.0, dtype)
    if "embedding" in op:
        return (0.02 * rng.standard_normal(shape)).astype(dtype)
    ref = weights.get(name.replace("bias", "weight"), shape)
    bound = 1 / math.sqrt(math.prod(ref[1:]) if len(ref) > 1 else ref[0])
    return rng.uniform(-bound, bound, shape).astype(dtype)


class Model:
    """The runtime state of a graph: weights per layer and iteration, and the step functions."""

    def __init__(self, graph: Graph, dtype=np.float32, seed: int = 0, loss: str | None = None):
        keep_freed_memory()                         # its steps reuse freed memory (sizing/execute/__init__.py)
        self.graph, self.dtype = graph, np.dtype(dtype)
        rng = np.random.default_rng(seed)
        self.schedule = Schedule(graph)
        self.index = self.schedule.index
        self.layers: list[Layer] = []
        self.tied_grads: dict[str, Grad] = {}      # top-level layer -> its weight's Grad, which ties share
        for n in graph.nodes:
            self.layers.append(self._layer(n, rng))
        self.needs = self._needs_grad()
        self.loss_kind = loss or choose_loss(graph)
        self.x = self._input(rng)
        self.target = make_target(self.loss_kind, graph.node(graph.output).out.shape, rng, self.dtype)
        self.step_index = 0
        self.on_layer = None          # called (index, node) before each layer's forward, for progress

    # ------------------------------------------------------------ building
    def _layer(self, node: Node, rng) -> Layer:
        if node.op not in KERNELS:
            raise NoKernel(f"layer '{node.name}': op '{node.op}' has no kernel")
        why = KERNELS[node.op].refuse(node)
        if why:
            raise NoKernel(f"layer '{node.name}' ({node.op}): no kernel runs {why}")
        weights = weight_shapes(node)
        buffers = REGISTRY[node.op].buffers(node.kwargs, tuple(t.shape for t in node.in_types))
        tied = self.layers[self.index[node.tie]] if node.tie else None
        cnt = counter()
        params, grads = [], []
        for _ in range(node.repeat):
            p = {name: tied.params[0][name] if tied and name == "weight" else _init(node.op, name, shape, weights,
                                                                                  rng, self.dtype)
                 for name, shape in weights.items()}
            p.update({name: np.full(shape, 1.0 if name == "running_var" else 0.0, self.dtype)
                      for name, shape in buffers.items()})
            g = {name: self.tied_grads[node.tie] if tied and name == "weight" else Grad(shape, self.dtype, cnt)
                 for name, shape in trained_weights(node).items()}
            params.append(p)
            grads.append(g)
        if node.group is None and "weight" in weights:     # ties join top-level layers only
            self.tied_grads[node.name] = grads[0]["weight"]
        trainable = node.trainable and bool(weights)
        return Layer(node, KERNELS[node.op], params, grads if trainable else None, cnt)

    def _needs_grad(self) -> dict[str, bool]:
        """Tensor name -> whether backward must compute its gradient (a trainable weight upstream)."""
        needs = {"input": False}
        for layer in self.layers:
            n = layer.node
            needs[n.name] = layer.grads is not None or any(needs[i] for i in n.inputs)
        return needs

    def _input(self, rng):
        shape = self.graph.input.shape
        if not self.graph.input.ids:
            return rng.standard_normal(shape).astype(self.dtype)
        readers = [n for n in self.graph.nodes if "input" in n.inputs and n.op == "embedding"]
        vocab = min(n.kwargs["num_embeddings"] for n in readers)
        ids = rng.integers(0, vocab, size=shape)
        for n in readers:                           # ids are never the padding row (it takes no gradient)
            pad = n.kwargs["padding_idx"]
            if pad is not None:
                ids[ids == pad % n.kwargs["num_embeddings"]] = (pad + 1) % vocab
        return ids

    def weights(self):
        """(label, array, Grad) of every trainable weight tensor, tied ones once."""
        seen = set()
        for layer in self.layers:
            if layer.grads is None:
                continue
            for k, (p, g) in enumerate(zip(layer.params, layer.grads)):
                for name, grad in g.items():
                    if id(grad) in seen:
                        continue
                    seen.add(id(grad))
                    label = layer.node.name + (f"[{k}]" if layer.node.repeat > 1 else "") + "." + name
                    yield label, p[name], grad

    # ------------------------------------------------------------ running
    def forward(self, x, seed: int, timed: bool = True):
        """(output, tape). ``seed`` fixes every dropout mask of this pass."""
        values = {("input", 0): x}
        tape = []
        for group, members in self.schedule.segments():
            for k in range(group.repeat if group else 1):
                for i in members:
                    layer = self.layers[i]
                    node = layer.node
                    in_keys = tuple(self.schedule.key(s, group, k) for s in node.inputs)
                    xs = [values[key] for key in in_keys]
                    if self.on_layer:
                        self.on_layer(i, node)
                    t0 = time.perf_counter()
                    y, saved = layer.kernel.forward(node, xs, layer.params[k], layer.cnt,
                                                    seed * 1_000_003 + i * 1009 + k)
                    if timed:
                        layer.seconds += time.perf_counter() - t0
                    if y.shape != node.out.shape:
                        raise CheckFailure(f"layer '{node.name}' ({node.op}): the kernel made shape {list(y.shape)}, "
                                           f"the graph says {list(node.out.shape)}")
                    if not layer.kernel.keeps_finite and not all_finite(y.reshape(-1)):
                        raise CheckFailure(f"NaN or Inf in the output of layer '{node.name}' ({node.op})"
                                           f" at step {self.step_index + 1}")
                    values[(node.name, k)] = y
                    tape.append(Call(i, k, in_keys, (node.name, k), saved))
        return values[self.schedule.output()], tape

    def backward(self, tape, gy, timed: bool = True):
        grads = {self.schedule.output(): gy}
        for call in reversed(tape):
            layer = self.layers[call.layer]
            node = layer.node
            g = grads.pop(call.out_key, None)
            need = tuple(self.needs[key[0]] for key in call.in_keys)
            if g is None or not (any(need) or layer.grads is not None):
                continue
            t0 = time.perf_counter()
            outs = layer.kernel.backward(node, call.saved, g, need, layer.params[call.iteration],
                                         layer.grads[call.iteration] if layer.grads else None, layer.cnt)
            if timed:
                layer.seconds += time.perf_counter() - t0
            for key, gi in zip(call.in_keys, outs):
                if gi is None:
                    continue
                if not layer.kernel.keeps_finite and not all_finite(gi.reshape(-1)):
                    raise CheckFailure(f"NaN or Inf in the gradient from layer '{node.name}' ({node.op})"
                                       f" at step {self.step_index + 1}")
                if key in grads:
                    producer = self.layers[self.index[key[0]]]
                    grads[key] = added(grads[key], gi, producer.cnt, BACK)
                else:
                    grads[key] = gi

    def loss_and_gradients(self, timed: bool = True) -> float:
        """One forward and backward at the current weights; gradients end in each weight's Grad. Every step
        draws the same dropout masks (seed 0): with the batch fixed too, the loss is a function of the weights
        alone, so a step that works lowers it (fresh masks each step move it by more than one step's fall)."""
        for _, _, grad in self.weights():
            grad.reset()
        y, tape = self.forward(self.x, 0, timed)
        loss, gy = loss_and_grad(self.loss_kind, y, self.target)
        self.backward(tape, gy, timed)
        return loss

    def loss_at(self) -> float:
        """The loss at the current weights (forward only, the same dropout masks as the step)."""
        y, _ = self.forward(self.x, 0, timed=False)
        return loss_and_grad(self.loss_kind, y, self.target)[0]

    def step(self, lr, choose=None) -> tuple[float, float]:
        """A training step: forward, loss, backward, SGD update. ``choose(loss, |g|^2)`` picks the learning rate
        from this step's loss and squared gradient norm when given. Returns (the loss before the update, the
        learning rate used)."""
        loss = self.loss_and_gradients()
        if choose is not None:
            norm2 = sum(float(np.dot(g.array.reshape(-1), g.array.reshape(-1))) for _, _, g in self.weights()
                        if not g.fresh)
            lr = choose(loss, norm2)
        for _, w, grad in self.weights():
            if not grad.fresh:
                sgd(w.reshape(-1), grad.array.reshape(-1), lr)
        self.step_index += 1
        return loss, lr
