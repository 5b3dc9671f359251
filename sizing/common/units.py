"""Human-readable numbers: SI prefixes for counts, IEC for bytes. Exact ints stay in JSON and CSV."""
from __future__ import annotations

_SI = ((10 ** 18, "E"), (10 ** 15, "P"), (10 ** 12, "T"), (10 ** 9, "G"), (10 ** 6, "M"), (10 ** 3, "k"))
_IEC = ((2 ** 60, "EiB"), (2 ** 50, "PiB"), (2 ** 40, "TiB"), (2 ** 30, "GiB"), (2 ** 20, "MiB"), (2 ** 10, "KiB"))


def si(n: int, unit: str = "") -> str:
    """4089184256 -> '4.09 G' + unit (three significant digits); small numbers exact."""
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
    """Seconds in the largest unit that keeps the figure at least 1: 5400 -> '1.50 h', 0.0123 -> '12.3 ms'."""
    for scale, unit in _DURATIONS:
        if abs(seconds) >= scale:
            return f"{_3sig(seconds / scale)} {unit}"
    return f"{seconds:.3g} s"
