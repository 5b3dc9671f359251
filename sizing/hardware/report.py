"""Writers of hardware records: `sizing hw list` (table, JSON, CSV) and `sizing hw show` (every figure with its
source). They format the Device records they are given."""
from __future__ import annotations

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


def devices_table(devices, sort: str | None = None) -> str:
    """A compact table of dense peaks in TFLOP/s (int8 in TOP/s): the precisions any listed device has, less
    fp64_tensor (the JSON and CSV carry it) unless it is the ``sort`` key."""
    from tabulate import tabulate

    precs = [p for p in PRECISIONS if any(p in d.peak_tflops for d in devices)
             and (p != "fp64_tensor" or sort == p)]
    head = ["id", "device", "kind", "year", "mem GB", "GB/s", *precs, "TDP W", "price $"]
    rows = [[terminal(d.id), terminal(d.name), d.kind, d.release_year or "", _num(d.memory_gb), _num(d.memory_bw_gbs),
             *(_num(d.peak_tflops.get(p)) for p in precs), _num(d.tdp_w), _num(d.price and d.price.usd)]
            for d in devices]
    return tabulate(rows, head, tablefmt="simple", disable_numparse=True,
                    colalign=("left", "left", "left", "right") + ("right",) * (len(head) - 4))


def family_text(name: str, chosen: Device, members) -> str:
    """The devices a family name matches, one a line, the part it means (``chosen``) marked."""
    lines = [terminal(f"'{name}' is a family of {len(members)} devices; shown below: {chosen.id}, its most common "
                      "part (family_default)")]
    lines += [terminal(f"  {'*' if d is chosen else ' '} {d.id}: {d.name}") for d in members]
    return "\n".join(lines)


def device_text(d: Device) -> str:
    """Every figure of one device with a numbered reference to its source, then the sources and the notes."""
    import textwrap

    from tabulate import tabulate

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
    table = tabulate([[a, "\n".join(textwrap.wrap(str(b), 70)) or b, c] for a, b, c in rows], tablefmt="plain")
    out = [terminal(f"{d.id}: {d.name}"), "", table, "", "sources:"]
    out += [textwrap.fill(f"[{i}] {s}", 110, subsequent_indent="    ") for i, s in enumerate(refs, 1)]
    if d.notes:
        out += ["", textwrap.fill("notes: " + terminal(d.notes), 110, subsequent_indent="  ")]
    return "\n".join(out)
