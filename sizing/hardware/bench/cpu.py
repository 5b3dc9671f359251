"""What this CPU is and what it could do: the identity read from /proc/cpuinfo and sysfs, the SIMD level from its
flags, the microarchitecture from a table with sources, and the theoretical peak arithmetic.

Theoretical peak (FLOP/s) = cores x clock (Hz) x FLOPs per cycle per core, where
FLOPs per cycle = vector FP units x (vector bits / element bits) x (2 for a fused multiply-add, else 1).
This is the convention of vendors' and TOP500's Rpeak (e.g. NVIDIA's 7.1 TFLOP/s fp64 for Grace: 144 Neoverse V2
cores x 3.1 GHz x 16). The clock is measured by ``sizing bench`` itself (kernels.clock_chain), since under a
hypervisor /proc's "cpu MHz" is often the nominal clock, not the one the core runs at.

Only the readers (``this_cpu``, ``usable_cpus``, ``physical_cores``, ``llc_bytes``, ``memory_bytes``) touch files;
everything else is pure.
"""
from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass

PRECISION_BITS = {"fp64": 64, "fp32": 32}


@dataclass(frozen=True)
class CpuInfo:
    """The first processor's identity. ``family``/``model`` are x86's; ``implementer``/``part`` Arm's."""
    arch: str
    vendor: str
    model_name: str
    flags: frozenset
    family: int | None = None
    model: int | None = None
    implementer: int | None = None
    part: int | None = None
    mhz: float | None = None         # what /proc/cpuinfo says (nominal under most hypervisors)

    @property
    def hypervisor(self) -> bool:
        return "hypervisor" in self.flags


@dataclass(frozen=True)
class Microarch:
    """A core's vector floating-point units: ``units`` pipes of ``width_bits`` each retiring one vector
    operation per cycle; with ``fma`` that operation is a multiply-add (2 FLOPs per lane), without it the pipes
    are an adder and a multiplier (1 FLOP per lane each)."""
    name: str
    units: int
    width_bits: int
    fma: bool
    source: str

    def flops_per_cycle(self, precision: str) -> int:
        """units x (width_bits / element bits) x (2 if fma else 1), per core."""
        return self.units * (self.width_bits // PRECISION_BITS[precision]) * (2 if self.fma else 1)


def peak_gflops(cores: int, clock_ghz: float, flops_per_cycle: int) -> float:
    """Theoretical peak in GFLOP/s: cores x clock (GHz) x FLOPs per cycle per core."""
    return cores * clock_ghz * flops_per_cycle


_INTEL_MANUAL = "Intel 64 and IA-32 Architectures Optimization Reference Manual (order 248966)"
_AMD_GUIDE = "AMD Software Optimization Guide for"
_YEE = "A. J. Yee, 'Zen5's AVX512 Teardown' (numberworld.org, 2024)"

# (vendor_id, cpu family, models) -> Microarch. Models are the CPUID display models of each core generation.
X86_TABLE = (
    ("GenuineIntel", 6, (0x3C, 0x3F, 0x45, 0x46),
     Microarch("Haswell", 2, 256, True, f"{_INTEL_MANUAL}: two 256-bit FMA units (ports 0, 1)")),
    ("GenuineIntel", 6, (0x3D, 0x47, 0x4F, 0x56),
     Microarch("Broadwell", 2, 256, True, f"{_INTEL_MANUAL}: two 256-bit FMA units (ports 0, 1)")),
    ("GenuineIntel", 6, (0x4E, 0x5E, 0x8E, 0x9E, 0xA5, 0xA6),
     Microarch("Skylake (client)", 2, 256, True, f"{_INTEL_MANUAL}: two 256-bit FMA units (ports 0, 1)")),
    ("GenuineIntel", 6, (0x55,),
     Microarch("Skylake-SP / Cascade Lake", 2, 512, True,
               f"{_INTEL_MANUAL}: two 512-bit FMA units (port 0+1 fused, port 5); Xeon Bronze, Silver and some "
               "Gold 5xxx have only the first")),
    ("GenuineIntel", 6, (0x7D, 0x7E, 0x8C, 0x8D),
     Microarch("Ice Lake / Tiger Lake (client)", 1, 512, True,
               f"{_INTEL_MANUAL}: one 512-bit FMA (ports 0+1 fused), or two 256-bit")),
    ("GenuineIntel", 6, (0x6A, 0x6C),
     Microarch("Ice Lake-SP", 2, 512, True, f"{_INTEL_MANUAL}: two 512-bit FMA units")),
    ("GenuineIntel", 6, (0x8F, 0xCF),
     Microarch("Sapphire / Emerald Rapids", 2, 512, True, f"{_INTEL_MANUAL}: two 512-bit FMA units")),
    ("GenuineIntel", 6, (0xAD, 0xAE),
     Microarch("Granite Rapids", 2, 512, True, f"{_INTEL_MANUAL}: two 512-bit FMA units")),
    ("GenuineIntel", 6, (0x97, 0x9A, 0xB7, 0xBA, 0xBF),
     Microarch("Alder / Raptor Lake (P-core)", 2, 256, True,
               f"{_INTEL_MANUAL}: Golden Cove, two 256-bit FMA units (E-cores have less)")),
    ("AuthenticAMD", 0x17, tuple(range(0x00, 0x30)),
     Microarch("Zen / Zen+", 2, 128, True,
               f"{_AMD_GUIDE} Family 17h Processors (pub. 55723): 128-bit FP pipes, FMA on two")),
    ("AuthenticAMD", 0x17, tuple(range(0x30, 0x100)),
     Microarch("Zen 2", 2, 256, True,
               f"{_AMD_GUIDE} Family 17h Models 30h and Greater (pub. 56305): two 256-bit FMA pipes")),
    ("AuthenticAMD", 0x19, tuple(range(0x00, 0x10)) + tuple(range(0x20, 0x60)),
     Microarch("Zen 3", 2, 256, True, f"{_AMD_GUIDE} AMD Family 19h Processors (pub. 56665): two 256-bit FMA "
                                      "pipes")),
    ("AuthenticAMD", 0x19, tuple(range(0x10, 0x20)) + tuple(range(0x60, 0x80)) + tuple(range(0xA0, 0xB0)),
     Microarch("Zen 4", 2, 256, True,
               f"{_AMD_GUIDE} the AMD Zen4 Microarchitecture (pub. 57647): two 256-bit FMA pipes; a 512-bit "
               "operation uses both halves")),
    ("AuthenticAMD", 0x1A, tuple(range(0x00, 0x20)) + tuple(range(0x40, 0x50)),
     Microarch("Zen 5", 2, 512, True,
               f"{_AMD_GUIDE} the AMD Zen5 Microarchitecture (pub. 58455): two 512-bit FMA pipes (FP0, FP1) "
               f"on EPYC 9005 and Ryzen 9000 desktop; {_YEE}")),
    ("AuthenticAMD", 0x1A, tuple(range(0x20, 0x30)) + tuple(range(0x60, 0x70)),
     Microarch("Zen 5 (mobile)", 2, 256, True,
               f"{_AMD_GUIDE} the AMD Zen5 Microarchitecture (pub. 58455); {_YEE}: 256-bit datapath on mobile "
               "parts")),
)

# (CPU implementer, CPU part) from /proc/cpuinfo -> Microarch.
ARM_TABLE = (
    (0x41, 0xD0C, Microarch("Neoverse N1", 2, 128, True,
                            "Arm Neoverse N1 Software Optimization Guide: two 128-bit FP/ASIMD pipes (V0, V1)")),
    (0x41, 0xD40, Microarch("Neoverse V1", 4, 128, True,
                            "Arm Neoverse V1 Software Optimization Guide: four 128-bit FP/ASIMD pipes "
                            "(or two 256-bit SVE)")),
    (0x41, 0xD49, Microarch("Neoverse N2", 2, 128, True,
                            "Arm Neoverse N2 Software Optimization Guide: two 128-bit FP/ASIMD pipes")),
    (0x41, 0xD4F, Microarch("Neoverse V2", 4, 128, True,
                            "Arm Neoverse V2 Software Optimization Guide: four 128-bit FP/ASIMD pipes; NVIDIA "
                            "Grace: 144 cores x 3.1 GHz x 16 = 7.1 TFLOP/s fp64")),
)

ARM_VENDORS = {0x41: "Arm", 0x42: "Broadcom", 0x46: "Fujitsu", 0x48: "HiSilicon", 0x4E: "NVIDIA",
               0x51: "Qualcomm", 0x61: "Apple", 0xC0: "Ampere"}
X86_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon"}

# What the SIMD flags alone imply when the core is not in a table: the common design of each level.
_FALLBACK = {
    "avx512+fma": (2, 512, True), "avx2+fma": (2, 256, True), "avx": (2, 256, False), "sse2": (2, 128, False),
    "sve": (2, 128, True), "neon": (2, 128, True),
}
SIMD_BITS = {"avx512+fma": 512, "avx2+fma": 256, "avx": 256, "sse2": 128, "sve": 128, "neon": 128}


def simd_level(cpu: CpuInfo) -> str:
    """The widest vector floating-point level the flags show: avx512+fma, avx2+fma, avx, sse2 (x86); sve or neon
    (AArch64, where NEON is part of the base architecture)."""
    f = cpu.flags
    if cpu.arch in ("aarch64", "arm64"):
        return "sve" if "sve" in f else "neon"
    if "avx512f" in f:
        return "avx512+fma"
    if "avx2" in f and "fma" in f:
        return "avx2+fma"
    return "avx" if "avx" in f else "sse2"


def microarch(cpu: CpuInfo) -> Microarch:
    """The table's entry for this core; else what its SIMD level implies, saying so in the source."""
    for vendor, family, models, ua in X86_TABLE:
        if cpu.vendor == vendor and cpu.family == family and cpu.model in models:
            return ua
    for implementer, part, ua in ARM_TABLE:
        if cpu.implementer == implementer and cpu.part == part:
            return ua
    level = simd_level(cpu)
    units, bits, fma = _FALLBACK[level]
    return Microarch(f"unknown ({level})", units, bits, fma,
                     f"not in sizing's table; assumed the usual {level} core: {units} x {bits}-bit "
                     f"{'FMA' if fma else 'add + multiply'} pipes")


def vendor_name(cpu: CpuInfo) -> str:
    """'Intel', 'AMD', 'Arm', ... from vendor_id or the Arm implementer code."""
    if cpu.implementer is not None:
        return ARM_VENDORS.get(cpu.implementer, f"implementer {cpu.implementer:#x}")
    return X86_VENDORS.get(cpu.vendor, cpu.vendor or "unknown")


def clean_model_name(name: str) -> str:
    """'Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz' -> 'Intel Xeon Platinum 8380'."""
    name = re.sub(r"\((R|TM|tm|r)\)", "", name)
    name = re.sub(r"\s*@\s*[\d.]+\s*[GM]Hz", "", name)
    name = re.sub(r"\bCPU\b", "", name)
    return " ".join(name.split())


def parse_cpuinfo(text: str, arch: str) -> CpuInfo:
    """The first processor block of a /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())

    def number(key, base=10):
        try:
            return int(fields[key], base)
        except (KeyError, ValueError):
            return None

    implementer = number("cpu implementer", 16)
    part = number("cpu part", 16)
    flags = frozenset((fields.get("flags") or fields.get("features") or "").split())
    name = clean_model_name(fields.get("model name", ""))
    if not name:
        ua = next((u for i, p, u in ARM_TABLE if (i, p) == (implementer, part)), None)
        name = ua.name if ua else platform.processor() or arch
    try:
        mhz = float(fields["cpu mhz"])
    except (KeyError, ValueError):
        mhz = None
    return CpuInfo(arch=arch, vendor=fields.get("vendor_id", ""), model_name=name, flags=flags,
                   family=number("cpu family"), model=number("model"), implementer=implementer, part=part,
                   mhz=mhz)


def this_cpu() -> CpuInfo:
    """This machine's CPU (from /proc/cpuinfo where there is one)."""
    arch = platform.machine().lower()
    try:
        with open("/proc/cpuinfo") as f:
            return parse_cpuinfo(f.read(), arch)
    except OSError:
        return CpuInfo(arch=arch, vendor="", model_name=platform.processor() or arch, flags=frozenset())


def usable_cpus() -> tuple[int, ...]:
    """The logical CPUs this process may run on (its affinity mask)."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def count_cores(siblings: dict[int, tuple]) -> int:
    """Physical cores among logical CPUs, given each CPU's (package, core) id (None where unknown: its own core)."""
    return len({ids if ids is not None else ("cpu", cpu) for cpu, ids in siblings.items()})


def physical_cores(cpus) -> int:
    """Physical cores among ``cpus``: SMT siblings share (physical_package_id, core_id) in sysfs."""
    ids = {}
    for cpu in cpus:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        package, core = _read(base + "physical_package_id"), _read(base + "core_id")
        ids[cpu] = (package, core) if package is not None and core is not None else None
    return count_cores(ids)


def _size_bytes(text: str) -> int:
    """sysfs cache sizes: '32768K', '1024K', '32M'."""
    m = re.fullmatch(r"(\d+)\s*([KMG]?)", text.strip().upper())
    if not m:
        return 0
    return int(m.group(1)) * {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}[m.group(2)]


def llc_bytes(cpus) -> int | None:
    """The last-level cache the CPUs in ``cpus`` reach: the highest level's size, summed over its distinct
    instances (a cache is an instance per shared_cpu_list). None when sysfs does not say."""
    instances: dict[tuple, int] = {}
    for cpu in cpus:
        base = f"/sys/devices/system/cpu/cpu{cpu}/cache/"
        try:
            indexes = [d for d in os.listdir(base) if d.startswith("index")]
        except OSError:
            continue
        for d in indexes:
            level, size = _read(base + d + "/level"), _read(base + d + "/size")
            kind, shared = _read(base + d + "/type"), _read(base + d + "/shared_cpu_list")
            if level and size and kind != "Instruction":
                instances[(int(level), shared or str(cpu))] = _size_bytes(size)
    if not instances:
        return None
    top = max(level for level, _ in instances)
    return sum(size for (level, _), size in instances.items() if level == top)


def memory_bytes() -> int | None:
    """MemTotal of /proc/meminfo in bytes."""
    text = _read("/proc/meminfo") or ""
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.M)
    return int(m.group(1)) * 1024 if m else None
