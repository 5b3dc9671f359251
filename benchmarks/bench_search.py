"""The planner's cost: the whole layout search (sizing/predict/search.py) for a 10^12-parameter model on 10^5
devices against a 10^8-parameter one on 8, graphs and estimates included, and the deadline search (the fewest
devices) for the large one. Targets: the large search under 1 s on a 2-core machine and within 3x of the small.

    python benchmarks/bench_search.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import lru_cache

from sizing.hardware.devices import load_hwdb
from sizing.model.estimate import estimate_graph
from sizing.model.graph import build
from sizing.predict.calibration import shipped
from sizing.predict.published import transformer_spec
from sizing.predict.search import Pins, search
from sizing.predict.workload import Workload

CASES = (("1e8 params on 8 devices", (12, 768, 12, 3072, 50257, 2048), 8),
         ("1e12 params on 10^5 devices", (128, 25600, 160, 102400, 51200, 2048), 100_000))


def model(shape):
    spec = transformer_spec("bench", *shape)

    @lru_cache(maxsize=None)
    def at(batch):
        return estimate_graph(build(spec, {}, "bench_search", batch=batch, dtype="bf16", optimizer="adamw"))
    return at


def timed(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    db = load_hwdb(environ={})
    device = db["h100-sxm"]
    factors = shipped().factors(device, "bf16", db)
    work = Workload(dtype="bf16", optimizer="adamw", tokens=10 ** 13)
    seconds = []
    for label, shape, devices in CASES:
        s, pred = timed(lambda: search(model(shape), work, device, factors, Pins(), devices=devices), a.repeats)
        seconds.append(s)
        params = model(shape)(1).trainable_params
        print(f"{label:30} {params:>18,} params: search {s:6.3f} s (best of {a.repeats}) -> {pred.layout.describe()}"
              f", MFU {pred.mfu:.1%}, {len(pred.alternatives)} alternatives")
    ratio = seconds[1] / seconds[0]
    s, pred = timed(lambda: search(model(CASES[1][1]), work, device, factors, Pins(), deadline_s=90 * 86400,
                                   global_batch=16384), 1)
    print(f"{'90 days, 1e12 params, B 16384':30} fewest devices {pred.devices:,} in {s:.3f} s -> "
          f"{pred.layout.describe()}, {pred.total_seconds / 86400:.1f} days")
    met = seconds[1] < 1.0 and ratio <= 3
    print(f"large / small: {ratio:.2f}x; targets (large < 1 s, ratio <= 3x): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
