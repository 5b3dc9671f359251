"""The whole cost of ownership past the devices and their servers: the cluster network, shared storage, racks,
installation, support and tax, each a purchase line (``core.LineItem``) with its estimate and source. Pure
functions; ``sizing.quote.recommend`` gives them the layout, ``sizing.quote.writers`` writes the lines.

A single server or workstation (one node) gets none of the cluster lines: its own drives hold the data, the vendor
assembles it and it needs no fabric. Support and tax apply to every purchase.

Network (a cluster of N >= 2 nodes). Each node gets c NICs of 400 Gb/s (ConnectX-7 class: the planner's network
figure, one 400 Gb/s NIC = 50 GB/s per device each way, sizing/predict/calibration.yaml). c is the fewest of 1, 2,
4, ... devices-per-node whose step time, re-predicted with c x 50 GB/s / devices-per-node per device (the
layout's data-parallel, pipeline and expert traffic over the network, sizing/predict/training.py), stays within
STEP_TOLERANCE of the step at one NIC per device. A serving fleet whose replicas sit inside a node carries only
requests and responses: one NIC per node; a replica across nodes gets one NIC per device.

Switches: P = N x c ports in a folded-Clos fat tree of radix k (64-port 400 Gb/s, InfiniBand QM9700 or Ethernet
Spectrum-4 class), full bisection (Leiserson 1985; Al-Fares, Loukissas and Vahdat 2008):

    P <= k:           one switch
    P <= k^2 / 2:     leaves = ceil(P / (k/2)), each k/2 ports down and k/2 up; spines = ceil(leaves x k/2 / k)
    P <= 2 (k/2)^L:   L tiers: L - 1 tiers of ceil(P / (k/2)) switches (leaves, aggregation), the top (core)
                      ceil(those x k/2 / k)

Links = P (node to leaf) + (k/2) x every switch below the top tier; two optical transceivers per link.

Storage (training clusters): a shared all-flash file system holding the data set (one epoch's samples: token ids
as 4-byte integers, other inputs 1 byte per element, uint8 pixels) and CHECKPOINTS_KEPT checkpoints of weights
plus optimizer state, in whole TB.
Racks (clusters): nodes per rack = max(1, floor(RACK_KW / node kW)), node kW = TDP x devices per node x
SERVER_OVERHEAD; racks = ceil(nodes / nodes per rack).
Installation (clusters) = INSTALL_SHARE x hardware; support = SUPPORT_SHARE x hardware per year of the horizon
after the first (the first year is under the vendor's warranty); tax = rate x every line above (hardware,
installation, support), rounded half up to the minor unit once. Electricity is taken as priced (--kwh-price).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from ..common.errors import SizingError
from .core import TCO_REFERENCE, Assumption, LineItem, Message
from .money import Exchange

NIC_GBPS = 400
NIC_USD = Decimal(1200)
NIC_DATE = "2026"
NIC_SOURCE = ("10 ConnectX-7 400 Gb/s NICs per HGX node at about $12,000 a node (infra-economics.com, 2026); "
              "NVIDIA ConnectX-7 user manual: single-port OSFP 400 Gb/s NDR / 400GbE")
SWITCH_RADIX = 64
SWITCH_USD = Decimal(36000)
SWITCH_DATE = "2024-08"
SWITCH_SOURCE = ("64-port 400 Gb/s InfiniBand switch about $36,000 (FS.com's; NVIDIA's QM9700 about $50,000): "
                 "tech-talk-cto 'H100 Freakonomics' sheet, Aug 2024; infra-economics.com: QM9700 about $35,000")
OPTIC_USD = Decimal(750)
OPTIC_DATE = "2026"
OPTIC_SOURCE = "OSFP 400G transceivers $500-1,000 each, the midpoint (infra-economics.com, 2026)"
STORAGE_USD_PER_TB = Decimal(250)
STORAGE_DATE = "2026"
STORAGE_SOURCE = "Lustre/GPFS all-flash parallel file system about $250,000 per PB (infra-economics.com, 2026)"
CHECKPOINTS_KEPT = 3
TOKEN_BYTES = 4
RACK_KW = 40
RACK_USD = Decimal(4500)
RACK_DATE = "2026"
RACK_SOURCE = ("42U rack about $4,500 (Rittal US blog, 2026); 40 kW a rack: NVIDIA DGX SuperPOD H100 puts 4 systems "
               "of 10.2 kW in a rack (40.8 kW)")
SERVER_OVERHEAD = Decimal("1.3")
INSTALL_SHARE = Decimal("0.10")
INSTALL_SOURCE = ("a specialist vendor's premium of 10-20% over parts for building a cluster, the low end "
                  "(gauravmanek.com 'Designing a cluster', 2017)")
SUPPORT_SHARE = Decimal("0.06")
SUPPORT_SOURCE = ("annual maintenance 4-8% of the purchase price after the first year, the midpoint (CTWatch "
                  "Quarterly, 'Designing and supporting high-end computational facilities', 2006)")
STEP_TOLERANCE = 0.01
TB = 10 ** 12
YEAR_S = 31557600


@dataclass(frozen=True)
class Fabric:
    """A fat tree: switches per tier, bottom (leaf) first, and the links (node to leaf and between tiers)."""
    ports: int
    tiers: tuple[int, ...]
    links: int


def fat_tree(ports: int, radix: int = SWITCH_RADIX) -> Fabric:
    """The switches of a full-bisection folded-Clos fat tree for ``ports`` node ports (module docstring): the fewest
    tiers L with ports <= 2 (radix/2)^L; every tier below the top has ceil(ports / (radix / 2)) switches, the top
    ceil(those x radix/2 / radix)."""
    half = radix // 2
    if ports <= radix:
        return Fabric(ports, (1,), ports)
    levels = 2
    while ports > 2 * half ** levels:
        levels += 1
    below = -(-ports // half)
    top = -(-below * half // radix)
    tiers = (below,) * (levels - 1) + (top,)
    return Fabric(ports, tiers, ports + half * below * (levels - 1))


def nics_per_node(step_at, per_node: int, network_gbs: float, tolerance: float = STEP_TOLERANCE) -> int:
    """The fewest NICs of NIC_GBPS per node (1, 2, 4, ... per_node) whose step time ``step_at(GB/s per device)``
    stays within ``tolerance`` of the step at the planner's ``network_gbs`` per device; per_node when none is."""
    base = step_at(network_gbs)
    counts = sorted({1 << k for k in range(per_node.bit_length()) if 1 << k < per_node} | {per_node})
    for c in counts:
        if step_at(c * NIC_GBPS / 8 / per_node) <= base * (1 + tolerance):
            return c
    return per_node


def dataset_bytes(samples: int, elements_per_sample: int, token_ids: bool) -> int:
    """Bytes of one epoch's data: samples x elements x (TOKEN_BYTES for token ids, else 1)."""
    return samples * elements_per_sample * (TOKEN_BYTES if token_ids else 1)


def checkpoint_bytes(weights: int, optimizer: int) -> int:
    """One checkpoint: the weights and the optimizer state (gradients and activations are not saved)."""
    return weights + optimizer


@dataclass(frozen=True)
class Cluster:
    """What the cluster lines are sized from: whole ``nodes`` of ``per_node`` devices, ``nics`` per node (None: no
    network), the device's TDP (None: no rack line), the bytes to store (None: no storage line)."""
    nodes: int
    per_node: int
    nics: int | None
    tdp_w: float | None
    storage_bytes: int | None


def _share(name: str, share: Decimal, base: int, quantity: int, source: str, kind: str = "estimate") -> LineItem:
    """A line priced as a share of ``base`` minor units, rounded half up once; its name is the share ('10%')."""
    unit = int((share * base).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return LineItem(name, f"{(share * 100).normalize():f}%", unit, quantity, kind, "", source)


def cluster_items(c: Cluster, exchange: Exchange) -> tuple[LineItem, ...]:
    """The network, storage and rack lines of a cluster (none for one node)."""
    if c.nodes < 2:
        return ()
    out = []
    if c.nics:
        fabric = fat_tree(c.nodes * c.nics)
        out.append(LineItem("nic", str(NIC_GBPS), exchange.minor(NIC_USD), c.nodes * c.nics, "estimate", NIC_DATE,
                            NIC_SOURCE))
        levels = len(fabric.tiers)
        names = (("switch",) if levels == 1 else ("switch_leaf", "switch_spine") if levels == 2 else
                 ("switch_leaf",) + ("switch_aggregation",) * (levels - 2) + ("switch_core",))
        out += [LineItem(n, str(SWITCH_RADIX), exchange.minor(SWITCH_USD), k, "estimate", SWITCH_DATE, SWITCH_SOURCE)
                for n, k in zip(names, fabric.tiers)]
        out.append(LineItem("optics", str(NIC_GBPS), exchange.minor(OPTIC_USD), 2 * fabric.links, "estimate",
                            OPTIC_DATE, OPTIC_SOURCE))
    if c.storage_bytes is not None:
        out.append(LineItem("storage", str(CHECKPOINTS_KEPT), exchange.minor(STORAGE_USD_PER_TB),
                            max(1, -(-c.storage_bytes // TB)), "estimate", STORAGE_DATE, STORAGE_SOURCE))
    if c.tdp_w is not None:
        node_kw = Decimal(repr(float(c.tdp_w))) * c.per_node * SERVER_OVERHEAD / 1000
        per_rack = max(1, int(RACK_KW // node_kw))
        out.append(LineItem("rack", str(RACK_KW), exchange.minor(RACK_USD), -(-c.nodes // per_rack), "estimate",
                            RACK_DATE, RACK_SOURCE))
    return tuple(out)


def support_years(horizon_s: float) -> int:
    """Years of support bought: the horizon in whole years, rounded up, less the first (under warranty)."""
    return max(0, math.ceil(horizon_s / YEAR_S - 1e-9) - 1)


def ownership_items(items: tuple[LineItem, ...], c: Cluster, exchange: Exchange, horizon_s: float,
                    tax_rate: Decimal | None) -> tuple[LineItem, ...]:
    """``items`` (devices and servers) with the cluster lines, installation (clusters), support and tax added."""
    out = list(items) + list(cluster_items(c, exchange))
    hardware = sum(i.total for i in out)
    if c.nodes >= 2:
        out.append(_share("installation", INSTALL_SHARE, hardware, 1, INSTALL_SOURCE))
    years = support_years(horizon_s)
    if years:
        out.append(_share("support", SUPPORT_SHARE, hardware, years, SUPPORT_SOURCE))
    if tax_rate:
        taxable = sum(i.total for i in out)
        out.append(_share("tax", tax_rate / 100, taxable, 1, "the rate given with --tax-rate", "given"))
    return tuple(out)


def parse_tax_rate(text) -> Decimal | None:
    """--tax-rate PCT: a percentage from 0 to 100 ('10', '10%', '7.5'); None when not given."""
    if text is None:
        return None
    raw = str(text).strip().rstrip("%").strip()
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or not 0 <= value <= 100:
        raise SizingError(f"--tax-rate: '{text}' is not a percentage from 0 to 100 (e.g. 10 for 10% VAT)")
    return value


def assumptions(tax_rate: Decimal | None) -> list[Assumption]:
    """The assumption lines of the cluster, installation, support and tax lines."""
    out = [
        Assumption(Message("as_network", {"gbps": NIC_GBPS, "radix": SWITCH_RADIX,
                                          "tolerance": f"{STEP_TOLERANCE:.0%}"}),
                   f"sizing/quote/tco.py; {SWITCH_SOURCE}"),
        Assumption(Message("as_storage", {"kept": CHECKPOINTS_KEPT}), STORAGE_SOURCE),
        Assumption(Message("as_rack", {"kw": RACK_KW, "overhead": f"{SERVER_OVERHEAD}"}),
                   f"{RACK_SOURCE}; server overhead about 1.3 ({TCO_REFERENCE})"),
        Assumption(Message("as_install", {"share": f"{INSTALL_SHARE:.0%}"}), INSTALL_SOURCE),
        Assumption(Message("as_support", {"share": f"{SUPPORT_SHARE:.0%}"}), SUPPORT_SOURCE),
    ]
    if tax_rate:
        out.append(Assumption(Message("as_tax", {"rate": f"{tax_rate.normalize():f}%"}), "--tax-rate"))
    else:
        out.append(Assumption(Message("as_tax_none"), "--tax-rate"))
    return out
