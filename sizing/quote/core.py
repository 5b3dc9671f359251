"""What a quote states, and the arithmetic of total cost of ownership (TCO). Pure functions and frozen dataclasses;
``sizing.quote.recommend`` fills them from the performance model, ``sizing.quote.writers`` writes them.

Money is exact ints of the report currency's minor unit (``sizing.quote.money``). Over a horizon H (default 3 years):

    purchase = devices x device price + nodes x server cost      (a device priced one by one)
             = nodes x node price                                (a device priced as a whole server)
    power    = TDP x devices x PUE                               (kW, facility)
    energy   = power x hours x price per kWh                     (the horizon: hours = H; the job: its time)
    TCO      = purchase + energy over H
    cloud    = device-hours x hourly rate                        (the same job rented; serving: devices x H)

The default server cost (chassis, host CPUs, memory, network of one node, without its devices) is $4,000 per
device slot: NVIDIA's DGX H100 is about $270,000, about $32,000 of it non-GPU parts for 8 GPUs (SemiAnalysis
estimate, May 2023, via Epoch AI; hwdb/reference/cloud_and_tco.md). The default electricity price is the US
industrial average, about $0.08/kWh (same reference). Sources of the rest: sizing/predict/calibration.yaml (PUE) and each
price's own record in hwdb/*.yaml.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal

from ..common.errors import SizingError, closest
from .money import Exchange, to_minor

TCO_REFERENCE = "hwdb/reference/cloud_and_tco.md"
SERVER_USD_PER_SLOT = Decimal(32000) / 8
SERVER_PRICE_DATE = "2023-05"
SERVER_SOURCE = (f"DGX H100 about $270,000, about $32,000 of it non-GPU parts for 8 GPUs (SemiAnalysis estimate via "
                 f"Epoch AI; {TCO_REFERENCE})")
KWH_USD = Decimal("0.08")
KWH_SOURCE = f"US industrial electricity about $0.08/kWh, range $0.04-0.18 ({TCO_REFERENCE})"
DEFAULT_HORIZON = "3y"
MAX_DEVICES = 2 ** 17                       # 131,072: past the largest clusters built (about 10^5 GPUs)


# ---------------------------------------------------------------------------------------------------------------
# Typed values inside translatable messages: the writer formats each in the report's language and currency.

class Money(int):
    """An amount in minor units of the report currency."""


class Seconds(float):
    """A duration."""


class Bytes(int):
    """A size in bytes."""


@dataclass(frozen=True)
class Message:
    """A sentence of the report: ``key`` in sizing/quote_text.py, formatted with ``params``."""
    key: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Assumption:
    """A default or figure the numbers used, and where it comes from."""
    message: Message
    source: str


@dataclass(frozen=True)
class LineItem:
    """One purchase line: ``item`` is 'devices', 'server' (a node without its devices) or 'node' (a whole server,
    devices included), of ``name``; ``unit`` in minor units; the price's kind, date and source."""
    item: str
    name: str
    unit: int
    quantity: int
    kind: str
    date: str
    source: str

    @property
    def total(self) -> int:
        return self.unit * self.quantity


@dataclass(frozen=True)
class CloudCost:
    """Renting the same devices: the rate used (per device-hour, in US dollars as the database holds it) and the
    cost of the job (training) or of serving for the horizon (inference), in minor units."""
    provider: str
    offer: str
    usd_per_hour: float
    date: str
    source: str
    cost: int


@dataclass(frozen=True)
class Option:
    """One configuration: ``count`` devices of one type in ``nodes`` whole nodes. ``seconds``: time to train, or
    for inference the latency of one request batch. ``utilization``: model FLOPs / (time x devices x matrix peak).
    Money in minor units, None where the database has no figure."""
    device_id: str
    device_name: str
    count: int
    nodes: int
    per_node: int
    precision: str
    zero: int
    tensor_parallel: int
    replicas: int
    seconds: float
    meets: bool
    utilization: float
    peak_flops: int                       # matrix peak of one device at the precision, FLOP/s
    memory_per_device: int
    device_memory: int | None
    bound: str
    power_kw: float | None
    items: tuple[LineItem, ...] | None
    horizon_kwh: float | None
    horizon_energy: int | None
    job_kwh: float | None
    job_energy: int | None
    cloud: CloudCost | None
    global_batch: int
    steps: int | None = None              # training
    model_flops_per_step: int | None = None
    throughput: float | None = None       # inference: samples/s of all replicas
    fewer_seconds: float | None = None    # training: the time on the next smaller count (None: it does not fit)
    fewer_count: int | None = None        # training: that count
    offer: str = "sold"                   # sold | rented_only (cloud_only) | discontinued: see ``offer``
    prediction: object = field(default=None, compare=False, repr=False)

    @property
    def purchase(self) -> int | None:
        return None if self.items is None else sum(i.total for i in self.items)

    @property
    def tco(self) -> int | None:
        if self.items is None or self.horizon_energy is None:
            return None
        return self.purchase + self.horizon_energy

    @property
    def total_flops(self) -> int | None:
        """Model FLOPs of the whole job: FLOPs per step x steps (exact)."""
        return None if self.steps is None else self.model_flops_per_step * self.steps

    @property
    def effective_flops(self) -> float:
        """devices x peak x utilization, FLOP/s: total FLOPs / effective FLOPS = the time to train."""
        return self.count * self.peak_flops * self.utilization


@dataclass(frozen=True)
class Exclusion:
    """A candidate device left out, and why."""
    device_id: str
    message: Message


@dataclass(frozen=True)
class Roofline:
    """The pick's device and the model's layers on it: peaks in FLOP/s and bandwidth in bytes/s from the datasheet,
    the calibrated fractions the model achieves of them, and per layer (name, FLOPs / bytes, FLOPs / time, bound)."""
    device_name: str
    precision: str
    matrix_peak: int
    vector_peak: int
    bandwidth: int
    compute_fraction: float
    memory_fraction: float
    layers: tuple


@dataclass(frozen=True)
class Quote:
    """Everything the report states. ``options``: every configuration evaluated, best first; ``pick`` and
    ``alternatives`` (fastest, cheapest, lowest_power) are among them."""
    model: str
    source: str
    kind: str                             # training | inference
    workload: dict                        # batch, dtype, precision, samples or tokens, epochs, seq_len, targets
    exchange: Exchange
    horizon_s: float
    pue: float
    kwh_price: Decimal                    # report currency (major units) per kWh
    budget: int | None
    options: tuple[Option, ...]
    pick: Option | None
    alternatives: dict
    front: frozenset                      # indices into options on the cost-time Pareto front
    excluded: tuple[Exclusion, ...]
    findings: tuple[Message, ...]         # budget exclusions, shortfalls: what the reader must know first
    assumptions: tuple[Assumption, ...]
    model_notes: tuple[str, ...]          # the performance model's own notes for the pick (English)
    roofline: Roofline | None = None
    deadline_s: float | None = None
    date: str = ""                        # when the quote was made (ISO date)


# ---------------------------------------------------------------------------------------------------------------
# TCO arithmetic

def nodes_for(count: int, per_node: int) -> int:
    """Whole nodes holding ``count`` devices: ceil(count / per_node)."""
    return -(-count // per_node)


def buyable_counts(device, most: int) -> list[int]:
    """The device counts a buyer can order: a device goes in a server of 1, 2, 4 ... slots below its usual node
    (a workstation; rented: an instance of that many) and in whole nodes past it (8, 16, 24, 32, 48, ... for
    nodes of 8); a device sold only as a whole server (a node price, no unit price) in whole servers. A device
    without any price (on sale without one in the database, rented only, discontinued) is counted as one sold
    one by one, so its count is the fewest that meets the target, as a priced one's is."""
    node = device.devices_per_node
    whole = [node * f << k for f in (1, 3) for k in range(max(1, most // node).bit_length() + 1)]
    whole_only = device.price is None and device.node_price is not None
    small = [] if whole_only else [1 << k for k in range(node.bit_length()) if (1 << k) < node]
    return sorted(c for c in set(small) | set(whole) if c <= most)


def server_slots(count: int, per_node: int) -> tuple[int, int]:
    """(servers, slots per server) for ``count`` devices: one server of ``count`` slots below a node, else whole
    nodes."""
    return (1, count) if count < per_node else (nodes_for(count, per_node), per_node)


def server_item(per_node: int, nodes: int, exchange: Exchange, node_cost: int | None = None) -> LineItem:
    """The servers the devices go in (without the devices): ``node_cost`` per node as the user set it, else
    SERVER_USD_PER_SLOT x devices per node (module docstring)."""
    if node_cost is not None:
        return LineItem("server", str(per_node), node_cost, nodes, "quote", "", "--node-cost")
    return LineItem("server", str(per_node), exchange.minor(SERVER_USD_PER_SLOT * per_node), nodes, "estimate",
                    SERVER_PRICE_DATE, SERVER_SOURCE)


def purchase_items(device, count: int, exchange: Exchange, node_cost: int | None = None
                   ) -> tuple[LineItem, ...] | None:
    """The purchase lines for ``count`` devices (below a node: one server of that many slots), by the first rule
    that applies:
    1. the database prices a whole server (``node_price``) and no ``node_cost`` is set to add to a unit price:
       nodes x node price;
    2. the device has a unit price: devices x unit price + nodes x server (``server_item``);
    3. neither: None (the option cannot be costed)."""
    nodes, slots = server_slots(count, device.devices_per_node)
    whole = slots == device.devices_per_node
    if device.node_price is not None and (device.price is None or (node_cost is None and whole)):
        p = device.node_price
        return (LineItem("node", device.name, exchange.minor(p.usd), nodes, p.kind, p.date, p.source),)
    if device.price is not None:
        p = device.price
        return (LineItem("devices", device.name, exchange.minor(p.usd), count, p.kind, p.date, p.source),
                server_item(slots, nodes, exchange, node_cost))
    return None


def energy_cost(kwh: float, kwh_price: Decimal, exchange: Exchange) -> int:
    """kWh x price per kWh (report currency), in minor units."""
    return to_minor(Decimal(repr(kwh)) * kwh_price, exchange.currency)


def cloud_rate(device):
    """The rate the quote rents at: the most recent in the database (rates fell by half or more from 2023 to 2026),
    the lowest of those of that date; None when the device has none."""
    if not device.cloud:
        return None
    latest = max(c.date for c in device.cloud)
    return min((c for c in device.cloud if c.date == latest), key=lambda c: c.usd_per_hour)


def cloud_cost(device, device_hours: float, exchange: Exchange) -> CloudCost | None:
    """``device_hours`` rented at ``cloud_rate(device)``."""
    rate = cloud_rate(device)
    if rate is None:
        return None
    return CloudCost(rate.provider, rate.offer, rate.usd_per_hour, rate.date, rate.source,
                     exchange.minor(Decimal(repr(device_hours)) * Decimal(repr(rate.usd_per_hour))))


def pareto_front(points) -> frozenset:
    """Indices of the (x, y) points no other point dominates (as small or smaller in both, smaller in one): the
    options nothing beats on both time and cost. Sort by x then y; a point is on the front when its y is below
    every y before it (Kung, Luccio and Preparata 1975, in two dimensions). Equal points are all kept."""
    order = sorted(range(len(points)), key=lambda i: points[i])
    front, best = [], math.inf
    for i in order:
        x, y = points[i]
        if y < best or (front and points[front[-1]] == (x, y)):
            front.append(i)
            best = min(best, y)
    return frozenset(front)


# ---------------------------------------------------------------------------------------------------------------
# Input

PRICE_FIELDS = ("price", "node_price", "cloud")


def apply_prices(db: dict, path: str) -> dict:
    """The database with the prices of a price file (the hardware-file format of hwdb/README.md, records holding
    only ``id`` and ``price``, ``node_price`` or ``cloud``) in place of its own. A record's prices replace the
    device's: ``price`` alone drops the database's node price, ``node_price`` alone (a whole server, devices
    included) drops its unit price, ``cloud`` replaces the list of rates. Ids must be in the database."""
    from ..hardware.devices import override, read_records

    out = dict(db)
    for rec, at, lines in read_records(path):
        rid = rec["id"]
        line = lines.get(at + ("id",))
        if rid not in db:
            raise SizingError(f"device '{rid}': a price file prices devices of the database (`sizing hw list`; new "
                              f"devices: --hwdb FILE), and it has no '{rid}'{closest(rid, db)}", path, line)
        extra = [k for k in rec if k != "id" and k not in PRICE_FIELDS]
        if extra:
            raise SizingError(f"device '{rid}': {extra[0]}: a price file sets only {', '.join(PRICE_FIELDS)} "
                              "(other figures: --hwdb FILE)", path, lines.get(at + (extra[0],)) or line)
        if not any(k in rec for k in PRICE_FIELDS):
            raise SizingError(f"device '{rid}': sets no price; give {', '.join(PRICE_FIELDS)}", path, line)
        device = override(db[rid], rec, path, lines, at)
        if "price" in rec and "node_price" not in rec:
            device = replace(device, node_price=None)
        if "node_price" in rec and "price" not in rec:
            device = replace(device, price=None)
        out[rid] = device
    return out


def offer(device) -> str:
    """How a buyer gets the device: 'rented_only' (cloud_only: no price to fill, its cost is its cloud rate),
    'discontinued' (no current price to fill) or 'sold'."""
    return "rented_only" if device.cloud_only else "discontinued" if device.discontinued else "sold"


def status(option: Option, budget: int | None) -> str:
    """'ok' (meets the target, priced, within budget), 'over_budget', 'misses' (the target), or, meeting it
    without a price: 'unpriced' (sold, the database lacks its price), 'rented_only' or 'discontinued' (``offer``)."""
    if not option.meets:
        return "misses"
    if option.tco is None:
        return "unpriced" if option.offer == "sold" else option.offer
    if budget is not None and option.purchase > budget:
        return "over_budget"
    return "ok"
