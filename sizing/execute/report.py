"""The writer of `sizing check`: its result dict as a terminal table."""
from __future__ import annotations

from ..common.table import Column, fill, table
from ..common.text import terminal
from ..common.units import duration, si
from .check import COUNTS


COLUMNS = (Column("layer", fold=16), Column("op"), Column("rep", "right"), Column("MACs", "right", fold=8),
           Column("FLOPs", "right", fold=8), Column("bwd FLOPs", "right", fold=8), Column("time/step", "right"),
           Column("counts"))
SUMMARY = (Column(""), Column("", fold=24))


def check_table(d: dict, width: int | None = 80) -> str:
    """The per-layer check (a differing count shows as 'analytic != executed') and the summary lines, fitted to
    ``width`` columns (None: full width)."""
    rows = []
    for l in d["layers"]:
        cells = []
        for c in COUNTS:
            a, e = l[f"analytic_{c}"], l[f"executed_{c}"]
            cells.append(si(a) if a == e else f"{si(a)} != {si(e)}")
        rows.append([terminal(l["name"]), l["op"], f"x{l['repeat']}" if l["repeat"] > 1 else "", *cells,
                     duration(l["seconds"]), "=" if l["exact"] else "DIFF"])
    g = d["gradient_check"]
    size = f"batch {d['batch']}" + (f"  seq_len {d['seq_len']}" if d["seq_len"] else "")
    lines = [fill(f"{terminal(d['model'])}  {size}  {d['steps']} SGD steps (lr {d['lr']:.3g}, {d['loss_function']})",
                  width), "", table(rows, COLUMNS, width), ""]
    if d["reduced"]:
        what = ", ".join(f"{k} {v['from']} -> {v['to']}" for k, v in d["reduced"].items() if k != "repeat")
        what += "".join(f", {k} repeat {v['from']} -> {v['to']}" for k, v in d["reduced"].get("repeat", {}).items())
        lines.append(fill(f"reduced instance ({what.lstrip(', ')}): too large for this machine's memory or a minute "
                          "of running; the analytic formulas were checked at that size (--full runs the real size)",
                          width))
    summary = [
        ["counts", "every executed count equals the analytic one" if d["exact"] else "see differences below"],
        ["gradients", f"max relative error {g['max_rel_error']:.2e} over {g['tensors']} weight tensors "
                      f"({'ok' if g['ok'] else 'FAILED'}, limit 1e-4; batch {g['instance']['batch']}, float64)"],
        ["loss", " -> ".join(f"{v:.4f}" for v in d["loss"])
         + (f"  (falls by {d['loss_margin']:.0%} or more" if d["loss_fell"]
            else f"  (does NOT fall by {d['loss_margin']:.0%}") + f"; lr {d['lr']:.3g})"],
        ["speed", f"{duration(d['step_seconds'])} per step, {si(round(d['achieved_gflops'] * 1e9), 'FLOP/s')} achieved "
                  f"(first step {duration(d['first_step_seconds'])})"],
        ["predicted", f"{duration(d['predicted_step_seconds'])} per step of our executor by the performance model "
                      f"on this machine's `sizing bench` profile (measured / predicted "
                      f"{d['step_seconds'] / d['predicted_step_seconds']:.2f})"
                      if d["predicted_step_seconds"] else "no `sizing bench` profile of this machine"],
    ]
    lines.append(table([[f"{a:<12}", b] for a, b in summary], SUMMARY, width, header=False))
    lines += [fill(f"warning: {terminal(x)}", width) for x in d["warnings"]]
    lines += [fill(f"difference: {x}", width) for x in d["differences"]]
    lines += [fill(f"FAILED: {x}", width) for x in d["failures"]]
    return "\n".join(lines)
