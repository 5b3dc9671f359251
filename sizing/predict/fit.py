"""Memory per device and placement: ZeRO sharding, the activations kept for backward (with and without
recomputation), the bytes one device holds under a layout, and the layout choice that makes a job fit."""
from __future__ import annotations

import math

from ..common.errors import SizingError
from ..common.units import iec
from ..model.memory import Memory
from ..model.ops import numel
from .roofline import itemsize
from .setup import Setup


def zero_memory(weights: int, gradients: int, optimizer: int, stage: int, dp: int) -> tuple[int, int, int]:
    """(weights, gradients, optimizer) bytes per device under ZeRO ``stage`` over ``dp`` data-parallel replicas
    (Rajbhandari et al. 2020, Figure 1): stage 1 divides the optimizer state, 2 also the gradients, 3 also the
    weights. With Adam in mixed precision (2 + 2 + K bytes per parameter, K = 12) that is
    (4 + K/N) Psi, (2 + (2 + K)/N) Psi and (2 + 2 + K) Psi / N."""
    return (-(-weights // dp) if stage >= 3 else weights, -(-gradients // dp) if stage >= 2 else gradients,
            -(-optimizer // dp) if stage >= 1 else optimizer)


def attention_scores_bytes(row, itemsize: int) -> int:
    """Bytes of the score matrices the attention op keeps for backward (sizing/ops/sequence.py: B x H x T x T at
    the dtype, and a 1-byte dropout mask per score), over its copies. A fused kernel (FlashAttention, Dao et al.
    2022; PyTorch's scaled_dot_product_attention) keeps none of them: it recomputes the scores in backward."""
    if row.node.op != "multihead_attention":
        return 0
    b, t, _ = row.node.in_types[0].shape
    scores = b * row.node.kwargs["num_heads"] * t * t
    return (scores * itemsize + (scores if row.node.kwargs["dropout"] else 0)) * row.node.repeat


def kept_activations(est, recompute: bool, fused_attention: bool) -> int:
    """Activation bytes kept for backward per replica. Without recomputation: what every layer keeps (the
    estimate's accounting), less the attention scores a fused kernel does not keep. With full recomputation
    (Chen et al. 2016): the output of every iteration of each folded repeat (the checkpoints), one iteration's own
    activations while it is recomputed, and everything kept by layers outside the folded repeats."""
    size = itemsize(est)

    def kept(r):
        return r.cost.saved_bytes - (attention_scores_bytes(r, size) if fused_attention else 0)
    if not recompute:
        return est.input_kept + sum(kept(r) for r in est.layers)
    groups = {g.name: g for g in est.graph.groups}
    outside = est.input_kept
    per_iteration: dict[str, int] = {}
    for r in est.layers:
        if r.node.group in groups:
            per_iteration[r.node.group] = per_iteration.get(r.node.group, 0) + kept(r) // r.node.repeat
        else:
            outside += kept(r)
    boundaries = sum(g.repeat * numel(est.graph.node(g.output).out.shape) * size for g in groups.values())
    return outside + boundaries + max(per_iteration.values(), default=0)


def optimizer_bytes(est) -> int:
    """Bytes the optimizer step moves per replica: reads weights, gradients and state, writes weights and state
    (memory.py's bytes per parameter)."""
    from ..model.memory import bytes_per_param
    w, g, o = bytes_per_param(est.settings["dtype"], est.settings["optimizer"])
    return est.trainable_params * (2 * w + g + 2 * o)


def device_memory(est, t: int, p: int, dp: int, setup: Setup, micro_share: float) -> Memory:
    """Bytes per device: the replica's weights, gradients and optimizer state split t x p ways by tensor and
    pipeline parallelism, then by ZeRO over the dp replicas; activations of one micro-batch (a 1F1B stage keeps p
    micro-batches of its 1/p of the layers), split t ways."""
    m = est.memory
    shard = t * p
    w, g, o = zero_memory(-(-m.weights // shard), -(-m.gradients // shard), -(-m.optimizer // shard), setup.zero,
                          dp)
    act = kept_activations(est, setup.recompute, setup.fused_attention)
    return Memory(w, g, o, math.ceil(act * micro_share / t))


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _smallest_dp(est, t, p, setup, micro_share, capacity) -> int | None:
    """Smallest data-parallel degree whose memory per device fits ``capacity`` (closed form: memory = A + B / dp
    where B is what ZeRO shards), or None when no degree does."""
    sharded = device_memory(est, t, p, 1, setup, micro_share)     # dp = 1: ZeRO shards nothing
    zero = setup.zero
    if zero == 0:
        return 1 if sharded.total <= capacity else None
    parts = (sharded.weights if zero >= 3 else 0) + (sharded.gradients if zero >= 2 else 0) + sharded.optimizer
    fixed = sharded.total - parts
    if fixed >= capacity:
        return None
    return max(1, -(-parts // (capacity - fixed)))


def micro_share(workload, setup) -> tuple[int, float]:
    """(micro-batches per step, share of the replica batch one micro-batch is)."""
    if setup.pipeline_parallel == 1 and setup.micro_batch is None:
        return 1, 1.0
    mb = min(setup.micro_batch or 1, workload.batch)
    return -(-workload.batch // mb), mb / workload.batch


def choose_layout(est, workload, device, setup) -> tuple[int, int, int]:
    """(devices, tensor-parallel degree, data-parallel degree). Given devices: the smallest tensor-parallel degree
    (a divisor of the node size, dividing devices / p) whose memory fits, else the largest candidate (the
    prediction then says why it does not fit). No devices: the smallest count that fits; SizingError when no count
    does."""
    node = setup.node_size or device.devices_per_node
    p = setup.pipeline_parallel
    _, share = micro_share(workload, setup)
    capacity = device.memory_bytes
    cands = [setup.tensor_parallel] if setup.tensor_parallel else divisors(node)
    if setup.tensor_parallel and setup.tensor_parallel > node:
        raise SizingError(f"tensor parallel degree {setup.tensor_parallel} is more than the {node} devices of a "
                          f"{device.id} node (tensor parallelism stays inside a node)")
    if setup.devices is not None:
        fitting = [t for t in cands if setup.devices % (t * p) == 0]
        if not fitting:
            raise SizingError(f"{setup.devices} devices cannot be split into pipeline {p} x tensor parallel "
                              f"{'/'.join(map(str, cands))} groups; use a multiple of {cands[0] * p}")
        for t in fitting:
            dp = setup.devices // (t * p)
            if capacity is None or device_memory(est, t, p, dp, setup, share).total <= capacity:
                return setup.devices, t, dp
        t = fitting[-1]
        return setup.devices, t, setup.devices // (t * p)
    if capacity is None:
        return p, cands[0], 1
    best = None
    for t in cands:
        dp = _smallest_dp(est, t, p, setup, share, capacity)
        if dp is not None and (best is None or t * p * dp < best[0]):
            best = (t * p * dp, t, dp)
    if best is None:
        t = cands[-1]
        whole = device_memory(est, t, p, 1, setup, share)
        kept = [("activations", whole.activations)] + [(name, getattr(whole, name)) for stage, name in
                                                       ((3, "weights"), (2, "gradients"), (1, "optimizer"))
                                                       if setup.zero < stage]
        hint = "" if setup.zero == 3 else "; ZeRO-3 (--zero 3) shards all but the activations"
        hint += "" if setup.recompute else "; recomputation (--recompute) keeps fewer activations"
        raise SizingError(f"{est.graph.name} does not fit on any number of {device.id}: with tensor parallelism {t} "
                          f"and ZeRO-{setup.zero} a device still needs {iec(sum(b for _, b in kept))} ("
                          + ", ".join(f"{name} {iec(b)}" for name, b in kept) + f") and has {iec(capacity)}{hint}")
    return best


def why_not(mem: Memory, capacity: int | None, device, devices: int, t: int, zero: int) -> str | None:
    if capacity is None or mem.total <= capacity:
        return None
    return (f"needs {iec(mem.total)} per device (weights {iec(mem.weights)}, gradients {iec(mem.gradients)}, "
            f"optimizer {iec(mem.optimizer)}, activations {iec(mem.activations)}) on {devices} {device.id} with "
            f"tensor parallelism {t} and ZeRO-{zero}; each has {iec(capacity)}")
