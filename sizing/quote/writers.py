"""Writers of a ``Quote`` (sizing/quote.py): md, html, json and csv.

md and html render one document (``document``): sections of paragraphs, tables and charts, every string from
sizing/quote/text.py in the report's language. The HTML is self-contained (inline CSS and SVG, no script, no
network) and every text is escaped with ``html.escape``: model names, file names and sources come from users. It
lays out on any screen (a viewport meta; tables scroll sideways in their own box, the page never; charts scale
with the page) and on A4 paper (CSS @page with its page number at the foot, wide tables in smaller type that
wraps); the Korean page keeps words whole (``word-break: keep-all``). tests/test_quote_html.py checks both in
chromium. json holds everything the report states, raw figures beside the rendered text; csv holds the purchase
lines of every priced option with the option's totals, for a spreadsheet.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from html import escape

from .money import fmt_rate, major
from .core import Bytes, Message, Money, Option, Quote, Seconds, status
from .text import model_note, text
from .svg import Point, Roof, cost_time_chart, roofline_chart
from ..common.text import csv_cell, markdown
from ..common.units import duration, iec, si

ROLES = ("fastest", "cheapest", "lowest_power")


# ---------------------------------------------------------------------------------------------------------------
# Values in the report's language and currency

def trim_zeros(figure: str) -> str:
    """A figure's leading number without trailing decimal zeros: '3.00 years' -> '3 years', '1.50' -> '1.5'."""
    number, space, rest = figure.partition(" ")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return number + space + rest


class Render:
    """Formats values and messages for one quote's language and currency."""

    def __init__(self, quote: Quote, lang: str):
        self.q, self.lang, self.x = quote, lang, quote.exchange

    def t(self, key: str, **params) -> str:
        return text(self.lang, key, **{k: self.value(v) for k, v in params.items()})

    def msg(self, m: Message) -> str:
        return self.t(m.key, **m.params)

    def value(self, v) -> str:
        if isinstance(v, Money):
            return self.x.fmt(v)
        if isinstance(v, Seconds):
            return self.duration(v)
        if isinstance(v, Bytes):
            return iec(v)
        if isinstance(v, bool) or isinstance(v, str):
            return str(v)
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:,.3g}" if v < 1e4 else f"{v:,.0f}"
        return str(v)

    def duration(self, seconds: float) -> str:
        """units.duration with the unit in the report's language, without trailing zeros ('3 years', '1.5 h',
        '1 day'); Korean writes its unit words after the number without a space ('3년', '2.67일')."""
        number, unit = duration(seconds).rsplit(" ", 1)
        number = trim_zeros(number)
        name = self.t("unit_" + (unit[:-1] if number == "1" and unit in ("years", "days") else unit))
        return f"{number}{'' if name[-1] >= '가' else ' '}{name}"

    def money(self, minor: int | None) -> str:
        return "-" if minor is None else self.x.fmt(minor)

    def money_tick(self, minor: float) -> str:
        """A round amount, short, for a chart's axis: '$2M', '$500k'; in Korean by 만, 억 and 조 ('₩3억')."""
        cur = self.x.currency
        v = minor / 10 ** cur.decimals
        words = ((1e12, "조"), (1e8, "억"), (1e4, "만")) if self.lang == "ko" else \
            ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))
        scale, word = next(((s, w) for s, w in words if v >= s), (1, ""))
        n = v / scale
        return f"{cur.symbol}{n:,.0f}{word}" if n >= 100 or n == round(n) else f"{cur.symbol}{n:.3g}{word}"

    def pct(self, share: float) -> str:
        return f"{share:.1%}"

    def kw(self, kw: float | None) -> str:
        return "-" if kw is None else f"{kw:,.1f}"

    def capacity(self, o: Option) -> str:
        return self.t("host_memory") if o.device_memory is None else iec(o.device_memory)

    def memory(self, o: Option) -> str:
        return f"{iec(o.memory_per_device)} / {self.capacity(o)}"

    def item(self, i) -> str:
        return self.t(f"item_{i.item}", name=i.name)

    def time(self, o: Option) -> str:
        return self.duration(o.seconds)


# ---------------------------------------------------------------------------------------------------------------
# The document both md and html render

@dataclass
class Table:
    head: list[str] | None
    rows: list[list[str]]
    numeric: frozenset = frozenset()        # columns aligned right
    marks: dict = field(default_factory=dict)    # row index -> 'total' | 'pick'


@dataclass
class Chart:
    svg: str
    title: str
    caption: str = ""


@dataclass
class Section:
    title: str
    blocks: list


def _task(r: Render) -> str:
    q, w = r.q, r.q.workload
    if q.kind == "training":
        task = (r.t("task_train_tokens", tokens=w["tokens"], epochs=w["epochs"], deadline=Seconds(q.deadline_s))
                if w["tokens"] is not None else
                r.t("task_train_samples", samples=w["samples"], epochs=w["epochs"], deadline=Seconds(q.deadline_s)))
        tune = w.get("finetune")
        if tune is None:
            return task
        return task + "; " + (r.t("task_finetune_full") if tune["method"] == "full" else
                              r.t("task_finetune", method=tune["method"].replace("qlora", "QLoRA").replace("lora", "LoRA"),
                                  rank=tune["rank"], targets=tune["targets"], trained=f"{tune['trained_params']:,}",
                                  params=f"{tune['params']:,}"))
    if q.kind == "llm":
        parts = [r.t("task_llm_qps", qps=f"{w['qps']:,.4g}", prompt=f"{w['prompt']:,}", output=f"{w['output']:,}")
                 if w["qps"] else r.t("task_llm", concurrency=f"{w['concurrency']:,}", prompt=f"{w['prompt']:,}",
                                      output=f"{w['output']:,}")]
        parts += [r.t("task_ttft", ttft=Seconds(w["ttft_s"]))] if w["ttft_s"] else []
        parts += [r.t("task_tpot", tpot=Seconds(w["tpot_s"]))] if w["tpot_s"] else []
        return ", ".join(parts)
    parts = [r.t("task_serve", batch=w["batch"])]
    if w["qps"] is not None:
        parts.append(r.t("task_qps", qps=w["qps"]))
    if w["latency_s"] is not None:
        parts.append(r.t("task_latency", latency=Seconds(w["latency_s"])))
    return ", ".join(parts)


def _header(r: Render) -> Table:
    q, w = r.q, r.q.workload
    rows = [[r.t("model"), f"{q.model} ({q.source})"]]
    if q.date:
        rows.append([r.t("date"), q.date])
    rows += [[r.t("task"), _task(r)],
             [r.t("settings"), r.t(f"settings_text_{q.kind}", batch=w["batch"], dtype=w["dtype"],
                                   precision=w["precision"], optimizer=w["optimizer"], weights=w.get("weights"),
                                   kv=w.get("kv_cache"))],
             [r.t("currency"), q.exchange.currency.code + ("" if q.exchange.currency.code == "USD"
                                                           else f" ({q.exchange.rate_text()})")]]
    return Table(None, rows)


def _summary(r: Render) -> list:
    q, o = r.q, r.q.pick
    if o is None:
        return [r.t("no_pick")]
    rows = [[r.t("pick"), r.t("pick_text", count=o.count, device=o.device_name, nodes=o.nodes, per_node=o.per_node)],
            [r.t("total_price"), r.money(o.purchase)],
            [r.t("time_train" if q.kind == "training" else "tpot" if q.kind == "llm" else "latency"), r.time(o)]]
    if q.kind == "llm":
        p = o.prediction
        rows = rows[:2] + [[r.t("ttft"), r.duration(p.ttft_s)], rows[2],
                           [r.t("throughput"), r.t("throughput_llm_text", tokens=f"{p.tokens_per_s:,.0f}",
                                                   rps=f"{p.requests_per_s:,.2f}")]]
    elif o.throughput is not None:
        rows.append([r.t("throughput"), r.t("throughput_text", qps=o.throughput)])
    rows += [[r.t("power"), f"{r.kw(o.power_kw)} kW"],
             [r.t("tco_over", horizon=Seconds(q.horizon_s)), r.money(o.tco)]]
    if o.cloud is not None:
        rows.append([r.t("cloud_alt"), r.money(o.cloud.cost)])
    return [Table(None, rows)]


def _items(r: Render, o: Option) -> Table:
    rows = [[r.item(i), r.money(i.unit), f"{i.quantity:,}", r.money(i.total), r.t(f"kind_{i.kind}"), i.date or "-",
             i.source] for i in o.items]
    rows.append([r.t("total_row"), "", "", r.money(o.purchase), "", "", ""])
    return Table([r.t(k) for k in ("col_item", "col_unit", "col_qty", "col_total", "col_kind", "col_date",
                                   "col_source")], rows, frozenset({1, 2, 3}), {len(rows) - 1: "total"})


def _tco(r: Render, o: Option) -> list:
    q = r.q
    horizon = Seconds(q.horizon_s)
    rows = [[r.t("tco_purchase"), r.money(o.purchase)]]
    if o.horizon_kwh is None:
        rows.append([r.t("no_energy", device=o.device_id), "-"])
    else:
        rows.append([r.t("tco_energy", horizon=horizon, kw=f"{o.power_kw:,.2f}", hours=f"{q.horizon_s / 3600:,.0f}",
                         kwh=f"{o.horizon_kwh:,.0f}", price=fmt_rate(q.kwh_price, q.exchange.currency)),
                     r.money(o.horizon_energy)])
    rows.append([r.t("tco_total", horizon=horizon), r.money(o.tco)])
    blocks = [Table(None, rows, frozenset({1}), {2: "total"})]
    extra = []
    if o.job_kwh is not None:
        extra.append([r.t("job_energy", kwh=f"{o.job_kwh:,.1f}"), r.money(o.job_energy)])
    c = o.cloud
    if c is None:
        extra.append([r.t("no_cloud", device=o.device_id), "-"])
    else:
        hours = o.count * (o.seconds if q.kind == "training" else q.horizon_s) / 3600
        key = "cloud_job" if q.kind == "training" else "cloud_serve"
        extra.append([r.t(key, horizon=horizon, hours=f"{hours:,.1f}", rate=q.exchange.fmt_usd(c.usd_per_hour),
                          provider=c.provider, offer=c.offer, date=c.date), r.money(c.cost)])
    blocks.append(Table(None, extra, frozenset({1})))
    if c is not None and q.kind == "training" and o.tco is not None and c.cost > 0:
        blocks.append(r.t("breakeven", jobs=f"{o.tco / c.cost:,.1f}", fit=math.floor(q.horizon_s / o.seconds),
                          horizon=horizon))
    return blocks


def _why(r: Render, o: Option) -> list[str]:
    q = r.q
    if q.kind == "training":
        out = [r.t("why_flops", batch=o.global_batch, per_step=si(o.model_flops_per_step), steps=o.steps,
                   total=si(o.total_flops)),
               r.t("why_effective", count=o.count, peak=si(o.peak_flops), precision=o.precision,
                   util=r.pct(o.utilization), effective=si(round(o.effective_flops))),
               r.t("why_time", total=si(o.total_flops), effective=si(round(o.effective_flops)),
                   time=Seconds(o.seconds))]
    elif q.kind == "llm":
        p = o.prediction
        return [r.t("why_llm_layout", replicas=p.replicas, tp=p.tensor_parallel, pp=p.pipeline_parallel, count=o.count,
                    nodes=o.nodes),
                r.t("why_llm_latency", concurrency=-(-p.request.concurrency // p.replicas),
                    ttft=Seconds(p.ttft_s), tpot=Seconds(p.tpot_s), tokens=f"{p.tokens_per_s:,.0f}"),
                r.t("why_llm_memory", weights=iec(p.weights_bytes), kv=iec(p.kv_cache_bytes), capacity=r.capacity(o),
                    max=f"{p.max_concurrency:,}", bound=r.t(f"bound_{p.bound_decode}"))]
    else:
        out = [r.t("why_serve_flops", batch=o.global_batch, flops=si(o.model_flops_per_step, "FLOPs")),
               r.t("why_serve_latency", tp=o.tensor_parallel, util=r.pct(o.utilization), latency=Seconds(o.seconds)),
               r.t("why_serve_replicas", replicas=o.replicas, tp=o.tensor_parallel, qps=f"{o.throughput:,.1f}",
                   count=o.count, nodes=o.nodes)]
    out.append(r.t("why_memory", memory=iec(o.memory_per_device), capacity=r.capacity(o),
                   tp=o.tensor_parallel, zero=o.zero, replicas=o.replicas, bound=r.t(f"bound_{o.bound}")))
    if q.kind == "training":
        if o.fewer_seconds is not None:
            out.append(r.t("why_fewer", count=o.fewer_count, time=Seconds(o.fewer_seconds),
                           deadline=Seconds(q.deadline_s)))
        else:
            out.append(r.t("why_least"))
    return out


def _option_row(r: Render, o: Option, front: bool) -> list[str]:
    return [o.device_id, f"{o.count:,}", r.time(o), r.pct(o.utilization), r.memory(o), r.t(f"bound_{o.bound}"),
            r.kw(o.power_kw), r.money(o.purchase), r.money(o.tco), r.money(o.cloud and o.cloud.cost),
            r.t(f"status_{status(o, r.q.budget)}") + (f"; {r.t('front_mark')}" if front else "")]


OPTION_COLUMNS = ("col_device", "col_count", "col_time", "col_util", "col_mem", "col_bound", "col_power",
                  "col_purchase", "col_tco", "col_cloud", "col_status")
OPTION_NUMERIC = frozenset({1, 2, 3, 6, 7, 8, 9})


def _alternatives(r: Render) -> Table:
    q = r.q
    roles = [("role_pick", q.pick)] + [(f"role_{k}", q.alternatives[k]) for k in ROLES]
    front = {id(q.options[i]) for i in q.front}
    rows = [[r.t(k)] + _option_row(r, o, id(o) in front)[:-1] for k, o in roles]      # all meet the target
    return Table([r.t("col_role")] + [r.t(k) for k in _columns(q)[:-1]], rows,
                 frozenset(i + 1 for i in OPTION_NUMERIC), {0: "pick"})


def _options(r: Render) -> Table:
    q = r.q
    rows = [_option_row(r, o, i in q.front) for i, o in enumerate(q.options)]
    marks = {i: "pick" for i, o in enumerate(q.options) if o is q.pick}
    return Table([r.t(k) for k in _columns(q)], rows, OPTION_NUMERIC, marks)


def _columns(q: Quote) -> tuple[str, ...]:
    """The option table's columns; a language model's serving shows its time per output token as the time."""
    return tuple("col_tpot" if k == "col_time" and q.kind == "llm" else k for k in OPTION_COLUMNS)


def _charts(r: Render) -> list:
    q = r.q
    out = []
    priced = [(i, o) for i, o in enumerate(q.options) if o.meets and o.tco is not None and o.tco > 0]
    if priced:
        points = [Point(o.seconds, o.tco, f"{o.count} x {o.device_id}", i in q.front, o is q.pick) for i, o in priced]
        kind = {"training": "train", "llm": "llm"}.get(q.kind, "serve")
        title = r.t({"train": "chart_cost", "llm": "chart_cost_llm", "serve": "chart_cost_serve"}[kind])
        target = {"train": q.deadline_s, "llm": q.workload.get("tpot_s"), "serve": q.workload.get("latency_s")}[kind]
        out.append(Chart(cost_time_chart(
            points, title, r.t({"train": "axis_time_train", "llm": "axis_tpot", "serve": "axis_latency"}[kind]),
            r.t("axis_tco"), r.duration, r.money_tick,
            (r.t("front_mark"), r.t("legend_pick")),
            target and (target, r.t("legend_deadline" if kind == "train" else "legend_target",
                                    time=Seconds(target)))), title))
    rl = q.roofline
    if rl is not None and rl.layers:
        title = r.t("chart_roofline", device=rl.device_name, precision=rl.precision)
        peaks = [("roof_matrix", rl.matrix_peak)] + ([("roof_vector", rl.vector_peak)]
                                                     if rl.vector_peak != rl.matrix_peak else [])
        roofs = [roof for key, peak in peaks for roof in (
            Roof(peak, rl.bandwidth, f"{r.t(key)} {si(peak)}FLOP/s", False),
            Roof(peak * rl.compute_fraction, rl.bandwidth * rl.memory_fraction, "", True))]
        svg = roofline_chart(list(rl.layers), roofs, title, r.t("axis_intensity"), r.t("axis_attained"),
                             lambda v: trim_zeros(si(round(v))) if v >= 1 else f"{v:g}",
                             {b: r.t(f"bound_{b}") for b in ("compute", "memory")})
        out.append(Chart(svg, title, r.t("roofline_caption", bandwidth=si(rl.bandwidth, "B/s"),
                                  compute=f"{rl.compute_fraction:.2f}", memory=f"{rl.memory_fraction:.2f}")))
    return out


def document(q: Quote, lang: str) -> tuple[str, list[Section]]:
    """(title, sections) of the report in ``lang``."""
    r = Render(q, lang)
    sections = [Section("", [_header(r)]), Section(r.t("h_summary"), _summary(r))]
    if q.findings:
        sections.append(Section(r.t("h_findings"), [r.msg(m) for m in q.findings]))
    o = q.pick
    if o is not None:
        sections += [Section(r.t("h_items"), [_items(r, o)]), Section(r.t("h_tco"), _tco(r, o)),
                     Section(r.t("h_why"), [_why(r, o)]), Section(r.t("h_alternatives"), [_alternatives(r)])]
    if q.options:
        sections.append(Section(r.t("h_options"), [_options(r)]))
    charts = _charts(r)
    if charts:
        sections.append(Section(r.t("h_charts"), charts))
    if q.excluded:
        sections.append(Section(r.t("h_excluded"), [Table([r.t("col_device"), ""],
                                                          [[e.device_id, r.msg(e.message)] for e in q.excluded])]))
    sections.append(Section(r.t("h_assumptions"), [Table([r.t("col_assumption"), r.t("col_source")],
                                                         [[r.msg(a.message), a.source] for a in q.assumptions])]))
    if q.model_notes:
        sections.append(Section(r.t("h_notes"), [[model_note(lang, n) for n in q.model_notes]]))
    sections.append(Section(r.t("h_validity"), [r.t("validity")]))
    return r.t("title", model=q.model), sections


# ---------------------------------------------------------------------------------------------------------------
# md

def _md_table(t: Table) -> list[str]:
    head = t.head or [""] * len(t.rows[0])
    bold = {i for i, m in t.marks.items() if m == "total"}
    out = ["| " + " | ".join(markdown(h) for h in head) + " |",
           "|" + "|".join("---:" if i in t.numeric else "---" for i in range(len(head))) + "|"]
    for i, row in enumerate(t.rows):
        cells = [markdown(c) for c in row]
        if i in bold:
            cells = [f"**{c}**" if c else c for c in cells]
        out.append("| " + " | ".join(cells) + " |")
    return out


def quote_md(q: Quote, lang: str) -> str:
    title, sections = document(q, lang)
    out = [f"# {markdown(title)}", ""]
    for s in sections:
        if s.title:
            out += [f"## {markdown(s.title)}", ""]
        for b in s.blocks:
            if isinstance(b, Table):
                out += _md_table(b) + [""]
            elif isinstance(b, list):
                out += [f"- {markdown(x)}" for x in b] + [""]
            elif not isinstance(b, Chart):
                out += [markdown(b), ""]
        if any(isinstance(b, Chart) for b in s.blocks):
            out += [markdown(text(lang, "charts_in_html")), ""]
    return "\n".join(out).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------------------------
# html

CSS = """
@page { size: A4 portrait; margin: 14mm 12mm 16mm;
        @bottom-center { content: counter(page) " / " counter(pages); font-size: 8pt; color: #666; } }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { font-family: "Helvetica Neue", Arial, "Liberation Sans", sans-serif; font-size: 10pt; line-height: 1.4; color: #222; max-width: 186mm;
       margin: 0 auto; padding: 8mm 16px; overflow-wrap: anywhere; }
html:lang(ko) body { word-break: keep-all; font-family: "Noto Sans CJK KR", "Noto Sans KR", "NanumGothic",
                      "Malgun Gothic", "Apple SD Gothic Neo", sans-serif; }
h1 { font-size: 16pt; margin: 0 0 6pt; }
h2 { font-size: 12pt; margin: 14pt 0 4pt; border-bottom: 1px solid #bbb; break-after: avoid; }
table { border-collapse: collapse; width: 100%; margin: 2pt 0 8pt; }
th, td { border-bottom: 1px solid #e2e2e2; padding: 2.5pt 4pt; text-align: left; vertical-align: top;
         overflow-wrap: normal; }
th { background: #f3f4f6; font-weight: 600; }
table.kv th { background: none; font-weight: normal; color: #555; width: 32%; }
span.nw { white-space: nowrap; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.src { font-size: 7.5pt; color: #555; overflow-wrap: anywhere; min-width: 9em; }
table.wide { font-size: 8pt; }
tr { break-inside: avoid; }
tr.total td { font-weight: bold; border-top: 1.5px solid #444; }
tr.pick td { background: #fff4e6; }
p.finding { border-left: 3px solid #d9480f; background: #fff8f3; padding: 3pt 8pt; }
figure { margin: 8pt 0 12pt; break-inside: avoid; }
figure svg { display: block; max-width: 560px; height: auto; }
figcaption { font-weight: 600; margin-bottom: 2pt; }
p.caption { font-size: 8.5pt; color: #555; margin: 2pt 0 0; }
ul { margin: 2pt 0 8pt; padding-left: 16pt; }
div.scroll { overflow-x: auto; max-width: 100%; }
@media screen and (max-width: 600px) { body { padding: 12px 14px; font-size: 11pt; } table.wide { font-size: 9pt; }
  table.kv th { width: 40%; } h1 { font-size: 15pt; } div.scroll > table:not(.kv) { width: max(100%, 36em); }
  div.scroll > table.wide { width: max(100%, 46em); } div.scroll > table:not(.kv) td:first-child { min-width: 8em; }
  td.src { min-width: 16em; } }
@media screen and (min-width: 1100px) { body { max-width: 1040px; } }
@media print {
  body { padding: 0; max-width: none; }
  div.scroll { overflow: visible; }
  table.wide { font-size: 7pt; }
  table.wide th, table.wide td { padding: 1.5pt 2pt; white-space: normal; overflow-wrap: break-word; }
  table.wide td.src { overflow-wrap: anywhere; }
  table.wide td.num { white-space: nowrap; }
  figure svg { max-width: 140mm; }
}
"""


# Runs a line must not break inside (a browser breaks after a hyphen and at a space): option names (--prices on
# a phone once broke into "-" and "-prices"), dates (2023-05 into "2023-" and "05"), a number with its unit and,
# outside source cells (whose long addresses must break), device ids (rtx-a4000 into "rtx-" and "a4000")
_WHOLE = re.compile(r"(?<![\w-])--[a-z][a-z-]*|\b\d{4}-\d{2}(?:-\d{2})?\b|\b\d[\d,.]* (?:kWh|kW|W|GiB|TiB|TB|PB)\b")
_ID = re.compile(r"(?<![A-Za-z0-9_./-])[a-z][a-z0-9]*(?:-[a-z0-9]+){1,3}(?![A-Za-z0-9_./-])")


def _text(s: str, ids: bool = True) -> str:
    """`s` escaped for HTML, its runs that must stay on one line in a nowrap span."""
    keep = lambda m: f'<span class="nw">{m.group(0)}</span>'  # noqa: E731
    s = _WHOLE.sub(keep, escape(s))
    return _ID.sub(keep, s) if ids else s


def _html_table(t: Table, source_col: int | None) -> str:
    wide = t.head is not None and len(t.head) > 7
    cls = "kv" if t.head is None else ("wide" if wide else "")
    out = [f'<table class="{cls}">' if cls else "<table>"]
    if t.head is not None:
        out.append("<thead><tr>" + "".join(f'<th class="num">{escape(h)}</th>' if i in t.numeric else
                                           f"<th>{escape(h)}</th>" for i, h in enumerate(t.head)) + "</tr></thead>")
    out.append("<tbody>")
    for i, row in enumerate(t.rows):
        mark = t.marks.get(i)
        cells = []
        for j, c in enumerate(row):
            tag = "th" if t.head is None and j == 0 else "td"
            cls = "num" if j in t.numeric else ("src" if j == source_col else "")
            cells.append(f'<{tag} class="{cls}">{_text(c, cls != "src")}</{tag}>' if cls else f"<{tag}>{_text(c)}</{tag}>")
        out.append((f'<tr class="{mark}">' if mark else "<tr>") + "".join(cells) + "</tr>")
    return '<div class="scroll">' + "".join(out) + "</tbody></table></div>"


def quote_html(q: Quote, lang: str) -> str:
    title, sections = document(q, lang)
    findings = text(lang, "h_findings")
    body = [f"<h1>{escape(title)}</h1>"]
    for s in sections:
        if s.title:
            body.append(f"<h2>{escape(s.title)}</h2>")
        for b in s.blocks:
            if isinstance(b, Table):
                src = (len(b.head) - 1) if b.head and b.head[-1] == text(lang, "col_source") else None
                body.append(_html_table(b, src))
            elif isinstance(b, Chart):
                caption = f'<p class="caption">{escape(b.caption)}</p>' if b.caption else ""
                body.append(f"<figure><figcaption>{escape(b.title)}</figcaption>{b.svg}{caption}</figure>")
            elif isinstance(b, list):
                body.append("<ul>" + "".join(f"<li>{_text(x)}</li>" for x in b) + "</ul>")
            else:
                cls = ' class="finding"' if s.title == findings else ""
                body.append(f"<p{cls}>{_text(b)}</p>")
    return ("<!DOCTYPE html>\n"
            f'<html lang="{escape(lang)}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


# ---------------------------------------------------------------------------------------------------------------
# json and csv

def _money_dict(q: Quote, minor: int | None):
    return None if minor is None else major(minor, q.exchange.currency)


def _message_dict(r: Render, m: Message) -> dict:
    return {"key": m.key, "text": r.msg(m), "params": dict(m.params)}


def _option_dict(q: Quote, o: Option, i: int) -> dict:
    m = lambda v: _money_dict(q, v)  # noqa: E731
    return {
        "device": o.device_id, "device_name": o.device_name, "count": o.count, "nodes": o.nodes,
        "devices_per_node": o.per_node, "status": status(o, q.budget), "pareto_front": i in q.front,
        "meets_target": o.meets, "seconds": o.seconds, "precision": o.precision, "zero": o.zero,
        "tensor_parallel": o.tensor_parallel, "replicas": o.replicas, "global_batch": o.global_batch,
        "steps": o.steps, "model_flops_per_step": o.model_flops_per_step, "total_flops": o.total_flops,
        "peak_flops_per_device": o.peak_flops, "utilization": o.utilization, "effective_flops": o.effective_flops,
        "memory_per_device_bytes": o.memory_per_device, "device_memory_bytes": o.device_memory, "bound": o.bound,
        "throughput": o.throughput, "fewer_nodes_seconds": o.fewer_seconds, "power_kw": o.power_kw,
        "purchase": m(o.purchase), "horizon_kwh": o.horizon_kwh, "horizon_energy": m(o.horizon_energy),
        "tco": m(o.tco), "job_kwh": o.job_kwh, "job_energy": m(o.job_energy),
        "line_items": None if o.items is None else [
            {"item": i.item, "name": i.name, "unit_price": m(i.unit), "quantity": i.quantity, "total": m(i.total),
             "price_kind": i.kind, "price_date": i.date, "source": i.source} for i in o.items],
        "cloud": None if o.cloud is None else {
            "provider": o.cloud.provider, "offer": o.cloud.offer, "usd_per_device_hour": o.cloud.usd_per_hour,
            "date": o.cloud.date, "source": o.cloud.source, "cost": m(o.cloud.cost)},
    }


def quote_json(q: Quote, lang: str) -> str:
    r = Render(q, lang)
    title, _ = document(q, lang)
    index = {id(o): i for i, o in enumerate(q.options)}
    return json.dumps({
        "title": title, "model": q.model, "source": q.source, "date": q.date, "kind": q.kind, "lang": lang,
        "workload": q.workload, "deadline_seconds": q.deadline_s,
        "currency": q.exchange.currency.code, "minor_unit_decimals": q.exchange.currency.decimals,
        "fx_per_usd": str(q.exchange.per_usd), "horizon_seconds": q.horizon_s, "pue": q.pue,
        "kwh_price": str(q.kwh_price), "budget": _money_dict(q, q.budget),
        "pick": None if q.pick is None else index[id(q.pick)],
        "alternatives": {k: index[id(o)] for k, o in q.alternatives.items()},
        "options": [_option_dict(q, o, i) for i, o in enumerate(q.options)],
        "excluded": [{"device": e.device_id, **_message_dict(r, e.message)} for e in q.excluded],
        "findings": [_message_dict(r, m) for m in q.findings],
        "assumptions": [{**_message_dict(r, a.message), "source": a.source} for a in q.assumptions],
        "model_notes": list(q.model_notes), "validity": r.t("validity"),
    }, indent=2, ensure_ascii=False) + "\n"


CSV_FIELDS = ("option", "role", "device", "count", "item", "unit_price", "quantity", "total", "currency",
              "price_kind", "price_date", "source", "time_seconds", "time", "power_kw", "tco")


def quote_csv(q: Quote, lang: str) -> str:
    """The purchase lines of every priced option, the pick first, with a total line per option that carries the
    option's totals beside the purchase: its time (seconds, and as the report writes it), facility power and
    cost of ownership. Korean starts with a UTF-8 byte-order mark, which Excel needs to read UTF-8."""
    r = Render(q, lang)
    roles = {id(o): k for k, o in q.alternatives.items()}
    if q.pick is not None:
        roles[id(q.pick)] = "pick"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    cur = q.exchange.currency
    for n, o in enumerate((o for o in q.options if o.items is not None), 1):
        head = [n, roles.get(id(o), ""), o.device_id, o.count]
        for i in o.items:
            w.writerow([csv_cell(c) for c in head + [r.item(i), major(i.unit, cur), i.quantity,
                                                     major(i.total, cur), cur.code, i.kind, i.date, i.source,
                                                     "", "", "", ""]])
        totals = [o.seconds, r.time(o), "" if o.power_kw is None else round(o.power_kw, 3),
                  "" if o.tco is None else major(o.tco, cur)]
        w.writerow([csv_cell(c) for c in head + [r.t("total_row"), "", "", major(o.purchase, cur), cur.code,
                                                 "", "", "", *totals]])
    return ("\ufeff" if lang == "ko" else "") + buf.getvalue()


WRITERS = {"md": quote_md, "html": quote_html, "json": quote_json, "csv": quote_csv}


FORMATS = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".json": "json", ".csv": "csv"}


def format_for(fmt: str | None, output: str | None) -> str:
    """The report format: ``fmt`` when given, else the suffix of ``output`` (md when it has none we know)."""
    import os

    return fmt or (FORMATS.get(os.path.splitext(output)[1].lower(), "md") if output else "md")
