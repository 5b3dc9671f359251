"""Training losses (not layers: their work is not part of a layer's count), with their gradients.

cross_entropy: mean over rows of logsumexp(logits) - logits[target] (classifiers, language models);
nll: mean of -log p[target] over rows of probabilities (a graph that ends in softmax);
mse: mean of (y - target)^2. ``choose_loss`` picks cross-entropy after a linear layer (logits), nll after a
softmax, MSE otherwise.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .kernels.common import SUMS
from .kernels.vecmath import like, quotient, row_max, vexp

LOSSES = ("cross_entropy", "nll", "mse")


@njit(cache=True, fastmath=SUMS)
def cross_entropy(logits, targets, grad):
    """logits (N, C), targets (N,) -> mean loss; grad = (softmax - onehot) / N. Each row in the logits'
    precision (the exp in vector lanes for float32, kernels/vecmath.py), the loss summed over rows in float64."""
    nr, nc = logits.shape
    total = 0.0
    for r in range(nr):
        row, g = logits[r], grad[r]
        m = row_max(row)
        s = like(row, 0.0)
        for j in range(nc):
            e = vexp(row[j] - m)
            g[j] = e
            s += e
        total += m + math.log(s) - row[targets[r]]
        scale = quotient(like(row, 1.0), s * like(row, nr))
        for j in range(nc):
            g[j] = g[j] * scale
        g[targets[r]] -= like(row, 1.0 / nr)
    return total / nr


@njit(cache=True)
def nll(probs, targets, grad):
    """probs (N, C), targets (N,) -> mean of -log probs[target]; grad -1 / (N p) at the target, else 0."""
    nr = probs.shape[0]
    total = 0.0
    grad[:] = 0
    for r in range(nr):
        p = probs[r, targets[r]]
        total -= math.log(p)
        grad[r, targets[r]] = -1.0 / (nr * p)
    return total / nr


@njit(cache=True)
def mse(y, target, grad):
    """Flat y, target -> mean of squared differences; grad = 2 (y - target) / n."""
    n = y.size
    total = 0.0
    for i in range(n):
        d = y[i] - target[i]
        total += d * d
        grad[i] = 2.0 * d / n
    return total / n


def choose_loss(graph) -> str:
    return {"linear": "cross_entropy", "softmax": "nll"}.get(graph.node(graph.output).op, "mse")


def make_target(kind: str, out_shape: tuple, rng, dtype):
    if kind != "mse":
        return rng.integers(0, out_shape[-1], size=out_shape[:-1]).reshape(-1)
    return rng.standard_normal(out_shape).astype(dtype).reshape(-1)


def loss_and_grad(kind: str, y, target) -> tuple[float, np.ndarray]:
    grad = np.empty_like(y)
    if kind != "mse":
        rows = (y.reshape(-1, y.shape[-1]), target, grad.reshape(-1, y.shape[-1]))
        value = cross_entropy(*rows) if kind == "cross_entropy" else nll(*rows)
    else:
        value = mse(y.reshape(-1), target, grad.reshape(-1))
    return float(value), grad
