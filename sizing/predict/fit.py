"""Memory per device under a layout: ZeRO sharding, the pipeline stage a device holds, and the activations it
keeps for backward (with and without recomputation, tensor and sequence parallelism).

Where the activations of a transformer block live (Korthikanti et al. 2022, "Reducing Activation Recomputation
in Large Transformer Models", section 4): with tensor parallelism of degree t, the tensors inside the
tensor-parallel regions (attention's q, k, v and scores, the MLP's wide hidden tensors: outputs of matrix products
and anything wider than the model) are split t ways; the tensors between them (norm inputs, residuals, dropout
masks: the model-width tensors outside matrix products) are replicated on every tensor-parallel rank, unless
sequence parallelism splits them along the sequence. A 1F1B pipeline's first stage holds min(p, micro-batches)
micro-batches of its layers, times 1 + (p - 1) / (p v) with v interleaved chunks (section 4.2.3). Context
parallelism of degree cp keeps 1 / cp of every activation on each device (its share of the tokens)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..model.counting import expert_trained_params
from ..model.memory import Memory
from ..model.ops import numel
from .roofline import ATTENTION, itemsize, score_elements, tensor_parallel_roles, tp_split
from .setup import Layout


def zero_memory(weights: int, gradients: int, optimizer: int, stage: int, dp: int) -> tuple[int, int, int]:
    """(weights, gradients, optimizer) bytes per device under ZeRO ``stage`` over ``dp`` data-parallel replicas
    (Rajbhandari et al. 2020, Figure 1): stage 1 divides the optimizer state, 2 also the gradients, 3 also the
    weights. With Adam in mixed precision (2 + 2 + K bytes per parameter, K = 12) that is
    (4 + K/N) Psi, (2 + (2 + K)/N) Psi and (2 + 2 + K) Psi / N."""
    return (-(-weights // dp) if stage >= 3 else weights, -(-gradients // dp) if stage >= 2 else gradients,
            -(-optimizer // dp) if stage >= 1 else optimizer)


def attention_scores_bytes(row, itemsize: int) -> int:
    """Bytes of the score matrices an attention op keeps for backward (sizing/model/ops/sequence.py and
    transformer.py: the probabilities, ``score_elements`` at the dtype, Gemma 2's capped scores as many again, and
    a 1-byte dropout mask per score), over its copies. A fused kernel (FlashAttention, Dao et al. 2022; PyTorch's
    scaled_dot_product_attention) keeps none of them: it recomputes the scores in backward."""
    scores, a = score_elements(row), row.node.kwargs
    cap = 1 if a.get("softcap") else 0
    return (scores * (1 + cap) * itemsize + (scores if a.get("dropout") else 0)) * row.node.repeat


def framework_attention_bytes(row, itemsize: int, scores_kept: bool) -> int:
    """What a framework's attention keeps beyond the op's minimum (a named framework term): the attention output
    before the output projection (B x T x E, the projection's saved input: FlashAttention saves it too), and, when
    the score matrices are kept (unfused, not recomputed) with dropout, the probabilities after dropout as well as
    before (PyTorch autograd keeps both: 2 bytes per score more; Korthikanti et al. 2022 count 5 bytes per score)."""
    if row.node.op not in ATTENTION:
        return 0
    b, t, e = row.node.in_types[0].shape
    # scaled_dot_product_attention's output is kept by the output projection after it, which saves its input
    out = b * t * e * itemsize if row.node.op == "multihead_attention" else 0
    extra = out + (score_elements(row) * itemsize if row.node.kwargs["dropout"] and scores_kept else 0)
    return extra * row.node.repeat


@dataclass(frozen=True)
class Stages:
    """How a pipeline cuts the graph: the iterations of the block uses (``units`` in all: transformer layers),
    folded or not, are the layers it splits; rows before the first go to the first stage, rows after the last to
    the last stage. ``unfolded`` maps the rows of each iteration the builder did not fold (a repeat's first, whose
    input shape may differ; a block used once, as Gemma 2 alternates its local and global layers) to its label."""
    units: int                      # iterations of all block uses (transformer layers)
    width: int | None               # model width: the last dimension of an iteration's output
    before: frozenset               # row names before the first iteration
    grouped: frozenset              # row names inside iterations (unfolded ones included)
    unfolded: dict                  # row name -> its unfolded iteration's label
    grouped_params: int = 0         # params of the rows inside iterations (the same at every micro-batch)
    before_params: int = 0          # params of the rows before the first iteration
    expert_share: float = 0.0       # expert_share of the graph
    trained_expert_share: float = 0.0   # trained_expert_share of the graph

    def share(self, p: int) -> float:
        """Share of the repeated layers on the fullest stage: ceil(U / p) / U."""
        return 1.0 if p == 1 or not self.units else -(-self.units // p) / self.units

    def iteration(self, row) -> str | None:
        """The label of the iteration ``row`` belongs to: its folded repeat's, or its unfolded iteration's."""
        return row.node.group or self.unfolded.get(row.node.name)


def stages(est) -> Stages:
    """How a pipeline cuts ``est``'s graph (``Stages``), worked out once per estimate."""
    return est.derived("stages", lambda: _stages(est))


def _stages(est) -> Stages:
    graph = est.graph
    labels = {it.name for it in graph.iterations}
    unfolded = {r.node.name: r.node.name.rpartition(".")[0] for r in est.layers
                if r.node.group is None and r.node.name.rpartition(".")[0] in labels}
    grouped = frozenset(r.node.name for r in est.layers if r.node.group is not None) | frozenset(unfolded)
    first = next((i for i, r in enumerate(est.layers) if r.node.name in grouped), len(est.layers))
    widths = [graph.node(g.output).out.shape[-1] for g in (*graph.groups, *graph.iterations)]
    units = sum(g.repeat for g in graph.groups) + len(set(unfolded.values()))
    before = frozenset(r.node.name for r in est.layers[:first])
    return Stages(units, max(widths) if widths else None, before, grouped, unfolded,
                  sum(r.cost.params for r in est.layers if r.node.name in grouped),
                  sum(r.cost.params for r in est.layers if r.node.name in before), expert_share(est),
                  trained_expert_share(est))


def kept_bytes(row, size: int, recompute: str, fused: bool) -> int:
    """Bytes one row keeps for backward without checkpointing: the estimate's accounting, plus the framework
    term, less the attention scores when a fused kernel or selective recomputation does not keep them."""
    scores_kept = not fused and recompute == "none"
    kept = row.cost.saved_bytes + framework_attention_bytes(row, size, scores_kept)
    return kept if scores_kept else kept - attention_scores_bytes(row, size)


def activations(est, layout: Layout, stage: Stages) -> tuple[float, float, float, float]:
    """Bytes kept on one device for one micro-batch of ``est``, before the pipeline's stage share: (repeated
    layers, rows outside the repeats, working bytes held once, the first stage's share of the outside rows). Full
    recomputation (Chen et al. 2016) keeps each iteration's input (the checkpoint) for every micro-batch in
    flight, and one iteration's own activations once, while it is recomputed. Computed once per estimate, stage
    and (t, sequence parallelism, recomputation, fused attention): the planner asks on every candidate device."""
    key = ("activations", layout.tensor_parallel, layout.sequence_parallel, layout.recompute,
           layout.fused_attention, stage.units, stage.width, stage.before, stage.grouped,
           tuple(sorted(stage.unfolded.items())))
    return est.derived(key, lambda: _activations(est, layout, stage))


def _kept_rows(est, stage: Stages, recompute: str, fused: bool) -> tuple[tuple, tuple]:
    """What ``_activations`` reads of the rows, whatever the tensor-parallel degree (computed once per estimate,
    stage, recomputation and attention kernel): (bytes kept without recomputation, whether tensor parallelism
    splits it: ``tp_split``) per row outside the repeats, and (row, bytes kept, split) per row inside them."""
    def make():
        size, split = itemsize(est), tensor_parallel_roles(est)[1]
        outside = tuple((kept_bytes(r, size, "none", fused), tp_split(r, stage.width, split)) for r in est.layers
                        if r.node.name not in stage.grouped)
        inside = tuple((r, kept_bytes(r, size, recompute, fused), tp_split(r, stage.width, split))
                       for r in est.layers if r.node.name in stage.grouped)
        return outside, inside
    return est.derived(("kept_rows", stage.grouped, stage.width, recompute, fused), make)


def _activations(est, layout: Layout, stage: Stages) -> tuple[float, float, float, float]:
    size, t, sp = itemsize(est), layout.tensor_parallel, layout.sequence_parallel
    outside_rows, inside_rows = _kept_rows(est, stage, layout.recompute, layout.fused_attention)
    outside = est.input_kept + sum(nbytes / t if sp or split else nbytes for nbytes, split in outside_rows)
    inside = [(r, nbytes / t if sp or split else nbytes) for r, nbytes, split in inside_rows]
    first = _first_stage_outside(est, stage)
    if layout.recompute != "full":
        return sum(b for _, b in inside), outside, 0.0, first
    per_iteration: dict[str, float] = {}
    for r, b in inside:
        key = stage.iteration(r)
        per_iteration[key] = per_iteration.get(key, 0) + b / r.node.repeat
    unfolded = set(stage.unfolded.values())
    checkpoints = sum(g.repeat * numel(est.graph.node(g.output).out.shape) * size
                      for g in (*est.graph.groups, *(it for it in est.graph.iterations if it.name in unfolded)))
    return checkpoints / (t if sp else 1), outside, max(per_iteration.values(), default=0), first


def in_flight(layout: Layout) -> float:
    """Micro-batches whose activations the fullest (first) pipeline stage holds at once: 1 without a pipeline,
    min(p, m) for 1F1B, times 1 + (p - 1) / (p v) interleaved (Korthikanti et al. 2022, section 4.2.3)."""
    p, v = layout.pipeline_parallel, layout.interleave
    if p == 1:
        return 1.0
    return min(p, layout.micro_batches) * (1 + (p - 1) / (p * v) if v > 1 else 1)


def stage_params_share(est, stage: Stages, p: int) -> float:
    """Share of the parameters on the fullest pipeline stage: its repeated layers and the larger of the rows
    before (embeddings) and after (final norm, output head) the repeats."""
    if p == 1 or not stage.units:
        return 1.0
    total = max(1, est.totals.params)
    after = total - stage.grouped_params - stage.before_params
    return min(1.0, (stage.grouped_params * stage.share(p) + max(stage.before_params, after)) / total)


def device_memory(est, layout: Layout, stage: Stages | None = None, kept: tuple | None = None) -> Memory:
    """Bytes per device: the fullest pipeline stage's weights, gradients and optimizer state split t ways, then by
    ZeRO over the data-parallel replicas; the activations of the micro-batches in flight on it. ``est`` is the graph
    at one micro-batch; ``kept``: its ``activations`` when already known."""
    stage = stage or stages(est)
    m = est.memory
    t, p, e, cp = layout.tensor_parallel, layout.pipeline_parallel, layout.expert_parallel, layout.context_parallel
    f = stage_params_share(est, stage, p) / t
    experts, trained = stage.expert_share, stage.trained_expert_share   # of the weights, of what trains
    ranks = layout.data_parallel * cp          # context-parallel ranks hold the same weights: ZeRO shards over them
    w, g, o = zero_memory(math.ceil(m.weights * f * (1 - experts)), math.ceil(m.gradients * f * (1 - trained)),
                          math.ceil(m.optimizer * f * (1 - trained)), layout.zero, ranks)
    if experts:                     # 1 / e of the experts on each device, ZeRO over the d / e that hold the same
        ew, eg, eo = zero_memory(math.ceil(m.weights * f * experts / e), math.ceil(m.gradients * f * trained / e),
                                 math.ceil(m.optimizer * f * trained / e), layout.zero, ranks // e)
        w, g, o = w + ew, g + eg, o + eo
    if layout.zero == 3 and layout.data_parallel > 1:
        w += 2 * largest_layer_weights(est, stage) // t      # gathered for compute, and the next one prefetched
    inside, outside, working, first = kept or activations(est, layout, stage)
    act = inside * stage.share(p) + (outside if p == 1 else outside * first)
    return Memory(w, g, o, math.ceil((act * in_flight(layout) + working) / cp))


def _first_stage_outside(est, stage: Stages) -> float:
    """Share of the outside rows' kept bytes on the first stage (the rows before the repeats)."""
    total = sum(r.cost.saved_bytes for r in est.layers if r.node.name not in stage.grouped)
    before = sum(r.cost.saved_bytes for r in est.layers if r.node.name in stage.before)
    return before / total if total else 0.0


def expert_share(est) -> float:
    """Share of the parameters that are experts of a mixture of experts (the routers aside)."""
    experts = sum(r.cost.params - r.node.kwargs["num_experts"] * r.node.in_types[0].shape[-1] * r.node.repeat
                  for r in est.layers if r.node.op == "mixture_of_experts")
    return experts / est.totals.params if est.totals.params else 0.0


def trained_expert_share(est) -> float:
    """Share of the trainable parameters that are experts' (``expert_trained_params``), so split over the
    expert-parallel ranks with their gradients and optimizer state: expert_share in full training; under LoRA the
    experts' adapters only (attention adapters and a router's are on every rank)."""
    trained = est.trainable_params
    return sum(map(expert_trained_params, est.layers)) / trained if trained else 0.0


def largest_layer_weights(est, stage: Stages) -> int:
    """Weight bytes of the largest unit ZeRO-3 / FSDP gathers whole: one iteration of a folded repeat (a
    transformer layer), or the largest row outside them (Rajbhandari et al. 2020, section 5: the parameters of
    one layer are materialised at a time, and prefetching holds the next)."""
    per_iteration: dict[str, int] = {}
    outside = [0]
    for r in est.layers:
        if r.node.name in stage.grouped:
            key = stage.iteration(r)
            per_iteration[key] = per_iteration.get(key, 0) + r.cost.params // r.node.repeat
        else:
            outside.append(r.cost.params)
    params = max([*per_iteration.values(), *outside])
    return params * est.memory.weights // max(1, est.totals.params)


def optimizer_bytes(est, optimizer: str | None = None) -> int:
    """Bytes the optimizer step (``optimizer``, default the estimate's) moves per replica: reads weights, gradients
    and state, writes weights and state (memory.py's bytes per parameter)."""
    from ..model.memory import bytes_per_param

    optimizer = optimizer or est.settings["optimizer"]

    def make():
        w, g, o = bytes_per_param(est.settings["dtype"], optimizer)
        return est.trainable_params * (2 * w + g + 2 * o)
    return est.derived(("optimizer_bytes", optimizer), make)


def capacity(device, factors) -> int | None:
    """Bytes of a device's memory a training framework can fill: its memory x ``factors.usable_memory`` (the rest
    holds the CUDA context, library workspaces, communication buffers and the allocator's fragmentation;
    sizing/predict/calibration.yaml states the figure and its source); None for a device without a fixed memory."""
    return None if device.memory_bytes is None else int(device.memory_bytes * factors.usable_memory)


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))
