"""Device records: one dataclass for every device, whether it comes from the shipped hardware database
(hwdb/*.yaml), a user's file (``--hwdb FILE``, ``SIZING_HWDB``) or ``sizing bench --save`` (the device ``local``).

The record schema is documented in hwdb/README.md. Units are those of vendor datasheets: memory in GB (10**9 bytes),
bandwidths in GB/s, peaks in dense TFLOP/s (int8 in dense TOP/s), power in W, prices in US dollars. The exact-int
properties (``memory_bytes``, ``memory_bw_bytes_per_s``, ``peak_per_s``) convert the printed decimal figure without
float rounding: a figure written 1638.4 GB/s is exactly 1_638_400_000_000 B/s.

Validation lives in the dataclasses' ``__post_init__`` (so a Device built in code is as checked as one read from
YAML); ``device_from_record`` adds the checks only a plain dict needs (required and unknown keys) and, given the
file's line map (``sizing.common.yamlsafe``), turns every error into one line naming file, line, record and field.
Only pyyaml is imported: loading the database stays cheap.
"""
from __future__ import annotations

import datetime
import os
import re
from dataclasses import MISSING, dataclass, fields
from decimal import Decimal
from functools import lru_cache

from ..common import yamlsafe
from ..common.errors import SizingError, closest

PRECISIONS = ("fp64", "fp64_tensor", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")
KINDS = ("gpu", "cpu", "accelerator")
PRICE_KINDS = ("list", "msrp", "street", "estimate", "quote")
LOCAL_ID = "local"

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")

# (low, high) bounds that catch a wrong unit (TB/s for GB/s, GFLOP/s for TFLOP/s) without refusing real hardware.
_RANGES = {
    "memory_gb": (0.001, 100_000),          # a few MB of SRAM .. a large CPU node
    "memory_bw_gbs": (1, 100_000),          # a laptop's DDR .. well past HBM3e (8,000)
    "peak_tflops": (0.001, 100_000),        # one CPU core .. well past a Blackwell GPU at fp8 (5,000)
    "tdp_w": (1, 10_000),
    "interconnect_gbs": (0.1, 100_000),
    "release_year": (1990, 2100),
    "devices_per_node": (1, 100_000),
    "usd": (0.01, 100_000_000),
    "usd_per_hour": (0.0001, 100_000),
    "call_overhead_us": (0.001, 100_000),   # a GPU's kernel launch (5 us) .. a slow interpreter's layer call
    "step_overhead_us": (0.001, 10_000_000),
}


class RecordError(SizingError):
    """A bad value at ``path`` (a tuple of keys and indices inside one record)."""

    def __init__(self, path: tuple, message: str):
        super().__init__(f"{'.'.join(map(str, path))}: {message}")
        self.path = path
        self.reason = message


def _check_number(path, value, bounds, unit="", integer=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise RecordError(path, f"must be {'an integer' if integer else 'a number'}{unit and ' in ' + unit}, "
                                f"got {value!r}")
    lo, hi = bounds
    if not lo <= value <= hi:
        raise RecordError(path, f"{value} is outside the plausible range {lo:g}..{hi:g}{unit and ' ' + unit}"
                                " (check the unit)")


def _check_text(path, value, optional=True):
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise RecordError(path, f"must be a non-empty string, got {value!r}")


def _check_choice(path, value, choices):
    if value not in choices:
        raise RecordError(path, f"'{value}' is not one of {', '.join(choices)}{closest(value, choices)}")


def _check_date(path, value):
    ok = isinstance(value, str) and _DATE.match(value)
    if ok:
        try:
            datetime.date.fromisoformat((value + "-01-01")[:10] if len(value) < 10 else value)
        except ValueError:
            ok = False
    if not ok:
        raise RecordError(path, f"must be a date YYYY, YYYY-MM or YYYY-MM-DD, got {value!r}")


def _check_sweep(sweep) -> None:
    what = "must map a precision to a list of [m, k, n, GFLOP/s] rows (the shapes `sizing bench` timed)"
    if not isinstance(sweep, dict) or not sweep:
        raise RecordError(("gemm_sweep",), what)
    for prec, rows in sweep.items():
        _check_choice(("gemm_sweep", prec), prec, PRECISIONS)
        if not isinstance(rows, list) or not rows or not all(isinstance(r, list) and len(r) == 4 for r in rows):
            raise RecordError(("gemm_sweep", prec), what)
        for i, (m, k, n, rate) in enumerate(rows):
            for j, dim in enumerate((m, k, n)):
                _check_number(("gemm_sweep", prec, i, j), dim, (1, 10 ** 9), integer=True)
            _check_number(("gemm_sweep", prec, i, 3), rate, (0.001, 100_000_000), "GFLOP/s")


EXECUTORS = ("sizing", "pytorch")       # our Numba executor (`sizing check`), PyTorch's eager CPU step
# layer classes whose fixed cost per layer and achieved rate `sizing bench` measures (sizing/hardware/bench/chains.py)
LAYER_CLASSES = ("linear", "conv", "depthwise", "batchnorm", "rownorm", "elementwise", "pool", "attention")


def _check_executors(executors) -> None:
    """{executor: {step_us, loss_us, layer_us: {class: us}, wide_us: {class: us}, shapes_us: {shape: us}, threads,
    version}} (``sizing bench``); the shapes are those the bench times beyond each class's wide layer (layer_us also
    takes a fixed-cost shape's name: sizing/hardware/bench/chains.py ``Shape.fixed``)."""
    from .bench.chains import SHAPES

    what = ("must map an executor (" + ", ".join(EXECUTORS) + ") to {step_us, loss_us, layer_us, wide_us, "
            "shapes_us, version}, as `sizing bench` writes it")
    if not isinstance(executors, dict) or not executors:
        raise RecordError(("executors",), what)
    for name, terms in executors.items():
        _check_choice(("executors", name), name, EXECUTORS)
        if not isinstance(terms, dict) or not isinstance(terms.get("layer_us"), dict):
            raise RecordError(("executors", name), what)
        for key in terms:
            _check_choice(("executors", name, key), key, ("step_us", "loss_us", "layer_us", "wide_us", "shapes_us",
                                                          "threads", "version"))
        for key in ("step_us", "loss_us"):      # absent when noise left a chain's intercept at or below zero
            if key in terms:
                _check_number(("executors", name, key), terms[key], _RANGES["step_overhead_us"], "us")
        if "threads" in terms:                  # absent in a profile made before the bench recorded it
            _check_number(("executors", name, "threads"), terms["threads"], (1, 100_000), integer=True)
        _check_text(("executors", name, "version"), terms.get("version"))
        paths = tuple(s for s, shape in SHAPES.items() if shape.fixed)      # another code path's fixed cost
        for key, bounds, names in (("layer_us", _RANGES["call_overhead_us"], LAYER_CLASSES + paths),
                                   ("wide_us", _RANGES["step_overhead_us"], LAYER_CLASSES),
                                   ("shapes_us", _RANGES["step_overhead_us"], tuple(SHAPES))):
            table = terms.get(key, {})
            if not isinstance(table, dict):
                raise RecordError(("executors", name, key), what)
            for cls, value in table.items():
                _check_choice(("executors", name, key, cls), cls, names)
                _check_number(("executors", name, key, cls), value, bounds)


@lru_cache(maxsize=4096)
def exact(figure: float, scale: int) -> int:
    """``figure * scale`` as an exact int, reading the figure as the decimal it was written as (repr). Cached: the
    planner reads a device's peaks and memory once per layout it predicts."""
    return int(Decimal(repr(figure)) * scale)


@dataclass(frozen=True)
class Price:
    """What one device (or, as ``node_price``, one usual server) costs: US dollars, the kind of figure
    (list, msrp, street, estimate, or a user's quote), when and where it was stated."""
    usd: float
    kind: str
    date: str
    source: str
    note: str | None = None

    def __post_init__(self):
        _check_number(("usd",), self.usd, _RANGES["usd"], "USD")
        _check_choice(("kind",), self.kind, PRICE_KINDS)
        _check_date(("date",), self.date)
        _check_text(("source",), self.source, optional=False)
        _check_text(("note",), self.note)


@dataclass(frozen=True)
class CloudRate:
    """An on-demand rental rate per device-hour (an instance's rate divided by its devices)."""
    provider: str
    offer: str
    usd_per_hour: float
    date: str
    source: str
    note: str | None = None

    def __post_init__(self):
        _check_text(("provider",), self.provider, optional=False)
        _check_text(("offer",), self.offer, optional=False)
        _check_number(("usd_per_hour",), self.usd_per_hour, _RANGES["usd_per_hour"], "USD per device-hour")
        _check_date(("date",), self.date)
        _check_text(("source",), self.source, optional=False)
        _check_text(("note",), self.note)


# Figures that need a source: either ``sources[<field>]`` (``sources['peak_tflops.<precision>']`` for one
# precision) or the record-wide ``sources['record']``. Prices and cloud rates carry their own ``source``.
FIGURES = ("form_factor", "release_year", "memory_gb", "memory_type", "memory_bw_gbs", "peak_tflops", "tdp_w",
           "interconnect", "interconnect_gbs", "devices_per_node", "discontinued", "cloud_only", "licence",
           "call_overhead_us", "step_overhead_us", "gemm_sweep", "executors")
SOURCE_KEYS = ("record",) + FIGURES + tuple(f"peak_tflops.{p}" for p in PRECISIONS)


@dataclass(frozen=True, kw_only=True)
class Device:
    """One device. ``peak_tflops`` maps a precision (PRECISIONS) to its dense peak; a precision that is missing
    is not supported. ``memory_gb`` may be None only for a CPU (its memory is the server's DIMMs).
    ``devices_per_node``: devices in the usual server (GB200: the 72-GPU NVLink domain); ``interconnect_gbs``
    is per device, as its source prints it (often bidirectional; notes say which). ``family_default``: the part a
    family name means when it matches several devices (``find_device``); ``discontinued``: the vendor has ended
    the part's sale (True needs ``sources['discontinued']``), None when unknown; ``cloud_only``: the part is only
    rented, never sold (True needs ``sources['cloud_only']`` and allows no price: its cost is ``cloud``);
    ``licence``: terms a buyer must know (GeForce cards: no data-centre deployment under the driver licence).
    ``call_overhead_us`` and ``step_overhead_us``: the fixed cost of one kernel call and of one training step
    beside their work, as ``sizing bench`` measures them for our executor (sizing/hardware/bench/measure.py ``call_overhead``); None:
    not measured (the prediction then has no such term). ``gemm_sweep``: precision -> [m, k, n, GFLOP/s] rows,
    the rate measured for each product shape (``sizing bench``), from which a matrix product's rate is read by
    its shape (sizing/predict/roofline.py ``gemm_rate``); None: every product at ``peak_tflops``. ``executors``:
    per executor (EXECUTORS) the fixed cost of a training step (``step_us``) and of one layer of each class in a
    training step (``layer_us``: forward, backward, update), and the time beyond that fixed cost of one layer of
    the class at a realistic size (``wide_us``: the bench's wide layer, sizing/hardware/bench/chains.py) and at
    the other shapes the bench times (``shapes_us``: chains.py ``SHAPES``), as ``sizing bench`` measures them;
    None: not measured.
    Fields are in the order of a YAML record (hwdb/README.md); build one with keywords."""
    id: str
    vendor: str
    model: str
    kind: str
    form_factor: str | None = None
    release_year: int | None = None
    memory_gb: float | None = None
    memory_type: str | None = None
    memory_bw_gbs: float
    peak_tflops: dict
    tdp_w: float | None = None
    interconnect: str | None = None
    interconnect_gbs: float | None = None
    devices_per_node: int = 1
    family_default: bool = False
    discontinued: bool | None = None
    cloud_only: bool | None = None
    licence: str | None = None
    price: Price | None = None
    node_price: Price | None = None
    cloud: tuple = ()
    call_overhead_us: float | None = None
    step_overhead_us: float | None = None
    gemm_sweep: dict | None = None
    executors: dict | None = None
    sources: dict
    notes: str | None = None

    def __post_init__(self):
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise RecordError(("id",), f"{self.id!r} is not a short slug (lowercase letters, digits, '.', '-', "
                                       "'_'; e.g. h100-sxm)")
        for name in ("vendor", "model"):
            _check_text((name,), getattr(self, name), optional=False)
        for name in ("memory_type", "form_factor", "interconnect", "licence", "notes"):
            _check_text((name,), getattr(self, name))
        _check_choice(("kind",), self.kind, KINDS)
        if self.memory_gb is None and self.kind != "cpu":
            raise RecordError(("memory_gb",), f"is required for a {self.kind} (only a CPU may leave it out)")
        for name, unit in (("memory_gb", "GB"), ("memory_bw_gbs", "GB/s"), ("tdp_w", "W"),
                           ("interconnect_gbs", "GB/s"), ("call_overhead_us", "us"), ("step_overhead_us", "us")):
            if getattr(self, name) is not None:
                _check_number((name,), getattr(self, name), _RANGES[name], unit)
        for name in ("release_year", "devices_per_node"):
            if getattr(self, name) is not None:
                _check_number((name,), getattr(self, name), _RANGES[name], integer=True)
        for name, optional in (("family_default", False), ("discontinued", True), ("cloud_only", True)):
            value = getattr(self, name)
            if not isinstance(value, bool) and not (optional and value is None):
                raise RecordError((name,), f"must be true or false, got {value!r}")
        if not isinstance(self.peak_tflops, dict) or not self.peak_tflops:
            raise RecordError(("peak_tflops",), f"must map at least one precision ({', '.join(PRECISIONS)}) to "
                                                "its dense peak in TFLOP/s")
        for prec, value in self.peak_tflops.items():
            _check_choice(("peak_tflops", prec), prec, PRECISIONS)
            _check_number(("peak_tflops", prec), value, _RANGES["peak_tflops"],
                          "TOP/s" if prec == "int8" else "TFLOP/s (omit a precision the device lacks)")
        if self.gemm_sweep is not None:
            _check_sweep(self.gemm_sweep)
        if self.executors is not None:
            _check_executors(self.executors)
        if not isinstance(self.sources, dict):
            raise RecordError(("sources",), "must map 'record' or a field name to the source of that figure")
        for key, text in self.sources.items():
            _check_choice(("sources", key), key, SOURCE_KEYS)
            _check_text(("sources", key), text, optional=False)
        for name in FIGURES:
            if getattr(self, name) is not None and self.source_of(name) is None:
                raise RecordError(("sources",), f"no source for {name}: add sources.record or sources.{name}")
        if self.discontinued and "discontinued" not in self.sources:
            raise RecordError(("sources",), "discontinued: true needs sources.discontinued (who announced the end "
                                            "of life)")
        if self.cloud_only and "cloud_only" not in self.sources:
            raise RecordError(("sources",), "cloud_only: true needs sources.cloud_only (who says the part is only "
                                            "rented, not sold)")
        for name in ("price", "node_price"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), Price):
                raise RecordError((name,), "must be a Price")
            if self.cloud_only and getattr(self, name) is not None:
                raise RecordError((name,), "a cloud_only device is not sold: give its cloud rates, not a price")
        if not isinstance(self.cloud, tuple) or not all(isinstance(c, CloudRate) for c in self.cloud):
            raise RecordError(("cloud",), "must be a tuple of CloudRate")

    def source_of(self, figure: str) -> str | None:
        """Where ``figure`` (a field, or 'peak_tflops.bf16') comes from: its own source, else the record's."""
        own = self.sources.get(figure)
        if own is None and figure.startswith("peak_tflops."):
            own = self.sources.get("peak_tflops")
        return own or self.sources.get("record")

    def precisions(self) -> tuple[str, ...]:
        """The precisions this device supports, in PRECISIONS order."""
        return tuple(p for p in PRECISIONS if p in self.peak_tflops)

    def peak_per_s(self, precision: str) -> int:
        """Dense peak in FLOP/s (int8: OP/s) as an exact int: peak_tflops[precision] x 10**12."""
        if precision not in self.peak_tflops:
            raise SizingError(f"device '{self.id}' has no {precision} peak; it has "
                              f"{', '.join(self.precisions())}")
        return exact(self.peak_tflops[precision], 10 ** 12)

    @property
    def memory_bytes(self) -> int | None:
        """memory_gb x 10**9 (vendors print decimal GB), exact; None for a CPU without a fixed memory."""
        return None if self.memory_gb is None else exact(self.memory_gb, 10 ** 9)

    @property
    def memory_bw_bytes_per_s(self) -> int:
        """memory_bw_gbs x 10**9, exact."""
        return exact(self.memory_bw_gbs, 10 ** 9)

    @property
    def name(self) -> str:
        """'NVIDIA H100 SXM5 80GB'."""
        return f"{self.vendor} {self.model}"

    def to_record(self) -> dict:
        """The plain dict (one YAML record) that ``device_from_record`` reads back to an equal Device.
        None, empty and default values are left out; ``peak_tflops`` is in PRECISIONS order."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if (value is None or value == () or (f.name == "devices_per_node" and value == 1)
                    or (f.name == "family_default" and value is False)):
                continue
            if f.name == "peak_tflops":
                value = {p: value[p] for p in self.precisions()}
            elif isinstance(value, Price):
                value = _plain(value)
            elif f.name == "cloud":
                value = [_plain(c) for c in value]
            elif isinstance(value, dict):
                value = dict(value)
            out[f.name] = value
        return out


def _plain(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in fields(obj) if getattr(obj, f.name) is not None}


def _keys(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _required(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING)


def _date_text(value):
    """YAML reads 2024-06-13 as a date and 2024 as an int; the record keeps the text."""
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _build(cls, data, path):
    """``cls(**data)`` after checking data is a mapping with all required and no unknown keys; errors carry
    ``path`` in front of the field's own."""
    if not isinstance(data, dict):
        raise RecordError(path, f"must be a mapping with keys {', '.join(_keys(cls))}")
    for key in data:
        if key not in _keys(cls):
            raise RecordError(path + (key,), f"unknown key; valid keys are {', '.join(_keys(cls))}"
                                             f"{closest(key, _keys(cls))}")
    for key in _required(cls):
        if key not in data:
            raise RecordError(path + (key,), "is required")
    kwargs = dict(data)
    if "date" in kwargs:
        kwargs["date"] = _date_text(kwargs["date"])
    if cls is Device:
        for key in ("price", "node_price"):
            if kwargs.get(key) is not None:
                kwargs[key] = _build(Price, kwargs[key], (key,))
        cloud = kwargs.get("cloud", [])
        if not isinstance(cloud, list):
            raise RecordError(("cloud",), "must be a list of rates (provider, offer, usd_per_hour, date, source)")
        kwargs["cloud"] = tuple(_build(CloudRate, c, ("cloud", i)) for i, c in enumerate(cloud))
    try:
        return cls(**kwargs)
    except RecordError as e:
        raise RecordError(path + e.path, e.reason) from None


def device_from_record(record, file: str | None = None, lines: dict | None = None, at: tuple = ()) -> Device:
    """A validated Device from one plain dict (one YAML record). ``lines`` (from ``sizing.common.yamlsafe``) and
    ``at`` (the record's path in that document) locate errors: 'FILE:LINE: device 'ID': FIELD: what is valid'."""
    try:
        return _build(Device, record, ())
    except RecordError as e:
        rid = record.get("id") if isinstance(record, dict) else None
        who = f"device '{rid}'" if isinstance(rid, str) else f"record {at[-1] + 1 if at else 1}"
        line = None
        for n in range(len(e.path), -1, -1):     # the innermost path that has a line
            line = (lines or {}).get(at + e.path[:n])
            if line:
                break
        raise SizingError(f"{who}: {e}", file, line) from None


# ---------------------------------------------------------------------------------------------------------------
# Files: the shipped database, this machine's bench profile, the user's overrides.

FILE_KEYS = ("devices",)


def local_profile_path() -> str:
    """Where ``sizing bench --save`` keeps this machine's profile (the device ``local``):
    $XDG_CACHE_HOME/sizing/local.yaml, by default ~/.cache/sizing/local.yaml."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):                 # the XDG spec: a relative value is ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sizing", LOCAL_ID + ".yaml")


def to_yaml(devices) -> str:
    """A hardware file holding ``devices`` (what ``--hwdb FILE`` and the bench profile read)."""
    import yaml

    return yaml.safe_dump({"devices": [d.to_record() for d in devices]}, sort_keys=False, allow_unicode=True,
                          width=110)


def read_records(path: str) -> list[tuple[dict, tuple, dict]]:
    """The raw records of one hardware file as (record, its path in the document, the file's line map), after
    checking the file's shape: a mapping whose 'devices' is a list of mappings with distinct string ids."""
    data, lines = yamlsafe.load(path)
    if not isinstance(data, dict) or "devices" not in data:
        raise SizingError("a hardware file is a mapping with the key 'devices': a list of device records "
                          "(hwdb/README.md)", path, 1)
    for key in data:
        if key not in FILE_KEYS:
            raise SizingError(f"unknown key '{key}'; a hardware file has only 'devices'{closest(key, FILE_KEYS)}",
                              path, lines.get((key,)))
    if not isinstance(data["devices"], list):
        raise SizingError("'devices' must be a list of device records", path, lines.get(("devices",)))
    out, seen = [], {}
    for i, rec in enumerate(data["devices"]):
        at = ("devices", i)
        rid = rec.get("id") if isinstance(rec, dict) else None
        if not isinstance(rid, str):
            raise SizingError(f"record {i + 1}: id: every record needs an id (a short slug like h100-sxm)", path,
                              lines.get(at + ("id",)) or lines.get(at))
        if rid in seen:
            raise SizingError(f"device '{rid}': id: duplicate id in this file (first at line {seen[rid]})", path,
                              lines.get(at + ("id",)))
        seen[rid] = lines.get(at + ("id",))
        out.append((rec, at, lines))
    return out


def shipped_files() -> list[str]:
    """The shipped database: every hwdb/*.yaml, in name order."""
    from importlib.resources import files

    return sorted(str(p) for p in files("sizing.hwdb").iterdir() if p.name.endswith(".yaml"))


@lru_cache(maxsize=1)
def shipped_devices() -> tuple[Device, ...]:
    """Every record of the shipped database, validated; ids are unique across its files and 'local' is not one."""
    where: dict[str, str] = {}
    out = []
    for path in shipped_files():
        for rec, at, lines in read_records(path):
            line = lines.get(at + ("id",))
            rid = rec["id"]
            if rid == LOCAL_ID:
                raise SizingError(f"device '{rid}': id: '{LOCAL_ID}' is reserved for this machine's bench profile",
                                  path, line)
            if rid in where:
                raise SizingError(f"device '{rid}': id: duplicate id (also at {where[rid]})", path, line)
            where[rid] = f"{path}:{line}"
            out.append(device_from_record(rec, path, lines, at))
    return tuple(out)


def override(base: Device, record: dict, file: str, lines: dict | None = None, at: tuple = ()) -> Device:
    """``base`` with the fields ``record`` gives replaced whole (``sources`` merged key by key). A replaced
    figure loses the base's source for it; unless the record cites one, its source is the user's file."""
    merged = {**base.to_record(), **record}
    sources = {k: v for k, v in base.sources.items()
               if not any(k == f or k.startswith(f + ".") for f in record if f in FIGURES)}
    sources.update({f: f"{file} (user override)" for f in record if f in FIGURES})
    own = record.get("sources", {})
    merged["sources"] = {**sources, **own} if isinstance(own, dict) else own
    return device_from_record(merged, file, lines, at)


def user_files(files=(), environ=None) -> list[str]:
    """The files that add to or override the shipped database, weakest first: this machine's bench profile
    (when it exists), then SIZING_HWDB (os.pathsep-separated), then ``--hwdb`` files in the order given."""
    environ = os.environ if environ is None else environ
    local = local_profile_path()
    env = [p for p in environ.get("SIZING_HWDB", "").split(os.pathsep) if p.strip()]
    return ([local] if os.path.exists(local) else []) + env + list(files)


def load_hwdb(files=(), environ=None) -> dict[str, Device]:
    """Every device by id: the shipped database, then each of ``user_files`` adding records or overriding them
    by id (a later file wins). The bench profile may hold only the device 'local'; a corrupt one is left out
    (it blocks no other device; ``--device local`` measures this machine again)."""
    db = {d.id: d for d in shipped_devices()}
    local = local_profile_path()
    for path in user_files(files, environ):
        try:
            records = read_records(path)
        except SizingError:
            if path == local:
                continue
            raise
        for rec, at, lines in records:
            rid = rec["id"]
            if path == local and rid != LOCAL_ID:
                raise SizingError(f"device '{rid}': id: this machine's bench profile may hold only the device "
                                  f"'{LOCAL_ID}'", path, lines.get(at + ("id",)))
            db[rid] = (override(db[rid], rec, path, lines, at) if rid in db
                       else device_from_record(rec, path, lines, at))
    return db


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def match_devices(db: dict[str, Device], name: str) -> list[Device]:
    """Devices a loose ``name`` means, by the first rule that finds any: the exact id; every word of the name is
    a whole word of the device's id, vendor or model; every word starts one of them; the name without spaces
    is part of the id or model without spaces. 'h100' gives the three H100 variants, 'mi300' the MI300X."""
    key = name.strip().lower()
    if key in db:
        return [db[key]]
    words = _words(key)
    if not words:
        return []
    vocab = {d.id: set(_words(f"{d.id} {d.vendor} {d.model}")) for d in db.values()}
    rules = (
        lambda d: all(w in vocab[d.id] for w in words),
        lambda d: all(any(t.startswith(w) for t in vocab[d.id]) for w in words),
        lambda d: any("".join(words) in "".join(_words(s)) for s in (d.id, d.model)),
    )
    for rule in rules:
        hits = [d for d in db.values() if rule(d)]
        if hits:
            return hits
    return []


def family_default(hits: list[Device]) -> Device | None:
    """The one device of ``hits`` (the devices a loose name matches, its family) marked ``family_default``, the
    part the family name means; None when there are fewer than two hits or not exactly one is marked."""
    marked = [d for d in hits if d.family_default]
    return marked[0] if len(hits) > 1 and len(marked) == 1 else None


def family_note(name: str, chosen: Device, hits: list[Device]) -> str:
    """The one line that says which part a family name was taken to mean."""
    others = ", ".join(d.id for d in hits if d is not chosen)
    return f"note: '{name}' names a family of {len(hits)} devices; using {chosen.id} (or {others})"


def find_device(db: dict[str, Device], name: str, say=None) -> Device:
    """The one device ``name`` means (``match_devices``). A name that matches several devices of which exactly one
    is marked ``family_default`` (a family name: 'h100', 'a100') means that one, and ``say`` (when given) gets
    ``family_note``; any other several, or none: SizingError."""
    hits = match_devices(db, name)
    if len(hits) == 1:
        return hits[0]
    chosen = family_default(hits)
    if chosen is not None:
        if say:
            say(family_note(name, chosen, hits))
        return chosen
    if hits:
        raise SizingError(f"'{name}' matches {len(hits)} devices: "
                          + ", ".join(f"{d.id} ({d.name})" for d in hits) + "; name one by its id")
    if name.strip().lower() == LOCAL_ID:
        raise SizingError(f"no bench profile for this machine yet ({local_profile_path()}); run "
                          "`sizing bench --save` to measure it")
    raise SizingError(f"unknown device '{name}' (`sizing hw list` shows them all){closest(name.strip().lower(), db)}")


# ---------------------------------------------------------------------------------------------------------------
# Views for `sizing hw list` and `sizing hw show` (pure: devices in, text out).

SORT_KEYS = PRECISIONS + ("memory_gb", "memory_bw_gbs", "tdp_w", "interconnect_gbs", "release_year", "price", "id",
                          "vendor")
CSV_FIELDS = (("id", "vendor", "model", "kind", "form_factor", "release_year", "memory_gb", "memory_type",
               "memory_bw_gbs") + tuple("int8_tops" if p == "int8" else f"{p}_tflops" for p in PRECISIONS)
              + ("tdp_w", "interconnect", "interconnect_gbs", "devices_per_node", "price_usd", "price_kind",
                 "price_date"))


def sort_value(d: Device, key: str):
    """What ``--sort key`` compares: a precision's peak, a field, or the price in USD (None when missing)."""
    if key in PRECISIONS:
        return d.peak_tflops.get(key)
    if key == "price":
        return d.price.usd if d.price else None
    return getattr(d, key)


def sort_devices(devices, key: str) -> list[Device]:
    """Numbers largest first, text in alphabetical order; devices without the figure last, in their order."""
    if key not in SORT_KEYS:
        raise SizingError(f"cannot sort by '{key}'; choose one of {', '.join(SORT_KEYS)}{closest(key, SORT_KEYS)}")
    have = [d for d in devices if sort_value(d, key) is not None]
    lacking = [d for d in devices if sort_value(d, key) is None]
    text = key in ("id", "vendor")
    return sorted(have, key=lambda d: sort_value(d, key), reverse=not text) + lacking
