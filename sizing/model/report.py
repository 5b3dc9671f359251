"""Writers for ``sizing estimate``: table (human, SI prefixes), json and csv (exact integers).

They only format what an Estimate already holds.
"""
from __future__ import annotations

from fractions import Fraction

import csv
import io
import json

from ..common.table import Column, fill, table
from ..common.text import csv_cell, terminal
from ..common.units import duration, iec, si

LAYER_FIELDS = ("name", "op", "repeat", "output_shape", "params", "macs", "flops", "backward_flops", "bytes",
                "activation_bytes")


def estimate_json(d: dict) -> str:
    return json.dumps(d, indent=2)


def _scalars(path: str, value):
    """(JSON path, value) of every number, string, bool or null under ``value``, nested dicts flattened with dots;
    lists (layers, alternatives, assumptions) are left to the JSON."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _scalars(f"{path}.{k}", v)
    elif not isinstance(value, list):
        yield path, value


def estimate_csv(d: dict) -> str:
    """One row per layer, then a TOTAL row. With a prediction (``--device``) or a serving estimate
    (``--inference``), each row adds the layer's predicted time and bound (one device, one micro-batch, before
    the framework efficiency), and the TOTAL row adds every scalar of ``prediction`` / ``inference`` in a column
    named by its JSON path (``prediction.step_seconds``, ``prediction.time_seconds.compute``)."""
    extra = [kv for key in ("prediction", "inference") if key in d for kv in _scalars(key, d[key])]
    predicted = {l["name"]: l for l in d.get("prediction", {}).get("layers", [])}
    timed = ("predicted_seconds", "predicted_bound") if predicted else ()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*LAYER_FIELDS, *timed, *(k for k, _ in extra)])
    for layer in d["layers"]:
        p = predicted.get(layer["name"])
        times = ([max(p["compute_s"], p["memory_s"]), p["bound"]] if p else ["", ""]) if timed else []
        w.writerow([csv_cell("x".join(map(str, layer[f])) if f == "output_shape" else layer[f])
                    for f in LAYER_FIELDS] + times + [""] * len(extra))
    w.writerow(["TOTAL", "", "", "", d["params"], d["forward"]["macs"], d["forward"]["flops"],
                d["backward"]["flops"], d["forward"]["bytes"], d["memory_bytes"]["activations"], *([""] * len(timed)),
                *("" if v is None else csv_cell(v) for _, v in extra)])
    return buf.getvalue()


LAYER_COLUMNS = (Column("layer", fold=16), Column("op", fold=20), Column("rep", "right"), Column("output", drop=3),
                 Column("params", "right"), Column("MACs", "right", drop=1), Column("FLOPs", "right"),
                 Column("bwd FLOPs", "right"), Column("kept for bwd", "right", drop=2))
SUMMARY_COLUMNS = (Column(""), Column("", fold=16), Column("", fold=24))


def estimate_table(d: dict, width: int | None = 80, forward_only: bool = False) -> str:
    """The per-layer table, totals and notes, fitted to ``width`` columns (None: full width). ``forward_only``
    (a model served, not trained): no backward column, no backward, training-step or training-memory totals."""
    rows = [[terminal(l["name"]), l["op"], f"x{l['repeat']}" if l["repeat"] > 1 else "",
             "x".join(map(str, l["output_shape"])), si(l["params"]), si(l["macs"]), si(l["flops"]), si(l["backward_flops"]), iec(l["activation_bytes"])]
            for l in d["layers"]]
    m = d["memory_bytes"]
    step = d["training_step"]["flops"]
    summary = [
        ["params", f"{d['params']:,}", f"trainable {d['trainable_params']:,}"],
        ["forward", si(d["forward"]["macs"], "MACs"), si(d["forward"]["flops"], "FLOPs")],
        ["backward", "", si(d["backward"]["flops"], "FLOPs")],
        ["training step", "", si(step, "FLOPs") + f"  (optimizer {d['optimizer']['name']}: "
                                                  f"+{si(d['optimizer']['flops'], 'FLOPs')})"],
        ["memory", f"total {iec(m['total'])}", f"weights {iec(m['weights'])}, gradients {iec(m['gradients'])}, "
                                              f"optimizer {iec(m['optimizer'])}, activations {iec(m['activations'])}"],
    ]
    columns = LAYER_COLUMNS
    title = f"{terminal(d['model'])}  batch {d['batch']}  {d['dtype']}  optimizer {d['optimizer']['name']}"
    if forward_only:
        rows, columns = [r[:7] for r in rows], LAYER_COLUMNS[:7]
        summary = [[summary[0][0], summary[0][1], ""], summary[1]]
        title = f"{terminal(d['model'])}  forward of batch {d['batch']}  {d['dtype']}"
    title += f"  seq_len {d['seq_len']}" if d["seq_len"] else ""
    notes = [fill(f"note: {terminal(l['name'])}: {terminal(l['note'])}", width) for l in d["layers"] if l.get("note")]
    return "\n".join([fill(title, width), "", table(rows, columns, width), "",
                      table(summary, SUMMARY_COLUMNS, width, header=False), *([""] + notes if notes else [])])


WRITERS = {"table": estimate_table, "json": estimate_json, "csv": estimate_csv}


def figures_table(d: dict, width: int | None = 80, serving: bool = False) -> str:
    """Text for ``sizing estimate``'s table output, from ``LMFigures.to_dict()``, fitted to ``width``; ``serving``
    leaves out the training FLOPs per token."""
    def n(x):
        return si(x if isinstance(x, int) else float(Fraction(x)))
    tr = d["training_flops_per_token"]
    diff = Fraction(tr["difference"]) / tr["six_n"]
    mem = d["inference_memory_bytes"]
    active = "" if d["active_params"] == d["params"] else f" ({d['active_params']:,} active params)"
    frozen = (f"; vs 6N - 2N_frozen {n(tr['six_n_less_frozen'])} (a frozen base takes no weight gradients): "
              f"{float(Fraction(tr['difference_less_frozen']) / tr['six_n_less_frozen']):+.1%}"
              if "frozen_params" in tr else "")
    rows = [] if serving else [
        ["training FLOPs/token", f"{n(tr['counted'])} counted (attention included) vs 6N {n(tr['six_n'])}{active}: "
                                 f"{float(diff):+.1%}{frozen}"]]
    rows += [
        ["prefill", f"{n(d['prefill_flops'])} FLOPs per {d['context']}-token prompt"],
        ["decode", f"{n(d['decode_flops_per_token'])} FLOPs per generated token at context {d['context']}"],
        ["KV cache", f"{iec(d['kv_cache_bytes']['per_token'])} per token, "
                     f"{iec(d['kv_cache_bytes']['per_sequence'])} per sequence"],
        ["inference memory", f"{iec(mem['total'])} = weights {iec(mem['weights'])} + KV cache {iec(mem['kv_cache'])} "
                             f"(batch {d['batch']} x {d['context']} tokens)"],
    ]
    serving = d.get("serving")
    for phase in ("prefill", "decode") if serving else ():
        p = serving[phase]
        rows.append([f"{phase} on {serving['device']}",
                     f"{p['tokens_per_second']:,.0f} tokens/s, {duration(p['seconds'])} per "
                     f"{'batch of prompts' if phase == 'prefill' else 'step'}, {p['bound']} bound "
                     f"({serving['precision']})"])
    if serving and not serving["fits"]:
        rows.append(["", f"weights + KV cache do not fit one {serving['device']}"])
    head = f"language model: context {d['context']}, batch {d['batch']}, weights {d['dtype']}, KV cache {d['kv_dtype']}"
    body = table([["  " + label, text] for label, text in rows], (Column(""), Column("", fold=24)), width,
                 header=False)
    return "\n".join([fill(head, width), body])
