"""Writer of the prediction section of ``sizing estimate --device`` (table format). It only formats what
``Prediction.to_dict()`` holds; the JSON output carries that dict whole as ``prediction``."""
from __future__ import annotations

from ..common.table import Column, fill, table
from ..common.text import terminal
from ..common.units import duration, iec, si

SLOWEST = 10      # layers listed, slowest first
FIGURES = (Column(""), Column("", fold=10), Column("", fold=24))     # name, figure, what it is made of
ALTERNATIVES = (Column("layout", fold=24), Column("step", "right"), Column("MFU", "right"),
                Column("memory", "right"))
LAYERS = (Column("layer", fold=16), Column("op", fold=20), Column("time", "right"), Column("bound", drop=1),
          Column("FLOPs", "right"), Column("bytes", "right", drop=2))


def _notes(prefix: str, lines, width: int | None) -> list[str]:
    """Each line as ``prefix: text``, wrapped to ``width`` with a hanging indent."""
    return [fill(f"{prefix}: {line}", width) for line in lines]


def prediction_table(p: dict, width: int | None = 80) -> str:
    """The prediction of ``sizing estimate --device``, fitted to ``width`` columns (None: full width)."""
    t = p["time_seconds"]
    layout = fill(f"prediction: {p['devices']} x {terminal(p['device'])}, {p['precision']}: {p['layout']}", width)
    m = p["memory_per_device"]
    cap = p["device_memory_bytes"]
    rows = [
        ["step", duration(p["step_seconds"]),
         f"global batch {p['global_batch']:,}; compute {duration(t['compute'])}, tensor-parallel comm "
         f"{duration(t['tensor_parallel_comm'])}, pipeline comm {duration(t['pipeline_comm'])}, gradient comm "
         f"{duration(t['gradient_comm'])} ({duration(t['gradient_comm_exposed'])} exposed), optimizer "
         f"{duration(t['optimizer'])}"],
        ["bound", p["bound"], f"MFU {p['mfu']:.1%} (model FLOPs {si(p['model_flops_per_step'], 'FLOPs')} per step)"],
        ["memory / device", iec(m["total"]),
         f"of {iec(cap) if cap is not None else 'host memory'}: weights {iec(m['weights'])}, gradients "
         f"{iec(m['gradients'])}, optimizer {iec(m['optimizer'])}, activations {iec(m['activations'])}"],
    ]
    if p["steps"] is not None:
        rows += [
            ["epoch", duration(p["epoch_seconds"]), f"{p['steps_per_epoch']:,} steps"],
            ["total", duration(p["total_seconds"]), f"{p['steps']:,} steps"],
            ["device-hours", f"{p['device_hours']:,.0f}", ""],
            ["energy", "-" if p["energy_kwh"] is None else f"{p['energy_kwh']:,.0f} kWh", ""],
        ]
    slow = sorted(p["layers"], key=lambda l: -max(l["compute_s"], l["memory_s"]))[:SLOWEST]
    layers = [[terminal(l["name"]), l["op"], duration(max(l["compute_s"], l["memory_s"])), l["bound"], si(l["flops"]),
               iec(l["bytes"])] for l in slow]
    alternatives = [[a["layout"], duration(a["step_seconds"]), f"{a['mfu']:.1%}", iec(a["memory_per_device_bytes"])]
                    for a in p["alternatives"]]
    return "\n".join([
        layout, "", table(rows, FIGURES, width, header=False), "",
        *(["next best layouts:", table(alternatives, ALTERNATIVES, width), ""] if alternatives else []),
        *_notes("left out", p["pruned"], width), *([""] if p["pruned"] else []),
        fill("slowest layers (one device, one micro-batch, before the framework efficiency):", width),
        table(layers, LAYERS, width), "",
        *_notes("assumption", p["assumptions"], width)])


def serving_table(p: dict, width: int | None = 80) -> str:
    """The ``inference`` block of ``sizing estimate --inference`` as a table fitted to ``width`` columns."""
    lay, m, t = p["layout"], p["memory_bytes"], p["targets"]
    cap = p["device_memory_bytes"]
    target = ", ".join(f"{k[:-2].upper()} <= {duration(v)}" for k, v in t.items() if v is not None)
    rows = [
        ["layout", f"{p['devices']} x {terminal(p['device'])}", f"tensor parallel {lay['tensor_parallel']}, pipeline "
         f"{lay['pipeline_parallel']}, {lay['replicas']} replica(s); weights {p['weights']}, KV cache "
         f"{p['kv_cache']}, matmuls {p['precision']}"],
        ["request", f"{p['concurrency']:,} in flight", f"{p['prompt_tokens']:,} prompt + {p['output_tokens']:,} output "
         f"tokens, {p['mode']} batching" + (f"; targets {target}" if target else "")],
        ["TTFT", duration(p["ttft_s"]), f"time to first token; prefill {p['bound']['prefill']} bound"],
        ["TPOT", duration(p["tpot_s"]), f"time per output token ({p['tokens_per_s_per_user']:,.1f} tokens/s per user); "
         f"decode {p['bound']['decode']} bound"],
        ["throughput", f"{p['tokens_per_s']:,.0f} tok/s", f"{p['requests_per_s']:,.2f} requests/s"],
        ["memory / device", iec(m["total"]), f"of {iec(cap) if cap is not None else 'host memory'}: weights "
         f"{iec(m['weights'])}, KV cache {iec(m['kv_cache'])}, activations {iec(m['activations'])}"],
        ["max concurrency", f"{p['max_concurrency']:,}", "sequences of this length whose KV cache fits"],
    ]
    status = "meets the targets" if p["meets_targets"] else "does NOT meet the targets"
    return "\n".join([f"serving: {status}", "", table(rows, FIGURES, width, header=False), "",
                      *_notes("assumption", p["assumptions"], width)])
