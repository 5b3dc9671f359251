"""The HTML quote in a real browser: Debian's chromium, headless, driven by subprocess (no browser library).

Layout is measured, not inferred from the markup: each report is loaded into an iframe of a phone's (390 px) or a
desktop's (1280 px) width inside a page whose script measures it (the page's scroll width, every table's box,
every chart text's box from getBBox, every Korean word's line boxes) and writes the figures into the DOM, which
``--dump-dom`` returns (an iframe because headless chromium lays a window out at least 500 px wide). Print is
checked on the PDF that ``--print-to-pdf`` writes, through poppler's pdfinfo and pdftotext: A4 pages, every
word inside the page's printable width, a page number at the foot of every page. One quote per language and a
serving quote are made once for the module.

Also here, without a browser: the chart's tick and label rules, the Korean particles and units, the performance
model's notes in Korean, and the CSV (byte-order mark, totals, formula cells)."""
from __future__ import annotations

import collections
import csv
import html
import io
import itertools
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from sizing.cli import main
from sizing.common.units import duration
from sizing.quote.svg import Point, cost_time_chart, log_ticks, time_ticks
from sizing.quote.text import STRINGS, final_consonant, model_note, particle, text
from sizing.quote.writers import WRITERS, trim_zeros

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it: "
                                                              "apt-get install chromium)")
needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None or shutil.which("pdfinfo") is None,
                                   reason="poppler-utils (pdftotext, pdfinfo) is not installed")

# A dozen devices of every kind and price (the whole database would only slow the tests)
DEVICES = ["--candidates", "rtx-4090,rtx-a6000,rtx-6000-ada,mi300x,h100-sxm,h200-sxm,b200,a100-sxm-80gb,"
           "v100-sxm2-32gb,epyc-9654,xeon-8480plus,xeon-6980p"]
TRAIN = ["models/resnet50.yaml", "--samples", "1.28e6", "--epochs", "90", "--deadline", "7d", *DEVICES]
SERVE = ["models/resnet50.yaml", "--qps", "500", "--latency-ms", "50", *DEVICES]
PHONE, DESKTOP = 390, 1280


def _quote(args):
    """The Quote that `sizing quote ARGS` makes, and its language (the command's own option parsing)."""
    from sizing.quote.build import build_quote

    options = dict(main.get_command(None, "quote").make_context("quote", list(args)).params)
    for key in ("output", "force", "fmt"):
        options.pop(key)
    lang = options.pop("lang")
    return build_quote(options.pop("spec"), progress=None, **options), lang


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """{name: path}: ResNet-50 in a week in English (USD) and Korean (KRW), as html and csv, its serving quote
    in html, and ("all") the English one over the whole database in html (whose comparison tables' long figures
    squeeze the text columns in print); each quote made once, with no bench profile or SIZING_HWDB of the
    machine."""
    tmp = tmp_path_factory.mktemp("quotes")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp / "cache"))
        mp.delenv("SIZING_HWDB", raising=False)
        for name, args in (("en", TRAIN), ("ko", TRAIN + ["--lang", "ko", "--currency", "KRW", "--fx", "1400"]),
                           ("serve", SERVE), ("all", TRAIN[:7])):
            q, lang = _quote(args)
            for fmt in ("html", "csv") if name != "all" else ("html",):
                out[f"{name}.{fmt}"] = tmp / f"{name}.{fmt}"
                out[f"{name}.{fmt}"].write_bytes(WRITERS[fmt](q, lang).encode("utf-8"))
    return out


def _chromium(*args, timeout=60):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-extensions", f"--user-data-dir={args[0]}", *args[1:]],
                          capture_output=True, text=True, timeout=timeout, check=False)


# Measures one iframe's document; every box in CSS px of its page, chart boxes in viewBox units
MEASURE = r"""
function measure(frame) {
  const d = frame.contentDocument, w = frame.contentWindow, box = r => [r.left, r.top, r.right, r.bottom];
  const out = {width: d.documentElement.clientWidth, scroll: d.documentElement.scrollWidth,
    wordBreak: w.getComputedStyle(d.body).wordBreak, tables: [], charts: [], brokenWords: []};
  for (const t of d.querySelectorAll('table'))
    out.tables.push({box: box(t.parentElement.getBoundingClientRect()), head: t.rows[0].textContent.slice(0, 40)});
  for (const s of d.querySelectorAll('svg')) {
    const vb = s.viewBox.baseVal, texts = k => [...s.querySelectorAll('text' + k)].map(e => {
      const b = e.getBBox(), t = e.transform.baseVal.consolidate(), m = t ? t.matrix : new DOMMatrix();
      const p = [[b.x, b.y], [b.x + b.width, b.y], [b.x, b.y + b.height], [b.x + b.width, b.y + b.height]].map(
        ([x, y]) => [m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f]);
      const xs = p.map(q => q[0]), ys = p.map(q => q[1]);
      return {s: e.textContent, box: [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)]}; });
    out.charts.push({viewBox: [vb.width, vb.height], px: s.getBoundingClientRect().width,
      labels: texts('.label'), ticks: texts('.tick'), legend: texts('.legend'), all: texts(''),
      dots: [...s.querySelectorAll('circle.dot')].map(c => {
        const b = c.getBBox(); return [b.x, b.y, b.x + b.width, b.y + b.height]; }),
      targets: [...s.querySelectorAll('line.target')].map(l => [l.x1.baseVal.value, l.y1.baseVal.value])});
  }
  const walk = d.createTreeWalker(d.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    if (n.parentElement.closest('svg')) continue;
    for (const m of n.textContent.matchAll(/[\uac00-\ud7a3]{2,}/g)) {
      const r = d.createRange(); r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
      const tops = new Set([...r.getClientRects()].map(c => Math.round(c.top)));
      if (tops.size > 1) out.brokenWords.push(m[0]);
    }
  }
  out.runs = [...d.querySelectorAll('span.nw')].map(e => [e.textContent,
    new Set([...e.getClientRects()].map(c => Math.round(c.top))).size]);
  return out;
}
window.addEventListener('load', () => {
  const res = {};
  for (const f of document.querySelectorAll('iframe')) res[f.id] = measure(f);
  const pre = document.createElement('pre'); pre.id = 'result'; pre.textContent = JSON.stringify(res);
  document.body.appendChild(pre);
});
"""


@pytest.fixture(scope="module")
def layout(reports, tmp_path_factory):
    """The measurements of each report at each width, from one chromium run."""
    tmp = tmp_path_factory.mktemp("layout")
    frames = [(f"{name}-{width}", reports[f"{name}.html"], width) for name in ("en", "ko", "serve") for width in (PHONE, DESKTOP)]
    page = "".join(f'<iframe id="{i}" style="width:{w}px;height:40000px;border:0;display:block" srcdoc="'
                   f'{html.escape(p.read_text(encoding="utf-8"), quote=True)}"></iframe>' for i, p, w in frames)
    wrapper = tmp / "wrapper.html"
    wrapper.write_text(f"<!DOCTYPE html><html><body style='margin:0'>{page}<script>{MEASURE}</script></body></html>",
                       encoding="utf-8")
    r = _chromium(str(tmp / "profile"), "--window-size=1400,900", "--virtual-time-budget=2000", "--dump-dom",
                  wrapper.as_uri())
    m = re.search(r'<pre id="result">(.*?)</pre>', r.stdout, re.DOTALL)
    assert m, r.stderr[-2000:]
    return json.loads(html.unescape(m.group(1)))


def _overlap(a, b, gap=0.0):
    return a[0] < b[2] - gap and b[0] < a[2] - gap and a[1] < b[3] - gap and b[1] < a[3] - gap


@needs_chromium
@pytest.mark.parametrize("name", ["en", "ko", "serve"])
@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_page_fits_the_screen(layout, name, width):
    m = layout[f"{name}-{width}"]
    assert m["width"] == width
    assert m["scroll"] <= width, "the page scrolls sideways"
    for t in m["tables"]:
        left, _, right, _ = t["box"]
        assert left >= 8 and right <= width - 8, (t["head"], t["box"])     # inside the side margins
    for c in m["charts"]:
        assert c["px"] <= width - 16


@needs_chromium
@pytest.mark.parametrize("name", ["en", "ko", "serve"])
@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_charts_are_clean(layout, name, width):
    charts = layout[f"{name}-{width}"]["charts"]
    assert len(charts) == 2
    for c in charts:
        w, h = c["viewBox"]
        for t in c["all"]:
            x0, y0, x1, y1 = t["box"]
            assert x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h, f"{t['s']!r} is cut off: {t['box']} in {w} x {h}"
        labels = c["labels"]
        for i, a in enumerate(labels):
            for b in labels[i + 1:]:
                assert not _overlap(a["box"], b["box"]), (a, b)
            for d in c["dots"]:
                assert not _overlap(a["box"], d, 0.5), (a["s"], d)
        for g in c["legend"]:
            for d in c["dots"] + [lb["box"] for lb in labels]:
                assert not _overlap(g["box"], d), (g["s"], d)
        ticks = c["ticks"]
        for i, a in enumerate(ticks):
            for b in ticks[i + 1:]:
                assert not _overlap(a["box"], b["box"]), (a["s"], b["s"])
        if width == PHONE:      # the type stays readable: 12 viewBox units drawn at 8.5 px or more
            assert 12 * c["px"] / w >= 8.5, c["px"]
    cost = charts[0]
    assert len(cost["labels"]) < len(cost["dots"]) - 1          # only the front and the pick are labelled
    assert len(cost["targets"]) == 1                             # the deadline, or the latency target


@needs_chromium
def test_korean_words_do_not_break(layout):
    for width in (PHONE, DESKTOP):
        m = layout[f"ko-{width}"]
        assert m["wordBreak"] == "keep-all" and m["brokenWords"] == [], m["brokenWords"]
    assert layout[f"en-{PHONE}"]["wordBreak"] != "keep-all"


@needs_chromium
@pytest.mark.parametrize("name", ["en", "ko", "serve"])
def test_option_names_dates_and_figures_with_units_stay_on_one_line(layout, name):
    """On a phone a line once broke "--prices" into "-" and "-prices", a price date "2023-05" into "2023-"
    and "05" and a device id rtx-a4000 into "rtx-" and "a4000": such runs are kept whole (span.nw), and each
    lies on one line at both widths."""
    for width in (PHONE, DESKTOP):
        runs = layout[f"{name}-{width}"]["runs"]
        assert any(re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", s) for s, _ in runs)    # the line items' price dates
        assert [s for s, lines in runs if lines != 1] == []


def test_runs_kept_whole():
    from sizing.quote.writers import _text
    assert _text("give --prices FILE; 4.42 kW x 26,298 h, of 2023-05 <b>") == (
        'give <span class="nw">--prices</span> FILE; <span class="nw">4.42 kW</span> x 26,298 h, of '
        '<span class="nw">2023-05</span> &lt;b&gt;')
    assert _text("a-b--c 12 kWh 2024-07-09") == 'a-b--c <span class="nw">12 kWh</span> <span class="nw">2024-07-09</span>'
    # device ids, but not in a source cell, whose long addresses must break where they can
    assert _text("(mi325x, rtx-a4000, grace-superchip)") == (
        '(mi325x, <span class="nw">rtx-a4000</span>, <span class="nw">grace-superchip</span>)')
    assert _text("example.com/amd-stock-why 2024-07", ids=False) == (
        'example.com/amd-stock-why <span class="nw">2024-07</span>')


def _pdf(tmp, path):
    pdf = tmp / (path.stem + ".pdf")
    r = _chromium(str(tmp / "profile"), "--no-pdf-header-footer", f"--print-to-pdf={pdf}", path.as_uri())
    assert pdf.exists(), r.stderr[-2000:]
    return pdf


@needs_chromium
@needs_poppler
@pytest.mark.parametrize("name", ["en", "ko", "all"])
def test_print_is_a4_with_page_numbers_and_nothing_cut(reports, tmp_path, name):
    pdf = _pdf(tmp_path, reports[f"{name}.html"])
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert pages >= 2 and "(A4)" in info
    bbox = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    margin = 12 / 25.4 * 72                                     # @page's side margins, 12 mm
    for n, page in enumerate(re.findall(r"<page (.*?)</page>", bbox, re.DOTALL), 1):
        width, height = (float(v) for v in re.search(r'width="([\d.]+)" height="([\d.]+)"', page).groups())
        assert abs(width - 595.3) < 1.5 and abs(height - 841.9) < 1.5
        words = [(float(a), float(b), float(c), float(d), html.unescape(s)) for a, b, c, d, s in re.findall(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>', page)]
        for x0, _, x1, _, s in words:
            assert margin - 0.5 <= x0 and x1 <= width - margin + 0.5, f"page {n}: {s!r} at {x0:.0f}-{x1:.0f} pt"
        foot = " ".join(s for _, y0, _, _, s in words if y0 > height - 16 / 25.4 * 72)
        assert foot == f"{n} / {pages}", foot
    text_ = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    for key in ("col_cloud", "col_tco", "col_status"):      # the widest tables' last columns, whole
        assert text("ko" if name == "ko" else "en", key) in text_
    # Words are not broken inside: every word of the page's text (less its head, charts and source cells, which
    # may break anywhere) is as often whole among the PDF's words as in the page: Korean print once broke
    # 연산 and 병목 in the comparison table into 연/산 and 병/목, because its cells could break anywhere
    page = re.sub(r"<head.*?</head>|<svg.*?</svg>|<td class=\"src\">.*?</td>", " ",
                  reports[f"{name}.html"].read_text(encoding="utf-8"), flags=re.DOTALL)
    word = r"[\uac00-\ud7a3]{2,}|[A-Za-z]{4,}"
    want = collections.Counter(re.findall(word, html.unescape(re.sub(r"<[^>]+>", " ", page))))
    got = collections.Counter(m for s in re.findall(r"<word [^>]*>(.*?)</word>", bbox)
                              for m in re.findall(word, html.unescape(s)))
    broken = {w: (n, got[w]) for w, n in want.items() if got[w] < n}
    assert not broken, f"words broken in print (in the page, whole in the PDF): {broken}"


# ---------------------------------------------------------------- charts, without a browser

def _svg_numbers(svg):
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    return root, ns


def test_clustered_options_spread_across_the_plot():
    """Every option of a LLaMA training near its deadline (28-30 days): the axis spans the data, not decades, so
    the dots spread over most of the plot's width rather than stacking in one column."""
    day = 86400
    pts = [Point((28 + 0.125 * i) * day, 1e5 * (1 + i), f"{i} x gpu", i < 3, i == 0) for i in range(16)]
    svg = cost_time_chart(pts, "t", "x", "y", lambda s: f"{s / day:g} d", str, ("front", "pick"), (30 * day, "dl"))
    root, ns = _svg_numbers(svg)
    xs = sorted(float(c.get("cx")) for c in root.iter(f"{ns}circle") if c.get("class") == "dot" and
                c.get("r") == "4.5")
    box = next(root.iter(f"{ns}rect"))
    plot = float(box.get("width"))
    assert xs[-1] - xs[0] >= 0.6 * plot
    assert len({round(x) for x in xs}) == 16


def test_only_the_front_and_the_pick_are_labelled():
    """Twenty options, five on the front: the labels are front or pick labels, the pick's always among them, and
    the ones not written are of dots too crowded to label without touching another (all are in the table)."""
    pts = [Point(3600 * (1 + i), 1e5 / (1 + i) if i < 5 else 2e5 - 5e3 * i, f"{i} x dev-{i}", i < 5, i == 3)
           for i in range(20)]
    root, ns = _svg_numbers(cost_time_chart(pts, "t", "x", "y", str, str, ("front", "pick")))
    labels = [t.text for t in root.iter(f"{ns}text") if t.get("class") == "label"]
    assert "3 x dev-3" in labels and len(labels) >= 3
    assert set(labels) <= {p.label for p in pts if p.front or p.pick}
    assert not [t for t in root.iter(f"{ns}line") if t.get("class") == "target"]      # no target given


@pytest.mark.parametrize("lo, hi", [(1e-4, 6e-2), (3600, 40 * 86400), (12 * 86400, 33 * 86400), (1e-3, 5e-3),
                                    (0.5 * 86400, 7.5 * 86400), (60, 7200)])
def test_time_ticks_are_round_and_inside(lo, hi):
    ticks = time_ticks(lo, hi)
    assert 3 <= len(ticks) <= 7 and all(lo <= t <= hi for t in ticks) and ticks == sorted(ticks)
    for t in ticks:             # a whole number (or a half) of the unit it is written in
        assert re.fullmatch(r"\d+(\.5)? \w+", trim_zeros(duration(t))), duration(t)


@pytest.mark.parametrize("lo, hi", [(4000, 9000), (5000, 2e6), (1.2e5, 1.9e6), (0.02, 5000)])
def test_value_ticks(lo, hi):
    ticks = log_ticks(lo, hi)
    assert len(ticks) >= 3 and all(lo <= t <= hi for t in ticks) and ticks == sorted(ticks)
    assert all(float(f"{t:.2g}") == pytest.approx(t) for t in ticks)     # two significant digits at most
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    ratios = {round(b / a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1 or ratios <= {10.0, 2.0, 2.5, 3.0, 10 / 3}        # even steps, or round ratios


# ---------------------------------------------------------------- Korean

@pytest.mark.parametrize("word, closed", [
    ("1.09일", True), ("3년", True), ("24시간", True), ("50 ms", False), ("h100-sxm", True), ("rtx-4090", True), ("rtx-4095", False),
    ("2", False), ("7", True), ("100", True), ("5,000", False), ("10,000", True), ("₩7,094", True),
    ("$1,599.00", False), ("a100 (SXM)", True), ("모델", True), ("데이터", False)])
def test_final_consonant(word, closed):
    """By hand: 일 (ㄹ), 년 (ㄴ), 간 (ㄴ), 밀리초, 엠 (ㅁ), 사천구십 (ㅂ), 오, 이, 칠 (ㄹ), 백 (ㄱ), 천, 만 (ㄴ), 원 (ㄴ), 달러,
    (SXM: 엠), 델, 터."""
    assert bool(final_consonant(word)) is closed


def test_particles():
    assert particle("1.09일", "이(가) 걸려") == "이 걸려"
    assert particle("50 ms", "이(가) 걸립니다") == "가 걸립니다"
    assert particle("3년", "(으)로") == "으로" and particle("1일", "(으)로") == "로"    # ㄹ takes 로
    assert particle("₩1,000", "은(는)") == "은" and particle("$5", "을(를)") == "를"
    assert particle("x", "이다") == "이다"
    assert text("ko", "why_fewer", count="3", time="1.09일", deadline="1일") == \
        "한 단계 적은 구성(3대)은 1.09일이 걸려 기한 1일을 넘깁니다."
    assert text("ko", "short_latency", target="50 ms", device="a", latency="70 ms").count("가") >= 1
    assert "(" + "가)" not in text("ko", "short_latency", target="50 ms", device="a", latency="70 ms")


def test_every_two_form_particle_follows_a_field():
    """A particle written in both forms is resolved only right after a field, so none may stand elsewhere."""
    for key, (_, ko) in STRINGS.items():
        for both in ("이(가)", "을(를)", "은(는)", "과(와)", "(으)로"):
            for m in re.finditer(re.escape(both), ko):
                assert ko[m.start() - 1] == "}", (key, ko)


def test_korean_report_units_and_sentences(reports):
    page = html.unescape(re.sub(r"<svg.*?</svg>|<[^>]+>", "\n", reports["ko.html"].read_text(encoding="utf-8"),
                                flags=re.DOTALL))
    assert "3년" in page and not re.search(r"\d\.0+ ?(년|일|시간)", page) and " 년" not in page
    assert not re.search(r"[0-9] ?일가|[0-9] ?년가", page)
    section = page[page.index("성능 모델 설명"):page.index("유효성")]
    english = [line for line in section.splitlines() if re.search(r"\b[a-z]{4,} [a-z]{3,}\b", line)]
    assert english == []


@pytest.mark.parametrize("args", [TRAIN, SERVE, ["tests/data/hf/llama-3.2-1b.json", "--concurrency", "8",
                                                "--prompt-tokens", "500", "--output-tokens", "100",
                                                "--candidates", "h100-sxm,l4"],
                                  ["tests/data/hf/llama-3.2-1b.json", "--tokens", "2e9", "--deadline", "30d",
                                   "--candidates", "h100-sxm"]])
def test_every_model_note_has_its_korean(tmp_path, args):
    result = CliRunner().invoke(main, ["quote", *args, "--format", "json"], env={"XDG_CACHE_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["model_notes"]
    assert notes
    for n in notes:
        ko = model_note("ko", n)
        assert ko != n and re.search("[가-힣]", ko), n


# ---------------------------------------------------------------- CSV

def test_korean_csv_has_a_bom_and_totals(reports):
    raw = reports["ko.csv"].read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert not reports["en.csv"].read_bytes().startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    js = {}
    for opt, group in _groups(rows).items():
        total = group[-1]
        assert total["item"] == "합계" and total["time_seconds"] and total["tco"] and total["power_kw"]
        assert sum(int(r["total"]) for r in group[:-1]) == int(total["total"])
        assert int(total["tco"]) >= int(total["total"])
        assert all(r["time_seconds"] == "" for r in group[:-1])
        js[opt] = total
    assert js


def _groups(rows):
    out = {}
    for r in rows:
        out.setdefault(r["option"], []).append(r)
    return out


def test_csv_neutralises_formula_cells(tmp_path):
    prices = tmp_path / "p.yaml"
    prices.write_text("devices:\n  - id: h100-sxm\n    price: {usd: 25000, kind: quote, date: '2025-01', "
                      "source: \"=HYPERLINK(\\\"http://x\\\")\"}\n  - id: rtx-4090\n    price: {usd: 1600, kind: "
                      "quote, date: '2025-01', source: '@SUM(1)'}\n")
    result = CliRunner().invoke(main, ["quote", *TRAIN[:7], "--candidates", "h100-sxm,rtx-4090", "--prices",
                                       str(prices), "--format", "csv"], env={"XDG_CACHE_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    sources = {r[11] for r in rows[1:] if r[11]}
    assert "'=HYPERLINK(\"http://x\")" in sources and "'@SUM(1)" in sources
    assert not any(c.startswith(("=", "+", "@")) for r in rows for c in r)
