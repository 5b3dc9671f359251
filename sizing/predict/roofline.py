"""The layer roofline: a graph's exact costs on a device -> step time, time to train, memory per device,
the smallest feasible device count, energy; and latency, throughput and devices for inference.

Per layer (the roofline, Williams, Waterman and Patterson 2009, CACM 52(4)):
    compute time = FLOPs / (peak for the op class at the precision x achieved compute fraction)
    memory time  = bytes moved / (memory bandwidth x achieved memory fraction)
    layer time   = max(compute, memory); the larger names the layer's bound.
Matrix products (linear, convolutions, matmul, attention, recurrent cells: ops registered with ``matrix=True``) run at the device's
peak for the compute precision, tensor cores included (tf32, bf16, fp16, fp8, int8, fp64_tensor); every other op
runs at the vector peak (fp32, or fp64 for fp64), as tensor cores only multiply matrices. Backward does the layer's
backward FLOPs and moves twice its forward bytes (it reads the output gradient and the saved inputs and writes the
input and weight gradients); full recomputation (``recompute``) runs the forward pass once more."""
from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import SizingError
from ..model.graph import DTYPES
from ..model.ops import REGISTRY, numel
from .setup import Factors


BOUNDS = ("compute", "memory", "communication")


def _vector_precision(device, precision: str) -> str:
    """Elementwise, norm, pooling ops run on the vector units: fp64 for fp64, else fp32 (if the device has no
    fp32 peak, as a TPU, its only peak at the precision)."""
    if precision == "fp64":
        return "fp64"
    return "fp32" if "fp32" in device.peak_tflops else precision


def peaks(device, precision: str) -> tuple[int, int]:
    """(matrix peak, vector peak) in FLOP/s for ``precision`` on ``device``: matrix products at the precision's
    peak (fp64 on tensor cores where the device has them), other ops at the vector peak (``_vector_precision``).
    SizingError naming the precisions the device has when it lacks this one."""
    if precision not in device.peak_tflops:
        raise SizingError(f"device '{device.id}' ({device.name}) has no {precision} peak; it has "
                          f"{', '.join(device.precisions())}")
    matrix = "fp64_tensor" if precision == "fp64" and "fp64_tensor" in device.peak_tflops else precision
    return device.peak_per_s(matrix), device.peak_per_s(_vector_precision(device, precision))


@dataclass(frozen=True)
class LayerTime:
    """One layer on one device for one step (training: forward, backward and any recomputation; inference:
    forward). ``flops`` and ``bytes`` are this device's share (1 / tensor-parallel degree)."""
    name: str
    op: str
    flops: int
    bytes: int
    compute_s: float
    memory_s: float

    @property
    def seconds(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"


def itemsize(est) -> int:
    return DTYPES[est.settings["dtype"]]


def out_bytes(row, itemsize: int) -> int:
    """Bytes of every copy of the layer's output (ids tensors are never a layer's output)."""
    return numel(row.node.out.shape) * itemsize * row.node.repeat


def layer_times(est, device, precision: str, factors: Factors, t: int = 1, training: bool = True,
                recompute: bool = False) -> tuple[LayerTime, ...]:
    """Per-layer roofline on one of ``t`` tensor-parallel devices (module docstring)."""
    mat, vec = peaks(device, precision)
    bw = device.memory_bw_bytes_per_s * factors.memory_fraction
    out = []
    for r in est.layers:
        c = r.cost
        fwd_bytes = c.bytes_read + c.bytes_written
        flops, nbytes = c.flops, fwd_bytes
        if training:
            flops += c.backward_flops + (c.flops if recompute else 0)
            nbytes += (2 * fwd_bytes if c.backward_flops else 0) + (fwd_bytes if recompute else 0)
        flops, nbytes = -(-flops // t), -(-nbytes // t)
        peak = mat if REGISTRY[r.node.op].matrix else vec
        out.append(LayerTime(r.node.name, r.node.op, flops, nbytes, flops / (peak * factors.compute_fraction),
                             nbytes / bw))
    return tuple(out)


def backward_share(est) -> float:
    """Share of the training FLOPs that backward does (to size the window gradient communication overlaps)."""
    t = est.totals
    return t.backward_flops / max(1, t.flops + t.backward_flops)


def row_parallel_bytes(est) -> int:
    """Output bytes of the layers tensor parallelism all-reduces after: weighted matrix products whose output is no
    wider than their input (Megatron's row-parallel layers)."""
    size = itemsize(est)
    return sum(out_bytes(r, size) for r in est.layers
               if REGISTRY[r.node.op].matrix and r.cost.params and numel(r.node.out.shape)
               <= max(numel(s.shape) for s in r.node.in_types))


def facility_kw(tdp_w: float | None, count: int, pue: float) -> float | None:
    """Facility power of ``count`` devices at their TDP: TDP x count x PUE / 1000 (kW); None without a TDP."""
    return None if tdp_w is None else tdp_w * count * pue / 1000
