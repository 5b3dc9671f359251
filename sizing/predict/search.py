"""The layout search: given a model (its Estimate at any micro-batch), a device, a device count and a global batch,
the layouts a practitioner would consider, each predicted in closed form, the fastest that fits first.

The space (Calculon, Isaev et al. 2023, searches the same dimensions; Narayanan et al. 2021 and Korthikanti et al.
2022 give the rules):
- tensor parallel t: a divisor of the node size (at most 72) that divides the attention heads; it stays inside
  the NVLink domain (``devices_per_node``: 8 for HGX, 72 for GB200 NVL72; a TPU pod's ICI domain);
- pipeline parallel p: a divisor of the repeated layers or a power of two up to them (the fullest stage takes
  ceil(L / p) layers), 1F1B or interleaved with v chunks when v divides a stage's layers and p the micro-batches;
- data parallel d = devices / (t p), which divides the global batch B; each replica runs B / d samples as
  micro-batches of m (a power of two dividing B / d, up to 64), so gradient accumulation is B / (d m). Where no
  d divides B the replicas split it unevenly: each runs up to ceil(B / d), the slowest sets the step, and the
  batch stays B (the waste shows in the step time, so the search prefers the degrees that split it best);
- ZeRO 0-3 (0-1 with a pipeline, as Megatron's distributed optimizer): stages 1 and 2 move the bytes of plain data
  parallelism, so the lowest stage that fits is the fastest of them; stage 3 is tried when 0-2 do not fit;
- recomputation none, selective (when attention keeps its scores: an unfused kernel) or full;
- sequence parallelism whenever t > 1: it moves the bytes of the all-reduces it replaces and keeps less.
- expert parallel e for a mixture of experts: a divisor of the experts that divides d (experts split across
  data-parallel ranks, tokens exchanged by all-to-all).
- context parallel cp for sequences of 8192 tokens or more: a power of two up to 32 dividing the length (each
  sequence split along its tokens, keys and values passed round a ring).

Every candidate costs a closed form over cached per-(micro-batch, t, recomputation) sums, so 10^12 parameters on
10^5 devices search in well under a second (benchmarks/bench_search.py).
"""
from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, NamedTuple

from ..common.errors import SizingError
from ..common.units import duration, iec
from .fit import activations, capacity, device_memory, divisors, stages
from .roofline import require_work
from .setup import RECOMPUTE, Factors, Layout
from .training import Prediction, evaluate, stage_seconds, step_terms, step_time, tokens_per_sample

OBJECTIVES = ("time", "cost")
MAX_MICRO_BATCH = 64
KEEP = 4                            # alternatives shown beside the pick
CONTEXT_MIN_TOKENS = 8192         # context parallelism is searched for sequences at least this long
MAX_TENSOR_PARALLEL = 72            # a GB200 NVL72 domain; TPU pods (thousands per ICI domain) use far less
TOKENS_PER_BATCH = 2 ** 22          # 4M tokens: Llama 2 (Touvron et al. 2023, Table 1) and Llama 3 pretraining
SAMPLES_PER_BATCH = 256             # ResNet-50's reference batch (Goyal et al. 2017)


@dataclass(frozen=True)
class Pins:
    """Dimensions the user fixed; None: searched."""
    tensor_parallel: int | None = None
    pipeline_parallel: int | None = None
    interleave: int | None = None
    expert_parallel: int | None = None
    context_parallel: int | None = None
    zero: int | None = None
    recompute: str | None = None
    micro_batch: int | None = None
    node_size: int | None = None
    fused_attention: bool = True                # the framework's attention keeps no score matrix (FlashAttention)
    sequence_parallel: bool | None = None       # None: on whenever t > 1
    selective: bool = True                      # the framework can recompute the attention core alone
    max_zero: int = 3                           # the highest ZeRO stage the framework has
    pipeline: bool = True                       # the framework can pipeline (False: one stage unless pinned)

    def __post_init__(self):
        for name in ("tensor_parallel", "pipeline_parallel", "interleave", "expert_parallel", "context_parallel",
                     "micro_batch", "node_size"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise SizingError(f"--{name.replace('_', '-')}: must be a positive integer, got {v!r}")
        if self.zero is not None and self.zero not in (0, 1, 2, 3):
            raise SizingError(f"--zero: the ZeRO stage is 0, 1, 2 or 3, got {self.zero!r}")
        if self.recompute is not None and self.recompute not in RECOMPUTE:
            raise SizingError(f"--recompute: one of {', '.join(RECOMPUTE)}, got {self.recompute!r}")


def default_global_batch(est, devices: int | None = None) -> tuple[int, str]:
    """(global batch, the assumption line saying so) when the user gives none. Token models: 2^22 tokens (4M, as
    Llama 2 trained; Touvron et al. 2023) in whole sequences, and at least one sequence per tensor-parallel group of
    8 on ``devices`` (Llama 3 405B: 2,048 sequences of 8,192 tokens on 16,384 GPUs). Other models: 256 samples
    (ResNet-50's reference batch, Goyal et al. 2017), at least one per device."""
    per = tokens_per_sample(est)
    if per:
        b = max(1, TOKENS_PER_BATCH // per, (devices or 0) // 8)
        return b, (f"global batch {b} sequences of {per} tokens ({b * per / 1e6:.3g}M tokens per step: 4M as Llama 2 "
                   f"trained, at least one sequence per 8 devices; set --global-batch)")
    b = max(SAMPLES_PER_BATCH, devices or 0)
    return b, (f"global batch {b} samples (ResNet-50's reference batch of 256, at least one per device; set "
               f"--global-batch)")


def _powers_of_two_dividing(n: int, cap: int) -> list[int]:
    return [1 << k for k in range(cap.bit_length()) if (1 << k) <= cap and n % (1 << k) == 0]


ATTENTION_OPS = ("multihead_attention", "scaled_dot_product_attention")


def attention_heads(est) -> list[tuple[int, int]]:
    """(query heads, key/value heads) of every attention row (fused attention or HF-style q/k/v + SDPA)."""
    return [(r.node.kwargs["num_heads"], r.node.kwargs.get("num_kv_heads") or r.node.kwargs["num_heads"])
            for r in est.layers if r.node.op in ATTENTION_OPS]


def tensor_candidates(est, node: int, devices: int, pins: Pins) -> list[int]:
    if pins.tensor_parallel is not None:
        if pins.tensor_parallel > node:
            raise SizingError(f"--tensor-parallel {pins.tensor_parallel}: more than the {node} devices of a node "
                              f"(tensor parallelism stays inside a node); use one of "
                              f"{', '.join(map(str, divisors(node)))}")
        return [pins.tensor_parallel]
    heads = attention_heads(est)    # t splits the query heads; key/value heads split too, or are copied (t % kv == 0)
    return [t for t in divisors(node) if t <= MAX_TENSOR_PARALLEL and devices % t == 0
            and all(q % t == 0 and (kv % t == 0 or t % kv == 0) for q, kv in heads)]


def pipeline_candidates(units: int, pins: Pins, per_tensor_group: int) -> list[int]:
    """Pipeline degrees: the divisors of devices / t up to the repeated layers (the fullest stage takes
    ceil(L / p) of them), or the pin; 1 for a framework that cannot pipeline."""
    if pins.pipeline_parallel is not None:
        if pins.pipeline_parallel > max(1, units):
            raise SizingError(f"--pipeline-parallel {pins.pipeline_parallel}: more stages than the {units} repeated "
                              f"layers the model has (at most {max(1, units)})")
        return [pins.pipeline_parallel]
    if not pins.pipeline:
        return [1]
    return [p for p in divisors(per_tensor_group) if p <= max(1, units)]


@dataclass
class _Tally:
    """What the search saw: the layouts that fit (``Candidate``), how many failed for each reason (with the first
    example), the closest that did not fit. ``shapes``: the fastest step seen for each parallel structure
    (``shape``); a layout whose step cannot beat the ``KEEP + 1``-th of them is neither the pick nor an
    alternative, so it is not timed (``bar``)."""
    fitting: list
    reasons: Counter
    examples: dict
    closest: tuple | None = None          # (overflow ratio, Prediction)
    shapes: dict = field(default_factory=dict)
    limit: float = math.inf               # ``bar()``, kept up to date by ``add``

    def miss(self, reason: str, example: str = ""):
        self.reasons[reason] += 1
        self.examples.setdefault(reason, example)

    def add(self, fit: Candidate):
        self.fitting.append(fit)
        key = shape(fit.layout)
        best = self.shapes[key] = min(self.shapes.get(key, math.inf), fit.step_seconds)
        if len(self.shapes) > KEEP and best < self.limit:     # a best at or above the bar leaves it where it is
            self.limit = heapq.nsmallest(KEEP + 1, self.shapes.values())[-1]

    def bar(self) -> float:
        """A step no layout worth keeping exceeds: the (KEEP + 1)-th fastest structure's best, inf before there
        are that many."""
        return self.limit


class Candidate(NamedTuple):
    """A layout that fits and its step time (``step_time``), with what ``evaluate`` needs to predict it in full:
    the search ranks every candidate (``rank_key``) and predicts only those it shows."""
    step_seconds: float
    layout: Layout
    memory: object                      # the layout's device_memory
    est: object                         # the graph at the layout's micro-batch
    terms: object                       # its StepTerms
    stage: object
    node: int

    def predict(self, workload, device, factors: Factors) -> Prediction:
        return evaluate(self.est, self.layout, workload, device, factors, self.node, self.terms, self.stage,
                        self.memory)


def shape(layout: Layout) -> tuple:
    """A layout's parallel structure: the alternatives show one layout (its best micro-batch) per structure."""
    return (layout.tensor_parallel, layout.pipeline_parallel, layout.interleave, layout.expert_parallel,
            layout.context_parallel, layout.zero, layout.recompute)


def layouts_on(at: Callable[[int], object], devices: int, global_batch: int, workload, device, factors: Factors,
               pins: Pins, cache: dict | None = None, uneven_batch: bool = False) -> _Tally:
    """Every candidate layout on ``devices`` devices at ``global_batch``, predicted; see the module docstring.
    ``uneven_batch``: a data-parallel degree that does not divide the global batch takes up to ceil(B / d) samples
    per replica (an uneven split: the layout's ``samples``)."""
    cache = {} if cache is None else cache
    node = pins.node_size or device.devices_per_node
    base = at(pins.micro_batch or 1)
    stage = stages(base)
    precision = workload.compute_precision
    tally = _Tally([], Counter(), {})
    room = capacity(device, factors)
    ts = tensor_candidates(base, node, devices, pins)
    if not ts:
        tally.miss(f"no tensor-parallel degree divides both the {devices} devices and the node of {node} "
                   f"(and the attention heads)")
    modes = [pins.recompute] if pins.recompute else [r for r in RECOMPUTE if r != "selective" or
                                                     (not pins.fused_attention and pins.selective)]
    for t in ts:
        for p, cp in ((p, cp) for p in pipeline_candidates(stage.units, pins, devices // t)
                      for cp in context_candidates(base, pins)):
            if devices % (t * p * cp):
                tally.miss("the devices do not split into tensor x pipeline x context groups",
                           f"tensor {t} x pipeline {p} x context {cp}")
                continue
            d = devices // (t * p * cp)
            if global_batch % d and not uneven_batch:
                tally.miss(f"the global batch {global_batch} does not split over the data-parallel replicas",
                           f"{d} replicas with tensor {t} x pipeline {p}")
                continue
            replica = -(-global_batch // d)
            uneven = global_batch if global_batch % d else None
            if pins.micro_batch is not None:
                if replica % pins.micro_batch:
                    tally.miss(f"--micro-batch {pins.micro_batch} does not divide the samples per replica",
                               f"{replica} per replica with {d} replicas")
                    continue
                micros = [pins.micro_batch]
            else:
                micros = _powers_of_two_dividing(replica, min(replica, MAX_MICRO_BATCH))
                if replica <= MAX_MICRO_BATCH and replica not in micros:
                    micros.append(replica)
            per_stage = -(-stage.units // p)
            zeros = [pins.zero] if pins.zero is not None else [z for z in (0, 1, 2, 3) if z <= pins.max_zero
                                                                   and (p == 1 or z <= 1)]
            for m in micros:
                n = replica // m
                if pins.interleave is not None:
                    vs = [pins.interleave]
                else:
                    vs = [1] + ([v for v in (2, 4, 8) if per_stage % v == 0 and n % p == 0] if p > 1 else [])
                for v in vs:
                    if v > 1 and (p == 1 or per_stage % v or n % p):
                        tally.miss(f"--interleave {v} needs stages holding a multiple of {v} layers and micro-batches "
                                   f"a multiple of the stages", f"pipeline {p}, {n} micro-batches")
                        continue
                    eps = expert_candidates(base, d, pins)
                    if not eps:
                        tally.miss(f"--expert-parallel {pins.expert_parallel} must divide the experts of every "
                                   f"mixture-of-experts layer and the data-parallel degree", f"{d} replicas")
                    for r, e in ((r, e) for r in modes for e in eps):
                        _add_best_zero(at, m, t, p, d, n, v, r, e, cp, zeros, room, workload, device, factors,
                                       pins, stage, node, precision, cache, tally, uneven)
    return tally


def expert_candidates(est, d: int, pins: Pins) -> list[int]:
    """Expert-parallel degrees: divisors of the experts of every mixture-of-experts row that divide the data-parallel
    degree (1 for a dense model), or the pin."""
    counts = est.derived("expert_counts", lambda: frozenset(r.node.kwargs["num_experts"] for r in est.layers
                                                            if r.node.op == "mixture_of_experts"))
    if pins.expert_parallel is not None:
        return [pins.expert_parallel] if d % pins.expert_parallel == 0 and all(
            n % pins.expert_parallel == 0 for n in counts) else []
    if not counts:
        return [1]
    return divisors(math.gcd(d, *counts))           # O(sqrt d) whatever the expert counts


def context_candidates(est, pins: Pins) -> list[int]:
    """Context-parallel degrees: for a token model of at least CONTEXT_MIN_TOKENS per sequence, the powers of two
    up to 32 that divide its length (1 otherwise); or the pin, when it divides the length."""
    tokens = tokens_per_sample(est) or 1
    if pins.context_parallel is not None:
        if tokens % pins.context_parallel:
            raise SizingError(f"--context-parallel {pins.context_parallel}: must divide the {tokens} tokens of a "
                              f"sequence")
        return [pins.context_parallel]
    if tokens < CONTEXT_MIN_TOKENS:
        return [1]
    return [c for c in (1, 2, 4, 8, 16, 32) if tokens % c == 0]


def _add_best_zero(at, m, t, p, d, n, v, r, e, cp, zeros, room, workload, device, factors, pins, stage, node,
                   precision, cache, tally, samples=None):
    """The lowest of the ZeRO stages ``zeros`` that fits in ``room`` bytes (None: any) for one layout (stages 0-2
    move the same bytes; 3 only when they do not fit), its step timed and added to ``tally``; or the reason none
    does. ``samples``: an unevenly split global batch."""
    est = at(m)
    sp = t > 1 and pins.sequence_parallel is not False
    key = (m, t, r, e, cp)
    if key not in cache:
        probe = Layout(t, p, d, m, n, 0, r, sp, v, pins.fused_attention, e, cp)
        cache[key] = (activations(est, probe, stage),
                      step_terms(est, device, precision, factors, t, r, sp, stage, pins.fused_attention, e, node,
                                 cp))
    kept, terms = cache[key]
    last, laid = None, _laid_out(est, stage)
    for z in zeros:
        fields = (t, p, d, m, n, z, r, sp, v, pins.fused_attention, e, cp, samples)
        if fields not in laid:
            layout = Layout(*fields)
            laid[fields] = layout, device_memory(est, layout, stage, kept)
        layout, mem = laid[fields]
        if room is None or mem.total <= room:
            # the step's compute and tensor-parallel terms, as training.py step_time adds them: its other terms
            # are >= 0, and a float sum does not fall as terms >= 0 join it
            stage_s, tp_mb, a2a_mb = stage_seconds(terms, stage, p)
            least = (stage_s * (n + (p - 1) / v) + (tp_mb + a2a_mb) * n) / factors.framework_efficiency
            if least <= tally.bar():
                step = step_time(est, layout, workload, device, factors, node, terms, stage).step
                tally.add(Candidate(step, layout, mem, est, terms, stage, node))
            return
        last = (layout, mem)
    layout, mem = last
    over = mem.total / room
    tally.miss(f"needs more memory than the {iec(room)} a framework can use of each {device.id}")
    if tally.closest is None or over < tally.closest[0]:
        tally.closest = (over, evaluate(est, layout, workload, device, factors, node, terms, stage, mem))


def _laid_out(est, stage) -> dict:
    """Layouts of ``est`` cut by ``stage`` (by their fields) with their device_memory, kept on the estimate: a
    layout's bytes do not depend on the device, and every candidate device whose nodes hold as many devices tries
    the same layouts on the same counts. The stage is kept beside them, so that its id names no other stage."""
    return est.derived(("laid_out", id(stage)), lambda: (stage, {}))[1]


def rank_key(fit: Candidate):
    """Fastest first (seconds per sample of the global batch); ties: less memory per device, then fewer pipeline
    stages and less recomputation."""
    return (fit.step_seconds / fit.layout.global_batch, fit.memory.total, fit.layout.pipeline_parallel,
            RECOMPUTE.index(fit.layout.recompute))


def pruned_lines(tally: _Tally, limit: int = 6) -> tuple[str, ...]:
    lines = [f"{count} layout(s): {reason}" + (f" (e.g. {tally.examples[reason]})" if tally.examples[reason] else "")
             for reason, count in tally.reasons.most_common(limit)]
    if tally.closest is not None:
        over, pred = tally.closest
        lines.append(f"closest that does not fit: {pred.layout.describe()} needs {iec(pred.memory.total)} per device "
                     f"({over:.2f}x what a framework can use of the device)")
    return tuple(lines)


def best_on(at, devices: int, global_batch: int, workload, device, factors: Factors, pins: Pins,
            cache: dict | None = None, uneven_batch: bool = False) -> Prediction | None:
    """The fastest layout that fits on ``devices`` (its ``alternatives``: the next ``KEEP``; ``pruned``: why the
    rest fail), or None when nothing fits, with the reasons in the SizingError the caller raises.
    ``uneven_batch``: when no data-parallel degree divides the global batch, split it unevenly (``layouts_on``)."""
    tally = layouts_on(at, devices, global_batch, workload, device, factors, pins, cache)
    if not tally.fitting and uneven_batch:
        tally = layouts_on(at, devices, global_batch, workload, device, factors, pins, cache, uneven_batch=True)
    if not tally.fitting:
        return None
    ranked = sorted(tally.fitting, key=rank_key)
    seen, distinct = set(), []
    for fit in ranked:          # one per parallel structure: its best micro-batch stands for it
        if shape(fit.layout) not in seen:
            seen.add(shape(fit.layout))
            distinct.append(fit)
    return replace(ranked[0].predict(workload, device, factors),
                   alternatives=tuple(fit.predict(workload, device, factors) for fit in distinct[1:1 + KEEP]),
                   pruned=pruned_lines(tally))


def does_not_fit(at, counts, global_batch: int, workload, device, factors, pins, name: str) -> SizingError:
    """The one-line error when nothing in the space fits: the closest layout on the largest of ``counts`` that has
    one, and its shortfall; else the most common reason on the largest count."""
    for devices in sorted(counts, reverse=True):
        tally = layouts_on(at, devices, global_batch, workload, device, factors, pins, uneven_batch=True)
        if tally.closest is not None:
            over, pred = tally.closest
            return SizingError(
                f"{name} does not fit on {devices} {device.id} at global batch {global_batch}: the closest layout, "
                f"{pred.layout.describe()}, needs {iec(pred.memory.total)} per device (weights "
                f"{iec(pred.memory.weights)}, gradients {iec(pred.memory.gradients)}, optimizer "
                f"{iec(pred.memory.optimizer)}, activations {iec(pred.memory.activations)}) and a framework can "
                f"use {iec(capacity(device, factors))} of each {device.id}"
                + (": use more devices" if len(counts) == 1 else ""))
    tally = layouts_on(at, max(counts), global_batch, workload, device, factors, pins)
    reason = tally.reasons.most_common(1)[0][0] if tally.reasons else "no layout in the space"
    return SizingError(f"{name}: no layout on {max(counts)} {device.id} at global batch {global_batch}: {reason}")


def device_counts(node: int, hi: int) -> list[int]:
    """The device counts the planner buys: 1, 2, 4, ... below a node, then whole nodes in powers of two and
    three times powers of two (8, 16, 24, 32, 48, 64, 96, ... for nodes of 8), up to ``hi``: counts a global
    batch splits over."""
    small = {1 << k for k in range(node.bit_length()) if (1 << k) < node}
    whole = {node * f << k for f in (1, 3) for k in range(max(1, hi // node).bit_length() + 1)}
    return sorted(c for c in small | whole if c <= hi)


def fewest(ok: Callable[[int], bool], counts: list[int]) -> int | None:
    """Index of the first count in ``counts`` for which ``ok`` holds, when ok is monotone in the count (False
    then True): doubling from the start, then bisection, so ~2 log2(len) calls."""
    if not counts:
        return None
    if ok(0):
        return 0
    lo, hi = 0, 1
    while hi < len(counts) and not ok(hi):
        lo, hi = hi, min(2 * hi, len(counts) - 1) if hi < len(counts) - 1 else len(counts)
    if hi >= len(counts):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def search(at, workload, device, factors: Factors, pins: Pins = Pins(), *, devices: int | None = None,
           global_batch: int | None = None, deadline_s: float | None = None, objective: str = "time",
           max_devices: int = 131072, name: str = "the model", allow_overflow: bool = False,
           cache: dict | None = None) -> Prediction:
    """The planner. ``devices`` given: the fastest layout on them (objective 'cost': the fewest device-hours on
    them or a power-of-two fraction of them). ``deadline_s``: the fewest devices (whole nodes past one) whose best
    layout trains in time. Neither: the fewest devices that fit. SizingError, one line, when nothing fits
    (``allow_overflow``, with ``devices``: the closest layout instead, its ``fits`` False). ``cache``: the
    per-(micro-batch, t, recomputation) sums, shared by searches of one model on one device with the same factors
    and pins (a quote's device counts)."""
    if objective not in OBJECTIVES:
        raise SizingError(f"--objective: one of {', '.join(OBJECTIVES)}, got {objective!r}")
    base = at(pins.micro_batch or 1)
    require_work(base)
    notes = ()
    if global_batch is None:
        global_batch, note = default_global_batch(base, devices)
        notes = (note,)
    cache = {} if cache is None else cache

    def best(n, uneven_batch=False):
        pred = best_on(at, n, global_batch, workload, device, factors, pins, cache=cache, uneven_batch=uneven_batch)
        if pred is None:
            return None
        uneven = () if pred.layout.samples is None else (
            f"global batch {global_batch} split unevenly: no data-parallel degree on {n} devices divides it, so each "
            f"of the {pred.data_parallel} replicas runs up to {pred.layout.slots // pred.data_parallel} samples and "
            f"the step costs what {pred.layout.slots} would",)
        return replace(pred, assumptions=notes + uneven + pred.assumptions)

    if devices is not None:
        pred = best(devices, uneven_batch=True)
        if pred is None and allow_overflow:
            closest = layouts_on(at, devices, global_batch, workload, device, factors, pins).closest
            if closest is not None:
                return replace(closest[1], assumptions=notes + closest[1].assumptions)
        if pred is None:
            raise does_not_fit(at, [devices], global_batch, workload, device, factors, pins, name)
        if objective == "cost":
            fractions = [devices >> k for k in range(1, devices.bit_length()) if devices % (1 << k) == 0]
            options = [pred] + [q for q in (best(f, True) for f in fractions) if q is not None]
            pred = min(options, key=lambda q: (q.step_seconds * q.devices, q.step_seconds))
        return pred
    node = pins.node_size or device.devices_per_node
    most = global_batch * node * max(1, stages(base).units) * max(context_candidates(base, pins))  # d <= B, t, p, cp
    counts = device_counts(node, min(max_devices, most))
    found: dict[int, Prediction | None] = {}

    def at_count(i):
        if counts[i] not in found:
            found[counts[i]] = best(counts[i], uneven_batch=True)
        return found[counts[i]]
    if deadline_s is None:
        i = fewest(lambda i: at_count(i) is not None, counts)
    else:
        if workload.samples is None and workload.tokens is None:
            raise SizingError("--deadline needs the work: give --samples or --tokens")
        i = fewest(lambda i: at_count(i) is not None and at_count(i).total_seconds <= deadline_s, counts)
    if i is None:
        tried = [c for c, p in found.items() if p is not None]
        if deadline_s is not None and tried:
            fastest = min((found[c] for c in tried), key=lambda q: q.total_seconds)
            raise SizingError(f"{name} cannot train within the deadline on up to {max(counts)} {device.id}: the "
                              f"fastest tried, {fastest.devices} devices ({fastest.layout.describe()}), takes "
                              f"{duration(fastest.total_seconds)} at global batch {global_batch}; allow more time, more "
                              f"devices (--max-devices) or a larger --global-batch")
        raise does_not_fit(at, counts or [1], global_batch, workload, device, factors, pins, name)
    return at_count(i)
