"""``sizing.check(spec)``: the library call behind ``sizing check``. Runs real training steps of the spec's
graph through the Numba kernels (sizing/execute) and compares the work they did with the analytic counts.

Per layer it sets executed MACs, forward FLOPs and backward FLOPs (counted by the kernels) beside
``sizing.model.counting``'s for the same graph and size. Every count of every layer must agree exactly (the
kernels perform the operations docs/conventions.md counts); any difference fails the check. Gradients are
checked against central finite differences on a small float64 instance; the loss on the fixed batch is
reported per step; the step is timed. ``to_dict()`` is the JSON.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from typing import Callable

from ..model.counting import count, updated_params
from ..common.errors import SizingError
from ..model.estimate import load_graph

COUNTS = ("macs", "flops", "backward_flops")


@dataclass(frozen=True)
class LayerCheck:
    name: str
    op: str
    repeat: int
    analytic: tuple[int, int, int]      # MACs, forward FLOPs, backward FLOPs (over all repeats)
    executed: tuple[int, int, int]
    seconds: float                      # forward + backward per step, all repeats

    @property
    def exact(self) -> bool:
        return self.analytic == self.executed

    def differences(self) -> list[str]:
        return [f"layer '{self.name}' ({self.op}) {what}: analytic {a}, executed {e} ({e - a:+d})"
                for what, a, e in zip(COUNTS, self.analytic, self.executed) if a != e]


@dataclass(frozen=True)
class CheckResult:
    model: str
    source: str
    batch: int
    seq_len: int | None
    steps: int
    lr: float
    loss_function: str
    reduced: dict | None
    layers: tuple[LayerCheck, ...]
    loss: tuple[float, ...]
    step_seconds: float                 # mean over the steps after the first (which compiles or loads kernels)
    first_step_seconds: float
    gradient: object                    # execute.gradcheck.GradientCheck
    gradient_instance: dict
    predicted_step_seconds: float | None = None    # from a `sizing bench` profile of this machine
    warnings: tuple[str, ...] = ()                   # the graph's (e.g. a layer whose output nothing reads)

    @property
    def exact(self) -> bool:
        return all(layer.exact for layer in self.layers)

    @property
    def failures(self) -> list[str]:
        out = [d for layer in self.layers for d in layer.differences()]
        if not self.gradient.ok:
            worst = self.gradient.worst
            out.append(f"gradient of {worst.name}: relative error {worst.rel_error:.2e} (limit 1e-4)")
        if not self.loss_fell:
            out.append(f"the loss did not fall by {LOSS_MARGIN:.0%} over {self.steps} steps on a fixed batch "
                       f"({self.loss[0]:.5g} -> {self.loss[-1]:.5g}, learning rate {self.lr:.3g})")
        return out

    @property
    def loss_fell(self) -> bool:
        """The loss fell by at least LOSS_MARGIN of its first value (a single step proves nothing)."""
        return len(self.loss) < 2 or self.loss[0] - self.loss[-1] >= LOSS_MARGIN * abs(self.loss[0])

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def executed_step_flops(self) -> int:
        return sum(layer.executed[1] + layer.executed[2] for layer in self.layers)

    @property
    def achieved_gflops(self) -> float:
        return self.executed_step_flops / self.step_seconds / 1e9 if self.step_seconds > 0 else 0.0

    def to_dict(self) -> dict:
        g = self.gradient
        return {
            "model": self.model, "source": self.source, "batch": self.batch, "seq_len": self.seq_len,
            "steps": self.steps, "lr": self.lr, "loss_function": self.loss_function, "reduced": self.reduced,
            "exact": self.exact, "ok": self.ok, "failures": self.failures,
            "differences": [d for layer in self.layers for d in layer.differences()],
            "loss": list(self.loss), "loss_fell": self.loss_fell, "loss_margin": LOSS_MARGIN,
            "gradient_check": {"max_rel_error": g.max_rel_error, "tolerance": 1e-4, "ok": g.ok,
                               "worst": g.worst.name if g.worst else None, "tensors": len(g.tensors),
                               "instance": self.gradient_instance},
            "step_seconds": self.step_seconds, "first_step_seconds": self.first_step_seconds,
            "executed_step_flops": self.executed_step_flops, "achieved_gflops": self.achieved_gflops,
            "predicted_step_seconds": self.predicted_step_seconds,
            "warnings": list(self.warnings),
            "layers": [{"name": l.name, "op": l.op, "repeat": l.repeat,
                        **{f"analytic_{c}": a for c, a in zip(COUNTS, l.analytic)},
                        **{f"executed_{c}": e for c, e in zip(COUNTS, l.executed)},
                        "exact": l.exact, "seconds": l.seconds} for l in self.layers],
        }


FIRST_ORDER_FALL = 0.05     # the automatic learning rate: lr |g|^2 = 5% of the loss (first-order fall of step 1)
LOSS_MARGIN = 0.01          # the loss must fall by at least 1% of its first value over the steps


def auto_lr(loss: float, norm2: float) -> float:
    """The learning rate whose first-order fall of the loss is FIRST_ORDER_FALL of it: lr = 0.05 L / |g|^2
    (a gradient step lowers the loss by about lr |g|^2), between 1e-6 and 10."""
    return min(10.0, max(1e-6, FIRST_ORDER_FALL * abs(loss) / norm2)) if norm2 > 0 else 0.01


def check(spec: str, batch: int | None = None, seq_len: int | None = None, steps: int = 3, lr: float | None = None,
          loss: str | None = None, full: bool = False, shrink: int | None = None, seed: int = 0,
          progress: Callable[[int, int, str], None] | None = None, finetune: tuple | None = None) -> CheckResult:
    """Runs ``steps`` SGD steps of SPEC (a path or a zoo name) through the kernels and checks them; see the
    module docstring. ``finetune``: (method, rank, targets), the graph fine-tuning makes (sizing.model.finetune). ``progress(done, total, label)`` is called as it compiles and runs: once per layer of the
    first step (which compiles or loads the kernels), once per later step, once per weight tensor of the gradient
    check, and at the end."""
    from .gradcheck import gradient_check  # first: it sets BLAS threads before numpy loads BLAS
    from .loss import choose_loss
    from .model import Model, NoKernel
    from .reduce import gradient_instance, plan

    import numpy as np

    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise SizingError(f"--lr: must be a finite number above 0, got {lr}")
    say = progress or (lambda done, total, label: None)

    def load(**size):
        return load_graph(spec, finetune=finetune, **size)

    instance = plan(load, batch, seq_len, steps, full)
    graph = instance.graph
    require_training(graph)
    kind, built = loss or choose_loss(graph), {}

    def measure(g):                 # the gradient instance's finite differences, timed here (``difference_seconds``)
        require_memory(graph, g)
        say(0, 1, "timing the gradient check's instance")
        built.clear()
        built[id(g)] = Model(g, np.float64, seed, kind)
        return difference_seconds(built[id(g)])

    try:
        small = gradient_instance(load, batch, seq_len, shrink, measure)
        require_memory(graph, small.graph)
        model = Model(graph, np.float32, seed, loss)
        checker = built.get(id(small.graph)) or Model(small.graph, np.float64, seed, kind)
    except NoKernel as e:
        raise SizingError(f"cannot check: {e}", graph.source) from None
    losses, times = [], []
    timed = max(1, steps - 1)                  # the first step compiles or loads the kernels: untimed
    n_layers, tensors = len(graph.nodes), sum(1 for _ in checker.weights())
    total = n_layers + steps - 1 + tensors
    model.on_layer = lambda i, node: say(i, total, f"step 1/{steps}: layer {i + 1}/{n_layers} {node.name} ({node.op})")
    for s in range(steps):
        if s:
            say(n_layers + s - 1, total, f"step {s + 1}/{steps}")
        for layer in model.layers:
            if s == steps - 1:
                layer.cnt[:] = 0               # counts: the last step's work
            if s == steps - timed:
                layer.seconds = 0.0
        t0 = time.perf_counter()
        loss, lr = model.step(lr, auto_lr if lr is None else None)
        losses.append(loss)
        times.append(time.perf_counter() - t0)
        model.on_layer = None
    rows, _ = count(graph)
    layers = tuple(LayerCheck(r.node.name, r.node.op, r.node.repeat, (r.cost.macs, r.cost.flops, r.cost.backward_flops),
                              tuple(int(v) for v in layer.cnt), layer.seconds / timed)
                   for r, layer in zip(rows, model.layers))
    grad = gradient_check(checker, seed, lambda j, n, label: say(n_layers + steps - 1 + j, total,
                                                                  f"gradient check {j + 1}/{n}: {label}"))
    say(total, total, "done")
    s = graph.settings
    return CheckResult(graph.name, graph.source, s["batch"], s["seq_len"], steps, lr, model.loss_kind,
                       instance.describe(), layers, tuple(losses), sum(times[-timed:]) / timed, times[0], grad,
                       {"batch": small.graph.settings["batch"], "seq_len": small.graph.settings["seq_len"],
                        "reduced": small.describe()}, predicted_step_seconds(graph), graph.warnings)


def difference_seconds(checker) -> float:
    """Seconds the gradient check's finite differences take on ``checker`` (sizing/execute/gradcheck.py), measured:
    one forward pass timed after a first one (which loads or compiles the kernels) x the passes the check runs at
    its first step size, two per weight tensor, and three more (the backprop and these two)."""
    checker.loss_at()
    t0 = time.perf_counter()
    checker.loss_at()
    tensors = sum(1 for _ in checker.weights())
    return (time.perf_counter() - t0) * (2 * tensors + 3)


def require_training(graph) -> None:
    """SizingError when no trainable weight would receive a gradient (views, activations or frozen layers only):
    a training step changes nothing, so no loss could fall and there is no backward to compare."""
    if not updated_params(count(graph)[0]):
        raise SizingError("cannot check: no trainable weight receives a gradient (the layers are views, "
                          "activations or frozen), so a training step changes nothing; `sizing estimate` counts "
                          "its forward", graph.source)


def require_memory(graph, small) -> None:
    """SizingError, one line, before anything is allocated, when the check's two instances (the count-and-speed
    one in float32 with SGD, the gradient-check one in float64) need more than this machine has available: their
    weights, gradients and kept activations as the estimate counts them, the float64 one twice over (the finite
    differences keep a copy)."""
    from ..common.units import iec
    from ..model.estimate import estimate_graph

    def need(g, dtype):
        mem = estimate_graph(replace(g, settings={**g.settings, "dtype": dtype, "optimizer": "sgd"})).memory
        return mem.weights + mem.gradients + mem.activations
    from .reduce import free_memory_bytes

    needed = need(graph, "fp32") + 2 * need(small, "fp64")
    have = free_memory_bytes()
    if needed > have:
        raise SizingError(f"sizing check needs about {iec(needed)} of memory for this instance (float32 weights, "
                          f"gradients and kept activations, and the float64 gradient check); this machine has "
                          f"{iec(have)} available: use a smaller --batch or --seq-len, or --shrink 4", graph.source)


def predicted_step_seconds(graph, executor: str = "sizing") -> float | None:
    """The performance model's step time for this graph in fp32 with SGD on this machine's bench profile
    (the device 'local'), for ``executor`` ('sizing': ours, the step `sizing check` times; 'pytorch'); None when
    there is no profile, when it has no terms for a PyTorch step, or when it cannot predict."""
    from ..hardware.devices import load_hwdb, local_profile_path

    if not os.path.exists(local_profile_path()):
        return None
    if executor != "sizing" and executor not in (getattr(load_hwdb().get("local"), "executors", None) or {}):
        return None
    from ..model.estimate import estimate_graph
    from ..predict.plan import plan
    from ..predict.search import Pins

    fp32 = replace(graph, settings={**graph.settings, "dtype": "fp32", "optimizer": "sgd"})
    est, batch = estimate_graph(fp32), graph.settings["batch"]
    try:
        return plan(lambda _: est, "local", devices=1, global_batch=batch,
                    pins=Pins(micro_batch=batch, zero=0, recompute="none"), executor=executor).step_seconds
    except SizingError:
        return None
