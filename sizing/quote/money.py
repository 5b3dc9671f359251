"""Money in the report's currency. Every amount is an exact int of the currency's minor unit (US cents, whole
won), so the line items of a quote add up to its printed total to the last unit.

Prices in the hardware database are US dollars; ``Exchange.minor`` converts one to the report currency at the rate
the user set (``--fx``: units of the report currency per US dollar), rounding half up to the minor unit once per
unit price (a line's total is then unit x quantity, exact). Amounts the user types (``--budget``, ``--node-cost``,
``--kwh-price``) are in the report currency already.

Formats: USD with cents and thousands separators ($1,234,567.89); KRW without decimals, as the won has no minor
unit in use (ISO 4217 lists KRW with 0 decimals), with thousands separators (₩1,234,567).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from ..common.errors import SizingError

MAX_AMOUNT = Decimal(10) ** 18      # any amount or rate: far past a purchase, small enough for exact minor units


@dataclass(frozen=True)
class Currency:
    code: str          # ISO 4217
    symbol: str
    decimals: int      # digits of the minor unit (ISO 4217)


CURRENCIES = {c.code: c for c in (Currency("USD", "$", 2), Currency("KRW", "₩", 0))}
MAX_FX = Decimal(10 ** 6)        # units per US dollar: past every currency in use (the Iranian rial is ~10^5)


def currency(code: str) -> Currency:
    """The currency ``code`` names (any case); SizingError listing the valid codes."""
    found = CURRENCIES.get(str(code).strip().upper())
    if found is None:
        raise SizingError(f"--currency: unknown currency '{code}'; valid: {', '.join(CURRENCIES)}")
    return found


def decimal(name: str, text) -> Decimal:
    """A positive finite decimal from text or a number ('2e9', '1,380.5', 0.08); SizingError otherwise."""
    try:
        value = Decimal(str(text).strip().replace(",", "").replace("_", ""))
    except InvalidOperation:
        raise SizingError(f"{name}: '{text}' is not a number") from None
    if not value.is_finite() or value <= 0:
        raise SizingError(f"{name}: must be a positive number, got '{text}'")
    if value > MAX_AMOUNT:
        raise SizingError(f"{name}: '{text}' is past the limit of 10^18")
    return value


@dataclass(frozen=True)
class Exchange:
    """The report currency and how many of its units one US dollar buys (1 for USD)."""
    currency: Currency
    per_usd: Decimal

    def minor(self, usd) -> int:
        """US dollars (a float read as the decimal it was written as, or a Decimal) in minor units of the report
        currency: round_half_up(usd x per_usd x 10^decimals)."""
        return to_minor(Decimal(repr(usd)) if isinstance(usd, float) else Decimal(usd), self.currency,
                        self.per_usd)

    def amount(self, name: str, text) -> int:
        """An amount the user typed in the report currency (``--budget 2e9``) in minor units."""
        return to_minor(decimal(name, text), self.currency)

    def fmt(self, minor: int) -> str:
        return fmt(minor, self.currency)

    def fmt_whole(self, minor: int) -> str:
        """Rounded half up to whole units of the currency, for chart axes: '$500,000'."""
        return fmt(minor, self.currency, whole=True)

    def fmt_usd(self, usd) -> str:
        """A rate in US dollars (0.08 per kWh, 2.99 per hour) in the report currency, unrounded: '₩110.4'."""
        return fmt_rate(Decimal(repr(usd)) * self.per_usd, self.currency)

    def rate_text(self) -> str:
        """'1 USD = 1,380 KRW' (the rate as given, thousands separated)."""
        return f"1 USD = {self.per_usd.normalize():,f} {self.currency.code}"


def to_minor(major: Decimal, cur: Currency, times: Decimal = Decimal(1)) -> int:
    """``major x times`` units of ``cur`` in its minor unit, rounded half up."""
    return int((major * times * 10 ** cur.decimals).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def exchange(code: str, fx=None) -> Exchange:
    """The report currency and rate. USD needs no rate (``fx`` 1 or none); any other currency needs ``fx``, its
    units per US dollar, which the report states (there is no built-in rate: rates move daily)."""
    cur = currency(code)
    if fx is None:
        if cur.code != "USD":
            raise SizingError(f"--currency {cur.code} needs --fx, the {cur.code} per US dollar the report converts "
                              "at (e.g. --fx 1380)")
        return Exchange(cur, Decimal(1))
    rate = decimal("--fx", fx)
    if cur.code == "USD" and rate != 1:
        raise SizingError(f"--fx {fx}: the report is in USD, the database's currency; a rate is for another "
                          "--currency")
    if rate > MAX_FX:
        raise SizingError(f"--fx {fx}: more than {MAX_FX:,} {cur.code} per US dollar; give units per dollar")
    return Exchange(cur, rate)


def fmt(minor: int, cur: Currency, whole: bool = False) -> str:
    """Minor units as text: 123456789 cents -> '$1,234,567.89'; 2000000000 won -> '₩2,000,000,000'. ``whole``:
    rounded half up to whole units, no decimals ('$1,234,568')."""
    sign = "-" if minor < 0 else ""
    units, frac = divmod(abs(minor), 10 ** cur.decimals)
    if whole or not cur.decimals:
        return f"{sign}{cur.symbol}{units + (2 * frac >= 10 ** cur.decimals):,}"
    return f"{sign}{cur.symbol}{units:,}.{frac:0{cur.decimals}d}"


def fmt_rate(value: Decimal, cur: Currency) -> str:
    """A price per unit (kWh, hour) that may hold fractions of the minor unit: at least the currency's decimals,
    more where the value has them ($0.08, $0.125, ₩110.4)."""
    v = value.normalize()
    if v.as_tuple().exponent > -cur.decimals:
        v = v.quantize(Decimal(1).scaleb(-cur.decimals))
    return f"{cur.symbol}{v:,f}"


def major(minor: int, cur: Currency) -> int | float:
    """Minor units as a number of major units for JSON and CSV: an int for KRW, dollars with cents for USD."""
    if cur.decimals == 0:
        return minor
    return float(Decimal(minor).scaleb(-cur.decimals))
