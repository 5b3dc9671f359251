"""Training: step time, time to train, memory per device, energy, for one layout (``evaluate``); the search over
layouts is sizing/predict/search.py.

A layout (sizing/predict/setup.py ``Layout``) runs tensor parallelism of degree t inside a node (Megatron-LM,
Shoeybi et al. 2019): matrix products and the wide tensors between them split t ways, with the output of each
row-parallel layer (a weighted matrix product that does not widen its input: attention's output projection, an
MLP's down projection) all-reduced once forward and once backward (and once more when recomputed); sequence
parallelism (Korthikanti et al. 2022) turns each all-reduce into a reduce-scatter and an all-gather of the same
bytes and splits the model-width rows between them too. Pipeline parallelism of degree p (1F1B, Narayanan et al.
2021) gives each device ceil(L / p) of the L repeated layers and idles a bubble of (p - 1) / v stage-times per
step with v interleaved chunks; stages exchange each micro-batch's boundary activation forward and its gradient
backward (point to point, 1/t of it each: the scatter-gather optimisation). The d = devices / (t p) replicas are
data parallel: gradients are all-reduced hierarchically (a ring in each node over the interconnect, a ring across
nodes over the network, ``allreduce_seconds``) after the last micro-batch, hidden behind a share ``overlap`` of
its backward pass; ZeRO (Rajbhandari et al. 2020) stages 1 and 2 move the same bytes (a reduce-scatter and an
all-gather), stage 3 (FSDP) all-gathers the weights for every micro-batch's forward and backward and
reduce-scatters its gradients (1.5x an all-reduce per micro-batch), hidden behind the share ``overlap`` of all
compute.

Step time = (stage time x (micro-batches + (p - 1) / v) + tensor-parallel communication + pipeline transfers +
exposed data-parallel communication + optimizer) / framework efficiency, the one factor fitted on published
training runs (sizing/predict/calibration.yaml) for what the causes modelled leave out; the layer times carry the
causes below peak (wave quantization of matrix products, the kernel issue floor: sizing/predict/roofline.py), and
a layout fits in the share of memory a framework can fill (sizing/predict/fit.py ``capacity``). The optimizer
moves its weights, gradients and states at the memory bandwidth (fit.py ``optimizer_bytes``); with a CPU
executor's measured terms (a bench profile) only what the optimizer does beyond SGD, as the bench's layer chains
train with SGD, so each layer's measured time holds its own update already. Every formula is
closed form over the folded graph: a layout of 10^12 parameters on 10^5 devices costs what a small model does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce
from itertools import compress
from operator import add
from typing import NamedTuple

from ..common.errors import SizingError
from ..common.units import iec
from ..model.graph import DTYPES
from ..model.memory import Memory, optimizer_flops
from ..model.ops import numel
from .comm import INTER_HOP_SECONDS, INTRA_HOP_SECONDS, allreduce_seconds, interconnect_bps, ring_allreduce_seconds
from .fit import Stages, capacity, device_memory, optimizer_bytes, stage_params_share, stages
from .roofline import (ATTENTION, BOUNDS, LayerColumns, LayerTime, backward_share, facility_kw, itemsize,
    layer_columns, peaks, row_parallel)
from .setup import Factors, Layout, assumptions


@dataclass(frozen=True)
class Prediction:
    """A training prediction. Times are float seconds; counts and bytes are ints."""
    device: str
    devices: int
    precision: str
    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int
    expert_parallel: int
    context_parallel: int
    zero: int
    recompute: str
    sequence_parallel: bool
    micro_batch: int
    gradient_accumulation: int          # micro-batches per replica per step
    interleave: int
    layers: tuple[LayerTime, ...]       # one micro-batch on one device
    compute_seconds: float              # per device per step, bubble included
    tp_comm_seconds: float
    pp_comm_seconds: float
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
    layout: Layout | None = None
    alternatives: tuple = ()            # the next best layouts (Prediction), fastest first
    pruned: tuple[str, ...] = ()        # why the layouts left out fail, one line per reason

    @property
    def memory_per_device_bytes(self) -> int:
        return self.memory.total

    def summary(self) -> dict:
        """The layout and its headline figures (an alternatives[] entry)."""
        return {"layout": self.layout.describe() if self.layout else None, "tensor_parallel": self.tensor_parallel,
                "pipeline_parallel": self.pipeline_parallel, "data_parallel": self.data_parallel,
                "expert_parallel": self.expert_parallel, "context_parallel": self.context_parallel,
                "zero": self.zero, "recompute": self.recompute, "sequence_parallel": self.sequence_parallel,
                "micro_batch": self.micro_batch, "gradient_accumulation": self.gradient_accumulation,
                "interleave": self.interleave, "step_seconds": self.step_seconds,
                "total_seconds": self.total_seconds, "mfu": self.mfu,
                "memory_per_device_bytes": self.memory.total, "fits": self.fits}

    def to_dict(self) -> dict:
        return {
            "device": self.device, "devices": self.devices, "precision": self.precision,
            "tensor_parallel": self.tensor_parallel, "pipeline_parallel": self.pipeline_parallel,
            "data_parallel": self.data_parallel, "expert_parallel": self.expert_parallel,
            "context_parallel": self.context_parallel, "zero": self.zero,
            "recompute": self.recompute, "sequence_parallel": self.sequence_parallel, "micro_batch": self.micro_batch,
            "gradient_accumulation": self.gradient_accumulation, "interleave": self.interleave,
            "layout": None if self.layout is None else self.layout.describe(),
            "global_batch": self.global_batch, "step_seconds": self.step_seconds,
            "steps_per_epoch": self.steps_per_epoch, "steps": self.steps, "epoch_seconds": self.epoch_seconds,
            "total_seconds": self.total_seconds, "device_hours": self.device_hours, "energy_kwh": self.energy_kwh,
            "bound": self.bound, "mfu": self.mfu, "model_flops_per_step": self.model_flops_per_step,
            "time_seconds": {"compute": self.compute_seconds, "tensor_parallel_comm": self.tp_comm_seconds,
                             "pipeline_comm": self.pp_comm_seconds,
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
            "alternatives": [a.summary() for a in self.alternatives],
            "pruned": list(self.pruned),
            "layers": [{"name": l.name, "op": l.op, "flops": l.flops, "bytes": l.bytes, "compute_s": l.compute_s,
                        "memory_s": l.memory_s, "bound": l.bound} for l in self.layers],
        }


def tokens_per_sample(est) -> int | None:
    """Tokens in one sample of a token-id model (its sequence length), None for other inputs."""
    shape = est.graph.input.shape
    return numel(shape[1:]) if est.graph.input.ids else None


def samples_of(est, workload) -> int | None:
    """Samples per epoch: --samples, or --tokens over the tokens per sample (refused for a model without token ids)."""
    if workload.tokens is not None:
        per = tokens_per_sample(est)
        if per is None:
            raise SizingError(f"--tokens needs a model whose input is token ids; {est.graph.name} takes "
                              f"{list(est.graph.input.shape[1:])} per sample, so give --samples")
        return -(-workload.tokens // per)
    return workload.samples


@dataclass(frozen=True)
class StepTerms:
    """The parts of one micro-batch's time on one device that depend only on the graph at that micro-batch, the
    tensor-parallel degree and the recomputation (cached by the search): seconds of the rows inside the folded
    repeats, before and after them, and their tensor-parallel all-reduces; ``layers``: the rows' times."""
    columns: LayerColumns
    grouped_s: float
    before_s: float
    after_s: float
    tp_grouped_s: float
    tp_outside_s: float
    compute_bound_s: float
    a2a_grouped_s: float = 0.0          # expert parallelism's all-to-alls, context parallelism's exposed KV ring
    a2a_outside_s: float = 0.0

    @property
    def layers(self) -> tuple[LayerTime, ...]:
        return self.columns.rows


def kv_elements(row) -> int:
    """Elements of the keys and values of one copy of an attention row: batch x tokens x 2 x key/value width."""
    if row.node.op == "scaled_dot_product_attention":
        return numel(row.node.in_types[1].shape) + numel(row.node.in_types[2].shape)
    b, t, e = row.node.in_types[0].shape
    heads = row.node.kwargs["num_heads"]
    return 2 * b * t * (row.node.kwargs.get("num_kv_heads") or heads) * (e // heads)


class _StepRows(NamedTuple):
    """What ``step_terms`` reads of the rows, computed once per estimate and stage (``Estimate.derived``): the
    indices of the rows before the folded repeats, inside them and after them; (index, inside the repeats,
    repeats, output elements) of each row tensor parallelism all-reduces after (``row_parallel``); (index, inside,
    repeats, a mixture of experts' input elements and top-k, else 0, 0, an attention row's key and value elements,
    else 0: ``kv_elements``) of each mixture-of-experts and attention row."""
    before: tuple[int, ...]
    inside: tuple[int, ...]
    after: tuple[int, ...]
    allreduced: tuple[tuple[int, bool, int, int], ...]
    routed: tuple[tuple[int, bool, int, int, int, int], ...]


def _step_rows(est, stage: Stages) -> _StepRows:
    """The rows of ``est`` as ``step_terms`` reads them (``_StepRows``)."""
    def make():
        places, allreduced, routed, seen = ([], [], []), [], [], False
        for i, row in enumerate(est.layers):
            inside = row.node.name in stage.grouped
            seen = seen or inside
            places[1 if inside else 2 if seen else 0].append(i)
            if row_parallel(est, row):
                allreduced.append((i, inside, row.node.repeat, numel(row.node.out.shape)))
            moe, attention = row.node.op == "mixture_of_experts", row.node.op in ATTENTION
            if moe or attention:
                routed.append((i, inside, row.node.repeat, numel(row.node.in_types[0].shape) if moe else 0,
                               row.node.kwargs["top_k"] if moe else 0, kv_elements(row) if attention else 0))
        return _StepRows(*map(tuple, places), tuple(allreduced), tuple(routed))
    return est.derived(("step_rows", stage.grouped), make)


def _in_order(values) -> float:
    """The floats added left to right from 0.0, as ``total += value`` in a loop adds them (Python 3.12's ``sum``
    compensates the rounding: its last digit can differ)."""
    return reduce(add, values, 0.0)


def _tp_comm(est, stage: Stages, t: int, cp: int, passes: int, intra: float) -> tuple[float, float]:
    """Seconds of the tensor-parallel all-reduces of one micro-batch, (inside the folded repeats, outside them):
    ``passes`` ring all-reduces of each row-parallel row's output over the t ranks per copy. Computed once per
    estimate and interconnect bandwidth (``intra``: devices of one interconnect share them)."""
    def make():
        size, inside_s, outside_s = itemsize(est), 0.0, 0.0
        for _, inside, repeat, out_elems in _step_rows(est, stage).allreduced:
            comm = passes * repeat * ring_allreduce_seconds(out_elems * size // cp, t, intra, INTRA_HOP_SECONDS)
            if inside:
                inside_s += comm
            else:
                outside_s += comm
        return inside_s, outside_s
    return est.derived(("tp_comm", stage.grouped, t, cp, passes, intra), make)


def step_terms(est, device, precision: str, factors: Factors, t: int, recompute: str, sp: bool,
               stage: Stages, fused_attention: bool = True, e: int = 1, node: int | None = None,
               cp: int = 1) -> StepTerms:
    """The per-micro-batch sums (module docstring). Expert parallelism of degree e sends each token's hidden state to
    its k experts and back, forward and backward (and forward again when recomputed): 2 all-to-alls of
    tokens / t x k x hidden x (e - 1) / e bytes per device per pass, over the interconnect when the e ranks share
    a node, else over the network. Context parallelism of degree cp passes each attention layer's keys and values
    round a ring of cp ranks, cp - 1 blocks of tokens / cp, forward, and keys, values and their gradients backward
    (3 passes, 4 when recomputed), hidden behind the layer's own compute where it is shorter (Ring Attention)."""
    layers = layer_columns(est, device, precision, factors, t, True, recompute, sp, stage.width, stage.grouped,
                           fused_attention, e, cp)
    seconds = layers.seconds
    rows = _step_rows(est, stage)
    network = factors.network_gbs * 1e9
    intra = interconnect_bps(device, network)
    passes = 3 if recompute == "full" else 2
    size = itemsize(est)
    node = node or device.devices_per_node
    a2a_link, a2a_hop = (intra, INTRA_HOP_SECONDS) if e <= max(1, node // t) else (network, INTER_HOP_SECONDS)
    ring_link, ring_hop = (intra, INTRA_HOP_SECONDS) if cp <= max(1, node // t) else (network, INTER_HOP_SECONDS)
    tp_in, tp_out = _tp_comm(est, stage, t, cp, passes, intra) if t > 1 else (0.0, 0.0)
    a2a_in = a2a_out = 0.0
    for i, inside, repeat, tokens, top_k, kv in rows.routed if e > 1 or cp > 1 else ():
        if e > 1 and top_k:
            routed = tokens // (t * cp) * top_k * size
            comm = 2 * passes * repeat * (routed * (e - 1) / e / a2a_link + a2a_hop)
            if inside:
                a2a_in += comm
            else:
                a2a_out += comm
        if cp > 1 and kv:
            block = kv // (cp * t) * size             # one rank's keys and values
            ring = (passes + 1) * (cp - 1) * (block / ring_link + ring_hop) * repeat
            exposed = max(0.0, ring - seconds[i])
            if inside:
                a2a_in += exposed
            else:
                a2a_out += exposed
    grouped, before, after = (_in_order(map(seconds.__getitem__, place)) for place in
                              (rows.inside, rows.before, rows.after))
    return StepTerms(layers, grouped, before, after, tp_in, tp_out,
                     sum(compress(seconds, layers.compute_bound)), a2a_in, a2a_out)


def stage_seconds(terms: StepTerms, stage: Stages, p: int) -> tuple[float, float, float]:
    """One micro-batch on the fullest of ``p`` pipeline stages: (compute, tensor-parallel comm, all-to-alls and
    context rings), seconds. One stage holds everything; else its ceil(L / p) / L share of the repeated layers and
    the larger of the rows before and after them."""
    if p == 1:
        return (terms.grouped_s + terms.before_s + terms.after_s, terms.tp_grouped_s + terms.tp_outside_s,
                terms.a2a_grouped_s + terms.a2a_outside_s)
    share = stage.share(p)
    return (terms.grouped_s * share + max(terms.before_s, terms.after_s), terms.tp_grouped_s * share +
            terms.tp_outside_s, terms.a2a_grouped_s * share + terms.a2a_outside_s)


def why_not(mem: Memory, room: int | None, layout: Layout, device) -> str | None:
    if room is None or mem.total <= room:
        return None
    return (f"needs {iec(mem.total)} per device (weights {iec(mem.weights)}, gradients {iec(mem.gradients)}, "
            f"optimizer {iec(mem.optimizer)}, activations {iec(mem.activations)}) with {layout.describe()}; "
            f"a framework can use {iec(room)} of each {device.id}")


class StepTime(NamedTuple):
    """One optimizer step's seconds on one device by part (``step_time``)."""
    compute: float                  # the stage's micro-batches, bubble included
    tp_comm: float                  # tensor-parallel all-reduces, all-to-alls and context rings
    pp_comm: float
    dp_comm: float
    dp_comm_exposed: float
    optimizer: float
    step: float


def step_time(est, layout: Layout, workload, device, factors: Factors, node: int, terms: StepTerms,
              stage: Stages) -> StepTime:
    """The step of ``layout`` (module docstring), from its micro-batch's ``terms``: what the search ranks layouts
    by before it predicts the few it keeps (``evaluate``)."""
    vec = peaks(device, workload.compute_precision)[1]
    t, p, d, v, n = (layout.tensor_parallel, layout.pipeline_parallel, layout.data_parallel, layout.interleave,
                     layout.micro_batches)
    e, cp = layout.expert_parallel, layout.context_parallel
    network_bps = factors.network_gbs * 1e9
    intra = interconnect_bps(device, network_bps)
    stage_s, tp_mb, a2a_mb = stage_seconds(terms, stage, p)
    compute = stage_s * (n + (p - 1) / v)
    tp_comm = (tp_mb + a2a_mb) * n
    pp_comm = 0.0
    if p > 1 and stage.width:
        tokens = numel(est.graph.input.shape[1:]) if est.graph.input.ids else 1
        boundary = layout.micro_batch * tokens * stage.width * itemsize(est) / (t * cp)
        link, hop = (network_bps, INTER_HOP_SECONDS) if t * p > node else (intra, INTRA_HOP_SECONDS)
        pp_comm = 2 * n * v * (boundary / link + hop)
    params_share = stage_params_share(est, stage, p) / t
    experts = stage.trained_expert_share        # the experts' gradients (their adapters' under LoRA), not a router's
    grad_bytes = math.ceil(est.trainable_params * params_share * (1 - experts)) * DTYPES[workload.dtype]
    ar = allreduce_seconds(grad_bytes, d * cp, max(1, node // t), intra, network_bps, INTRA_HOP_SECONDS,
                           INTER_HOP_SECONDS)
    if experts:                     # expert gradients are reduced over the d / e ranks that hold the same experts
        ar += allreduce_seconds(math.ceil(est.trainable_params * params_share * experts / e) * DTYPES[workload.dtype],
                                d * cp // e, max(1, node // (t * e)), intra, network_bps, INTRA_HOP_SECONDS,
                                INTER_HOP_SECONDS)
    if layout.zero == 3:
        dp_comm = 1.5 * ar * n
        exposed = max(0.0, dp_comm - factors.overlap * compute)
    else:
        dp_comm = ar
        exposed = max(0.0, dp_comm - factors.overlap * stage_s * backward_share(est))
    def update_s(flops: int, optimizer: str | None = None) -> float:
        return max(flops / (vec * factors.compute_fraction),
                   optimizer_bytes(est, optimizer) / (device.memory_bw_bytes_per_s * factors.memory_fraction)
                   ) * params_share
    opt = update_s(est.optimizer_flops)
    if factors.executor:            # the bench's chains train with SGD: each layer's measured time holds its update
        opt = max(0.0, opt - update_s(optimizer_flops(est.trainable_params, "sgd"), "sgd"))
    opt /= d * cp if layout.zero >= 1 else 1
    return StepTime(compute, tp_comm, pp_comm, dp_comm, exposed, opt,
                    (compute + tp_comm + pp_comm + exposed + opt) / factors.framework_efficiency)


def evaluate(est, layout: Layout, workload, device, factors: Factors, node_size: int | None = None,
             terms: StepTerms | None = None, stage: Stages | None = None, memory=None) -> Prediction:
    """Training time, memory and energy of ``workload`` on ``layout.devices`` of ``device``; ``est`` is the graph at
    one micro-batch (``layout.micro_batch`` samples). ``terms``, ``stage`` and ``memory`` (the layout's
    ``device_memory``): precomputed by the search."""
    if workload.kind != "training":
        raise ValueError("evaluate() is for training workloads; use predict_inference()")
    s = est.settings
    if (s["batch"], s["dtype"], s["optimizer"]) != (layout.micro_batch, workload.dtype, workload.optimizer):
        raise ValueError("the estimate was built for another micro-batch, dtype or optimizer than the layout")
    precision = workload.compute_precision
    mat = peaks(device, precision)[0]
    stage = stage or stages(est)
    t, p, d, n = layout.tensor_parallel, layout.pipeline_parallel, layout.data_parallel, layout.micro_batches
    node = node_size or device.devices_per_node
    e, cp = layout.expert_parallel, layout.context_parallel
    terms = terms or step_terms(est, device, precision, factors, t, layout.recompute, layout.sequence_parallel,
                                stage, layout.fused_attention, e, node, cp)
    compute, tp_comm, pp_comm, dp_comm, exposed, opt, step = step_time(est, layout, workload, device, factors, node,
                                                                       terms, stage)
    memory = memory or device_memory(est, layout, stage)
    why = why_not(memory, capacity(device, factors), layout, device)
    devices, global_batch = layout.devices, layout.global_batch
    model_flops = (est.totals.flops + est.totals.backward_flops) * n * d * global_batch // layout.slots
    samples = samples_of(est, workload)
    steps_per_epoch = None if samples is None else -(-samples // global_batch)
    steps = None if steps_per_epoch is None else steps_per_epoch * workload.epochs
    total = None if steps is None else steps * step
    hours = None if total is None else total * devices / 3600
    power = facility_kw(device.tdp_w, 1, factors.pue)
    energy = None if hours is None or power is None else hours * power
    replica = terms.grouped_s + terms.before_s + terms.after_s
    bound = max(zip((terms.compute_bound_s, replica - terms.compute_bound_s,
                     (tp_comm + pp_comm + exposed) * p / max(1, n)), BOUNDS))[1]
    return Prediction(
        device=device.id, devices=devices, precision=precision, tensor_parallel=t, pipeline_parallel=p,
        data_parallel=d, expert_parallel=e, context_parallel=cp, zero=layout.zero, recompute=layout.recompute, sequence_parallel=layout.sequence_parallel,
        micro_batch=layout.micro_batch, gradient_accumulation=n, interleave=layout.interleave, layers=terms.layers,
        compute_seconds=compute, tp_comm_seconds=tp_comm, pp_comm_seconds=pp_comm, dp_comm_seconds=dp_comm,
        dp_comm_exposed_seconds=exposed, optimizer_seconds=opt, step_seconds=step, global_batch=global_batch,
        steps_per_epoch=steps_per_epoch, steps=steps,
        epoch_seconds=None if steps_per_epoch is None else steps_per_epoch * step, total_seconds=total,
        device_hours=hours, energy_kwh=energy, memory=memory, device_memory_bytes=device.memory_bytes,
        fits=why is None, why=why, model_flops_per_step=model_flops,
        mfu=model_flops / (step * devices * mat), bound=bound, factors=factors,
        assumptions=assumptions(device, factors, layout, node, training=True), layout=layout)
