"""The calibration table (sizing/predict/calibration.yaml, shipped with the package): the achieved compute and memory
fractions measured per device, the defaults the model assumes (PUE, network, overlap), the published training
runs, and the one factor fitted on the `calibrate` runs (framework efficiency).

The runs are compared with the model in sizing/predict/published.py. Only pyyaml is imported at load time.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from statistics import median

from ..common import yamlsafe
from ..hardware.devices import device_from_record, shipped_devices
from ..common.errors import SizingError, closest
from .serving import CURRENT_ENGINE, Efficiency, Engine
from .setup import Factors
from .workload import COMPUTE

USES = ("calibrate", "validate")
PUBLISHED = ("mfu", "hfu_tflops", "tflops", "tokens_per_s", "samples_per_s", "step_s", "device_hours")
RUN_KEYS = ("id", "use", "transformer", "zoo", "device", "devices", "dtype", "optimizer", "batch", "micro_batch",
            "tensor_parallel", "pipeline_parallel", "zero", "recompute", "network_gbs", "node_size", "tokens",
            "published", "source", "note", "software")
TRANSFORMER_KEYS = ("layers", "d_model", "heads", "kv_heads", "ffn", "mlp", "vocab", "seq_len", "tied", "dropout",
                    "embedding_dropout")
TOP_KEYS = ("fitted", "defaults", "gemm", "memory", "devices", "software", "runs", "serving")
SERVING_KEYS = ("id", "use", "model", "device", "tensor_parallel", "weights", "kv_cache", "mode", "concurrency",
                "prompt", "output", "published", "source", "note", "engine")
ENGINE_KEYS = ("kv_per_query_head", "note")
SERVING_PUBLISHED = ("tokens_per_s", "tpot_ms", "ttft_ms")
SOFTWARE_KEYS = ("note", "fused_attention", "sequence_parallel", "selective", "max_zero", "pipeline")


@dataclass(frozen=True)
class Measurement:
    """A sustained figure measured on one device: matmul TFLOP/s at a precision, or copy bandwidth in GB/s."""
    device: str
    value: float
    precision: str | None = None
    source: str = ""


@dataclass(frozen=True)
class Run:
    """One published training run with the configuration it was trained in (batch: global, in samples)."""
    id: str
    use: str
    device: str
    devices: int
    dtype: str
    batch: int
    published: str
    value: float
    source: str
    transformer: dict | None = None
    zoo: str | None = None
    optimizer: str = "adamw"
    micro_batch: int | None = None
    tensor_parallel: int | None = None      # None: not published (searched even with the published layout pinned)
    pipeline_parallel: int | None = None
    zero: int = 0
    recompute: bool = False
    network_gbs: float | None = None
    node_size: int | None = None
    tokens: int | None = None
    note: str | None = None
    software: str = "current"


@dataclass(frozen=True)
class ServingRun:
    """One published serving measurement: a transformer (``model``, a key of the table's models) on
    ``tensor_parallel`` devices, a request shape, and one figure."""
    id: str
    use: str
    model: dict
    device: str
    tensor_parallel: int
    weights: str
    kv_cache: str
    mode: str
    concurrency: int
    prompt: int
    output: int
    published: str
    value: float
    source: str
    engine: Engine = CURRENT_ENGINE     # what the engine's kernels did (serving.engines)


@dataclass(frozen=True)
class Calibration:
    framework_efficiency: float
    pue: float
    network_gbs: float
    overlap: float
    sources: dict
    gemm: tuple[Measurement, ...]
    memory: tuple[Measurement, ...]
    devices: dict                       # retired devices only the runs use: id -> Device
    runs: tuple[Run, ...]
    software: dict = None               # profile name -> what that framework can do (SOFTWARE_KEYS)
    serving_efficiency: Efficiency = Efficiency(1.0, 1.0)
    serving_runs: tuple = ()
    usable_memory: float = 1.0          # share of a device's memory a framework can fill
    launch_seconds: float = 0.0         # time to issue one kernel
    units: dict = None                  # device id -> streaming multiprocessors (wave quantization)
    goodput: float = 1.0                # share of a long run's wall clock spent training (published.compare)

    def device(self, device_id: str, db: dict):
        """A run's device: the hardware database's record, else the table's own (retired devices)."""
        return db.get(device_id) or self.devices[device_id]

    def _fraction(self, rows, device, db, what, figure) -> tuple[float, str]:
        """The measured fraction for ``device`` (mean of its rows), else the median of its vendor's, else of all."""
        fractions = [(self.device(m.device, db), m.value / figure(self.device(m.device, db), m)) for m in rows]
        own = [f for d, f in fractions if d.id == device.id]
        if own:
            value = sum(own) / len(own)
            return value, f"{what} fraction {value:.3f} measured on {device.id}"
        vendor = [f for d, f in fractions if d.vendor == device.vendor]
        pool, whose = (vendor, f"{device.vendor} devices") if vendor else ([f for _, f in fractions], "all devices")
        value = median(pool)
        return value, f"{what} fraction {value:.3f}: median of {whose} measured (none for {device.id})"

    def factors(self, device, precision: str, db: dict, network_gbs=None, overlap=None, pue=None,
                executor: str = "sizing") -> Factors:
        """The calibrated factors for ``device`` at ``precision`` (matmul rows at that precision on the device,
        else its bf16 rows, else other devices'); the bench profile (device 'local') holds measured sustained
        figures already, so its fractions are 1. The kernel issue time is the CUDA runtime's, so GPUs only (XLA
        runs a TPU step as one compiled program), as a floor; a device whose record has a measured
        ``call_overhead_us`` (a bench profile: our executor's cost per kernel call) has that instead, added to
        each kernel's work. A profile with measured ``executors`` terms predicts the step of ``executor`` ('sizing':
        our Numba executor, as `sizing check` runs it; 'pytorch': PyTorch's eager step) from them alone
        (sizing/predict/roofline.py ``executor_terms``): every cause is then measured, so no framework efficiency
        fitted on published GPU runs divides it. None keeps the table's default."""
        if device.id == "local":
            cf, mf, notes = 1.0, 1.0, ("device 'local': the bench profile's figures are measured, used as they are",)
        else:
            gemm = ([m for m in self.gemm if m.device == device.id and m.precision == precision]
                    or [m for m in self.gemm if m.device != device.id or m.precision == "bf16"])
            cf, cnote = self._fraction(gemm, device, db, "compute", lambda d, m: d.peak_tflops[m.precision])
            mf, mnote = self._fraction(self.memory, device, db, "memory", lambda d, m: d.memory_bw_gbs)
            notes = (cnote, mnote)
        measured = device.call_overhead_us
        if measured is None and device.id == "local":
            notes += ("device 'local': its bench profile has no measured call overhead (made before `sizing bench` "
                      "timed it), so no per-call term: run `sizing bench` again",)
        launch = measured * 1e-6 if measured is not None else self.launch_seconds if device.kind == "gpu" else 0.0
        terms, fe = None, self.framework_efficiency
        if executor in (device.executors or {}):
            from .roofline import executor_terms

            terms, fe, launch, measured = executor_terms(device, precision, executor), 1.0, 0.0, 0.0
        elif device.executors:
            notes += (f"device '{device.id}': its bench profile has no terms for the executor '{executor}' (has "
                      f"{', '.join(device.executors)}): the plain roofline",)
        return Factors(cf, mf, fe,
                       self.network_gbs if network_gbs is None else network_gbs,
                       self.overlap if overlap is None else overlap, self.pue if pue is None else pue, notes,
                       (self.units or {}).get(device.id), launch, self.usable_memory, measured is not None, terms)


# ---------------------------------------------------------------------------------------------------------------
# Loading

def _err(path, lines, where, message):
    return SizingError(message, path, lines.get(where) or lines.get(where[:-1]) or lines.get(where[:1]))


def _need(path, lines, where, mapping, key, kind):
    value = mapping.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _err(path, lines, where + (key,), f"{'.'.join(map(str, where + (key,)))}: needs "
                   f"{getattr(kind, '__name__', 'a number')}, got {value!r}")
    return value


def _software(path, lines, data) -> dict:
    profiles = data.get("software") or {"current": {}}
    for name, prof in profiles.items():
        for key, value in (prof or {}).items():
            if key not in SOFTWARE_KEYS:
                raise _err(path, lines, ("software", name, key), f"software '{name}': unknown key '{key}'"
                           f"{closest(key, SOFTWARE_KEYS)}")
            if key == "max_zero":
                if value not in (0, 1, 2, 3) or isinstance(value, bool):
                    raise _err(path, lines, ("software", name, key), f"software '{name}': max_zero is 0, 1, 2 or 3")
            elif key != "note" and not isinstance(value, bool):
                raise _err(path, lines, ("software", name, key), f"software '{name}': {key} is true or false")
    return {name: {k: v for k, v in (prof or {}).items() if k != "note"} for name, prof in profiles.items()}


def _serving(path, lines, data, known) -> tuple[Efficiency, tuple]:
    block = data.get("serving") or {}
    models, sources = block.get("models") or {}, block.get("sources") or {}
    engines = {}
    for name, rec in (block.get("engines") or {}).items():
        where = ("serving", "engines", name)
        if not isinstance(rec, dict) or any(k not in ENGINE_KEYS for k in rec) or \
                not isinstance(rec.get("kv_per_query_head", False), bool):
            raise _err(path, lines, where, f"serving engine '{name}': keys {', '.join(ENGINE_KEYS)} "
                       "(kv_per_query_head: true or false)")
        engines[name] = Engine(name, rec.get("kv_per_query_head", False))
    runs = []
    for i, rec in enumerate(block.get("runs") or []):
        where = ("serving", "runs", i)
        for key in rec:
            if key not in SERVING_KEYS:
                raise _err(path, lines, where, f"serving run {i + 1}: unknown key '{key}'{closest(key, SERVING_KEYS)}")
        rid = _need(path, lines, where, rec, "id", str)
        checks = (("use", USES), ("model", tuple(models)), ("device", tuple(known)), ("source", tuple(sources)),
                  ("engine", tuple(engines)))
        for key, allowed in checks:
            if (key != "engine" or key in rec) and rec.get(key) not in allowed:
                raise _err(path, lines, where, f"serving run '{rid}': {key} must be one of {', '.join(allowed)}")
        pub = rec.get("published")
        if not isinstance(pub, dict) or len(pub) != 1 or next(iter(pub)) not in SERVING_PUBLISHED:
            raise _err(path, lines, where, f"serving run '{rid}': published must be one of "
                       f"{', '.join(SERVING_PUBLISHED)}")
        (kind, value), = pub.items()
        fields = {k: v for k, v in rec.items() if k not in ("published", "model", "source", "note", "engine")}
        runs.append(ServingRun(published=kind, value=value, model=models[rec["model"]],
                               source=sources[rec["source"]], engine=engines.get(rec.get("engine"), CURRENT_ENGINE),
                               **fields))
    fitted = block.get("fitted") or {}
    if not block:
        return Efficiency(1.0, 1.0), tuple(runs)
    where = ("serving", "fitted")
    phases = _need(path, lines, where, fitted, "serving_efficiency", dict)
    return Efficiency(*(_need(path, lines, where + ("serving_efficiency",), phases, k, (int, float))
                        for k in ("prefill", "decode"))), tuple(runs)


def _run(path, lines, i, rec, known_devices, software) -> Run:
    where = ("runs", i)
    if not isinstance(rec, dict):
        raise _err(path, lines, where, f"runs[{i}]: must be a mapping")
    for key in rec:
        if key not in RUN_KEYS:
            raise _err(path, lines, where + (key,), f"runs[{i}]: unknown key '{key}'{closest(key, RUN_KEYS)}")
    rid = _need(path, lines, where, rec, "id", str)
    if rec.get("use") not in USES:
        raise _err(path, lines, where + ("use",), f"run '{rid}': use must be one of {', '.join(USES)}")
    if (rec.get("transformer") is None) == (rec.get("zoo") is None):
        raise _err(path, lines, where, f"run '{rid}': give a transformer or a zoo model, one of them")
    if rec.get("transformer") is not None:
        for key in rec["transformer"]:
            if key not in TRANSFORMER_KEYS:
                raise _err(path, lines, where + ("transformer", key), f"run '{rid}': transformer: unknown key "
                           f"'{key}'{closest(key, TRANSFORMER_KEYS)}")
    if rec.get("device") not in known_devices:
        raise _err(path, lines, where + ("device",), f"run '{rid}': unknown device '{rec.get('device')}'"
                   f"{closest(str(rec.get('device')), known_devices)}")
    if rec.get("software", "current") not in software:
        raise _err(path, lines, where + ("software",), f"run '{rid}': unknown software '{rec.get('software')}'"
                   f"{closest(str(rec.get('software')), software)}")
    if rec.get("dtype") not in COMPUTE:
        raise _err(path, lines, where + ("dtype",), f"run '{rid}': dtype must be one of {', '.join(COMPUTE)}")
    pub = rec.get("published")
    if not isinstance(pub, dict) or len(pub) != 1 or next(iter(pub)) not in PUBLISHED:
        raise _err(path, lines, where + ("published",), f"run '{rid}': published must be one figure, one of "
                   f"{', '.join(PUBLISHED)}")
    (kind, value), = pub.items()
    if kind == "device_hours" and not rec.get("tokens"):
        raise _err(path, lines, where + ("tokens",), f"run '{rid}': device_hours needs the tokens trained")
    for key in ("devices", "batch"):
        _need(path, lines, where, rec, key, int)
    _need(path, lines, where, rec, "source", str)
    fields = {k: v for k, v in rec.items() if k not in ("published",)}
    return Run(published=kind, value=_need(path, lines, where + ("published",), pub, kind, (int, float)), **fields)


def load(path: str) -> Calibration:
    """The calibration table at ``path``, validated; errors name the file and line."""
    data, lines = yamlsafe.load(path)
    if not isinstance(data, dict):
        raise SizingError("a calibration table is a mapping (see sizing/predict/calibration.yaml)", path, 1)
    for key in data:
        if key not in TOP_KEYS:
            raise _err(path, lines, (key,), f"unknown key '{key}'{closest(key, TOP_KEYS)}")
    retired = {}
    for i, rec in enumerate(data.get("devices") or []):
        d = device_from_record(rec, path, lines, ("devices", i))
        retired[d.id] = d
    known = {**{d.id: d for d in shipped_devices()}, **retired}
    defaults = data.get("defaults") or {}
    gemm = data.get("gemm") or {}
    rows = []
    for i, m in enumerate(gemm.get("rows") or []):
        where = ("gemm", "rows", i)
        if m.get("device") not in known:
            raise _err(path, lines, where, f"gemm row {i + 1}: unknown device '{m.get('device')}'")
        if m.get("precision") not in known[m["device"]].peak_tflops:
            raise _err(path, lines, where, f"gemm row {i + 1}: {m['device']} has no {m.get('precision')} peak")
        rows.append(Measurement(m["device"], _need(path, lines, where, m, "tflops", (int, float)),
                                m.get("precision"), m.get("note") or gemm.get("source", "")))
    mem = []
    for i, m in enumerate(data.get("memory") or []):
        where = ("memory", i)
        if m.get("device") not in known:
            raise _err(path, lines, where, f"memory row {i + 1}: unknown device '{m.get('device')}'")
        mem.append(Measurement(m["device"], _need(path, lines, where, m, "gbs", (int, float)), None,
                               _need(path, lines, where, m, "source", str)))
    units = {}
    for i, u in enumerate(gemm.get("units") or []):
        where = ("gemm", "units", i)
        if u.get("device") not in known:
            raise _err(path, lines, where, f"gemm unit row {i + 1}: unknown device '{u.get('device')}'")
        units[u["device"]] = _need(path, lines, where, u, "sms", int)
        _need(path, lines, where, u, "source", str)
    software = _software(path, lines, data)
    serving = _serving(path, lines, data, known)
    runs = tuple(_run(path, lines, i, r, known, software) for i, r in enumerate(data.get("runs") or []))
    ids = [r.id for r in runs]
    if len(set(ids)) != len(ids):
        raise SizingError(f"duplicate run id {next(i for i in ids if ids.count(i) > 1)}", path)
    fitted = data.get("fitted") or {}
    return Calibration(
        framework_efficiency=_need(path, lines, ("fitted",), fitted, "framework_efficiency", float),
        pue=_need(path, lines, ("defaults",), defaults, "pue", (int, float)),
        network_gbs=_need(path, lines, ("defaults",), defaults, "network_gbs", (int, float)),
        overlap=_need(path, lines, ("defaults",), defaults, "overlap", (int, float)),
        sources={k: v for k, v in defaults.items() if k.endswith("_source")},
        gemm=tuple(rows), memory=tuple(mem), devices=retired, runs=runs, software=software,
        serving_efficiency=serving[0], serving_runs=serving[1],
        usable_memory=_need(path, lines, ("defaults",), defaults, "usable_memory", (int, float)),
        launch_seconds=_need(path, lines, ("defaults",), defaults, "launch_us", (int, float)) / 1e6, units=units,
        goodput=_need(path, lines, ("defaults",), defaults, "goodput", (int, float)))


def shipped_path() -> str:
    return str(resources.files("sizing.predict") / "calibration.yaml")


@lru_cache(maxsize=1)
def shipped() -> Calibration:
    """The table shipped with the package."""
    return load(shipped_path())
