"""Training memory: weights, gradients, optimizer state and activations, in bytes.

Accounting as in the ZeRO paper (Rajbhandari et al. 2020, section 3.1): with mixed precision (bf16 or
fp16 compute) the weights and gradients are kept in the compute precision and the optimizer holds an
fp32 master copy of the weights plus its fp32 states, so Adam costs 2 + 2 + (4 + 4 + 4) = 16 bytes per
parameter. In a single precision (fp32, fp64) there is no master copy and states use that precision.
Buffers (BatchNorm running statistics) are kept in fp32 beside the weights.
"""
from __future__ import annotations

from dataclasses import dataclass

from .graph import DTYPES

# optimizer: (state tensors per parameter, update FLOPs per parameter, derivation)
OPTIMIZERS = {
    "sgd": (0, 2, "p -= lr * g"),
    "momentum": (1, 4, "v = mu * v + g; p -= lr * v"),
    "adam": (2, 14, "m, v moments (3 + 4), two bias corrections (2), p -= lr * m / (sqrt(v) + eps) (5)"),
    "adamw": (2, 16, "adam (14) + decoupled weight decay p -= lr * wd * p (2)"),
}
MIXED = ("bf16", "fp16")


@dataclass(frozen=True)
class Memory:
    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def as_dict(self) -> dict[str, int]:
        return {"weights": self.weights, "gradients": self.gradients, "optimizer": self.optimizer,
                "activations": self.activations, "total": self.total}


def bytes_per_param(dtype: str, optimizer: str) -> tuple[int, int, int]:
    """(weight, gradient, optimizer) bytes per trainable parameter."""
    size = DTYPES[dtype]
    states = OPTIMIZERS[optimizer][0]
    if dtype in MIXED:
        return size, size, 4 + 4 * states
    return size, size, size * states


def training_memory(params: int, trainable: int, buffers: int, activations: int, dtype: str,
                    optimizer: str) -> Memory:
    w, g, o = bytes_per_param(dtype, optimizer)
    return Memory(weights=params * w + buffers * 4, gradients=trainable * g, optimizer=trainable * o,
                  activations=activations)


def optimizer_flops(trainable: int, optimizer: str) -> int:
    return trainable * OPTIMIZERS[optimizer][1]
