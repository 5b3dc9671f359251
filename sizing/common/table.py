"""Terminal tables and paragraphs that fit a width (every table writer renders through ``table``).

The width is the terminal's (``terminal_width``: $COLUMNS, else the terminal's size when stdout is one, else 80
columns when piped); ``None`` (``--wide``) keeps every column at its full width. A table wider than that is fitted
in three steps, each tried only when the one before does not fit:

1. headers fold at their spaces down to the widest cell (rows stay one line each);
2. columns marked foldable wrap their cells (at spaces, after ``. _ /`` or a shape's x), widest first,
   down to their ``fold`` width;
3. columns with a ``drop`` priority are left out, the highest priority number first (then steps 1-2 again), and
   one line below the table names them and says that ``--wide`` shows them.

Cells are text the writer has already escaped (``text.terminal``); this module only lays them out.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass

PIPED = 80              # columns when stdout is not a terminal
GAP = "  "              # between columns
CONTINUED = " "         # begins a folded cell's later lines in a table with headers (which has no row rules)


@dataclass(frozen=True)
class Column:
    """One column: its header, alignment ('left' or 'right'), the narrowest width its cells may be wrapped to
    (None: never wrapped), and its drop priority (0: always shown; else left out when nothing else fits, the
    highest number first)."""
    head: str
    align: str = "left"
    fold: int | None = None
    drop: int = 0


def terminal_width(wide: bool = False) -> int | None:
    """Columns to fit: None with ``wide``; else $COLUMNS when it is a positive integer; else the terminal's width
    when stdout is a terminal; else 80 (piped)."""
    if wide:
        return None
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((PIPED, 24)).columns
    return PIPED


_BREAK = re.compile(r"(?<=[._/])(?=[^\d\s])|(?<=\D )|(?<=\dx)(?=\d)")


def fold(text: str, width: int, indent: str = "") -> list[str]:
    """``text`` in lines of at most ``width`` characters: broken at spaces (dropped) but not between a number
    and its unit, after . _ / before a letter, or at the x of a shape (1x1024); a piece longer than the line is
    cut. Lines after a paragraph's first begin with ``indent``."""
    lines: list[str] = []
    for para in str(text).split("\n"):
        line, room = "", width
        for piece in _BREAK.split(para):
            if len((line + piece).rstrip()) > room and line.strip():
                lines.append(line.rstrip())
                line, room, piece = indent, width, piece.lstrip(" ")
            while len((line + piece).rstrip()) > room:
                cut = max(room - len(line), 1)
                lines.append(line + piece[:cut])
                line, piece = indent, piece[cut:]
            line += piece
        lines.append(line.rstrip())
    return lines


def fill(text: str, width: int | None, indent: str = "  ") -> str:
    """A paragraph folded to ``width`` (None: one line), continuation lines indented by ``indent``."""
    return text if width is None else "\n".join(fold(text, width, indent))


def _head_min(head: str) -> int:
    return max((len(w) for w in head.split()), default=0)


def _cell_width(cell: str) -> int:
    return max((len(line) for line in cell.split("\n")), default=0)


def _widths(rows, columns, width: int | None, header: bool) -> list[int] | None:
    """The column widths that fit ``width`` (steps 1 and 2), or None when even the narrowest do not."""
    cells = [max((_cell_width(r[i]) for r in rows), default=0) for i in range(len(columns))]
    heads = [len(c.head) if header else 0 for c in columns]
    widths = [max(a, b) for a, b in zip(cells, heads)]
    if width is None:
        return widths
    budget = width - len(GAP) * (len(columns) - 1)
    if sum(widths) <= budget:
        return widths
    if header:        # step 1: fold headers, the widest first
        floor = [max(a, _head_min(c.head)) for a, c in zip(cells, columns)]
        widths = _shrink(widths, floor, budget)
    # step 2: wrap the foldable columns' cells, the widest first
    floor = [w if c.fold is None else max(min(c.fold, w), _head_min(c.head) if header else 1)
             for w, c in zip(widths, columns)]
    widths = _shrink(widths, floor, budget)
    return widths if sum(widths) <= budget else None


def _shrink(widths: list[int], floor: list[int], budget: int) -> list[int]:
    widths = list(widths)
    while sum(widths) > budget:
        i = max((i for i in range(len(widths)) if widths[i] > floor[i]), key=lambda i: widths[i], default=None)
        if i is None:
            break
        widths[i] -= 1
    return widths


def table(rows, columns, width: int | None, header: bool = True) -> str:
    """``rows`` (lists of str, one per column) under ``columns``' headers (``header``: with headers and a rule
    under them; else a plain two-space-separated layout), fitted to ``width`` as the module docstring says."""
    rows = [[str(c) for c in r] for r in rows]
    keep = list(range(len(columns)))
    widths = _widths(rows, columns, width, header)
    for priority in sorted({c.drop for c in columns if c.drop}, reverse=True):
        if widths is not None:
            break
        keep = [i for i in keep if columns[i].drop != priority]
        widths = _widths([[r[i] for i in keep] for r in rows], [columns[i] for i in keep], width, header)
    cols = [columns[i] for i in keep]
    if widths is None:            # nothing left to drop or fold: the narrowest layout, over-wide
        widths = _widths([[r[i] for i in keep] for r in rows], cols, None, header)
    lines = []
    if header:
        heads = [fold(c.head, w) for c, w in zip(cols, widths)]
        lines += _lines(heads, cols, widths)
        lines.append(GAP.join("-" * w for w in widths))
    for r in rows:
        lines += _lines([r[i].split("\n") if columns[i].fold is None else fold(r[i], w, CONTINUED if header else "")
                         for i, w in zip(keep, widths)], cols, widths)
    dropped = [c.head for c in columns if c not in cols]
    if dropped:
        lines.append(fill(f"(dropped to fit {width} columns: {', '.join(dropped)}; --wide shows them)", width))
    return "\n".join(lines)


def _lines(cells: list[list[str]], cols, widths) -> list[str]:
    """One table row (cells already split in lines) as text lines, each cell padded to its width."""
    height = max(len(c) for c in cells)
    out = []
    for k in range(height):
        parts = [(c[k] if k < len(c) else "") for c in cells]
        out.append(GAP.join(p.rjust(w) if col.align == "right" else p.ljust(w)
                            for p, col, w in zip(parts, cols, widths)).rstrip())
    return out
