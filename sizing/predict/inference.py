"""Inference: latency of one request batch and the devices a throughput target needs, and the prefill/decode
figures of a causal language model on one device."""
from __future__ import annotations

from dataclasses import dataclass
import math

from ..common.units import duration, iec
from ..model.memory import Memory
from .comm import INTRA_HOP_SECONDS, interconnect_bps, ring_allreduce_seconds
from .fit import divisors
from .roofline import LayerTime, facility_kw, layer_times, peaks, require_work, row_parallel_bytes
from .serving import Efficiency
from .setup import Factors, Layout, Setup, assumptions


@dataclass(frozen=True)
class InferencePrediction:
    """Serving one request batch: latency, throughput, devices for a target."""
    device: str
    precision: str
    batch: int
    tensor_parallel: int
    replicas: int
    devices: int
    layers: tuple[LayerTime, ...]
    latency_s: float
    throughput_per_device: float        # samples/s
    throughput: float                   # samples/s of all replicas
    memory: Memory
    device_memory_bytes: int | None
    fits: bool
    meets_target: bool
    why: str | None
    power_kw: float | None              # devices x TDP x PUE
    bound: str
    factors: Factors
    assumptions: tuple[str, ...] = ()


def inference_memory(est, t: int) -> Memory:
    """Serving memory per device: weights and buffers split t ways, and the largest layer's inputs and outputs
    (activations of one layer live at a time)."""
    working = max((r.cost.bytes_read + r.cost.bytes_written) // r.node.repeat for r in est.layers)
    return Memory(-(-est.memory.weights // t), 0, 0, -(-working // t))


def predict_inference(est, workload, device, setup: Setup, factors: Factors) -> InferencePrediction:
    """Latency of one request batch and the devices a throughput target needs. The tensor-parallel degree is the
    smallest divisor of the node size that fits the memory and meets the latency target."""
    s = est.settings
    if (s["batch"], s["dtype"], s["optimizer"]) != (workload.batch, workload.dtype, workload.optimizer):
        raise ValueError("the estimate was built for another batch, dtype or optimizer than the workload")
    if workload.kind != "inference":
        raise ValueError("predict_inference() is for inference workloads")
    require_work(est)
    precision = workload.compute_precision
    node = setup.node_size or device.devices_per_node
    intra = interconnect_bps(device, factors.network_gbs * 1e9)
    cands = [setup.tensor_parallel] if setup.tensor_parallel else divisors(node)
    rows = []
    for t in cands:
        layers = layer_times(est, device, precision, factors, t, training=False)
        tp_comm = ring_allreduce_seconds(row_parallel_bytes(est), t, intra, INTRA_HOP_SECONDS)
        latency = (sum(l.seconds for l in layers) + tp_comm) / factors.framework_efficiency
        mem = inference_memory(est, t)
        fits = device.memory_bytes is None or mem.total <= device.memory_bytes
        meets = workload.latency_s is None or latency <= workload.latency_s
        rows.append((t, layers, latency, mem, fits, meets))
        if fits and meets:
            break
    t, layers, latency, mem, fits, meets = rows[-1]
    per_replica = workload.batch / latency
    replicas = 1 if workload.throughput is None else max(1, math.ceil(workload.throughput / per_replica))
    if setup.devices is not None:
        replicas = max(1, setup.devices // t)
    devices = replicas * t
    why = None
    if not fits:
        why = (f"needs {iec(mem.total)} per device (weights {iec(mem.weights)}, activations {iec(mem.activations)}) "
               f"on {t} {device.id} with tensor parallelism {t}; each has {iec(device.memory_bytes)}")
    elif not meets:
        why = (f"a request batch takes {duration(latency)} on {t} {device.id} (tensor parallelism up to the node "
               f"size {node}); the target is {duration(workload.latency_s)}: use a smaller batch or a faster device")
    compute_bound = sum(l.seconds for l in layers if l.bound == "compute")
    total = sum(l.seconds for l in layers)
    power = facility_kw(device.tdp_w, devices, factors.pue)
    return InferencePrediction(
        device=device.id, precision=precision, batch=workload.batch, tensor_parallel=t, replicas=replicas,
        devices=devices, layers=layers, latency_s=latency, throughput_per_device=per_replica / t,
        throughput=per_replica * replicas, memory=mem, device_memory_bytes=device.memory_bytes, fits=fits,
        meets_target=meets, why=why, power_kw=power,
        bound="compute" if compute_bound >= total - compute_bound else "memory", factors=factors,
        assumptions=assumptions(device, factors, Layout(tensor_parallel=t, data_parallel=replicas), node,
                                training=False))


def lm_serving(fig, device, precision: str, factors: Factors, efficiency: Efficiency) -> dict:
    """Prefill and decode of a causal language model on one device (``fig``: sizing.model.lm.LMFigures), by the roofline:
    prefill of the batch's prompts does prefill FLOPs x batch and reads the weights once (usually compute bound);
    each decode step does decode FLOPs x batch and reads the weights and the whole KV cache (usually memory
    bound: Pope et al. 2022, "Efficiently Scaling Transformer Inference"). Tokens per second = tokens / time,
    each phase's time divided by its serving efficiency (``efficiency``, fitted on
    published serving runs), not training's framework efficiency."""
    matrix_peak, _ = peaks(device, precision)
    flops_per_s = matrix_peak * factors.compute_fraction
    bytes_per_s = device.memory_bw_bytes_per_s * factors.memory_fraction

    def phase(flops, nbytes, tokens, eff):
        compute, memory = float(flops) / flops_per_s, nbytes / bytes_per_s
        seconds = max(compute, memory) / eff
        return {"seconds": seconds, "tokens_per_second": tokens / seconds,
                "bound": "compute" if compute >= memory else "memory",
                "compute_seconds": compute, "memory_seconds": memory}
    b = fig.batch
    return {"device": device.id, "precision": precision,
            "prefill": phase(fig.prefill_flops * b, fig.weights_bytes + b * fig.kv_bytes_per_sequence,
                             b * fig.context, efficiency.prefill),
            "decode": phase(fig.decode_flops * b, fig.inference_bytes, b, efficiency.decode),
            "fits": device.memory_bytes is None or fig.inference_bytes <= device.memory_bytes}
