"""The writer of `sizing check`: its result dict as a terminal table."""
from __future__ import annotations

from ..common.text import terminal
from ..common.units import duration, si
from .check import COUNTS


def check_table(d: dict) -> str:
    from tabulate import tabulate

    rows = []
    for l in d["layers"]:
        cells = []
        for c in COUNTS:
            a, e = l[f"analytic_{c}"], l[f"executed_{c}"]
            cells.append(si(a) if a == e else f"{si(a)} != {si(e)}")
        rows.append([terminal(l["name"]), l["op"], f"x{l['repeat']}" if l["repeat"] > 1 else "", *cells,
                     duration(l["seconds"]), "=" if l["exact"] else "DIFF"])
    table = tabulate(rows, ["layer", "op", "rep", "MACs", "FLOPs", "bwd FLOPs", "time/step", "counts"],
                     tablefmt="simple", disable_numparse=True)
    g = d["gradient_check"]
    size = f"batch {d['batch']}" + (f"  seq_len {d['seq_len']}" if d["seq_len"] else "")
    lines = [f"{terminal(d['model'])}  {size}  {d['steps']} SGD steps (lr {d['lr']:.3g}, {d['loss_function']})", "", table, ""]
    if d["reduced"]:
        what = ", ".join(f"{k} {v['from']} -> {v['to']}" for k, v in d["reduced"].items() if k != "repeat")
        what += "".join(f", {k} repeat {v['from']} -> {v['to']}" for k, v in d["reduced"].get("repeat", {}).items())
        lines.append(f"reduced instance ({what.lstrip(', ')}): too large for this machine's memory or a minute of "
                     "running; the analytic formulas were checked at that size (--full runs the real size)")
    lines += [
        f"counts        {'every executed count equals the analytic one' if d['exact'] else 'see differences below'}",
        f"gradients     max relative error {g['max_rel_error']:.2e} over {g['tensors']} weight tensors "
        f"({'ok' if g['ok'] else 'FAILED'}, limit 1e-4; batch {g['instance']['batch']}, float64)",
        "loss          " + " -> ".join(f"{v:.4f}" for v in d["loss"])
        + (f"  (falls by {d['loss_margin']:.0%} or more" if d["loss_fell"]
           else f"  (does NOT fall by {d['loss_margin']:.0%}") + f"; lr {d['lr']:.3g})",
        f"speed         {duration(d['step_seconds'])} per step, {d['achieved_gflops']:.2f} GFLOPS achieved "
        f"(first step {duration(d['first_step_seconds'])})",
        "predicted     " + (f"{duration(d['predicted_step_seconds'])} per step by the performance model on this "
                            f"machine's `sizing bench` profile (measured / predicted "
                            f"{d['step_seconds'] / d['predicted_step_seconds']:.2f})"
                            if d["predicted_step_seconds"] else "no `sizing bench` profile of this machine"),
    ]
    lines += [f"warning: {terminal(x)}" for x in d["warnings"]]
    lines += [f"difference: {x}" for x in d["differences"]]
    lines += [f"FAILED: {x}" for x in d["failures"]]
    return "\n".join(lines)
