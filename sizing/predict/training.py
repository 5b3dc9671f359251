"""Training: step time, time to train, memory per device, energy.

Several devices: tensor parallelism of degree t inside a node (Megatron-LM, Shoeybi et al. 2019) splits every
layer's work and weights t ways and all-reduces the output of each row-parallel layer (a weighted matrix product
that does not widen its input: attention's output projection, an MLP's down projection) once forward and once
backward; pipeline parallelism of degree p (1F1B, Narayanan et al. 2021) splits the layers p ways and idles a
bubble of (p - 1) / m with m micro-batches per step; the remaining d = devices / (t p) replicas are data parallel.
Gradients are all-reduced over the d replicas hierarchically: a ring inside each node over the device interconnect
and a ring across nodes over the network for the node's share (``allreduce_seconds``); a share ``overlap`` of the
backward pass hides it. ZeRO (Rajbhandari et al. 2020) shards the optimizer state (stage 1), the gradients (2) and
the weights (3) over the d replicas; stage 3 moves 1.5x the data of an all-reduce (it all-gathers the weights for
forward and backward, then reduce-scatters the gradients).

Step time = (compute x (1 + bubble) + tensor-parallel communication + exposed gradient communication + optimizer)
/ framework efficiency, the one factor fitted on published training runs (sizing/predict/calibration.yaml). Every formula is
closed form: predicting 10^11 parameters on 10^4 devices costs what a small model does (one pass over the folded
graph, a handful of candidate tensor-parallel degrees; no loop over devices or steps).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import SizingError
from ..model.graph import DTYPES
from ..model.memory import Memory
from ..model.ops import numel
from .comm import INTER_HOP_SECONDS, INTRA_HOP_SECONDS, allreduce_seconds, interconnect_bps, pipeline_bubble, ring_allreduce_seconds
from .fit import choose_layout, device_memory, micro_share, optimizer_bytes, why_not
from .roofline import BOUNDS, LayerTime, backward_share, facility_kw, layer_times, peaks, row_parallel_bytes
from .setup import Factors, Setup, assumptions


@dataclass(frozen=True)
class Prediction:
    """A training prediction. Times are float seconds; counts and bytes are ints."""
    device: str
    devices: int
    precision: str
    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int
    zero: int
    recompute: bool
    layers: tuple[LayerTime, ...]
    compute_seconds: float              # per device per step, bubble included
    tp_comm_seconds: float
    dp_comm_seconds: float
    dp_comm_exposed_seconds: float
    optimizer_seconds: float
    step_seconds: float
    global_batch: int
    steps_per_epoch: int | None
    steps: int | None
    epoch_seconds: float | None
    total_seconds: float | None
    device_hours: float | None
    energy_kwh: float | None
    memory: Memory
    device_memory_bytes: int | None
    fits: bool
    why: str | None
    model_flops_per_step: int           # forward + backward over the global batch, no recomputation
    mfu: float                          # model FLOPs / (step time x devices x matrix peak)
    bound: str
    factors: Factors
    assumptions: tuple[str, ...] = ()

    @property
    def memory_per_device_bytes(self) -> int:
        return self.memory.total

    def to_dict(self) -> dict:
        return {
            "device": self.device, "devices": self.devices, "precision": self.precision,
            "tensor_parallel": self.tensor_parallel, "pipeline_parallel": self.pipeline_parallel,
            "data_parallel": self.data_parallel, "zero": self.zero, "recompute": self.recompute,
            "global_batch": self.global_batch, "step_seconds": self.step_seconds,
            "steps_per_epoch": self.steps_per_epoch, "steps": self.steps, "epoch_seconds": self.epoch_seconds,
            "total_seconds": self.total_seconds, "device_hours": self.device_hours, "energy_kwh": self.energy_kwh,
            "bound": self.bound, "mfu": self.mfu, "model_flops_per_step": self.model_flops_per_step,
            "time_seconds": {"compute": self.compute_seconds, "tensor_parallel_comm": self.tp_comm_seconds,
                             "gradient_comm": self.dp_comm_seconds,
                             "gradient_comm_exposed": self.dp_comm_exposed_seconds,
                             "optimizer": self.optimizer_seconds},
            "memory_per_device_bytes": self.memory.total, "memory_per_device": self.memory.as_dict(),
            "device_memory_bytes": self.device_memory_bytes, "fits": self.fits, "why_not": self.why,
            "factors": {"compute_fraction": self.factors.compute_fraction,
                        "memory_fraction": self.factors.memory_fraction,
                        "framework_efficiency": self.factors.framework_efficiency,
                        "network_gbs": self.factors.network_gbs, "overlap": self.factors.overlap,
                        "pue": self.factors.pue},
            "assumptions": list(self.assumptions),
            "layers": [{"name": l.name, "op": l.op, "flops": l.flops, "bytes": l.bytes, "compute_s": l.compute_s,
                        "memory_s": l.memory_s, "bound": l.bound} for l in self.layers],
        }


def check_workload(est, workload):
    s = est.settings
    if (s["batch"], s["dtype"], s["optimizer"]) != (workload.batch, workload.dtype, workload.optimizer):
        raise ValueError("the estimate was built for another batch, dtype or optimizer than the workload")


def tokens_per_sample(est) -> int | None:
    """Tokens in one sample of a token-id model (its sequence length), None for other inputs."""
    shape = est.graph.input.shape
    return numel(shape[1:]) if est.graph.input.ids else None


def predict(est, workload, device, setup: Setup, factors: Factors) -> Prediction:
    """Training time, memory and energy of ``workload`` (its graph's estimate ``est``) on ``device``."""
    check_workload(est, workload)
    if workload.kind != "training":
        raise ValueError("predict() is for training workloads; use predict_inference()")
    precision = workload.compute_precision
    mat, vec = peaks(device, precision)
    devices, t, dp = choose_layout(est, workload, device, setup)
    p = setup.pipeline_parallel
    node = setup.node_size or device.devices_per_node
    micro, share = micro_share(workload, setup)
    network_bps = factors.network_gbs * 1e9
    intra = interconnect_bps(device, network_bps)
    layers = layer_times(est, device, precision, factors, t, True, setup.recompute)
    replica = sum(l.seconds for l in layers)
    compute = replica / p * (1 + pipeline_bubble(p, micro))
    tp_passes = 3 if setup.recompute else 2
    tp_comm = tp_passes * ring_allreduce_seconds(row_parallel_bytes(est), t, intra, INTRA_HOP_SECONDS) / p
    grad_bytes = -(-est.trainable_params * DTYPES[workload.dtype] // (t * p))
    dp_comm = (1.5 if setup.zero == 3 else 1.0) * allreduce_seconds(
        grad_bytes, dp, max(1, node // t), intra, network_bps, INTRA_HOP_SECONDS, INTER_HOP_SECONDS)
    exposed = max(0.0, dp_comm - factors.overlap * compute * backward_share(est))
    opt_shard = t * p * (dp if setup.zero >= 1 else 1)
    opt = max(est.optimizer_flops / (vec * factors.compute_fraction),
              optimizer_bytes(est) / (device.memory_bw_bytes_per_s * factors.memory_fraction)) / opt_shard
    step = (compute + tp_comm + exposed + opt) / factors.framework_efficiency

    memory = device_memory(est, t, p, dp, setup, share)
    why = why_not(memory, device.memory_bytes, device, devices, t, setup.zero)
    global_batch = workload.batch * dp
    model_flops = (est.totals.flops + est.totals.backward_flops) * dp
    samples = _samples(est, workload)
    steps_per_epoch = None if samples is None else -(-samples // global_batch)
    steps = None if steps_per_epoch is None else steps_per_epoch * workload.epochs
    total = None if steps is None else steps * step
    hours = None if total is None else total * devices / 3600
    power = facility_kw(device.tdp_w, 1, factors.pue)
    energy = None if hours is None or power is None else hours * power
    compute_bound = sum(l.seconds for l in layers if l.bound == "compute")
    bound = max(zip((compute_bound, replica - compute_bound, tp_comm * p + exposed * p), BOUNDS))[1]
    return Prediction(
        device=device.id, devices=devices, precision=precision, tensor_parallel=t, pipeline_parallel=p,
        data_parallel=dp, zero=setup.zero, recompute=setup.recompute, layers=layers, compute_seconds=compute,
        tp_comm_seconds=tp_comm, dp_comm_seconds=dp_comm, dp_comm_exposed_seconds=exposed, optimizer_seconds=opt,
        step_seconds=step, global_batch=global_batch, steps_per_epoch=steps_per_epoch, steps=steps,
        epoch_seconds=None if steps_per_epoch is None else steps_per_epoch * step, total_seconds=total,
        device_hours=hours, energy_kwh=energy, memory=memory, device_memory_bytes=device.memory_bytes,
        fits=why is None, why=why, model_flops_per_step=model_flops,
        mfu=model_flops / (step * devices * mat), bound=bound, factors=factors,
        assumptions=assumptions(device, factors, setup, t, p, dp, node, training=True))


def _samples(est, workload) -> int | None:
    if workload.tokens is not None:
        per = tokens_per_sample(est)
        if per is None:
            raise SizingError(f"--tokens needs a model whose input is token ids; {est.graph.name} takes "
                              f"{list(est.graph.input.shape[1:])} per sample, so give --samples")
        return -(-workload.tokens // per)
    return workload.samples
