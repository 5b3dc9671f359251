"""The recommendation behind ``sizing quote``: for each candidate device, the fewest whole nodes that fit the model
in memory and meet the deadline (training) or the latency and throughput targets (inference), by the performance
model (sizing/predict/training.py); each such option costed (sizing/quote.py), ranked by total cost of ownership, filtered by
the budget; one pick and the fastest, cheapest and lowest-power alternatives.

The count search is closed form for inference (replicas = ceil(target / throughput of one replica)) and for
training a doubling of the device count then a bisection over the counts a buyer can order (``smallest_meeting``):
about 2 log2(N) predictions for a count N, each one pass over the folded graph; never a loop over devices or steps. It assumes the time to train
falls as nodes are added, which holds until the global batch covers an epoch in one step or communication
dominates; past that point adding nodes no longer helps and the search stops at the fastest count it saw.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from ..common.errors import SizingError
from ..model.finetune import ALL_LINEAR, DEFAULT_RANK
from .money import Exchange, fmt_rate
from ..predict.inference import predict_inference
from ..predict.roofline import facility_kw, peaks, require_work
from ..predict.search import Pins, default_global_batch, search
from ..predict.setup import Setup
from .tco import (CHECKPOINTS_KEPT, Cluster, assumptions as tco_assumptions, checkpoint_bytes, dataset_bytes,
    nics_per_node, ownership_items)
from .core import (KWH_SOURCE, KWH_USD, MAX_DEVICES, SERVER_SOURCE, SERVER_USD_PER_SLOT, TCO_REFERENCE, Assumption,
    Bytes, Exclusion, Message, Money, Option, Quote, Roofline, Seconds, cloud_cost, energy_cost, buyable_counts, offer, pareto_front, purchase_items, server_slots, status)

YEAR_S = 31557600


@dataclass(frozen=True)
class Terms:
    """The buyer's terms. Money in the report currency: ``kwh_price`` in major units per kWh (None: the US
    industrial average converted), ``node_cost`` and ``budget`` in minor units. ``pue`` None: the calibration
    table's. ``deadline_s``: the training target."""
    exchange: Exchange
    horizon_s: float = 3 * YEAR_S
    kwh_price: Decimal | None = None
    node_cost: int | None = None
    budget: int | None = None
    pue: float | None = None
    max_devices: int = MAX_DEVICES
    deadline_s: float | None = None
    qps: float | None = None              # language-model serving: requests per second to serve
    tpot_s: float | None = None           # language-model serving: the time-per-output-token target
    given: frozenset = frozenset()        # option names the user set ('horizon', 'pue', 'kwh_price', 'prices')
    tax_rate: Decimal | None = None       # percent on every purchase line (--tax-rate); None: no tax

    @property
    def kwh(self) -> Decimal:
        return self.kwh_price if self.kwh_price is not None else KWH_USD * self.exchange.per_usd


def smallest_meeting(ok, lo: int, hi: int, grow=lambda k: 2 * k) -> tuple[int | None, list[int]]:
    """The smallest k in [lo, hi] with ok(k), for ok false then true as k grows: try lo, then grow (double, or
    ``grow(k)``, which must exceed k) until ok (capped at hi), then bisect between the last failure and the first
    success. Returns (k or None, every k tried, in order)."""
    tried = [lo]
    if ok(lo):
        return lo, tried
    fail = lo
    while True:
        nxt = min(max(grow(fail), fail + 1), hi)
        if nxt == fail:
            return None, tried
        tried.append(nxt)
        if ok(nxt):
            break
        fail = nxt
    good = nxt
    while good - fail > 1:
        mid = (fail + good) // 2
        tried.append(mid)
        if ok(mid):
            good = mid
        else:
            fail = mid
    return good, tried


def _planned(at, workload, device, factors, global_batch, devices=None, cache=None):
    """The planner's best layout on ``devices`` (None: the fewest that fit), or None when nothing fits; ``cache``
    holds the per-(micro-batch, tensor parallel, recomputation) sums one device's searches share."""
    try:
        return search(at, workload, device, factors, Pins(), devices=devices, global_batch=global_batch, cache=cache)
    except SizingError:
        return None


def _costs(device, count: int, seconds_running: float, terms: Terms, pue: float, cluster: Cluster):
    """(purchase lines, power kW, horizon kWh, horizon energy cost, kWh and cost while ``seconds_running``); the
    lines hold the cluster's network, storage, racks, installation, support and tax (sizing/quote/tco.py)."""
    items = purchase_items(device, count, terms.exchange, terms.node_cost)
    if items is not None:
        items = ownership_items(items, cluster, terms.exchange, terms.horizon_s, terms.tax_rate)
    kw = facility_kw(device.tdp_w, count, pue)
    if kw is None:
        return items, None, None, None, None, None
    horizon_kwh = kw * terms.horizon_s / 3600
    job_kwh = kw * seconds_running / 3600
    return (items, kw, horizon_kwh, energy_cost(horizon_kwh, terms.kwh, terms.exchange), job_kwh,
            energy_cost(job_kwh, terms.kwh, terms.exchange))


NEAR_FASTEST = 1.01      # counts whose time is within 1% of the fastest are as fast: the fewest of them is shown


def _train_option(at, workload, device, factors, terms: Terms, global_batch) -> Option | Exclusion:
    unit = device.devices_per_node
    cache: dict = {}
    least = _planned(at, workload, device, factors, global_batch, cache=cache)
    if least is None:
        return Exclusion(device.id, Message("ex_no_fit", {"memory": Bytes(device.memory_bytes or 0)}))
    counts = buyable_counts(device, terms.max_devices)
    lo = next((i for i, c in enumerate(counts) if c >= least.devices), None)
    if lo is None:
        return Exclusion(device.id, Message("ex_too_many", {"count": least.devices, "max": terms.max_devices}))
    preds = {lo + 1: least} if counts[lo] == least.devices else {}     # the planner's own answer on that count

    def run(k):                             # k: the 1-based position in ``counts`` (the search doubles it)
        if k not in preds:
            preds[k] = _planned(at, workload, device, factors, global_batch, counts[k - 1], cache)
        return preds[k]

    def ok(k):
        p = run(k)
        return p is not None and p.fits and p.total_seconds <= terms.deadline_s

    def doubled(k):                         # the first count at least twice counts[k - 1]
        return next((j for j in range(k + 1, len(counts) + 1) if counts[j - 1] >= 2 * counts[k - 1]), len(counts))

    lo += 1
    k, tried = smallest_meeting(ok, lo, len(counts), doubled)
    if k is None:         # the fewest devices within 1% of the fastest count tried stand for the device
        ran = [t for t in tried if run(t) is not None]
        best = min((run(t).total_seconds for t in ran), default=None)
        k = min((t for t in ran if run(t).total_seconds <= best * NEAR_FASTEST), default=lo)
    pred = run(k)
    if pred is None:
        return Exclusion(device.id, Message("ex_no_fit", {"memory": Bytes(device.memory_bytes or 0)}))
    fewer = run(k - 1) if k - 1 >= lo else None
    nodes, slots = server_slots(pred.devices, unit)
    items, kw, h_kwh, h_cost, j_kwh, j_cost = _costs(device, pred.devices, pred.total_seconds, terms, factors.pue,
                                                     _train_cluster(at, workload, device, pred, nodes, slots))
    return Option(
        device_id=device.id, device_name=device.name, count=pred.devices, nodes=nodes, per_node=slots,
        precision=pred.precision, zero=pred.zero, tensor_parallel=pred.tensor_parallel, replicas=pred.data_parallel,
        seconds=pred.total_seconds, meets=ok(k), utilization=pred.mfu, peak_flops=peaks(device, pred.precision)[0],
        memory_per_device=pred.memory.total, device_memory=device.memory_bytes, bound=pred.bound, power_kw=kw,
        items=items, horizon_kwh=h_kwh, horizon_energy=h_cost, job_kwh=j_kwh, job_energy=j_cost,
        cloud=cloud_cost(device, pred.device_hours, terms.exchange), global_batch=pred.global_batch,
        steps=pred.steps, model_flops_per_step=pred.model_flops_per_step,
        fewer_seconds=fewer.total_seconds if fewer is not None else None,
        fewer_count=fewer.devices if fewer is not None else None, offer=offer(device), prediction=pred)


def _train_cluster(at, workload, device, pred, nodes: int, slots: int) -> Cluster:
    """What a training cluster's network, storage and racks are sized from (sizing/quote/tco.py): the NICs per
    node that keep the layout's step time (its traffic re-predicted at fewer NICs), one epoch's data and the
    checkpoints."""
    from dataclasses import replace

    from ..model.ops import numel
    from ..predict.training import evaluate

    if nodes < 2:
        return Cluster(nodes, slots, None, device.tdp_w, None)
    est = at(pred.layout.micro_batch)

    def step_at(gbs):
        return evaluate(est, pred.layout, workload, device, replace(pred.factors, network_gbs=gbs)).step_seconds
    one = at(1)
    samples = (pred.steps_per_epoch or 0) * pred.global_batch
    stored = (dataset_bytes(samples, numel(one.graph.input.shape[1:]), one.graph.input.ids)
              + CHECKPOINTS_KEPT * checkpoint_bytes(one.memory.weights, one.memory.optimizer))
    return Cluster(nodes, slots, nics_per_node(step_at, slots, pred.factors.network_gbs), device.tdp_w, stored)


def _serve_cluster(device, nodes: int, slots: int, replica: int) -> Cluster:
    """A serving fleet's cluster: one NIC per node for requests and responses where a replica of ``replica``
    devices sits inside a node, one per device where it spans nodes; no shared storage (each server holds the
    weights)."""
    return Cluster(nodes, slots, slots if replica > slots else 1, device.tdp_w, None)


def _fleet_count(device, needed: int, terms: Terms) -> int | Exclusion:
    """The fewest devices a buyer can order (``buyable_counts``) that hold ``needed``; an Exclusion past
    --max-devices."""
    count = next((c for c in buyable_counts(device, terms.max_devices) if c >= needed), None)
    if count is None:
        return Exclusion(device.id, Message("ex_too_many", {"count": needed, "max": terms.max_devices}))
    return count


def _serve_option(est, workload, device, factors, terms: Terms) -> Option | Exclusion:
    base = predict_inference(est, workload, device, Setup(), factors)
    if not base.fits:
        return Exclusion(device.id, Message("ex_no_fit", {"memory": Bytes(device.memory_bytes or 0)}))
    count = _fleet_count(device, base.devices, terms)
    if isinstance(count, Exclusion):
        return count
    nodes, slots = server_slots(count, device.devices_per_node)
    pred = predict_inference(est, workload, device, Setup(devices=count, tensor_parallel=base.tensor_parallel),
                             factors)
    mat = peaks(device, pred.precision)[0]
    flops = est.totals.flops
    items, kw, h_kwh, h_cost, _, _ = _costs(device, count, terms.horizon_s, terms, factors.pue,
                                            _serve_cluster(device, nodes, slots, pred.tensor_parallel))
    meets = pred.meets_target and (workload.throughput is None or pred.throughput >= workload.throughput)
    return Option(
        device_id=device.id, device_name=device.name, count=count, nodes=nodes, per_node=slots,
        precision=pred.precision, zero=0, tensor_parallel=pred.tensor_parallel, replicas=pred.replicas,
        seconds=pred.latency_s, meets=meets, utilization=flops / (pred.latency_s * pred.tensor_parallel * mat),
        peak_flops=mat, memory_per_device=pred.memory.total, device_memory=device.memory_bytes, bound=pred.bound,
        power_kw=kw, items=items, horizon_kwh=h_kwh, horizon_energy=h_cost, job_kwh=None, job_energy=None,
        cloud=cloud_cost(device, count * terms.horizon_s / 3600, terms.exchange), global_batch=pred.batch,
        model_flops_per_step=flops, throughput=pred.throughput, offer=offer(device), prediction=pred)


_ORDER = ("ok", "over_budget", "unpriced", "rented_only", "discontinued", "misses")
_UNPRICED = ("unpriced", "rented_only", "discontinued")


def _rank(options, budget):
    """Best first: within budget by TCO, then over budget by TCO, then unpriced by time, then those that miss
    the target by how far."""
    def key(o):
        s = status(o, budget)
        return (_ORDER.index("unpriced" if s in _UNPRICED else s), o.tco if s in ("ok", "over_budget") else 0, o.seconds, o.device_id)
    return tuple(sorted(options, key=key))


def _llm_request(model, request, device, factors, efficiency, terms, dtype):
    """The serving plan for ``request`` on ``device``: as asked, or with ``request.qps`` the concurrency that
    serves that rate, by Little's law (concurrency = rate x (TTFT + O x TPOT)) iterated to a fixed point."""
    from dataclasses import replace

    from ..predict.serving import plan_serving

    pred = plan_serving(model, request, device, factors, efficiency, dtype=dtype, max_devices=terms.max_devices)
    if terms.qps is None:
        return pred
    for _ in range(8):
        needed = max(1, math.ceil(terms.qps * (pred.ttft_s + request.output * pred.tpot_s)))
        if needed == request.concurrency:
            break
        request = replace(request, concurrency=needed)
        pred = plan_serving(model, request, device, factors, efficiency, dtype=dtype, max_devices=terms.max_devices)
    return pred


def _llm_option(model, request, device, cal, db, terms: Terms, dtype: str) -> Option | Exclusion:
    """A serving fleet of ``device`` for a language model: the fewest devices that fit and meet the targets (and
    the request rate), rounded up to whole nodes, with the rest of the nodes serving as more replicas."""
    from ..predict.serving import Unservable, matmul_precision, plan_serving

    try:
        precision = matmul_precision(device, request.weights, dtype)
    except SizingError:     # fp8 weights run fp8 matmuls; the others (weight-only int8 / int4 too) 16-bit ones
        return Exclusion(device.id, Message("ex_precision", {
            "precision": "fp8" if request.weights == "fp8" else "bf16 or fp16", "has": ", ".join(device.precisions())}))
    factors = cal.factors(device, precision, db, pue=terms.pue)
    try:
        base = _llm_request(model, request, device, factors, cal.serving_efficiency, terms, dtype)
    except Unservable as e:
        if e.best.meets:
            return Exclusion(device.id, Message("ex_too_many", {"count": e.best.devices, "max": terms.max_devices}))
        if not e.best.fits:
            return Exclusion(device.id, Message("ex_kv_no_fit", {"memory": Bytes(device.memory_bytes or 0)}))
        return Exclusion(device.id, Message("ex_targets", {"ttft": Seconds(e.best.ttft_s),
                                                           "tpot": Seconds(e.best.tpot_s)}))
    count = _fleet_count(device, base.devices, terms)
    if isinstance(count, Exclusion):
        return count
    nodes, slots = server_slots(count, device.devices_per_node)
    pred = base if count == base.devices else plan_serving(model, base.request, device, factors,
                                                           cal.serving_efficiency, devices=count, dtype=dtype)
    mat = peaks(device, precision)[0]
    context = request.prompt + request.output / 2
    flops = model.decode_flops(context)
    items, kw, h_kwh, h_cost, _, _ = _costs(device, count, terms.horizon_s, terms, factors.pue, _serve_cluster(
        device, nodes, slots, pred.tensor_parallel * pred.pipeline_parallel))
    meets = pred.meets and (terms.qps is None or pred.requests_per_s >= terms.qps * (1 - 1e-9))
    return Option(
        device_id=device.id, device_name=device.name, count=count, nodes=nodes, per_node=slots,
        precision=precision, zero=0, tensor_parallel=pred.tensor_parallel, replicas=pred.replicas,
        seconds=pred.tpot_s, meets=meets, utilization=pred.tokens_per_s * flops / (count * mat), peak_flops=mat,
        memory_per_device=pred.memory_bytes, device_memory=device.memory_bytes, bound=pred.bound_decode,
        power_kw=kw, items=items, horizon_kwh=h_kwh, horizon_energy=h_cost, job_kwh=None, job_energy=None,
        cloud=cloud_cost(device, count * terms.horizon_s / 3600, terms.exchange), global_batch=pred.request.concurrency,
        model_flops_per_step=round(flops), throughput=pred.tokens_per_s, offer=offer(device), prediction=pred)


def _findings(kind, ranked, budget, terms, workload) -> list[Message]:
    """What the reader must know about the options: shortfalls, budget exclusions and the options that meet the
    target without a price (sold without one in the database, rented only, or discontinued)."""
    by = {s: [o for o in ranked if status(o, budget) == s] for s in _ORDER}
    out = []
    if not ranked:
        return [Message("no_candidates")]
    if not (by["ok"] or by["over_budget"] or any(by[s] for s in _UNPRICED)):
        best = min(ranked, key=lambda o: o.seconds)
        if kind == "training":
            out.append(Message("short_deadline", {
                "device": best.device_id, "count": best.count, "time": Seconds(best.seconds),
                "deadline": Seconds(terms.deadline_s), "ratio": best.seconds / terms.deadline_s}))
            out.append(Message("short_cap" if best.count * 2 > terms.max_devices else "short_saturated",
                               {"count": best.count, "max": terms.max_devices}))
        else:
            target = terms.tpot_s if kind == "llm" else workload.latency_s
            out.append(Message("short_latency", {"device": best.device_id, "latency": Seconds(best.seconds),
                                                 "target": Seconds(target or 0)}))
    if by["over_budget"]:
        cheapest = min(by["over_budget"], key=lambda o: o.purchase)
        out.append(Message("over_budget_all" if not by["ok"] else "over_budget_some", {
            "n": len(by["over_budget"]), "budget": Money(budget), "device": cheapest.device_id,
            "purchase": Money(cheapest.purchase)}))
    for s, key in zip(_UNPRICED, ("unpriced", "rented_only", "discontinued_unpriced")):
        if by[s]:
            out.append(Message(key, {"n": len(by[s]), "devices": ", ".join(o.device_id for o in by[s])}))
    return out


def _assumptions(kind, workload, terms: Terms, pue: float, pue_source: str, global_batch) -> list[Assumption]:
    given = terms.given
    out = [
        Assumption(Message("as_horizon", {"horizon": Seconds(terms.horizon_s)}),
                   "--horizon" if "horizon" in given else f"depreciation 3-5 years ({TCO_REFERENCE})"),
        Assumption(Message("as_pue", {"pue": pue}), "--pue" if "pue" in given else pue_source),
        Assumption(Message("as_kwh", {"price": fmt_rate(terms.kwh, terms.exchange.currency)}),
                   "--kwh-price" if "kwh_price" in given else KWH_SOURCE),
        Assumption(Message("as_power"), f"sustained H100 draw about 650 W of 700 W TDP; server overhead about 1.3 "
                                        f"({TCO_REFERENCE})"),
        Assumption(Message("as_server", {"cost": Money(terms.exchange.minor(SERVER_USD_PER_SLOT))}), SERVER_SOURCE)
        if terms.node_cost is None else
        Assumption(Message("as_server_given", {"cost": Money(terms.node_cost)}), "--node-cost"),
        Assumption(Message("as_cloud"), f"hwdb/*.yaml cloud rates ({TCO_REFERENCE})"),
        Assumption(Message("as_prices"), "--prices" if "prices" in given else "hwdb/*.yaml (hwdb/README.md)"),
        Assumption(Message("as_search_llm" if kind == "llm" else "as_search", {"max": terms.max_devices}),
                   "sizing/quote/recommend.py"),
        Assumption(Message("as_model_llm"), "sizing/predict/serving.py, sizing/predict/calibration.yaml (serving)")
        if kind == "llm" else
        Assumption(Message("as_model"), "sizing/predict/training.py, sizing/predict/calibration.yaml"),
        *tco_assumptions(terms.tax_rate),
    ]
    if kind == "training":
        out.append(Assumption(Message("as_batch", {"batch": global_batch}), "--global-batch" if "batch" in given
                              else "sizing/predict/search.py default_global_batch"))
    if terms.exchange.currency.code != "USD":
        out.append(Assumption(Message("as_fx", {"rate": terms.exchange.rate_text()}), "--fx"))
    if terms.budget is not None:
        out.append(Assumption(Message("as_budget", {"budget": Money(terms.budget)}), "--budget"))
    return out


def roofline(device, option: Option) -> Roofline:
    """The pick's layers on its device's roofline (layers without FLOPs or bytes have no place on it)."""
    pred = option.prediction
    mat, vec = peaks(device, option.precision)
    layers = tuple((l.name, l.flops / l.bytes, l.flops / l.seconds, l.bound) for l in pred.layers
                   if l.flops and l.bytes and l.seconds)
    return Roofline(device.name, option.precision, mat, vec, device.memory_bw_bytes_per_s,
                    pred.factors.compute_fraction, pred.factors.memory_fraction, layers)


def recommend(est, workload, candidates, db, terms: Terms, progress=None, model_source: str = "",
              date: str = "", at=None, global_batch: int | None = None, llm=None, finetune=None) -> Quote:
    """The quote for ``workload`` (its graph's estimate ``est``; training: ``at``, the graph at any micro-batch,
    and the ``global_batch``, default the planner's rule) over the ``candidates`` devices of ``db``. ``llm``:
    (sizing.predict.serving.Model, Request) to size a language model's serving fleet instead. ``finetune``: the
    (method, rank, targets) ``est`` was fine-tuned with, for the quote's task line."""
    if workload.kind == "training":
        if at is None:
            raise ValueError("a training quote needs the model at any micro-batch (at)")
        if global_batch is None:
            global_batch = default_global_batch(at(1))[0]
    from ..predict.calibration import shipped

    cal = shipped()
    require_work(est)
    kind = "llm" if llm else workload.kind
    if kind == "training" and terms.deadline_s is None:
        raise SizingError("a training quote needs --deadline (e.g. 24h, 14d)")
    precision = workload.compute_precision
    options, excluded = [], []
    for i, device in enumerate(candidates, 1):
        if progress:
            progress(f"quote: {device.id} ({i}/{len(candidates)})")
        if kind == "llm":
            made = _llm_option(*llm, device, cal, db, terms, "bf16" if workload.dtype not in ("fp16",) else "fp16")
            (excluded if isinstance(made, Exclusion) else options).append(made)
            continue
        if precision not in device.peak_tflops:
            excluded.append(Exclusion(device.id, Message("ex_precision", {
                "precision": precision, "has": ", ".join(device.precisions())})))
            continue
        factors = cal.factors(device, precision, db, pue=terms.pue)
        made = (_train_option(at, workload, device, factors, terms, global_batch) if kind == "training" else
                _serve_option(est, workload, device, factors, terms))
        (excluded if isinstance(made, Exclusion) else options).append(made)
    ranked = _rank(options, terms.budget)
    ok = [o for o in ranked if status(o, terms.budget) == "ok"]
    alternatives = {}
    if ok:
        alternatives = {"fastest": min(ok, key=lambda o: o.seconds), "cheapest": min(ok, key=lambda o: o.purchase),
                        "lowest_power": min(ok, key=lambda o: (o.power_kw, o.tco))}
    priced = [i for i, o in enumerate(ranked) if status(o, terms.budget) in ("ok", "over_budget")]
    front = pareto_front([(ranked[i].seconds, ranked[i].tco) for i in priced])
    pick = ok[0] if ok else None
    pue = terms.pue if terms.pue is not None else cal.pue
    s = est.settings
    work = {"batch": s["batch"], "dtype": s["dtype"], "precision": precision, "optimizer": s["optimizer"],
            "seq_len": s["seq_len"]}
    if kind == "training":
        work.update(batch=global_batch, samples=workload.samples, tokens=workload.tokens, epochs=workload.epochs)
        if finetune is not None:
            method, rank, targets = finetune
            work["finetune"] = {"method": method, "rank": None if method == "full" else rank or DEFAULT_RANK,
                                "targets": None if method == "full" else targets or ALL_LINEAR,
                                "trained_params": est.trainable_params, "params": est.totals.params}
    elif kind == "llm":
        r = llm[1]
        work.update(concurrency=r.concurrency, prompt=r.prompt, output=r.output, weights=r.weights,
                    kv_cache=r.kv_cache, ttft_s=r.ttft_s, tpot_s=r.tpot_s, qps=terms.qps,
                    precision=pick.precision if pick else r.weights)
    else:
        work.update(qps=workload.throughput, latency_s=workload.latency_s)
    return Quote(
        model=est.graph.name, source=model_source or est.graph.source, kind=kind, workload=work,
        exchange=terms.exchange, horizon_s=terms.horizon_s, pue=pue, kwh_price=terms.kwh, budget=terms.budget,
        options=ranked, pick=pick, alternatives=alternatives, front=frozenset(priced[i] for i in front),
        excluded=tuple(excluded),
        findings=tuple(_findings(kind, ranked, terms.budget, terms, workload)),
        assumptions=tuple(_assumptions(kind, workload, terms, pue, cal.sources.get("pue_source", "--pue"),
                                       global_batch)),
        model_notes=tuple(pick.prediction.assumptions) if pick else (),
        roofline=roofline(db[pick.device_id], pick) if pick and kind != "llm" else None, deadline_s=terms.deadline_s,
        date=date)
