"""Inline SVG charts for the quote report, written here (no plotting library, no network): a scatter of cost
against time with the Pareto front joined, and a roofline (Williams, Waterman and Patterson 2009) with the model's
layers on it. Both axes are logarithmic. Every text is escaped (``html.escape``), so the output is well-formed XML
that a browser draws inline in HTML.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 680, 400
LEFT, RIGHT, TOP, BOTTOM = 86, 20, 36, 56
COLORS = {"front": "#1f5fa8", "other": "#9aa4b0", "pick": "#d9480f", "compute": "#1f5fa8", "memory": "#2b8a3e",
          "roof": "#333333"}


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

    def ticks(self, grid=None) -> list[float]:
        """The ``grid`` values inside the range; by default powers of ten, with 1-2-5 steps too when the range
        spans less than two decades."""
        if grid is None:
            grid = _grid(self.lo, self.hi, (1,) if math.log10(self.hi / self.lo) >= 2 else (1, 2, 5))
        return [g for g in grid if self.lo * (1 - 1e-9) <= g <= self.hi * (1 + 1e-9)]


def _grid(lo: float, hi: float, steps=(1, 2, 5)) -> list[float]:
    """m x 10^k for m in ``steps``, from a decade below ``lo`` to a decade above ``hi``."""
    return [m * 10.0 ** k for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 2)
            for m in steps]


# Durations that make round ticks: seconds, minutes, hours, days, weeks, years
TIME_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1, 10, 60, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
             2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 182 * 86400, 365.25 * 86400,
             3652.5 * 86400)


def log_axis(values, start: float, end: float, grid=None) -> LogAxis:
    """An axis over the positive ``values``, widened to the ``grid`` values around them (default 1-2-5 steps),
    and to a decade when they are all equal."""
    lo, hi = min(values), max(values)
    grid = grid or _grid(lo, hi)
    lo = max((g for g in grid if g <= lo * (1 + 1e-9)), default=lo)
    hi = min((g for g in grid if g >= hi * (1 - 1e-9)), default=hi)
    if hi <= lo:
        hi = lo * 10
    return LogAxis(lo, hi, start, end)


def _text(x, y, s, anchor="middle", size=11, extra=""):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
            f'{escape(str(s))}</text>')


def _frame(title, xlabel, ylabel, xa: LogAxis, ya: LogAxis, xfmt, yfmt, xgrid=None) -> list[str]:
    """Title, plot box, grid lines at the ticks (x: at ``xgrid`` values) with their labels, axis labels."""
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
    out = [_text(WIDTH / 2, 20, title, size=13, extra=' font-weight="bold"'),
           f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#888"/>']
    for t in xa.ticks(xgrid):
        x = xa(t)
        out += [f'<line x1="{x:.1f}" y1="{y1}" x2="{x:.1f}" y2="{y0}" stroke="#e3e3e3"/>',
                _text(x, y0 + 16, xfmt(t), size=10)]
    for t in ya.ticks():
        y = ya(t)
        out += [f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#e3e3e3"/>',
                _text(x0 - 6, y + 3.5, yfmt(t), anchor="end", size=10)]
    out += [_text((x0 + x1) / 2, HEIGHT - 14, xlabel),
            _text(16, (y0 + y1) / 2, ylabel, extra=f' transform="rotate(-90 16 {(y0 + y1) / 2:.1f})"')]
    return out


def _svg(parts: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
            f'aria-label="{escape(label)}" font-family="sans-serif">' + "".join(parts) + "</svg>")


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    front: bool = False
    pick: bool = False


def cost_time_chart(points: list[Point], title: str, xlabel: str, ylabel: str, xfmt, yfmt,
                    legend: tuple[str, str]) -> str:
    """Every option as a dot (x: time in seconds, ticks at round durations; y: cost); the Pareto front joined by a
    line in order of time, its dots coloured; the pick ringed. ``legend``: (front label, pick label)."""
    xa = log_axis([p.x for p in points], LEFT, WIDTH - RIGHT, TIME_GRID)
    ya = log_axis([p.y for p in points], HEIGHT - BOTTOM, TOP)
    out = _frame(title, xlabel, ylabel, xa, ya, xfmt, yfmt, TIME_GRID)
    front = sorted((p for p in points if p.front), key=lambda p: p.x)
    if len(front) > 1:
        path = " ".join(f"{xa(p.x):.1f},{ya(p.y):.1f}" for p in front)
        out.append(f'<polyline points="{path}" fill="none" stroke="{COLORS["front"]}" stroke-width="1.5"/>')
    for p in points:
        x, y = xa(p.x), ya(p.y)
        color = COLORS["front"] if p.front else COLORS["other"]
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{color}"><title>{escape(p.label)}</title>'
                   "</circle>")
        if p.pick:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="{COLORS["pick"]}" '
                       'stroke-width="2"/>')
        right = x > LEFT + 0.7 * (WIDTH - RIGHT - LEFT)      # label on the side with room
        out.append(_text(x - 7 if right else x + 7, y - 7, p.label, anchor="end" if right else "start", size=9,
                         extra=' fill="#444"'))
    lx = WIDTH - RIGHT - 150
    out += [f'<line x1="{lx}" y1="{TOP + 14}" x2="{lx + 18}" y2="{TOP + 14}" stroke="{COLORS["front"]}" '
            'stroke-width="1.5"/>', _text(lx + 24, TOP + 18, legend[0], anchor="start", size=10),
            f'<circle cx="{lx + 9}" cy="{TOP + 32}" r="6" fill="none" stroke="{COLORS["pick"]}" stroke-width="2"/>',
            _text(lx + 24, TOP + 36, legend[1], anchor="start", size=10)]
    return _svg(out, title)


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
    xa = log_axis(xs + [ridge * 4, min(xs + [ridge]) / 4], LEFT, WIDTH - RIGHT)
    ya = log_axis([l[2] for l in layers] + [top * 1.5, min(r.bandwidth for r in roofs) * xa.lo], HEIGHT - BOTTOM,
                  TOP)
    out = _frame(title, xlabel, ylabel, xa, ya, fmt, fmt)
    for roof in roofs:
        path = " ".join(f"{xa(x):.1f},{ya(y):.1f}" for x, y in _roof_points(roof, xa, ya))
        dash = "" if roof.achieved else ' stroke-dasharray="5 4"'
        out.append(f'<polyline points="{path}" fill="none" stroke="{COLORS["roof"]}" stroke-width="1.2"{dash}/>')
        if roof.label:
            out.append(_text(WIDTH - RIGHT - 4, ya(roof.flops) - 4, roof.label, anchor="end", size=9))
    for name, x, y, bound in layers:
        out.append(f'<circle cx="{xa(x):.1f}" cy="{ya(y):.1f}" r="3" fill="{COLORS[bound]}" fill-opacity="0.75">'
                   f"<title>{escape(name)}</title></circle>")
    lx = LEFT + 10
    for i, bound in enumerate(("compute", "memory")):
        out += [f'<circle cx="{lx + 4}" cy="{TOP + 12 + 16 * i}" r="4" fill="{COLORS[bound]}"/>',
                _text(lx + 14, TOP + 16 + 16 * i, bound_labels[bound], anchor="start", size=10)]
    return _svg(out, title)
