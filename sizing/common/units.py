"""Human-readable numbers for the terminal, Markdown and HTML (exact ints stay in JSON and CSV); the convention is
docs/conventions.md's "Printed magnitudes":

- counts (params, MACs, FLOPs, FLOP/s): SI prefixes k M G T P E Z Y R Q, three significant digits, the unit
  joined to the prefix ('6.74 YFLOPs', '989 TFLOP/s'); past 1000 Q, scientific ('1.23e33');
- bytes: IEC prefixes KiB ... EiB, three significant digits ('98.0 MiB');
- durations: the largest of us, ms, s, min, h, days, years that keeps the figure at least 1, three significant
  digits, a whole number without decimals ('7.77 s', '1.50 h', '42 days').
"""
from __future__ import annotations

import re

from .errors import SizingError, closest

_SI = ((10 ** 30, "Q"), (10 ** 27, "R"), (10 ** 24, "Y"), (10 ** 21, "Z"), (10 ** 18, "E"), (10 ** 15, "P"),
       (10 ** 12, "T"), (10 ** 9, "G"), (10 ** 6, "M"), (10 ** 3, "k"))
_IEC = ((2 ** 60, "EiB"), (2 ** 50, "PiB"), (2 ** 40, "TiB"), (2 ** 30, "GiB"), (2 ** 20, "MiB"), (2 ** 10, "KiB"))


def si(n: int, unit: str = "") -> str:
    """4089184256 -> '4.09 G' + unit (three significant digits); small numbers exact; past 1000 Q scientific."""
    if abs(n) >= 1000 * _SI[0][0]:
        mantissa, exponent = f"{n:.2e}".split("e")
        return f"{mantissa}e{int(exponent)} {unit}".rstrip()
    for scale, prefix in _SI:
        if abs(n) >= scale:
            return f"{_3sig(n / scale)} {prefix}{unit}"
    return f"{n} {unit}".rstrip()


def iec(n: int) -> str:
    """Bytes with binary prefixes: 102760448 -> '98.0 MiB'."""
    for scale, prefix in _IEC:
        if abs(n) >= scale:
            return f"{_3sig(n / scale)} {prefix}"
    return f"{n} B"


def _3sig(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


_DURATIONS = ((365.25 * 86400, "years"), (86400, "days"), (3600, "h"), (60, "min"), (1, "s"), (1e-3, "ms"),
              (1e-6, "us"))


def duration(seconds: float) -> str:
    """Seconds in the largest unit that keeps the figure at least 1, three significant digits, a whole number
    without decimals: 5400 -> '1.50 h', 0.0123 -> '12.3 ms', 7770 -> '2.16 h', 3 * 365.25 * 86400 -> '3 years';
    under a microsecond, a fraction of one ('0.25 us'; the quote's languages name no smaller unit)."""
    for scale, unit in _DURATIONS:
        if abs(seconds) >= scale:
            number = _3sig(seconds / scale)
            return f"{number.rstrip('0').rstrip('.') if number.endswith(('.0', '.00')) else number} {unit}"
    return "0 s" if seconds == 0 else f"{seconds * 1e6:.3g} us"


_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hr": 3600, "hours": 3600, "d": 86400, "day": 86400,
          "days": 86400, "w": 604800, "wk": 604800, "weeks": 604800, "mo": 2629800, "months": 2629800,
          "y": 31557600, "yr": 31557600, "years": 31557600}
_DURATION = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]+)\s*$")
MAX_SECONDS = 100 * 31557600


def parse_duration(name: str, text: str) -> float:
    """'24h', '14d', '3y', '36mo', '90min' -> seconds (a month is 1/12 of a 365.25-day year). SizingError for no
    unit, an unknown unit, zero, or more than 100 years."""
    m = _DURATION.match(str(text).lower())
    if not m or m.group(2) not in _UNITS:
        unit = m.group(2) if m else ""
        raise SizingError(f"{name}: '{text}' is not a duration; write a number and a unit, e.g. 24h, 14d, 3y "
                          f"(units: s, min, h, d, w, mo, y){closest(unit, _UNITS) if unit else ''}")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not 0 < seconds <= MAX_SECONDS:
        raise SizingError(f"{name}: '{text}' is impossible; give a duration above zero and at most 100 years")
    return seconds
