"""The hardware database: every shipped record loads and equals the reference CSV it was written from (read here
independently with the csv module), bad records give one located line, overrides and the bench profile work, and
`sizing hw list` / `sizing hw show` filter, sort, format and match loose names."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sizing.hardware import devices
from sizing.cli import main
from sizing.hardware.devices import (PRECISIONS, Device, Price, device_from_record, find_device, load_hwdb,
    local_profile_path, read_records, shipped_devices, to_yaml)
from sizing.common.errors import SizingError

REFERENCE = Path(__file__).resolve().parents[1] / "hwdb" / "reference" / "hardware.csv"
ROWS = list(csv.DictReader(REFERENCE.open(newline="")))
COLUMN = {p: ("int8_tops" if p == "int8" else f"{p}_tflops") for p in PRECISIONS}



def cli(*args):
    return CliRunner().invoke(main, ["hw", *map(str, args)])


def user_error(result, *fragments):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and result.stdout == "", result.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def value(text: str):
    return float(text) if text.strip() else None


# ---------------------------------------------------------------- the shipped database

def by_row():
    db = {(d.vendor, d.model): d for d in shipped_devices()}
    return [(row, db.get((row["vendor"], row["model"]))) for row in ROWS]


def test_every_reference_row_has_exactly_one_record():
    assert len(ROWS) == 32
    pairs = by_row()
    assert all(d is not None for _, d in pairs), [r["model"] for r, d in pairs if d is None]
    assert len({d.id for _, d in pairs}) == len(ROWS)
    assert {r["vendor"] for r in ROWS} == {"NVIDIA", "AMD", "Intel", "Google"}


CURRENT = ("b200", "b300", "gb200", "gb300", "h200-sxm", "h200-nvl", "h20", "rtx-pro-6000", "rtx-5090", "rtx-4090",
           "rtx-3090", "a100-sxm-40gb", "a10g", "mi300x", "mi325x", "mi355x", "gaudi3", "tpu-v5e", "tpu-v5p", "tpu-v6e",
           "trainium2", "grace-superchip", "xeon-6980p", "epyc-9755")


def test_at_least_60_devices_with_the_current_parts():
    ids = [d.id for d in shipped_devices()]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)
    assert set(CURRENT) <= set(ids), set(CURRENT) - set(ids)
    db = load_hwdb(environ={})
    assert db["gb300"].devices_per_node == 72 and db["gb200"].devices_per_node == 72     # the NVLink domain
    assert db["gb300"].node_price is not None and db["gb300"].price is None               # sold as the rack


def test_every_price_has_a_date_no_later_than_the_record_can_know():
    """Every priced device states when its price was stated (YYYY, YYYY-MM or YYYY-MM-DD), not in the future; a unit
    price not before the device's release year."""
    import datetime

    today = datetime.date.today().isoformat()
    for d in shipped_devices():
        for p in (d.price, d.node_price):
            if p is None:
                continue
            assert re.fullmatch(r"\d{4}(-\d\d){0,2}", p.date) and p.date <= today, (d.id, p.date)
            # a unit price cannot predate the part (a node price may: the V100 32GB record uses the DGX-1 price of
            # May 2017, announced with the 16 GB V100)
            assert p is d.node_price or d.release_year is None or int(p.date[:4]) >= d.release_year, (d.id, p.date)
            assert p.source.strip(), d.id


def test_geforce_cards_carry_the_driver_licence_and_discontinued_parts_cite_it():
    for d in shipped_devices():
        if "GeForce" in d.model:
            assert d.licence and "Datacenter" in d.licence and "geforce-license" in d.source_of("licence"), d.id
        if d.discontinued:
            assert "End-of-life" in d.sources["discontinued"] or "EOL" in d.sources["discontinued"], d.id
    assert load_hwdb(environ={})["tesla-p40"].discontinued is True
    assert load_hwdb(environ={})["t4"].discontinued is False


README = Path(__file__).resolve().parents[1] / "hwdb" / "README.md"


def readme_gaps(label: str) -> set[str]:
    """The ids README.md lists after '- LABEL:' in its 'Coverage and gaps' section (they may wrap lines)."""
    text = README.read_text().split("## Coverage and gaps", 1)[1]
    item = re.search(rf"^- {re.escape(label)}:(.*?)(?=^- |^\S|\Z)", text, re.M | re.S)
    assert item, label
    return set(re.findall(r"`([a-z0-9.-]+)`", item[1]))


def test_every_device_on_sale_has_a_price_and_every_rented_one_a_rate():
    """A device is rented only (cloud_only: a cloud rate, no price), discontinued (sourced end of life: no price
    needed) or on sale (a dated, sourced price). The devices for which no source gave a price or rate are exactly the
    gaps README.md names, so a new unpriced device, or a gap filled without updating the README, fails."""
    devices = shipped_devices()
    for d in devices:
        if d.cloud_only:
            assert d.price is None and d.node_price is None and d.sources["cloud_only"], d.id
        if d.discontinued:
            assert d.sources["discontinued"], d.id
    unpriced = {d.id for d in devices if not d.cloud_only and not d.discontinued and d.price is d.node_price is None}
    unrented = {d.id for d in devices if d.cloud_only and not d.cloud}
    assert unpriced == readme_gaps("Unpriced, on sale")
    assert unrented == readme_gaps("Rented only, no on-demand rate found")
    rented = {d.id for d in devices if d.cloud_only}
    assert {"tpu-v5e", "tpu-v5p", "tpu-v6e", "trainium2", "inferentia2", "a10g"} <= rented
    assert {d.id for d in devices if d.cloud_only and d.kind != "accelerator"} == {"a10g"}   # AWS's own A10 variant
    assert len(unpriced) + len(unrented) < len(devices) // 3      # most devices are priced


def test_cloud_only_needs_a_source_and_no_price(tmp_path):
    rented = GOOD.replace("    kind: gpu", "    kind: gpu\n    cloud_only: true")
    bad(tmp_path, rented.replace("      record: Acme datasheet", "      record: Acme datasheet\n      cloud_only: X rents it"),
        10, "device 'acme-1': price: a cloud_only device is not sold: give its cloud rates, not a price")
    unpriced = "\n".join(line for line in rented.splitlines() if "price:" not in line) + "\n"
    bad(tmp_path, unpriced, 12, "sources: cloud_only: true needs sources.cloud_only")
    ok = unpriced.replace("      record: Acme datasheet", "      record: Acme datasheet\n      cloud_only: X rents it")
    d = load_hwdb([write(tmp_path, ok)], environ={})["acme-1"]
    assert d.cloud_only is True and d.price is None and d.cloud[0].usd_per_hour == 1.5


@pytest.mark.parametrize("row, d", by_row(), ids=[r["model"] for r in ROWS])
def test_numbers_equal_the_reference_csv(row, d):
    for f in ("memory_gb", "memory_bw_gbs", "tdp_w", "interconnect_gbs"):
        assert value(row[f]) == (None if getattr(d, f) is None else float(getattr(d, f))), f
    for p in PRECISIONS:
        assert value(row[COLUMN[p]]) == d.peak_tflops.get(p), p
    for f in ("kind", "form_factor", "memory_type", "interconnect"):
        assert row[f] == getattr(d, f), f
    assert int(row["release_year"]) == d.release_year
    if row["list_price_usd"]:
        assert d.price is not None and value(row["list_price_usd"]) == d.price.usd
    else:                       # priced from elsewhere: the price must not claim the reference as its source
        assert d.price is None or "hwdb/reference" not in d.price.source, d.price
    assert row["source"] == d.sources["record"]


def test_every_figure_has_a_source_and_records_round_trip():
    for d in shipped_devices():
        for f in devices.FIGURES:
            assert getattr(d, f) is None or d.source_of(f), (d.id, f)
        assert all(d.source_of(f"peak_tflops.{p}") for p in d.precisions())
        assert device_from_record(d.to_record()) == d
        assert device_from_record(yaml.safe_load(to_yaml([d]))["devices"][0]) == d


def test_cpu_peaks_and_bandwidths_equal_the_arithmetic_their_notes_state():
    """A CPU's peaks are derived (cores x base clock x FP64 FLOP per cycle; FP32 twice that) and its bandwidth too
    (channels x MT/s x 8 bytes): the figures must equal the arithmetic the record's notes write out, to the rounding
    of the figure, so a mistyped peak or a changed clock in the notes fails."""
    flops = re.compile(r"FLOPS = (\d+) (?:[\w ]+ )?cores x ([\d.]+) GHz(?: BASE)? x (\d+) FP64 FLOP/cycle")
    bandwidth = re.compile(r"Memory BW = (\d+)(?: ch)? x (\d+) MT/s x 8 B")
    checked = 0
    for d in shipped_devices():
        m = flops.search(d.notes or "")
        if d.kind != "cpu" or not m:
            continue
        fp64 = int(m[1]) * float(m[2]) * int(m[3]) / 1000
        assert math.isclose(d.peak_tflops["fp64"], fp64, rel_tol=2e-3), (d.id, d.peak_tflops, fp64)
        assert math.isclose(d.peak_tflops["fp32"], 2 * fp64, rel_tol=2e-3), (d.id, d.peak_tflops, 2 * fp64)
        b = bandwidth.search(d.notes)
        assert b and math.isclose(d.memory_bw_gbs, int(b[1]) * int(b[2]) * 8 / 1000, rel_tol=1e-9), d.id
        checked += 1
    assert checked >= 7        # every x86 CPU record (the Grace figure is NVIDIA's own)


REFERENCE_NOTES = REFERENCE.parent / "cloud_and_tco.md"


def dollar_figures(text: str) -> set[float]:
    """Every US-dollar amount printed in ``text`` ('$1,499', '$45k', '$2.5 million', '899 USD') and the midpoint of
    every printed range ('$28,000 to $34,000', 'between $8,000 and $9,200', '$2-3 million')."""
    scale = {"": 1, "k": 10 ** 3, " million": 10 ** 6}
    num = r"(\d[\d,]*(?:\.\d+)?)"
    def f(x):
        return float(x.replace(",", ""))
    found = {f(a) * scale[m] for a, m in re.findall(rf"\${num}(k| million|)", text)}
    found |= {f(a) for a in re.findall(rf"{num} USD", text)}
    for a, b, m in re.findall(rf"\${num}\s*(?:-|to|and)\s*\$?{num}(k| million|)", text):
        found.add((f(a) + f(b)) / 2 * scale[m])
    return found


def test_dollar_figures_reads_amounts_and_ranges():
    assert dollar_figures("'MSRP $45k'; $2.0k; 899 USD; $1,499") >= {45000, 2000, 899, 1499}
    assert 2.5e6 in dollar_figures("Priced at $2-3 million per rack")
    assert 8600 in dollar_figures("retailing between $8,000 and $9,200") and 31000 in dollar_figures("$28,000 to $34,000")
    assert 12500 not in dollar_figures("$10,000 and more")


def test_every_price_is_a_figure_its_source_prints():
    """A price from the reference CSV equals it (test_numbers_equal_the_reference_csv); a node price compiled in
    cloud_and_tco.md is a figure printed there; any other price cites a source outside the reference and is a dollar
    figure (or the midpoint of a range) that its source or note prints, so a typo or an invented number fails."""
    notes = dollar_figures(REFERENCE_NOTES.read_text())
    in_csv = {(r["vendor"], r["model"]) for r in ROWS if r["list_price_usd"]}
    checked = 0
    for d in shipped_devices():
        for p in (d.price, d.node_price):
            if p is None or (p is d.price and (d.vendor, d.model) in in_csv):
                continue
            if "hwdb/reference/cloud_and_tco.md" in p.source:
                assert p.usd in notes, (d.id, p)
            else:
                assert "hwdb/reference" not in p.source and p.date, (d.id, p)
                assert p.usd in dollar_figures(f"{p.source} {p.note or ''}"), (d.id, p.usd, p.source)
                checked += 1
    assert checked >= 20


def test_cloud_rates_are_those_their_sources_print():
    """A rate compiled in cloud_and_tco.md is a figure printed there (or the midpoint of a printed range); any other
    rate cites its own dated source and is a figure it prints, or an instance's printed rate divided by the chips the
    offer names ('trn1.32xlarge (16 chips)')."""
    notes = dollar_figures(REFERENCE_NOTES.read_text())
    rates = [(d, c) for d in shipped_devices() for c in d.cloud]
    assert len(rates) >= 20
    for d, c in rates:
        if "hwdb/reference/cloud_and_tco.md" in c.source:
            assert any(math.isclose(c.usd_per_hour, x, abs_tol=5e-4) for x in notes), (d.id, c)
            continue
        printed = dollar_figures(f"{c.source} {c.note or ''}")
        chips = [int(n) for n in re.findall(r"(\d+) chips", f"{c.offer} {c.note or ''}")] or [1]
        assert any(math.isclose(c.usd_per_hour, x / n, abs_tol=1e-4) for x in printed for n in chips), (d.id, c)


def test_exact_integer_conversions():
    db = load_hwdb()
    assert db["mi210"].memory_bw_bytes_per_s == 16384 * 10 ** 8          # 1638.4 GB/s, not 1638.3999...
    assert db["h100-sxm"].peak_per_s("bf16") == 9895 * 10 ** 11
    assert db["h100-sxm"].memory_bytes == 80 * 10 ** 9
    assert db["epyc-9654"].memory_bytes is None
    with pytest.raises(SizingError, match="no fp8 peak; it has fp64, fp64_tensor, fp32, tf32, bf16, fp16, int8"):
        db["a100-sxm-80gb"].peak_per_s("fp8")


def test_loading_imports_neither_numpy_nor_numba():
    code = "import sys, sizing.hardware.devices as d; d.load_hwdb(); print(sorted({'numpy', 'numba'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- bad records

GOOD = """devices:
  - id: acme-1
    vendor: Acme
    model: One
    kind: gpu
    memory_gb: 24
    memory_bw_gbs: 900
    peak_tflops: {fp32: 20, bf16: 80}
    price: {usd: 1000, kind: list, date: "2024-05", source: Acme price list}
    cloud:
      - {provider: X, offer: x1, usd_per_hour: 1.5, date: 2025-01-02, source: X prices}
    sources:
      record: Acme datasheet
"""


def write(tmp_path, text, name="hw.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def bad(tmp_path, text, line, *fragments):
    path = write(tmp_path, text)
    with pytest.raises(SizingError) as e:
        load_hwdb([path], environ={})
    msg = str(e.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    for f in fragments:
        assert f in msg, (f, msg)
    assert user_error(cli("list", "--hwdb", path)) == f"error: {msg}"
    return msg


def test_the_good_record_loads(tmp_path):
    d = load_hwdb([write(tmp_path, GOOD)], environ={})["acme-1"]
    assert d.cloud[0].date == "2025-01-02" and d.price.usd == 1000 and d.devices_per_node == 1


@pytest.mark.parametrize("old, new, line, fragments", [
    ("memory_gb: 24", "memory_gb: -1", 6, ["device 'acme-1': memory_gb: -1 is outside", "GB"]),
    ("memory_bw_gbs: 900", "memory_bw_gbs: 3350000", 7, ["memory_bw_gbs:", "1..100000 GB/s (check the unit)"]),
    ("memory_gb: 24", "memroy_gb: 24", 6, ["memroy_gb: unknown key", "did you mean 'memory_gb'?"]),
    ("memory_gb: 24", "memory_gb: yes", 6, ["memory_gb: must be a number in GB, got True"]),
    ("    memory_gb: 24\n", "", 2, ["memory_gb: is required for a gpu (only a CPU may leave it out)"]),
    ("    memory_bw_gbs: 900\n", "", 2, ["memory_bw_gbs: is required"]),
    ("kind: gpu", "kind: tpu", 5, ["kind: 'tpu' is not one of gpu, cpu, accelerator"]),
    ("id: acme-1", "id: Acme One", 2, ["device 'Acme One': id:", "not a short slug"]),
    ("bf16: 80}", "bf61: 80}", 8, ["peak_tflops.bf61: 'bf61' is not one of fp64", "did you mean 'bf16'?"]),
    ("bf16: 80}", "bf16: 0}", 8, ["peak_tflops.bf16: 0 is outside", "omit a precision the device lacks"]),
    ("{fp32: 20, bf16: 80}", "{}", 8, ["peak_tflops: must map at least one precision"]),
    ("kind: list", "kind: retail", 9, ["price.kind: 'retail' is not one of list, msrp, street, estimate, quote"]),
    ('date: "2024-05"', "date: June 2024", 9, ["price.date: must be a date YYYY, YYYY-MM or YYYY-MM-DD"]),
    ('date: "2024-05"', 'date: "2024-13"', 9, ["price.date:"]),
    (", source: Acme price list", "", 9, ["price.source: is required"]),
    ("usd_per_hour: 1.5", "usd_per_hour: cheap", 11, ["cloud.0.usd_per_hour: must be a number"]),
    ("offer: x1", "offre: x1", 11, ["cloud.0.offre: unknown key", "did you mean 'offer'?"]),
    ("record: Acme datasheet", "recrod: Acme datasheet", 13, ["sources.recrod:", "did you mean 'record'?"]),
    ("      record: Acme datasheet", "      memory_gb: Acme datasheet", 12, ["no source for memory_bw_gbs"]),
    ("    model: One", "    model: One\n    release_year: 2022.5", 5, ["release_year: must be an integer"]),
    ("    model: One", "    model: One\n    model: Two", 5, ["duplicate key 'model'"]),
    ("    model: One", "    model: One\n    discontinued: maybe", 5, ["discontinued: must be true or false, got 'maybe'"]),
    ("    model: One", "    model: One\n    family_default: 1", 5, ["family_default: must be true or false, got 1"]),
    ("    model: One", "    model: One\n    licence: ''", 5, ["licence: must be a non-empty string"]),
    ("    model: One", "    model: One\n    discontinued: true", 13,
     ["sources: discontinued: true needs sources.discontinued"]),
    ("    model: One", "    model: One\n    licnce: GeForce EULA", 5, ["licnce: unknown key", "did you mean 'licence'?"]),
])
def test_bad_record(tmp_path, old, new, line, fragments):
    assert old in GOOD
    bad(tmp_path, GOOD.replace(old, new, 1), line, *fragments)


def test_bad_files(tmp_path):
    bad(tmp_path, "device:\n  - id: x\n", 1, "a hardware file is a mapping with the key 'devices'")
    bad(tmp_path, GOOD + "version: 2\n", 14, "unknown key 'version'")
    bad(tmp_path, "devices: {id: x}\n", 1, "'devices' must be a list")
    bad(tmp_path, "devices:\n  - vendor: Acme\n", 2, "record 1: id: every record needs an id")
    twice = GOOD + GOOD.split("\n", 1)[1]
    bad(tmp_path, twice, 14, "device 'acme-1': id: duplicate id in this file (first at line 2)")
    user_error(cli("list", "--hwdb", tmp_path / "missing.yaml"), "missing.yaml", "no such file")


def test_shipped_files_must_have_distinct_ids_and_no_local(tmp_path, monkeypatch):
    a, b = write(tmp_path, GOOD, "a.yaml"), write(tmp_path, GOOD, "b.yaml")
    monkeypatch.setattr(devices, "shipped_files", lambda: [a, b])
    with pytest.raises(SizingError, match=rf"^{re.escape(b)}:2: device 'acme-1': id: duplicate id \(also at "
                                          rf"{re.escape(a)}:2\)"):
        devices.shipped_devices.__wrapped__()
    monkeypatch.setattr(devices, "shipped_files", lambda: [write(tmp_path, GOOD.replace("acme-1", "local"))])
    with pytest.raises(SizingError, match="'local' is reserved for this machine's bench profile"):
        devices.shipped_devices.__wrapped__()


# ---------------------------------------------------------------- overrides and the bench profile

def test_override_replaces_the_fields_given_and_keeps_the_rest(tmp_path):
    path = write(tmp_path, 'devices:\n  - id: h100-sxm\n    price: {usd: 24000, kind: quote, date: "2025-03-01", '
                           'source: Acme quote 1234}\n    memory_bw_gbs: 3000\n')
    shipped = {d.id: d for d in shipped_devices()}["h100-sxm"]
    d = load_hwdb([path], environ={})["h100-sxm"]
    assert d.price == Price(usd=24000, kind="quote", date="2025-03-01", source="Acme quote 1234")
    assert d.memory_bw_gbs == 3000 and path in d.source_of("memory_bw_gbs")
    assert d.peak_tflops == shipped.peak_tflops and d.cloud == shipped.cloud
    assert d.source_of("memory_gb") == shipped.source_of("memory_gb") != d.source_of("memory_bw_gbs")


def test_override_of_peaks_drops_the_old_per_precision_sources(tmp_path):
    path = write(tmp_path, "devices:\n  - id: rtx-a6000\n    peak_tflops: {bf16: 150}\n"
                           "    sources: {peak_tflops.bf16: my measurement}\n")
    d = load_hwdb([path], environ={})["rtx-a6000"]
    assert d.peak_tflops == {"bf16": 150} and d.source_of("peak_tflops.bf16") == "my measurement"
    assert "peak_tflops.int8" not in d.sources and "peak_tflops.fp16" not in d.sources


def test_an_incomplete_new_device_is_refused(tmp_path):
    bad(tmp_path, "devices:\n  - id: h100-sxxm\n    memory_gb: 80\n", 2, "device 'h100-sxxm': vendor: is required")


def test_order_shipped_then_profile_then_environment_then_options(tmp_path, monkeypatch):
    def price(usd, name):
        return write(tmp_path, f"devices:\n  - id: l4\n    price: {{usd: {usd}, kind: quote, date: '2025', "
                               f"source: {name}}}\n", name)

    env = os.pathsep.join([price(1, "e1.yaml"), "", price(2, "e2.yaml")])
    assert load_hwdb(environ={"SIZING_HWDB": env})["l4"].price.usd == 2
    assert load_hwdb([price(3, "o1.yaml")], environ={"SIZING_HWDB": env})["l4"].price.usd == 3
    monkeypatch.setenv("SIZING_HWDB", env)
    out = cli("list", "--format", "json", "--hwdb", tmp_path / "o1.yaml", "--hwdb", tmp_path / "e1.yaml")
    assert {r["id"]: r for r in json.loads(out.stdout)}["l4"]["price"]["usd"] == 1


def test_profile_path_follows_xdg(monkeypatch, tmp_path):
    assert local_profile_path() == str(tmp_path / "cache" / "sizing" / "local.yaml")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for unset in ("", "relative/dir"):
        monkeypatch.setenv("XDG_CACHE_HOME", unset)
        assert local_profile_path() == str(tmp_path / "home" / ".cache" / "sizing" / "local.yaml")


def test_bench_profile_is_the_device_local(tmp_path):
    user_error(cli("show", "local"), "no bench profile for this machine yet", "sizing bench --save")
    me = Device(id="local", vendor="Acme", model="laptop", kind="cpu", memory_bw_gbs=40.5,
                peak_tflops={"fp64": 0.2, "fp32": 0.4}, sources={"record": "sizing bench, 2025-01-01"})
    path = Path(local_profile_path())
    path.parent.mkdir(parents=True)
    path.write_text(to_yaml([me]))
    assert load_hwdb(environ={})["local"] == me
    out = cli("show", "local")
    assert out.exit_code == 0 and "peak fp32 (dense)  0.4 TFLOP/s" in out.stdout
    path.write_text(to_yaml([me, Device(**{**vars(me), "id": "other"})]))
    user_error(cli("list"), str(path), "device 'other': id: this machine's bench profile may hold only")


# ---------------------------------------------------------------- hw show

def ids_where(pred):
    db = {(d.vendor, d.model): d.id for d in shipped_devices()}
    return [db[(r["vendor"], r["model"])] for r in ROWS if pred(r)]


def test_an_ambiguous_name_lists_its_variants_and_exits_2():
    xeons = [d.id for d in shipped_devices() if "Xeon" in d.model]
    assert len(xeons) >= 2 and not any(d.family_default for d in shipped_devices() if d.id in xeons)
    msg = user_error(cli("show", "xeon"), f"'xeon' matches {len(xeons)} devices")
    assert all(i in msg for i in xeons)


@pytest.mark.parametrize("name, want, family", [
    ("h100", "h100-sxm", {"h100-sxm", "h100-pcie", "h100-nvl"}),
    ("a100", "a100-sxm-80gb", {"a100-sxm-80gb", "a100-sxm-40gb", "a100-pcie-40gb"}),
    ("gaudi", "gaudi3", {"gaudi2", "gaudi3"}),
    ("rtx 3090", "rtx-3090", {"rtx-3090", "rtx-3090-ti"}),
])
def test_a_family_name_means_its_marked_part_and_says_so(name, want, family):
    """The rule: a loose name that matches several devices of which exactly one is marked family_default means
    that one, with one note line; `hw show` lists the family (the marked part starred) and shows that part."""
    said = []
    assert find_device(load_hwdb(environ={}), name, said.append).id == want
    assert len(said) == 1 and said[0].startswith(f"note: '{name}' names a family of {len(family)} devices; "
                                                 f"using {want} ")
    assert all(i in said[0] for i in family)
    out = cli("show", name)
    assert out.exit_code == 0 and out.stderr == ""
    head, rest = out.stdout.split("\n\n", 1)
    lines = head.splitlines()
    assert lines[0].startswith(f"'{name}' is a family of {len(family)} devices") and len(lines) == 1 + len(family)
    assert {line.split()[1].rstrip(":") for line in lines[1:] if line.lstrip().startswith("*")} \
        == {want}
    assert {line.replace("*", "").split()[0].rstrip(":") for line in lines[1:]} == family
    assert rest.startswith(f"{want}: ")


def test_the_family_rule_needs_exactly_one_marked_part(tmp_path):
    twin = GOOD.replace("acme-1", "acme-2") .split("\n", 1)[1]
    marked = GOOD.replace("    kind: gpu", "    kind: gpu\n    family_default: true")
    path = write(tmp_path, marked + twin)
    db = {k: v for k, v in load_hwdb([path], environ={}).items() if k.startswith("acme")}
    assert find_device(db, "acme").id == "acme-1"
    path = write(tmp_path, GOOD + twin)                 # none marked: still ambiguous
    with pytest.raises(SizingError, match="'acme' matches 2 devices"):
        find_device(load_hwdb([path], environ={}), "acme")
    both = marked + twin.replace("    kind: gpu", "    kind: gpu\n    family_default: true")
    with pytest.raises(SizingError, match="'acme' matches 2 devices"):
        find_device(load_hwdb([write(tmp_path, both)], environ={}), "acme")


def test_estimate_with_a_family_name_prints_one_note_on_stderr():
    r = CliRunner().invoke(main, ["estimate", "mnist_mlp", "--device", "h100", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert r.stderr.count("note: 'h100' names a family") == 1 and len(r.stderr.splitlines()) == 1
    assert json.loads(r.stdout)["prediction"]["device"] == "h100-sxm"


@pytest.mark.parametrize("name, want", [
    ("a10", "a10"),                  # the exact id wins over the A100s that start with it
    ("NVIDIA A10", "a10"),           # whole words win over prefixes
    ("H200", "h200-sxm"), ("h100 sxm", "h100-sxm"), ("mi300", "mi300x"), ("gaudi 3", "gaudi3"),
    ("tpu v5e", "tpu-v5e"), ("tpuv5e", "tpu-v5e"), ("rtx4090", "rtx-4090"), ("b200", "b200"), ("9654", "epyc-9654"),
])
def test_loose_names(name, want):
    assert find_device(load_hwdb(environ={}), name).id == want


def test_unknown_device_suggests_a_close_id():
    user_error(cli("show", "h100-sxn"), "unknown device 'h100-sxn'", "did you mean 'h100-sxm'?")


def test_show_prints_every_figure_with_its_source():
    d = find_device(load_hwdb(environ={}), "rtx-a6000")
    out = cli("show", "rtx a6000", "--wide").stdout      # --wide: one line per source (piped wraps at 80)
    refs = dict(re.findall(r"^\[(\d+)\] (.*)$", out, re.M))
    for p in d.precisions():
        row = re.search(rf"^peak {p} \(dense\) +([\d,.]+) T(?:FL)?OP/s +\[(\d+)\]$", out, re.M)
        assert float(row[1].replace(",", "")) == d.peak_tflops[p]
        assert refs[row[2]] == d.source_of(f"peak_tflops.{p}")
    assert refs[re.search(r"^price .*\[(\d+)\]$", out, re.M)[1]] == d.price.source
    as_json = json.loads(cli("show", "rtx-a6000", "--format", "json").stdout)
    assert device_from_record(as_json) == d


# ---------------------------------------------------------------- hw list

def test_list_kind_filters():
    for kind in ("gpu", "cpu", "accelerator"):
        out = json.loads(cli("list", "--kind", kind, "--format", "json").stdout)
        assert set(ids_where(lambda r: r["kind"] == kind)) <= {r["id"] for r in out}
        assert [r["id"] for r in out] == [d.id for d in shipped_devices() if d.kind == kind]


def test_list_sort_csv_largest_first_and_lacking_last():
    rows = list(csv.DictReader(cli("list", "--sort", "bf16", "--format", "csv").stdout.splitlines()))
    assert len(rows) == len(shipped_devices())
    have = [float(r["bf16_tflops"]) for r in rows if r["bf16_tflops"]]
    assert have == sorted(have, reverse=True) and len(have) == sum("bf16" in d.peak_tflops for d in shipped_devices())
    assert all(r["bf16_tflops"] == "" for r in rows[len(have):])
    names = list(csv.DictReader(cli("list", "--sort", "id", "--format", "csv").stdout.splitlines()))
    assert [r["id"] for r in names] == sorted(r["id"] for r in names)


def test_list_csv_columns_equal_the_reference():
    out = {(r["vendor"], r["model"]): r for r in csv.DictReader(cli("list", "--format", "csv").stdout.splitlines())}
    for ref in ROWS:
        got = out[(ref["vendor"], ref["model"])]
        for col in ("memory_gb", "memory_bw_gbs", "tdp_w", "interconnect_gbs", *COLUMN.values()):
            assert value(got[col]) == value(ref[col]), (ref["model"], col)


def test_list_table_and_bad_sort():
    out = cli("list", "--sort", "fp64_tensor", "--wide")    # every column (piped, 80 columns leave some out)
    assert out.exit_code == 0
    lines = out.stdout.splitlines()
    assert lines[0].split()[:6] == ["id", "device", "kind", "year", "mem", "GB"] and "fp64_tensor" in lines[0]
    assert {line.split()[0] for line in lines[2:]} == {d.id for d in shipped_devices()}
    assert "fp64_tensor" not in cli("list").stdout.splitlines()[0]
    user_error(cli("list", "--sort", "bf61"), "cannot sort by 'bf61'", "did you mean 'bf16'?")


def test_json_list_reads_back_as_a_hardware_file(tmp_path):
    records = json.loads(cli("list", "--format", "json").stdout)
    path = write(tmp_path, yaml.safe_dump({"devices": records}))
    assert [device_from_record(r, path, lines, at) for r, at, lines in read_records(path)] == list(shipped_devices())
