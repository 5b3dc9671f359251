"""The cost of one layer (or a sum of layers): a small frozen value type that adds up.

All counts are exact Python ints. ``flops`` already includes ``2 * macs`` (1 MAC = 2 FLOPs,
docs/conventions.md); ``macs`` is reported beside it because papers quote MACs as "FLOPs".
"""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Cost:
    params: int = 0            # trainable parameters owned by the layer (tied weights count once)
    buffers: int = 0           # non-trainable state kept with the weights (BatchNorm running stats)
    macs: int = 0              # forward multiply-accumulates of linear/conv/matmul/attention/recurrent products
    flops: int = 0             # forward floating-point operations: 2 * macs + every other operation
    backward_flops: int = 0    # gradients w.r.t. inputs that need them and w.r.t. trainable weights
    bytes_read: int = 0        # forward: inputs and weights read once
    bytes_written: int = 0     # forward: output written once
    saved_bytes: int = 0       # op-internal tensors kept for backward (masks, indices, statistics, gates)

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __mul__(self, times: int) -> "Cost":
        return Cost(*(getattr(self, f.name) * times for f in fields(self)))

    __rmul__ = __mul__

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


ZERO = Cost()


def total(costs) -> Cost:
    """Sum of an iterable of costs (``ZERO`` when empty)."""
    out = ZERO
    for c in costs:
        out = out + c
    return out
