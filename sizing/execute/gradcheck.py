"""Backprop against central finite differences, per weight tensor, in float64.

For each trainable weight tensor W (tied ones once) a random unit direction v gives the directional
derivative two ways: backprop's <dL/dW, v> and (L(W + eps v) - L(W - eps v)) / (2 eps). Their relative error
is |fd - bp| / max(|fd|, |bp|, floor) with floor = max(1e-5, 1e-2 x the largest |bp| of the model): a gradient
a hundred times below the model's largest (a bias before a batchnorm has an exact 0) is compared absolutely,
since the difference quotient cannot resolve it below its rounding noise (about 1e-16 |L| / eps); an error of
a millionth of the largest gradient, or more, still fails.

Several step sizes, 1e-6 first, then 1e-7, 1e-5 and 1e-8 while the closest yet misses by more than a tenth of
the tolerance; the closest counts. A large step crosses kinks of relu and max pooling (a deep model has many
near any point), a small one loses small gradients to rounding; a wrong gradient agrees at none of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import Model

STEPS = (1e-6, 1e-7, 1e-5, 1e-8)
FLOOR, SCALE_FLOOR = 1e-5, 1e-2
TOLERANCE = 1e-4


@dataclass(frozen=True)
class TensorCheck:
    name: str
    backprop: float
    finite_difference: float
    floor: float = FLOOR

    @property
    def rel_error(self) -> float:
        diff = abs(self.finite_difference - self.backprop)
        return diff / max(abs(self.finite_difference), abs(self.backprop), self.floor)


@dataclass(frozen=True)
class GradientCheck:
    tensors: tuple[TensorCheck, ...]

    @property
    def max_rel_error(self) -> float:
        return max((t.rel_error for t in self.tensors), default=0.0)

    @property
    def worst(self) -> TensorCheck | None:
        return max(self.tensors, key=lambda t: t.rel_error, default=None)

    @property
    def ok(self) -> bool:
        return self.max_rel_error < TOLERANCE


def gradient_check(model: Model, seed: int = 0, progress=None) -> GradientCheck:
    """Checks every weight tensor of ``model`` (build it with dtype float64)."""
    model.loss_and_gradients(timed=False)
    rng = np.random.default_rng(seed)
    found = []
    for label, w, grad in model.weights():
        v = rng.standard_normal(w.shape)
        v /= np.linalg.norm(v)
        found.append((label, w, v, float(np.sum(grad.value * v))))
    floor = max([FLOOR] + [SCALE_FLOOR * abs(bp) for *_, bp in found])
    out = []
    for j, (label, w, v, backprop) in enumerate(found):
        if progress:
            progress(j, len(found), label)
        best = None
        for eps in STEPS:
            t = TensorCheck(label, backprop, _difference(model, w, v, eps), floor)
            if best is None or t.rel_error < best.rel_error:
                best = t
            if best.rel_error < TOLERANCE / 10:
                break
        out.append(best)
    return GradientCheck(tuple(out))


def _difference(model: Model, w: np.ndarray, v: np.ndarray, eps: float) -> float:
    """(L(w + eps v) - L(w - eps v)) / (2 eps), w restored after."""
    original = w.copy()
    w += eps * v
    up = model.loss_at()
    w[...] = original - eps * v
    down = model.loss_at()
    w[...] = original
    return (up - down) / (2 * eps)
