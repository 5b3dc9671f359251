"""How a job runs (the workload says what runs): the devices and how they share the work (``Setup``), and the
calibrated and assumed numbers a prediction uses (``Factors``); the assumption lines every prediction states."""
from __future__ import annotations

from dataclasses import dataclass
import math

from ..common.errors import SizingError


RECOMPUTE = ("none", "selective", "full")


def _positive_ints(obj, names):
    for name in names:
        v = getattr(obj, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise SizingError(f"{name}: must be a positive integer, got {v!r}")


def recompute_mode(value) -> str:
    """'none', 'selective' or 'full' (True means full, False none, as the flag did)."""
    if value is True or value is False:
        return "full" if value else "none"
    if value not in RECOMPUTE:
        raise SizingError(f"recompute: one of {', '.join(RECOMPUTE)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Setup:
    """Devices and how they share the work, for a prediction of one layout. ``devices`` None: the smallest count
    that fits. ``tensor_parallel`` None: the smallest degree that fits. ``node_size`` None: the device's
    ``devices_per_node``. ``recompute``: 'none', 'selective' (the attention core, Korthikanti et al. 2022) or
    'full' (every repeated block from its input, Chen et al. 2016); True and False mean full and none."""
    devices: int | None = None
    tensor_parallel: int | None = None
    pipeline_parallel: int = 1
    micro_batch: int | None = None          # samples per pipeline micro-batch (None: 1 with a pipeline)
    zero: int = 0
    recompute: str = "none"
    fused_attention: bool = True            # attention keeps no score matrix (FlashAttention, SDPA)
    node_size: int | None = None
    interleave: int = 1                     # virtual pipeline stages per device (Narayanan et al. 2021)

    def __post_init__(self):
        _positive_ints(self, ("devices", "tensor_parallel", "pipeline_parallel", "micro_batch", "node_size",
                              "interleave"))
        if self.zero not in (0, 1, 2, 3):
            raise SizingError(f"zero: the ZeRO stage is 0, 1, 2 or 3, got {self.zero!r}")
        object.__setattr__(self, "recompute", recompute_mode(self.recompute))


@dataclass(frozen=True)
class Layout:
    """One way to run a training step: devices = tensor x pipeline x data parallel; each of the
    ``data_parallel`` replicas runs ``micro_batches`` micro-batches of ``micro_batch`` samples per optimizer step
    (pipeline micro-batches, or gradient accumulation without a pipeline), so the global batch is
    micro_batch x micro_batches x data_parallel. ``interleave``: model chunks per pipeline device (virtual
    stages); ``sequence_parallel``: the norms, dropouts and residual adds between tensor-parallel regions are
    split along the sequence too (Korthikanti et al. 2022); ``expert_parallel``: the experts of a mixture of experts
    split that many ways across data-parallel ranks (Lepikhin et al. 2020, GShard), tokens sent to them and back
    by all-to-all; ``context_parallel``: each sequence split that many ways along its tokens, the keys and values
    passed round a ring in attention (Liu et al. 2023, Ring Attention), so devices = t x p x cp x d. ``samples``: a
    global batch B that the replicas do not divide evenly (None: B = m x micro-batches x d): each replica runs up to
    m x micro-batches = ceil(B / d) of them and the slowest sets the step, so the step costs what the full
    m x micro-batches x d would while it trains B (PyTorch DDP's uneven inputs; padding would cost the same)."""
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    data_parallel: int = 1
    micro_batch: int = 1
    micro_batches: int = 1
    zero: int = 0
    recompute: str = "none"
    sequence_parallel: bool = False
    interleave: int = 1
    fused_attention: bool = True
    expert_parallel: int = 1
    context_parallel: int = 1
    samples: int | None = None

    def __post_init__(self):
        _positive_ints(self, ("tensor_parallel", "pipeline_parallel", "data_parallel", "micro_batch",
                              "micro_batches", "interleave", "expert_parallel", "context_parallel", "samples"))
        if self.samples is not None and self.samples > self.slots:
            raise SizingError(f"a global batch of {self.samples} is more than the {self.slots} samples the layout's "
                              f"replicas run per step")
        if self.data_parallel % self.expert_parallel:
            raise SizingError(f"expert parallel {self.expert_parallel} must divide the data-parallel degree "
                              f"{self.data_parallel} (experts are split across data-parallel ranks)")
        object.__setattr__(self, "recompute", recompute_mode(self.recompute))

    @property
    def devices(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel * self.context_parallel * self.data_parallel

    @property
    def slots(self) -> int:
        """Samples the replicas run per step: micro-batch x micro-batches x data parallel."""
        return self.micro_batch * self.micro_batches * self.data_parallel

    @property
    def global_batch(self) -> int:
        """Samples trained per optimizer step."""
        return self.slots if self.samples is None else self.samples

    def describe(self) -> str:
        """'TP 8 x PP 16 (interleaved 2) x DP 64, ZeRO-1, recompute selective, SP, micro-batch 1 x 32'."""
        pp = f"PP {self.pipeline_parallel}" + (f" (interleaved {self.interleave})" if self.interleave > 1 else "")
        ep = f" (EP {self.expert_parallel})" if self.expert_parallel > 1 else ""
        cp = f" x CP {self.context_parallel}" if self.context_parallel > 1 else ""
        return (f"TP {self.tensor_parallel} x {pp}{cp} x DP {self.data_parallel}{ep}, ZeRO-{self.zero}, recompute "
                f"{self.recompute}{', SP' if self.sequence_parallel else ''}, micro-batch {self.micro_batch} x "
                f"{self.micro_batches}")


def _number(name: str, v, lo: float, hi: float, low_open: bool = False):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (lo < v if low_open else lo <= v) and v <= hi
    if not ok:
        raise SizingError(f"{name}: must be a number {'above' if low_open else 'from'} {lo:g}"
                          f"{'' if hi == math.inf else f' to {hi:g}'}, got {v!r}")


@dataclass(frozen=True)
class Factors:
    """The calibrated and assumed numbers one prediction uses (sizing/predict/calibration.yaml), with notes on where the
    fractions came from. ``network_gbs``: inter-node bandwidth per device, each way; ``overlap``: share of the
    backward pass that gradient communication hides behind; ``pue``: facility power / IT power.
    The causes the calibration names (sizing/predict/calibration.yaml; the defaults leave each out):
    ``compute_units``: the device's streaming multiprocessors, over which a matrix product's output tiles run in
    waves (sizing/predict/roofline.py ``wave_efficiency``; None: no wave model); ``launch_seconds``: the time to
    issue one kernel, below which no kernel runs (``launch_bound``); ``launch_serial``: the issue time adds to
    each kernel's work instead of bounding it from below (a host that runs each call to its end before issuing
    the next, as our executor's Python does; a GPU's runtime issues kernels ahead of the device);
    ``usable_memory``: the share of the device's memory a framework can fill (sizing/predict/fit.py
    ``capacity``); ``executor``: the measured terms of the executor a CPU step is predicted for (per layer class
    its fixed cost and share of the roofline, the step's fixed cost; sizing/predict/roofline.py
    ``ExecutorTerms``), None: the plain roofline."""
    compute_fraction: float
    memory_fraction: float
    framework_efficiency: float
    network_gbs: float
    overlap: float
    pue: float
    notes: tuple[str, ...] = ()
    compute_units: int | None = None
    launch_seconds: float = 0.0
    usable_memory: float = 1.0
    launch_serial: bool = False
    executor: object = None             # sizing/predict/roofline.py ExecutorTerms (a bench profile's executor)

    def __post_init__(self):
        for name in ("compute_fraction", "memory_fraction", "framework_efficiency"):
            _number(name, getattr(self, name), 0, 1.5, low_open=True)
        _number("usable_memory", self.usable_memory, 0, 1, low_open=True)
        _number("launch_seconds", self.launch_seconds, 0, 1)
        _positive_ints(self, ("compute_units",))
        _number("--network-gbs", self.network_gbs, 0, 1e6, low_open=True)
        _number("overlap", self.overlap, 0, 1)
        _number("--pue", self.pue, 1, 10)


def assumptions(device, factors, layout: Layout, node: int, training: bool) -> tuple[str, ...]:
    out = list(factors.notes) + [
        f"framework efficiency {factors.framework_efficiency:.3f}, fitted on published training runs",
        ("matrix products at the rate the bench's GEMM sweep gives for their smallest dimension"
         if getattr(device, "gemm_sweep", None) else
         "matrix products at the precision's peak (tensor cores where the device has them)")
        + "; other ops at the vector peak"
        + (f"; matrix products' 256 x 128 tiles in waves over {factors.compute_units} SMs"
           if factors.compute_units else "")
        + (f"; no kernel shorter than its {factors.launch_seconds * 1e6:g} us issue time"
           if factors.launch_seconds and not factors.launch_serial else "")
        + (f"; each kernel call costs {factors.launch_seconds * 1e6:.3g} us beside its work (measured by `sizing "
           f"bench` for our executor)" if factors.launch_serial and not factors.executor else "")]
    if factors.executor:
        out.append(factors.executor.describe())
    if factors.usable_memory < 1:
        out.append(f"a framework fills at most {factors.usable_memory:.0%} of each device's memory (the rest: CUDA "
                   f"context, workspaces, communication buffers, fragmentation)")
    if training:
        out.append(f"layout {layout.describe()} (global batch {layout.global_batch}); tensor parallelism within "
                   f"nodes of {node}" + (", 1F1B pipeline" if layout.pipeline_parallel > 1 else ""))
        if layout.devices > 1:
            link = (f"interconnect {device.interconnect_gbs} GB/s per device (half each way)" if
                    device.interconnect_gbs else "no interconnect figure (devices talk over the network)")
            out.append(f"{link}, network "
                       f"{factors.network_gbs:g} GB/s per device each way; gradient communication overlaps "
                       f"{factors.overlap:.0%} of the last micro-batch's backward (all compute under ZeRO-3)")
        if device.tdp_w is not None:
            out.append(f"energy: TDP {device.tdp_w:g} W per device for the whole run x PUE {factors.pue:g}")
        else:
            out.append(f"energy: {device.id} has no TDP in the hardware database")
    return tuple(out)
