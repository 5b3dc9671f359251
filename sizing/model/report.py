"""Writers for ``sizing estimate``: table (human, SI prefixes), json and csv (exact integers).

They only format what an Estimate already holds.
"""
from __future__ import annotations

from fractions import Fraction

import csv
import io
import json

from tabulate import tabulate

from ..common.text import csv_cell, terminal
from ..common.units import iec, si

LAYER_FIELDS = ("name", "op", "repeat", "output_shape", "params", "macs", "flops", "backward_flops", "bytes",
                "activation_bytes")


def estimate_json(d: dict) -> str:
    return json.dumps(d, indent=2)


def estimate_csv(d: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LAYER_FIELDS)
    for layer in d["layers"]:
        w.writerow([csv_cell("x".join(map(str, layer[f])) if f == "output_shape" else layer[f])
                    for f in LAYER_FIELDS])
    w.writerow(["TOTAL", "", "", "", d["params"], d["forward"]["macs"], d["forward"]["flops"],
                d["backward"]["flops"], d["forward"]["bytes"], d["memory_bytes"]["activations"]])
    return buf.getvalue()


def estimate_table(d: dict) -> str:
    rows = [[terminal(l["name"]), l["op"], f"x{l['repeat']}" if l["repeat"] > 1 else "", "x".join(map(str, l["output_shape"])),
             si(l["params"]), si(l["macs"]), si(l["flops"]), si(l["backward_flops"]), iec(l["activation_bytes"])]
            for l in d["layers"]]
    head = ["layer", "op", "rep", "output", "params", "MACs", "FLOPs", "bwd FLOPs", "kept for bwd"]
    table = tabulate(rows, head, tablefmt="simple", disable_numparse=True,
                     colalign=("left", "left", "right", "left") + ("right",) * 5)
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
    title = (f"{terminal(d['model'])}  batch {d['batch']}  {d['dtype']}  optimizer {d['optimizer']['name']}"
             + (f"  seq_len {d['seq_len']}" if d["seq_len"] else ""))
    notes = [f"note: {terminal(l['name'])}: {terminal(l['note'])}" for l in d["layers"] if l.get("note")]
    return "\n".join([title, "", table, "", tabulate(summary, tablefmt="plain"), *([""] + notes if notes else [])])


WRITERS = {"table": estimate_table, "json": estimate_json, "csv": estimate_csv}


def figures_table(d: dict) -> str:
    """Text for ``sizing estimate``'s table output, from ``LMFigures.to_dict()``."""
    def n(x):
        return si(x if isinstance(x, int) else float(Fraction(x)))
    tr = d["training_flops_per_token"]
    diff = Fraction(tr["difference"]) / tr["six_n"]
    mem = d["inference_memory_bytes"]
    active = "" if d["active_params"] == d["params"] else f" ({d['active_params']:,} active params)"
    rows = [
        f"language model: context {d['context']}, batch {d['batch']}, weights {d['dtype']}, KV cache {d['kv_dtype']}",
        f"  training FLOPs/token   {n(tr['counted'])} counted (attention included) vs 6N {n(tr['six_n'])}{active}: "
        f"{float(diff):+.1%}",
        f"  prefill                {n(d['prefill_flops'])} FLOPs per {d['context']}-token prompt",
        f"  decode                 {n(d['decode_flops_per_token'])} FLOPs per generated token at context "
        f"{d['context']}",
        f"  KV cache               {iec(d['kv_cache_bytes']['per_token'])} per token, "
        f"{iec(d['kv_cache_bytes']['per_sequence'])} per sequence",
        f"  inference memory       {iec(mem['total'])} = weights {iec(mem['weights'])} + KV cache "
        f"{iec(mem['kv_cache'])} (batch {d['batch']} x {d['context']} tokens)",
    ]
    serving = d.get("serving")
    for phase in ("prefill", "decode") if serving else ():
        p = serving[phase]
        rows.append(f"  {phase} on {serving['device']:<9} {p['tokens_per_second']:,.0f} tokens/s, "
                    f"{p['seconds'] * 1e3:.3g} ms per {'batch of prompts' if phase == 'prefill' else 'step'}, "
                    f"{p['bound']} bound ({serving['precision']})")
    if serving and not serving["fits"]:
        rows.append(f"  weights + KV cache do not fit one {serving['device']}")
    return "\n".join(rows)
