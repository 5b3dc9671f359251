"""`sizing quote`'s options -> a Quote: the orchestration between the command line and the recommendation (the
writers in writers.py only format the Quote this returns)."""
from __future__ import annotations

from dataclasses import replace

from ..common.errors import SizingError
from .core import Quote


def storage_for(precision: str) -> tuple[str, str | None]:
    """(storage dtype, compute precision or None) for a --precision name: a storage dtype computes at itself;
    tf32 and fp8 are compute precisions of the first dtype that allows them (sizing/workload.py COMPUTE)."""
    from ..predict.workload import COMPUTE

    if precision in COMPUTE:
        return precision, None
    for dtype, allowed in COMPUTE.items():
        if precision in allowed:
            return dtype, precision
    names = sorted({p for allowed in COMPUTE.values() for p in allowed})
    raise SizingError(f"--precision: '{precision}' is not one of {', '.join(names)}")


def candidates_for(db: dict, names: str | None) -> list:
    """The devices --candidates names (comma-separated loose names, each may match several), in the order given;
    every device but this machine's bench profile when None."""
    from ..hardware.devices import LOCAL_ID, find_device, match_devices

    if names is None:
        return [d for d in db.values() if d.id != LOCAL_ID]
    out = {}
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        hits = match_devices(db, name) or [find_device(db, name)]     # find_device raises the error
        out.update((d.id, d) for d in hits)
    if not out:
        raise SizingError("--candidates: name at least one device (`sizing hw list`)")
    return list(out.values())


def build_quote(spec, *, samples, tokens, epochs, deadline, qps, latency_ms, batch, seq_len, precision, budget,
                currency, fx, candidates, prices, horizon, pue, kwh_price, node_cost, max_devices, hwdb_files,
                progress, global_batch=None, finetune=None, lora_rank=None, lora_targets=None, concurrency=None,
                prompt_tokens=None, output_tokens=None, weights=None, kv_cache=None, ttft_ms=None,
                tpot_ms=None, tax_rate=None) -> Quote:
    """The Quote for `sizing quote`'s options (every bad value: SizingError, one line): parse, estimate, load the
    devices and prices, recommend."""
    import datetime

    from ..hardware.devices import load_hwdb
    from ..model.estimate import estimator
    from .money import decimal, exchange
    from ..common.units import parse_duration
    from .core import DEFAULT_HORIZON, MAX_DEVICES, apply_prices
    from .recommend import Terms, recommend
    from .tco import parse_tax_rate
    from ..predict.workload import Workload, parse_count
    from ..predict.training import samples_of

    money = exchange(currency, fx)
    tax = parse_tax_rate(tax_rate)
    lm_options = {"--concurrency": concurrency, "--prompt-tokens": prompt_tokens, "--output-tokens": output_tokens,
                  "--weights": weights, "--kv-cache": kv_cache, "--ttft-ms": ttft_ms, "--tpot-ms": tpot_ms}
    llm = any(v is not None for v in lm_options.values())
    clash = [name for name, v in (("--latency-ms", latency_ms), ("--samples", samples), ("--tokens", tokens),
                                  ("--deadline", deadline), ("--finetune", finetune)) if v]
    if llm and clash:
        raise SizingError(f"{', '.join(clash)}: a language model's serving (--concurrency or --qps with "
                          f"--prompt-tokens, --output-tokens, --ttft-ms, --tpot-ms) takes no --latency-ms and no "
                          f"training options")
    serving = qps is not None or latency_ms is not None or llm
    if serving and (samples or tokens or deadline):
        raise SizingError("give a training job (--samples or --tokens, --deadline) or a serving target (--qps, "
                          "--latency-ms), not both")
    if not serving and not (samples or tokens):
        raise SizingError("give --samples or --tokens and --deadline (training), or --qps and/or --latency-ms "
                          "(serving)")
    dtype, compute = storage_for(precision) if precision else (None, None)
    if finetune is None and (lora_rank is not None or lora_targets is not None):
        raise SizingError("--lora-rank and --lora-targets go with --finetune lora or qlora")
    if finetune is not None and serving:
        raise SizingError("--finetune is a training job; give --samples or --tokens and --deadline")
    tune = None if finetune is None else (finetune, lora_rank, lora_targets)
    at = estimator(spec, finetune=tune, dtype=dtype, seq_len=parse_count("--seq-len", seq_len))
    est = at(parse_count("--batch", batch))
    s = est.settings
    common = dict(batch=s["batch"], dtype=s["dtype"], precision=compute, optimizer=s["optimizer"])
    job = _llm_job(spec, est, dtype, concurrency, prompt_tokens, output_tokens, weights, kv_cache, ttft_ms,
                   tpot_ms, qps) if llm else None
    if llm:
        workload = Workload(kind="inference", **common)
    elif serving:
        workload = Workload(kind="inference", throughput=None if qps is None else float(decimal("--qps", qps)),
                            latency_s=None if latency_ms is None else float(decimal("--latency-ms", latency_ms)) / 1e3,
                            **common)
    else:
        workload = Workload(samples=parse_count("--samples", samples), tokens=parse_count("--tokens", tokens),
                            epochs=parse_count("--epochs", epochs), **common)
        samples_of(est, workload)       # --tokens for a model without token ids: refused here, not per device
    db = load_hwdb(hwdb_files)
    if prices:
        db = apply_prices(db, prices)
    given = {k for k, v in (("horizon", horizon), ("pue", pue), ("kwh_price", kwh_price), ("prices", prices),
                            ("batch", global_batch or batch)) if v is not None}
    terms = Terms(
        exchange=money, horizon_s=parse_duration("--horizon", horizon or DEFAULT_HORIZON),
        kwh_price=None if kwh_price is None else decimal("--kwh-price", kwh_price),
        node_cost=None if node_cost is None else money.amount("--node-cost", node_cost),
        budget=None if budget is None else money.amount("--budget", budget),
        pue=None if pue is None else float(decimal("--pue", pue)),
        max_devices=MAX_DEVICES if max_devices is None else parse_count("--max-devices", max_devices),
        deadline_s=None if deadline is None else parse_duration("--deadline", deadline), given=frozenset(given),
        qps=None if not (llm and qps) else float(decimal("--qps", qps)),
        tpot_s=None if tpot_ms is None else float(decimal("--tpot-ms", tpot_ms)) / 1e3,
        tax_rate=tax)
    quote = recommend(est, workload, candidates_for(db, candidates), db, terms, progress, spec,
                      datetime.date.today().isoformat(), at=at,
                      global_batch=parse_count("--global-batch", global_batch) or parse_count("--batch", batch),
                      llm=job, finetune=tune)
    return replace(quote, assumptions=quote.assumptions + device_terms(quote, db))


def price_age(price_date: str, on: str) -> tuple[str, int]:
    """('years' | 'months', n): how old a price of ``price_date`` (YYYY, YYYY-MM or YYYY-MM-DD) is on the ISO date
    ``on``, counted in whole months (a year-only date counts from its January): n years from 12 months on."""
    months = (int(on[:4]) - int(price_date[:4])) * 12 + int(on[5:7]) - int((price_date + "-01")[5:7])
    return ("years", months // 12) if months >= 12 else ("months", max(months, 0))


def device_terms(quote: Quote, db: dict) -> tuple:
    """Assumption lines a buyer must see for each recommended device (the pick, then the alternatives): the age of
    each price the quote uses, and the database's discontinued and licence flags."""
    from .core import Assumption, Message

    out, seen = [], set()
    for option in (o for o in (quote.pick, *quote.alternatives.values()) if o):
        if option.device_id in seen:
            continue
        seen.add(option.device_id)
        d = db[option.device_id]
        for item in option.items or ():
            if item.item in ("devices", "node") and item.date:
                unit, n = price_age(item.date, quote.date)
                out.append(Assumption(Message(f"price_age_{unit}", {"device": d.id, "date": item.date, "n": n}),
                                      item.source))
        if d.discontinued:
            out.append(Assumption(Message("dev_discontinued", {"device": d.id}), d.sources["discontinued"]))
        if d.licence:
            out.append(Assumption(Message("dev_licence", {"device": d.id, "terms": d.licence}), d.source_of("licence")))
    return tuple(out)


def _llm_job(spec, est, dtype, concurrency, prompt_tokens, output_tokens, weights, kv_cache, ttft_ms, tpot_ms, qps):
    """(serving Model, Request) of a causal language model for `sizing quote`'s serving options."""
    from ..model.lm import is_causal_lm
    from ..predict.serving import Request, served_prompt, serving_model
    from ..predict.workload import parse_count
    from .money import decimal

    if not is_causal_lm(est.graph):
        raise SizingError(f"--concurrency, --prompt-tokens and --output-tokens size a causal language model's "
                          f"serving; {est.graph.name} is not one: use --qps and --latency-ms")
    prompt, output, base, fig = served_prompt(spec, est, parse_count("--prompt-tokens", prompt_tokens),
                                              parse_count("--output-tokens", output_tokens), dtype)
    sixteen = base.settings["dtype"] if base.settings["dtype"] in ("bf16", "fp16") else "bf16"
    if concurrency is not None and qps is not None:
        raise SizingError("give --concurrency (requests in flight) or --qps (requests per second), not both")
    concurrency = parse_count("--concurrency", concurrency) or 1
    request = Request(concurrency, prompt, output, weights or sixteen, kv_cache or sixteen,
                      ttft_s=None if ttft_ms is None else float(decimal("--ttft-ms", ttft_ms)) / 1e3,
                      tpot_s=None if tpot_ms is None else float(decimal("--tpot-ms", tpot_ms)) / 1e3)
    return serving_model(base, fig), request
