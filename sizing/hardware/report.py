"""Writers of hardware records: `sizing hw list` (table, JSON, CSV) and `sizing hw show` (every figure with its
source). They format the Device records they are given."""
from __future__ import annotations

from ..common.table import Column, fill, table
from ..common.text import csv_cell, terminal
from .devices import CSV_FIELDS, PRECISIONS, Device, Price


def csv_row(d: Device) -> list:
    p = d.price
    return ([d.id, d.vendor, d.model, d.kind, d.form_factor, d.release_year, d.memory_gb, d.memory_type,
             d.memory_bw_gbs] + [d.peak_tflops.get(x) for x in PRECISIONS]
            + [d.tdp_w, d.interconnect, d.interconnect_gbs, d.devices_per_node, p and p.usd, p and p.kind,
               p and p.date])


def devices_csv(devices) -> str:
    """One row per device; the columns of the reference CSV (hwdb/reference/hardware.csv) where they exist."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    w.writerows([("" if v is None else csv_cell(v)) for v in csv_row(d)] for d in devices)
    return buf.getvalue()


def devices_json(devices) -> str:
    import json

    return json.dumps([d.to_record() for d in devices], indent=2)


def _num(x) -> str:
    return "" if x is None else f"{x:,}"


def _usd(x) -> str:
    """$27,500 for whole dollars, $3.90 for cents."""
    return f"${x:,.0f}" if float(x).is_integer() else f"${x:,.2f}"


# Columns of `hw list`: (sort key, header, alignment, fold width, drop priority: the highest is left out first)
LIST_COLUMNS = (("id", "id", "left", None, 0), ("vendor", "device", "left", 16, 3), ("kind", "kind", "left", None, 5),
                ("release_year", "year", "right", None, 4), ("memory_gb", "mem GB", "right", None, 0),
                ("memory_bw_gbs", "GB/s", "right", None, 0))
PRECISION_DROP = {"fp64": 9, "fp64_tensor": 9, "int8": 8, "fp16": 7, "tf32": 6, "fp32": 2, "bf16": 0, "fp8": 0}
LIST_TAIL = (("tdp_w", "TDP W", "right", None, 1), ("price", "price $", "right", None, 0))


def devices_table(devices, sort: str | None = None, width: int | None = 80) -> str:
    """A compact table of dense peaks in TFLOP/s (int8 in TOP/s): the precisions any listed device has, less
    fp64_tensor (the JSON and CSV carry it) unless it is the ``sort`` key; fitted to ``width`` columns by leaving
    out the columns of LIST_COLUMNS' and PRECISION_DROP's priorities (never the ``sort`` key's)."""
    precs = [p for p in PRECISIONS if any(p in d.peak_tflops for d in devices)
             and (p != "fp64_tensor" or sort == p)]
    specs = [*LIST_COLUMNS, *((p, p, "right", None, PRECISION_DROP[p]) for p in precs), *LIST_TAIL]
    columns = [Column(head, align, fold, 0 if key == sort else drop) for key, head, align, fold, drop in specs]
    rows = [[terminal(d.id), terminal(d.name), d.kind, d.release_year or "", _num(d.memory_gb), _num(d.memory_bw_gbs),
             *(_num(d.peak_tflops.get(p)) for p in precs), _num(d.tdp_w), _num(d.price and d.price.usd)]
            for d in devices]
    return table(rows, columns, width)


def family_text(name: str, chosen: Device, members, width: int | None = 80) -> str:
    """The devices a family name matches, one a line, the part it means (``chosen``) marked, fitted to ``width``."""
    lines = [fill(terminal(f"'{name}' is a family of {len(members)} devices; shown below: {chosen.id} (its "
                           "family_default)"), width)]
    lines += [fill(terminal(f"  {'*' if d is chosen else ' '} {d.id}: {d.name}"), width, "      ") for d in members]
    return "\n".join(lines)


SHOW_COLUMNS = (Column("", fold=12), Column("", fold=24), Column(""))       # figure, value, [source]


def device_text(d: Device, width: int | None = 80) -> str:
    """Every figure of one device with a numbered reference to its source, then the sources and the notes, fitted
    to ``width`` columns (None: values on one line)."""
    refs: list[str] = []

    def ref(text):
        if text is None:
            return ""
        text = terminal(text)
        if text not in refs:
            refs.append(text)
        return f"[{refs.index(text) + 1}]"

    def price(p: Price):
        return f"{_usd(p.usd)} ({p.kind}, {p.date})" + (f"; {terminal(p.note)}" if p.note else "")

    rows = [["kind", d.kind, ""]]
    for f, label, fmt in (("form_factor", "form factor", "{}"), ("release_year", "release year", "{}"),
                          ("memory_gb", "memory", "{:,} GB"), ("memory_type", "memory type", "{}"),
                          ("memory_bw_gbs", "memory bandwidth", "{:,} GB/s")):
        if getattr(d, f) is not None:
            rows.append([label, terminal(fmt.format(getattr(d, f))), ref(d.source_of(f))])
    for p in d.precisions():
        unit = "TOP/s" if p == "int8" else "TFLOP/s"
        rows.append([f"peak {p} (dense)", f"{d.peak_tflops[p]:,} {unit}", ref(d.source_of(f"peak_tflops.{p}"))])
    for f, label, fmt in (("tdp_w", "TDP", "{:,} W"), ("interconnect", "interconnect", "{}"),
                          ("interconnect_gbs", "interconnect bandwidth", "{:,} GB/s"),
                          ("devices_per_node", "devices per node", "{}"), ("discontinued", "discontinued", "{}"),
                          ("licence", "licence", "{}")):
        if getattr(d, f) is not None:
            rows.append([label, terminal(fmt.format(getattr(d, f))), ref(d.source_of(f))])
    if d.price:
        rows.append(["price", price(d.price), ref(d.price.source)])
    if d.node_price:
        rows.append([f"node price ({d.devices_per_node} devices)", price(d.node_price), ref(d.node_price.source)])
    for c in d.cloud:
        rows.append([terminal(f"cloud {c.provider}"), terminal(f"{_usd(c.usd_per_hour)}/device-hour, {c.offer} "
                                                               f"({c.date})" + (f"; {c.note}" if c.note else "")),
                     ref(c.source)])
    out = [fill(terminal(f"{d.id}: {d.name}"), width), "", table(rows, SHOW_COLUMNS, width, header=False), "",
           "sources:"]
    out += [fill(f"[{i}] {s}", width, "    ") for i, s in enumerate(refs, 1)]
    if d.notes:
        out += ["", fill("notes: " + terminal(d.notes), width)]
    return "\n".join(out)
