"""`sizing quote`: money, TCO arithmetic, the count search, the Pareto front, budgets, the four report formats and
the command's errors.

Independent routes: amounts worked by hand from the prices; the count search against a brute-force walk over
every node count; the Pareto front against the pairwise definition of dominance; the HTML through html.parser and
its SVG through xml.etree; the job's energy against the performance model's own figure."""
from __future__ import annotations

import functools

import csv
import io
import json
import math
import re
import string
import xml.etree.ElementTree as ET
from dataclasses import replace
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from sizing.predict.calibration import shipped
from sizing.cli import main
from sizing.hardware.devices import CloudRate, Device, Price, load_hwdb
from sizing.common.errors import SizingError
from sizing.model.estimate import estimate_graph
from sizing.model.graph import build
from sizing.quote.money import currency, exchange, fmt
from sizing.predict.roofline import facility_kw
from sizing.predict.search import search
from sizing.common.units import parse_duration
from sizing.quote.core import (SERVER_USD_PER_SLOT, apply_prices, buyable_counts, cloud_cost, cloud_rate, energy_cost,
    pareto_front, purchase_items)
from sizing.quote.writers import WRITERS, quote_csv, quote_html, quote_json, quote_md
from sizing.quote.text import LANGS, STRINGS
from sizing.quote.recommend import Terms, recommend, smallest_meeting
from sizing.quote.core import status
from sizing.quote.svg import Point, Roof, cost_time_chart, roofline_chart
from sizing.predict.workload import Workload

USD = exchange("USD")
HOUR, DAY, YEAR = 3600, 86400, 31557600



def device(**kw) -> Device:
    """A made-up GPU: 100 TFLOP/s bf16, 1 TB/s, 16 GB, 400 W, 4 per node, $1,000.50 each."""
    fields = dict(id="gpu-a", vendor="Test", model="A", kind="gpu", memory_gb=16, memory_bw_gbs=1000,
                  peak_tflops={"fp32": 20, "bf16": 100}, tdp_w=400, interconnect_gbs=200, devices_per_node=4,
                  price=Price(1000.5, "list", "2024-01", "made up"), sources={"record": "made up for tests"})
    return Device(**{**fields, **kw})


def mlp_spec(name="mlp", width=1024):
    return {"name": name, "input": [width], "layers": [
        {"op": "linear", "name": "fc1", "out_features": 4 * width}, {"op": "relu", "name": "act"},
        {"op": "linear", "name": "fc2", "out_features": width}]}


def est_of(spec, batch=64, dtype="bf16"):
    return estimate_graph(build(spec, {}, "test.yaml", batch=batch, dtype=dtype))


def training(est, samples=10 ** 8, epochs=1):
    s = est.settings
    return Workload(batch=s["batch"], dtype=s["dtype"], optimizer=s["optimizer"], samples=samples, epochs=epochs)


def db_with(*devices) -> dict:
    """The shipped database (the calibration's fallbacks read it) with made-up devices added."""
    return {**load_hwdb(environ={}), **{d.id: d for d in devices}}


GLOBAL_BATCH = 256


def at_of(spec):
    """The spec's estimate at any micro-batch, as the planner asks for it."""
    return functools.lru_cache(maxsize=None)(lambda batch: est_of(spec, batch=batch))


def quote_of(spec=None, devices=None, deadline=HOUR, **terms):
    spec = spec or mlp_spec()
    est = est_of(spec)
    devices = devices or [device(), device(id="gpu-b", model="B", peak_tflops={"fp32": 80, "bf16": 400},
                                           memory_bw_gbs=4000, price=Price(9000, "quote", "2025-02", "Acme 1"))]
    db = db_with(*devices)
    return recommend(est, training(est), devices, db, Terms(USD, deadline_s=deadline, **terms), date="2025-01-02",
                     at=at_of(spec), global_batch=GLOBAL_BATCH)


# ---------------------------------------------------------------- money

def test_usd_and_krw_formatting_by_hand():
    usd, krw = currency("usd"), currency("KRW")
    assert fmt(123456789, usd) == "$1,234,567.89"
    assert fmt(5, usd) == "$0.05" and fmt(-5, usd) == "-$0.05" and fmt(0, usd) == "$0.00"
    assert fmt(2_000_000_000, krw) == "₩2,000,000,000" and fmt(999, krw) == "₩999"
    assert fmt(123456789, usd, whole=True) == "$1,234,568"       # half up to whole dollars
    assert fmt(123456749, usd, whole=True) == "$1,234,567"


def test_conversion_rounds_half_up_once_per_unit_price():
    x = exchange("KRW", "1380.5")
    assert x.minor(1000.5) == 1_381_190             # 1000.5 x 1380.5 = 1,381,190.25 won
    assert x.minor(0.5) == 690                      # 690.25
    assert exchange("KRW", "3").minor(0.5) == 2     # 1.5 rounds half up
    assert x.amount("--budget", "2e9") == 2_000_000_000 and USD.amount("--budget", "1,234.565") == 123457
    assert x.rate_text() == "1 USD = 1,380.5 KRW"
    assert x.fmt_usd(0.08) == "₩110.44"


@pytest.mark.parametrize("code, fx, message", [
    ("EUR", None, "unknown currency 'EUR'; valid: USD, KRW"),
    ("KRW", None, "needs --fx"),
    ("KRW", "0", "must be a positive number"),
    ("KRW", "-1380", "must be a positive number"),
    ("KRW", "abc", "not a number"),
    ("USD", "1380", "a rate is for another --currency"),
])
def test_currency_errors(code, fx, message):
    with pytest.raises(SizingError, match=re.escape(message)):
        exchange(code, fx)


# ---------------------------------------------------------------- TCO arithmetic

def test_purchase_of_devices_priced_one_by_one():
    d = device()
    items = purchase_items(d, 8, USD)
    assert [(i.item, i.unit, i.quantity) for i in items] == [("devices", 100050, 8), ("server", 1600000, 2)]
    assert sum(i.total for i in items) == 8 * 100050 + 2 * 4 * 4000 * 100
    mine = purchase_items(d, 8, USD, node_cost=25_000_00)
    assert mine[1].unit == 25_000_00 and mine[1].source == "--node-cost"
    assert SERVER_USD_PER_SLOT == 4000           # 32,000 of non-GPU parts in an 8-GPU DGX H100


def test_purchase_of_whole_servers():
    node = Price(90000, "quote", "2025", "Acme")
    assert [(i.item, i.unit, i.quantity) for i in purchase_items(device(price=None, node_price=node), 12, USD)] \
        == [("node", 9_000_000, 3)]
    both = device(node_price=node)
    assert purchase_items(both, 4, USD)[0].item == "node"                                   # the server price
    assert [i.item for i in purchase_items(both, 4, USD, node_cost=100)] == ["devices", "server"]
    assert purchase_items(device(price=None), 4, USD) is None


def test_energy_and_cloud_by_hand():
    assert facility_kw(700, 8, 1.5) == pytest.approx(8.4) and facility_kw(None, 8, 1.5) is None
    kwh = 8.4 * 8766                                 # one year of 365.25 days
    assert energy_cost(kwh, Decimal("0.08"), USD) == 589075      # 73,634.4 kWh x $0.08 = $5,890.752
    rates = (CloudRate("A", "old", 1.0, "2023-01", "s"), CloudRate("B", "new", 3.0, "2026-03", "s"),
             CloudRate("C", "new, cheaper", 2.5, "2026-03", "s"))
    d = device(cloud=rates)
    assert cloud_rate(d).provider == "C"             # the most recent date, the lowest of it
    assert cloud_cost(d, 10.0, USD).cost == 2500
    assert cloud_cost(device(), 10.0, USD) is None


def test_option_costs_add_up():
    q = quote_of()
    o = q.pick
    assert o.purchase == sum(i.unit * i.quantity for i in o.items)
    d = device() if o.device_id == "gpu-a" else None
    assert d is not None
    kw = d.tdp_w * o.count * q.pue / 1000
    assert o.power_kw == pytest.approx(kw)
    assert o.horizon_energy == round(kw * q.horizon_s / 3600 * 0.08 * 100)
    assert o.tco == o.purchase + o.horizon_energy
    # the job's energy is the performance model's own figure for the run
    assert o.job_kwh == pytest.approx(o.prediction.energy_kwh)


# ---------------------------------------------------------------- durations

@pytest.mark.parametrize("text, seconds", [("24h", 86400), ("14d", 14 * 86400), ("3y", 3 * YEAR),
                                           ("36mo", 3 * YEAR), ("90min", 5400), ("1.5 h", 5400), ("2w", 1209600)])
def test_durations(text, seconds):
    assert parse_duration("--deadline", text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, message", [("24", "not a duration"), ("0h", "impossible"), ("-3d", "impossible"),
                                           ("101y", "impossible"), ("3 fortnights", "not a duration")])
def test_impossible_durations(text, message):
    with pytest.raises(SizingError, match=message):
        parse_duration("--deadline", text)


# ---------------------------------------------------------------- search and Pareto front

@settings(max_examples=150, deadline=None)
@given(st.integers(1, 500), st.integers(1, 5000), st.integers(1, 6000))
def test_smallest_meeting_equals_a_brute_force_walk(lo, span, threshold):
    hi = lo + span
    calls = []

    def ok(k):
        calls.append(k)
        return k >= threshold
    k, tried = smallest_meeting(ok, lo, hi)
    walk = next((j for j in range(lo, hi + 1) if j >= threshold), None)
    assert k == walk and tried == calls
    # doubling: at most 1 + ceil(log2(hi / lo)) calls; bisection of the last interval (width <= lo x 2^j <= hi)
    assert len(calls) <= 2 + math.ceil(math.log2(hi / lo)) + math.ceil(math.log2(hi))
    calls.clear()                                   # a slower growth (the quote doubles the device count)
    k, tried = smallest_meeting(ok, lo, hi, lambda j: j + 1 + j // 3)
    assert k == walk and tried == calls


def dominated(p, q):
    return q[0] <= p[0] and q[1] <= p[1] and q != p


def test_pareto_front_on_a_hand_made_set():
    pts = [(1, 10), (2, 5), (3, 6), (4, 1), (5, 1), (2, 5), (0.5, 20), (6, 0.5), (3, 4)]
    assert pareto_front(pts) == {0, 1, 3, 5, 6, 7, 8}           # (3, 6) and (5, 1) are beaten


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 20), st.integers(1, 20)), min_size=1, max_size=30))
def test_pareto_front_is_the_undominated_set(pts):
    assert pareto_front(pts) == {i for i, p in enumerate(pts) if not any(dominated(p, q) for q in pts)}


def test_count_is_the_fewest_devices_a_buyer_can_order_meeting_the_deadline():
    """Brute force: every count a buyer can order (1, 2 in a workstation, then whole nodes of 4), planned directly;
    the quote's count is the first that meets."""
    d = device()
    est = est_of(mlp_spec())
    w = training(est)
    factors = shipped().factors(d, "bf16", db_with(d))
    at = at_of(mlp_spec())
    for deadline in (5 * 60, HOUR, 4 * HOUR):
        o = quote_of(devices=[d], deadline=deadline).options[0]
        counts = buyable_counts(d, 4000)
        assert counts[:6] == [1, 2, 4, 8, 12, 16]
        walk = next(c for c in counts
                    if search(at, w, d, factors, devices=c, global_batch=GLOBAL_BATCH).total_seconds <= deadline)
        assert o.count == walk and o.nodes == -(-walk // 4) and o.meets
        assert o.per_node == min(walk, 4)                       # below a node: one server of that many slots
        if walk > 1:
            assert o.fewer_seconds > deadline and o.fewer_count == counts[counts.index(walk) - 1]


def test_a_device_without_a_price_is_counted_like_one_sold_one_by_one():
    """Only a device sold as whole servers (a node price, no unit price) skips the counts below a node; one without
    any price (unpriced, rented only) is quoted at the fewest devices that meet, as a priced one is: with a
    deadline one device meets, the quote says 1, not a whole node of 4."""
    server = Price(20000, "list", "2024-01", "made up")
    assert buyable_counts(device(price=None), 64)[:4] == [1, 2, 4, 8]
    assert buyable_counts(device(price=None, node_price=server), 64)[:2] == [4, 8]
    est = est_of(mlp_spec())
    at = at_of(mlp_spec())
    d = device(price=None)
    one = search(at, training(est), d, shipped().factors(d, "bf16", db_with(d)), devices=1,
                 global_batch=GLOBAL_BATCH).total_seconds
    o = quote_of(devices=[d], deadline=2 * one).options[0]
    assert (o.count, o.meets, o.tco) == (1, True, None)


def test_nothing_meets_says_how_close():
    q = quote_of(deadline=1e-3, max_devices=64)
    assert q.pick is None and not q.alternatives
    short = {m.key: m.params for m in q.findings}
    assert "short_deadline" in short
    best = min(q.options, key=lambda o: o.seconds)
    assert short["short_deadline"]["time"] == best.seconds and short["short_deadline"]["ratio"] > 1
    assert "short_cap" in short or "short_saturated" in short


# ---------------------------------------------------------------- budget and ranking

def test_budget_excludes_and_says_so():
    free = quote_of(deadline=DAY)
    assert {o.device_id for o in free.options} == {"gpu-a", "gpu-b"}
    a, b = sorted(free.options, key=lambda o: o.purchase)
    between = (a.purchase + b.purchase) // 2
    q = quote_of(deadline=DAY, budget=between)
    assert q.pick.device_id == a.device_id
    assert status(next(o for o in q.options if o.device_id == b.device_id), between) == "over_budget"
    assert [m.key for m in q.findings] == ["over_budget_some"]
    none = quote_of(deadline=DAY, budget=a.purchase - 1)
    assert none.pick is None
    (m,) = none.findings
    assert m.key == "over_budget_all" and m.params["purchase"] == a.purchase
    # ranked by TCO; the alternatives are the extremes of the options within budget
    assert free.pick.tco == min(o.tco for o in free.options)
    assert free.alternatives["fastest"].seconds == min(o.seconds for o in free.options)
    assert free.alternatives["cheapest"].purchase == min(o.purchase for o in free.options)


def test_unpriced_and_excluded_devices():
    devices = [device(), device(id="gpu-c", price=None), device(id="gpu-d", peak_tflops={"fp32": 10})]
    q = quote_of(devices=devices, deadline=DAY)
    assert [e.device_id for e in q.excluded] == ["gpu-d"] and q.excluded[0].message.key == "ex_precision"
    assert status(next(o for o in q.options if o.device_id == "gpu-c"), None) == "unpriced"
    assert "unpriced" in [m.key for m in q.findings] and q.pick.device_id == "gpu-a"


def test_price_file(tmp_path):
    db = load_hwdb(environ={})
    good = tmp_path / "p.yaml"
    good.write_text('devices:\n  - id: h100-sxm\n    price: {usd: 24000, kind: quote, date: "2025-03-01", '
                    'source: Acme 1234}\n  - id: l40s\n    node_price: {usd: 90000, kind: quote, date: "2025-03", '
                    'source: Acme 1235}\n')
    out = apply_prices(db, str(good))
    assert out["h100-sxm"].price.usd == 24000 and out["h100-sxm"].node_price is None    # unit price replaces both
    assert out["l40s"].node_price.usd == 90000 and out["l40s"].price is None
    assert out["h100-sxm"].peak_tflops == db["h100-sxm"].peak_tflops
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices:\n  - id: h100-sxmm\n    price: {usd: 1, kind: quote, date: '2025', source: x}\n")
    with pytest.raises(SizingError, match=r"bad.yaml:2: .*no 'h100-sxmm'; did you mean 'h100-sxm'"):
        apply_prices(db, str(bad))
    bad.write_text("devices:\n  - id: h100-sxm\n    tdp_w: 500\n")
    with pytest.raises(SizingError, match="tdp_w: a price file sets only price, node_price, cloud"):
        apply_prices(db, str(bad))


# ---------------------------------------------------------------- reports

class Checker(HTMLParser):
    """Every start tag closed in order (void elements excepted); collects the text and the script tags."""
    VOID = {"meta", "br", "img", "input", "link", "hr", "circle", "line", "rect", "polyline", "path"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.text, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


EVIL = "<script>alert('x')</script> & | co"


def evil_quote(**terms):
    return quote_of(spec=mlp_spec(name=EVIL), deadline=DAY, **terms)


@pytest.mark.parametrize("lang", LANGS)
def test_html_parses_and_escapes_every_user_string(lang):
    q = evil_quote()
    q = replace(q, source="models/a&b<i>.yaml")
    html = quote_html(q, lang)
    p = Checker()
    p.feed(html)
    p.close()
    assert p.stack == [] and "script" not in p.tags and "i" not in p.tags
    text = "".join(p.text)
    assert EVIL in text and "models/a&b<i>.yaml" in text           # shown as written, after unescaping
    assert "@page" in html and "A4" in html and "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) == 2
    for svg in svgs:
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert f'lang="{lang}"' in html


def test_svg_charts_are_well_formed_and_escape_labels():
    pts = [Point(3600.0, 1e5, "<a & b>", True, True), Point(7200.0, 5e4, "x", True), Point(9000.0, 8e4, "y")]
    svg = cost_time_chart(pts, "T <1>", "x & y", "cost", str, str, ("front", "pick"))
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}circle")) == 3 + 1 + 1                 # dots, the pick's ring, the legend ring
    assert "<a & b>" in [t.text for t in root.iter(f"{ns}title")]
    (line,) = [p for p in root.iter(f"{ns}polyline")]
    assert len(line.get("points").split()) == 2                           # the front joins its two dots
    roof = roofline_chart([("l<1>", 10.0, 1e12, "memory"), ("l2", 1000.0, 5e13, "compute")],
                          [Roof(1e14, 1e12, "peak", False), Roof(7e13, 8e11, "", True)], "R", "I", "F", str,
                          {"compute": "c", "memory": "m"})
    ET.fromstring(roof)


def test_markdown_states_the_pick_and_escapes():
    q = evil_quote()
    md = quote_md(q, "en")
    o = q.pick
    assert f"| {o.device_name} | $1,000.50 | {o.count:,} | {USD.fmt(100050 * o.count)} |" in md
    assert f"**{USD.fmt(o.purchase)}**" in md
    assert "<script>" not in md and "\\<script\\>" in md and "\\|" in md
    assert md.count("\n## ") >= 8


def test_json_holds_everything_and_adds_up():
    q = quote_of(deadline=DAY, budget=10 ** 9)
    d = json.loads(quote_json(q, "ko"))
    pick = d["options"][d["pick"]]
    assert pick["device"] == q.pick.device_id and d["currency"] == "USD" and d["lang"] == "ko"
    assert sum(i["total"] for i in pick["line_items"]) == pytest.approx(pick["purchase"])
    assert pick["tco"] == pytest.approx(pick["purchase"] + pick["horizon_energy"])
    assert pick["total_flops"] == pick["model_flops_per_step"] * pick["steps"]
    assert pick["seconds"] == pytest.approx(pick["total_flops"] / pick["effective_flops"])
    assert {a["key"] for a in d["assumptions"]} >= {"as_horizon", "as_pue", "as_kwh", "as_budget", "as_server"}
    assert all(a["text"] and a["source"] for a in d["assumptions"])
    assert set(d["alternatives"]) == {"fastest", "cheapest", "lowest_power"}


def test_csv_line_items_in_krw():
    x = exchange("KRW", "1380")
    est = est_of(mlp_spec())
    d = device()
    q = recommend(est, training(est), [d], db_with(d), Terms(x, deadline_s=DAY), at=at_of(mlp_spec()),
                  global_batch=GLOBAL_BATCH)
    rows = list(csv.DictReader(io.StringIO(quote_csv(q, "en"))))
    items, total = rows[:-1], rows[-1]
    assert [r["role"] for r in rows] == ["pick"] * 4 and total["item"] == "Total"      # devices, server, support
    assert int(items[0]["unit_price"]) == 1_380_690                  # 1000.5 x 1380, whole won
    assert int(items[1]["unit_price"]) == q.pick.per_node * 4000 * 1380      # a server of as many slots
    assert sum(int(r["total"]) for r in items) == int(total["total"]) == q.pick.purchase
    assert all(r["currency"] == "KRW" for r in rows)


def test_korean_report_uses_won_without_decimals():
    x = exchange("KRW", "1380")
    est = est_of(mlp_spec())
    d = device()
    q = recommend(est, training(est), [d], db_with(d), Terms(x, deadline_s=DAY), at=at_of(mlp_spec()),
                  global_batch=GLOBAL_BATCH)
    md = quote_md(q, "ko")
    assert "하드웨어 견적" in md and "1 USD = 1,380 KRW" in md
    amounts = re.findall(r"(kWh당 )?(₩[0-9,]+(\.[0-9]+)?)", md)
    assert len(amounts) > 10
    for per_kwh, amount, _ in amounts:        # whole won, but for the electricity rate per kWh (₩110.4)
        assert (amount == "₩110.4") if per_kwh else re.fullmatch(r"₩\d{1,3}(,\d{3})*", amount), amount
    assert x.fmt(q.pick.purchase) in md


def test_both_languages_have_the_same_fields():
    names = lambda s: sorted(f for _, f, _, _ in string.Formatter().parse(s) if f)  # noqa: E731
    for key, (en, ko) in STRINGS.items():
        assert names(en) == names(ko), key
        assert bool(ko.strip()) == bool(en.strip()), key


def test_serving_quote():
    est = est_of(mlp_spec(), batch=8)
    s = est.settings
    w = Workload(kind="inference", batch=8, dtype=s["dtype"], optimizer=s["optimizer"], throughput=1e6,
                 latency_s=0.05)
    d = device()
    q = recommend(est, w, [d], db_with(d), Terms(USD))
    o = q.pick
    assert o.throughput >= 1e6 and o.seconds <= 0.05 and o.count % 4 == 0
    assert o.count == 4 * math.ceil(math.ceil(1e6 / (8 / o.seconds)) * o.tensor_parallel / 4)
    for fmt_ in WRITERS:
        assert WRITERS[fmt_](q, "en")


# ---------------------------------------------------------------- the command

def spec_file(tmp_path, name="tiny"):
    p = tmp_path / "tiny.yaml"
    p.write_text(f"name: {json.dumps(name)}\ninput: [256]\ndefaults: {{batch: 32}}\nlayers:\n"
                 "  - {op: linear, name: fc1, out_features: 512}\n  - {op: relu, name: act}\n"
                 "  - {op: linear, name: fc2, out_features: 10}\n")
    return str(p)


TRAIN = ["--samples", "1e6", "--deadline", "1h", "--candidates", "h100-sxm,rtx-4090,a100-sxm-80gb"]


@pytest.mark.parametrize("args, message", [
    (["--deadline", "0h"], "impossible"),
    (["--deadline", "24"], "not a duration"),
    (["--samples", "0"], "--samples"),
    (["--samples", "-5"], "--samples"),
    (["--epochs", "0"], "--epochs"),
    (["--currency", "EUR"], "unknown currency"),
    (["--currency", "KRW"], "needs --fx"),
    (["--budget", "-1"], "--budget"),
    (["--candidates", "nosuchgpu"], "unknown device"),
    (["--lang", "fr"], "--lang"),
    (["--qps", "10"], "not both"),
    (["--precision", "int4"], "--precision"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = CliRunner().invoke(main, ["quote", spec_file(tmp_path), *TRAIN, *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_unknown_device_in_price_file_is_exit_2(tmp_path):
    prices = tmp_path / "p.yaml"
    prices.write_text("devices:\n  - id: nosuch\n    price: {usd: 1, kind: quote, date: '2025', source: x}\n")
    result = CliRunner().invoke(main, ["quote", spec_file(tmp_path), *TRAIN, "--prices", str(prices)])
    assert result.exit_code == 2 and "no 'nosuch'" in result.stderr


def test_output_file_needs_force(tmp_path):
    out = tmp_path / "q.html"
    out.write_text("keep")
    args = ["quote", spec_file(tmp_path, "<b>tiny</b>"), *TRAIN, "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "--force" in result.stderr and out.read_text() == "keep"
    result = CliRunner().invoke(main, args + ["--force"])
    assert result.exit_code == 0, result.stderr
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and "&lt;b&gt;tiny&lt;/b&gt;" in html and "<b>tiny" not in html


def test_command_json_to_stdout(tmp_path):
    result = CliRunner().invoke(main, ["quote", spec_file(tmp_path), *TRAIN, "--format", "json", "--currency", "KRW",
                                       "--fx", "1380", "--budget", "1e9"])
    assert result.exit_code == 0, result.stderr
    d = json.loads(result.stdout)
    assert d["currency"] == "KRW" and d["fx_per_usd"] == "1380" and d["budget"] == 10 ** 9
    assert {o["device"] for o in d["options"]} == {"h100-sxm", "rtx-4090", "a100-sxm-80gb"}
