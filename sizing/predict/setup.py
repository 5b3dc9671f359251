"""How a job runs (the workload says what runs): the devices and how they share the work (``Setup``), and the
calibrated and assumed numbers a prediction uses (``Factors``); the assumption lines every prediction states."""
from __future__ import annotations

from dataclasses import dataclass
import math

from ..common.errors import SizingError


@dataclass(frozen=True)
class Setup:
    """Devices and how they share the work. ``devices`` None: the smallest count that fits. ``tensor_parallel``
    None: the smallest degree that fits. ``node_size`` None: the device's ``devices_per_node``."""
    devices: int | None = None
    tensor_parallel: int | None = None
    pipeline_parallel: int = 1
    micro_batch: int | None = None          # samples per pipeline micro-batch (None: 1 with a pipeline)
    zero: int = 0
    recompute: bool = False
    fused_attention: bool = True            # attention keeps no score matrix (FlashAttention, SDPA)
    node_size: int | None = None

    def __post_init__(self):
        for name in ("devices", "tensor_parallel", "pipeline_parallel", "micro_batch", "node_size"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise SizingError(f"{name}: must be a positive integer, got {v!r}")
        if self.zero not in (0, 1, 2, 3):
            raise SizingError(f"zero: the ZeRO stage is 0, 1, 2 or 3, got {self.zero!r}")


def _number(name: str, v, lo: float, hi: float, low_open: bool = False):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (lo < v if low_open else lo <= v) and v <= hi
    if not ok:
        raise SizingError(f"{name}: must be a number {'above' if low_open else 'from'} {lo:g}"
                          f"{'' if hi == math.inf else f' to {hi:g}'}, got {v!r}")


@dataclass(frozen=True)
class Factors:
    """The calibrated and assumed numbers one prediction uses (sizing/predict/calibration.yaml), with notes on where the
    fractions came from. ``network_gbs``: inter-node bandwidth per device, each way; ``overlap``: share of the
    backward pass that gradient communication hides behind; ``pue``: facility power / IT power."""
    compute_fraction: float
    memory_fraction: float
    framework_efficiency: float
    network_gbs: float
    overlap: float
    pue: float
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("compute_fraction", "memory_fraction", "framework_efficiency"):
            _number(name, getattr(self, name), 0, 1.5, low_open=True)
        _number("--network-gbs", self.network_gbs, 0, 1e6, low_open=True)
        _number("overlap", self.overlap, 0, 1)
        _number("--pue", self.pue, 1, 10)


def assumptions(device, factors, setup, t, p, dp, node, training) -> tuple[str, ...]:
    out = list(factors.notes) + [
        f"framework efficiency {factors.framework_efficiency:.3f}, fitted on published training runs",
        "matrix products at the precision's peak (tensor cores where the device has them); other ops at the "
        "vector peak"]
    if training:
        out.append(f"batch is per model replica; {dp} data-parallel replica(s), tensor parallelism {t} within "
                   f"nodes of {node}" + (f", pipeline {p} (1F1B)" if p > 1 else ""))
        if dp > 1 or t > 1:
            out.append(f"interconnect {device.interconnect_gbs or '-'} GB/s per device (half each way), network "
                       f"{factors.network_gbs:g} GB/s per device each way; gradient all-reduce overlaps "
                       f"{factors.overlap:.0%} of backward")
        if device.tdp_w is not None:
            out.append(f"energy: TDP {device.tdp_w:g} W per device for the whole run x PUE {factors.pue:g}")
        else:
            out.append(f"energy: {device.id} has no TDP in the hardware database")
    return tuple(out)
