"""Inline SVG charts for the quote report, written here (no plotting library, no network): a scatter of cost
against time with the Pareto front joined and the target drawn, and a roofline (Williams, Waterman and Patterson
2009) with the model's layers on it. Both axes are logarithmic. Every text is escaped (``html.escape``), so the
output is well-formed XML that a browser draws inline in HTML.

Layout: the legend sits in a strip above the plot box, never on the data; tick labels that would run past the
chart's edge are anchored inside it, and x tick labels that would touch their neighbour are dropped; the charts
scale with the page (``viewBox``, ``width="100%"``) and their type is sized to stay readable when a 390 px phone
draws them at about 0.8 of their size. Only the Pareto front and the pick carry labels (every option is in the
table), each placed where it covers no dot, no other label and nothing outside the plot box; a front label that
finds no such place is left out.
"""
from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from html import escape

WIDTH = 440
PLOT_HEIGHT = 240
RIGHT, AXIS_TITLE, TICK, LABEL, LEGEND = 12, 13, 12, 12, 12      # right margin; type sizes (viewBox units)
COLORS = {"front": "#1f5fa8", "other": "#9aa4b0", "pick": "#d9480f", "compute": "#1f5fa8", "memory": "#2b8a3e",
          "roof": "#333333", "target": "#c92a2a"}


def text_width(s: str, size: float) -> float:
    """An upper estimate of ``s``'s advance in a sans-serif face: 0.62 em per narrow character, 1 em per wide one
    (Hangul, CJK: East Asian width W or F)."""
    return sum(size * (1.0 if unicodedata.east_asian_width(c) in "WF" else 0.62) for c in s)


@dataclass(frozen=True)
class LogAxis:
    """Maps a value in [lo, hi] to a pixel in [start, end] on a log scale (start > end for a y axis)."""
    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, v: float) -> float:
        share = (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return self.start + share * (self.end - self.start)


def padded(values, pad: float = 0.06, least: float = 1.1) -> tuple[float, float]:
    """The range of the positive ``values``, spanning at least a factor ``least`` (widened about its geometric
    middle), then widened on each side by ``pad`` of its span in decades, so no dot sits on the plot's edge and
    close values spread over the plot rather than stack in one column."""
    lo, hi = min(values), max(values)
    if hi / lo < least:
        mid = math.sqrt(lo * hi)
        lo, hi = mid / math.sqrt(least), mid * math.sqrt(least)
    f = (hi / lo) ** pad
    return lo / f, hi * f


def log_ticks(lo: float, hi: float, unit: float = 1.0) -> list[float]:
    """Round values inside [lo, hi]: across a decade or more, m x 10^k for the sparsest of m in (1), (1, 3),
    (1, 2, 5) that gives at least three; across less, multiples of the 1-2-2.5-5 step in ``unit`` (a day, an hour)
    that gives about five."""
    if hi / lo >= 10:
        for steps in ((1,), (1, 3), (1, 2, 5)):
            ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                     for m in steps if lo <= m * 10.0 ** k <= hi]
            if len(ticks) >= 3:
                return ticks
        return ticks
    a, b = lo / unit, hi / unit
    raw = (b - a) / 5
    base = 10.0 ** math.floor(math.log10(raw))
    step = min((m * base for m in (1, 2, 2.5, 5, 10) if m * base >= raw), default=10 * base)
    return [k * step * unit for k in range(math.ceil(a / step), math.floor(b / step) + 1) if k > 0]


# Durations that make round ticks: 1-2-5 steps below a minute, then minutes, hours, days, weeks, months, years
_M, _H, _D, _Y = 60, 3600, 86400, 365.25 * 86400
TIME_GRID = tuple(m * 10.0 ** k for k in range(-6, 1) for m in (1, 2, 5)) + (
    10, 20, 30, _M, 2 * _M, 5 * _M, 10 * _M, 20 * _M, 30 * _M, _H, 2 * _H, 3 * _H, 6 * _H, 12 * _H, _D, 2 * _D,
    3 * _D, 7 * _D, 14 * _D, 30 * _D, 91 * _D, 182 * _D, _Y, 2 * _Y, 5 * _Y, 10 * _Y)
TIME_UNITS = (_Y, _D, _H, _M, 1, 1e-3, 1e-6)


def time_ticks(lo: float, hi: float, most: int = 6) -> list[float]:
    """Round durations inside [lo, hi] seconds. Across a decade or more: TIME_GRID values, each kept when it lies
    at least 1/``most`` of the axis (in decades) past the one kept before, so they spread evenly; across less:
    round multiples in the largest unit not above ``lo`` (log_ticks)."""
    if hi / lo < 10:
        return log_ticks(lo, hi, next((u for u in TIME_UNITS if u <= lo), TIME_UNITS[-1]))
    gap, out = math.log10(hi / lo) / most, []
    for g in (g for g in TIME_GRID if lo <= g <= hi):
        if not out or math.log10(g / out[-1]) >= gap * 0.999:
            out.append(g)
    return out


def _text(x, y, s, anchor="middle", size=TICK, extra=""):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
            f'{escape(str(s))}</text>')


@dataclass(frozen=True)
class Frame:
    """The plot box in viewBox units: x0..x1 left to right, y1 (top) .. y0 (bottom); ``height``: the whole chart."""
    x0: float
    x1: float
    y1: float
    y0: float
    height: float


def _legend(items, top: float = 4) -> tuple[list[str], float]:
    """A row (wrapping to more) of (swatch svg at (x, y) -> str, label) above the plot; (parts, its height)."""
    out, x, y, row = [], 8.0, top + 12, 18
    for swatch, label in items:
        w = 24 + text_width(label, LEGEND) + 14
        if x + w > WIDTH - RIGHT and x > 8:
            x, y = 8.0, y + row
        out += [swatch(x, y - 4), _text(x + 24, y, label, "start", LEGEND, ' class="legend"')]
        x += w
    return out, (y + 8 - top if items else 0)


def _frame(legend: list, ylabels: list[str]) -> tuple[list[str], Frame]:
    """The legend strip, the plot box under it and the tick labels around it; (parts, frame). The left margin
    fits the widest y tick label."""
    parts, legend_h = _legend(legend)
    x0 = 8 + AXIS_TITLE + 8 + max((text_width(s, TICK) for s in ylabels), default=20) + 6
    y1 = legend_h + 10
    return parts, Frame(x0, WIDTH - RIGHT, y1, y1 + PLOT_HEIGHT, y1 + PLOT_HEIGHT + 46)


def _axes(f: Frame, xa: LogAxis, ya: LogAxis, xticks, yticks, xfmt, yfmt, xlabel, ylabel) -> list[str]:
    """Plot box, grid lines at the ticks with their labels, axis titles. An x tick label that would pass the
    chart's edge is anchored inside it; one that would touch the label before it is dropped (the last is kept
    before a neighbour)."""
    out = [f'<rect x="{f.x0:.1f}" y="{f.y1:.1f}" width="{f.x1 - f.x0:.1f}" height="{f.y0 - f.y1:.1f}" '
           'fill="none" stroke="#888"/>']
    placed = []                                     # (left, right, svg) of the x tick labels kept
    for t in xticks:
        x, s = xa(t), xfmt(t)
        w = text_width(s, TICK)
        anchor, left = "middle", x - w / 2
        if left < 2:
            anchor, left = "start", 2
        elif left + w > WIDTH - 2:
            anchor, left = "end", WIDTH - 2 - w
        out.append(f'<line x1="{x:.1f}" y1="{f.y1:.1f}" x2="{x:.1f}" y2="{f.y0:.1f}" stroke="#e3e3e3"/>')
        tick = (left, left + w, _text({"middle": x, "start": 2, "end": WIDTH - 2}[anchor], f.y0 + 16, s, anchor,
                                      extra=' class="tick"'))
        if placed and placed[-1][1] + 6 > tick[0]:
            if t != xticks[-1]:
                continue
            placed.pop()
        placed.append(tick)
    out += [p[2] for p in placed]
    for t in yticks:
        y = ya(t)
        out += [f'<line x1="{f.x0:.1f}" y1="{y:.1f}" x2="{f.x1:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>',
                _text(f.x0 - 6, y + 4, yfmt(t), anchor="end", extra=' class="tick"')]
    ymid = (f.y0 + f.y1) / 2
    out += [_text((f.x0 + f.x1) / 2, f.height - 8, xlabel, size=AXIS_TITLE),
            _text(8 + AXIS_TITLE - 2, ymid, ylabel, size=AXIS_TITLE,
                  extra=f' transform="rotate(-90 {8 + AXIS_TITLE - 2} {ymid:.1f})"')]
    return out


def _svg(parts: list[str], label: str, height: float) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" width="100%" role="img" '
            f'aria-label="{escape(label)}" font-family="sans-serif">' + "".join(parts) + "</svg>")


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    front: bool = False
    pick: bool = False


def _overlaps(a, b, gap: float = 1.0) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def place_labels(dots, labels, frame: Frame, size: float = LABEL):
    """Where each label goes: ``dots`` [(x, y, radius)], ``labels`` [(dot index, text)] in order of priority.
    Tries right, left, above, below and the four diagonals of its dot; keeps the first box inside the plot that
    covers no dot and no label placed before; (index, x, y, anchor) for those placed."""
    boxes = [(x - r, y - r, x + r, y + r) for x, y, r in dots]
    out = []
    for i, s in labels:
        x, y, r = dots[i]
        w, up, down = text_width(s, size), 0.8 * size, 0.25 * size
        d = r + 3
        for dx, dy, anchor in ((d, 0, "start"), (-d, 0, "end"), (0, -d - down, "middle"), (0, d + up, "middle"),
                               (d * 0.8, -d * 0.8 - down, "start"), (d * 0.8, d * 0.8 + up, "start"),
                               (-d * 0.8, -d * 0.8 - down, "end"), (-d * 0.8, d * 0.8 + up, "end")):
            tx, ty = x + dx, y + dy + (0.3 * size if dy == 0 else 0)
            left = {"start": tx, "end": tx - w, "middle": tx - w / 2}[anchor]
            box = (left, ty - up, left + w, ty + down)
            inside = frame.x0 + 2 <= box[0] and box[2] <= frame.x1 - 2 and frame.y1 + 2 <= box[1] and \
                box[3] <= frame.y0 - 2
            if inside and not any(_overlaps(box, b) for b in boxes):
                boxes.append(box)
                out.append((i, tx, ty, anchor))
                break
    return out


def cost_time_chart(points: list[Point], title: str, xlabel: str, ylabel: str, xfmt, yfmt, legend: tuple[str, str],
                    target: tuple[float, str] | None = None) -> str:
    """Every option as a dot (x: time in seconds, ticks at round durations; y: cost); the Pareto front joined by a
    line in order of time, its dots coloured and labelled; the pick ringed and labelled. ``legend``: (front label,
    pick label); ``target``: (seconds, legend label), drawn as a dashed vertical line."""
    xs = [p.x for p in points] + ([target[0]] if target else [])
    xa_lo, xa_hi = padded(xs)
    ya_lo, ya_hi = padded([p.y for p in points])
    xticks, yticks = time_ticks(xa_lo, xa_hi), log_ticks(ya_lo, ya_hi)
    front_c, pick_c, target_c = COLORS["front"], COLORS["pick"], COLORS["target"]
    items = [(lambda x, y: f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 18:.1f}" y2="{y:.1f}" stroke="{front_c}" '
              'stroke-width="1.5"/>', legend[0]),
             (lambda x, y: f'<circle cx="{x + 9:.1f}" cy="{y:.1f}" r="6" fill="none" stroke="{pick_c}" '
              'stroke-width="2"/>', legend[1])]
    if target:
        items.append((lambda x, y: f'<line x1="{x + 9:.1f}" y1="{y - 7:.1f}" x2="{x + 9:.1f}" y2="{y + 7:.1f}" '
                      f'stroke="{target_c}" stroke-width="1.5" stroke-dasharray="4 3"/>', target[1]))
    out, f = _frame(items, [yfmt(t) for t in yticks])
    xa, ya = LogAxis(xa_lo, xa_hi, f.x0, f.x1), LogAxis(ya_lo, ya_hi, f.y0, f.y1)
    out += _axes(f, xa, ya, xticks, yticks, xfmt, yfmt, xlabel, ylabel)
    if target:
        x = xa(target[0])
        out.append(f'<line x1="{x:.1f}" y1="{f.y1:.1f}" x2="{x:.1f}" y2="{f.y0:.1f}" stroke="{target_c}" '
                   'stroke-width="1.5" stroke-dasharray="4 3" class="target"/>')
    front = sorted((p for p in points if p.front), key=lambda p: p.x)
    if len(front) > 1:
        path = " ".join(f"{xa(p.x):.1f},{ya(p.y):.1f}" for p in front)
        out.append(f'<polyline points="{path}" fill="none" stroke="{front_c}" stroke-width="1.5"/>')
    dots = [(xa(p.x), ya(p.y), 9 if p.pick else 4.5) for p in points]
    for p, (x, y, _) in zip(points, dots):
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{front_c if p.front else COLORS["other"]}" '
                   f'class="dot"><title>{escape(p.label)}</title></circle>')
        if p.pick:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="{pick_c}" stroke-width="2" '
                       'class="dot"/>')
    order = sorted((i for i, p in enumerate(points) if p.pick or p.front), key=lambda i: (not points[i].pick,
                                                                                          points[i].x))
    for i, tx, ty, anchor in place_labels(dots, [(i, points[i].label) for i in order], f):
        out.append(_text(tx, ty, points[i].label, anchor, LABEL, ' fill="#333" class="label"'))
    return _svg(out, title, f.height)


@dataclass(frozen=True)
class Roof:
    """One roof: min(``flops``, ``bandwidth`` x intensity), FLOP/s and bytes/s; ``achieved`` draws it solid (the
    calibrated fractions applied), else dashed (the datasheet). Only a labelled roof gets its label written."""
    flops: float
    bandwidth: float
    label: str
    achieved: bool


def _roof_points(roof: Roof, xa: LogAxis, ya: LogAxis) -> list[tuple[float, float]]:
    """The roof's corners inside the plot: up the bandwidth slope from where it enters, along the peak."""
    start = max(xa.lo, ya.lo / roof.bandwidth)
    knee = roof.flops / roof.bandwidth
    if knee <= start:
        return [(xa.lo, roof.flops), (xa.hi, roof.flops)]
    if knee >= xa.hi:
        return [(start, roof.bandwidth * start), (xa.hi, roof.bandwidth * xa.hi)]
    return [(start, roof.bandwidth * start), (knee, roof.flops), (xa.hi, roof.flops)]


def roofline_chart(layers, roofs: list[Roof], title: str, xlabel: str, ylabel: str, fmt, bound_labels: dict) -> str:
    """Layers as dots at (FLOPs / bytes, FLOPs / time), coloured by their bound, under the ``roofs``. ``layers``:
    (name, intensity, attained FLOP/s, bound) with positive intensity and attained."""
    xs = [l[1] for l in layers]
    top = max(r.flops for r in roofs)
    ridge = max(r.flops / r.bandwidth for r in roofs)
    x_lo, x_hi = padded(xs + [ridge * 4, min(xs + [ridge]) / 4], 0.02)
    y_lo, y_hi = padded([l[2] for l in layers] + [top * 1.5, min(r.bandwidth for r in roofs) * x_lo], 0.02)
    xticks, yticks = log_ticks(x_lo, x_hi), log_ticks(y_lo, y_hi)
    items = [(lambda x, y, c=COLORS[b]: f'<circle cx="{x + 9:.1f}" cy="{y:.1f}" r="4.5" fill="{c}"/>',
              bound_labels[b]) for b in ("compute", "memory")]
    out, f = _frame(items, [fmt(t) for t in yticks])
    xa, ya = LogAxis(x_lo, x_hi, f.x0, f.x1), LogAxis(y_lo, y_hi, f.y0, f.y1)
    out += _axes(f, xa, ya, xticks, yticks, fmt, fmt, xlabel, ylabel)
    for roof in roofs:
        path = " ".join(f"{xa(x):.1f},{ya(y):.1f}" for x, y in _roof_points(roof, xa, ya))
        dash = "" if roof.achieved else ' stroke-dasharray="5 4"'
        out.append(f'<polyline points="{path}" fill="none" stroke="{COLORS["roof"]}" stroke-width="1.2"{dash}/>')
        if roof.label:
            out.append(_text(f.x1 - 4, ya(roof.flops) - 5, roof.label, anchor="end", size=LABEL - 1))
    for name, x, y, bound in layers:
        out.append(f'<circle cx="{xa(x):.1f}" cy="{ya(y):.1f}" r="3" fill="{COLORS[bound]}" fill-opacity="0.75" '
                   f'class="dot"><title>{escape(name)}</title></circle>')
    return _svg(out, title, f.height)
