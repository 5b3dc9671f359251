"""Load on `sizing web` (issue 18 target: 50 concurrent quote requests over loopback, no errors, p95 under 2 s for
the zoo's ResNet-50 quote on 2 cores).

Starts the app in a thread (werkzeug's threaded server on 127.0.0.1, a free port), then sends --requests concurrent
POST /api/quote for the same ResNet-50 training quote, in rounds: the first round finds nothing cached (the
requests wait on one computation: the app computes one answer per distinct request), the later ones find it
cached. Prints each round's p50 / p95 / max latency, the error count and the CPU seconds this process (server and
clients) spent on the round (on a shared machine the latencies wait for other processes too; the CPU time does
not), and one quote's time through the library alone, for scale. Pass --distinct to give every request of a round its own budget (50 different quotes, each
searched).

    python benchmarks/bench_web.py [--requests 50] [--rounds 2] [--candidates h100-sxm,a100,mi300x] [--distinct]
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from werkzeug.serving import make_server

from sizing.cli import estimate, quote
from sizing.web.app import create_app

JOB = {"model": "resnet50", "samples": 1.28e6, "epochs": 90, "deadline": "24h"}


def post(url: str, body: dict) -> tuple[float, bool]:
    """(seconds, ok) of one POST."""
    t0 = time.perf_counter()
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as r:
            ok = r.status == 200 and "pick" in json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        ok = False
    return time.perf_counter() - t0, ok


def percentile(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (q = 0.95: the value 95% of the requests took at most)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, -(-int(q * 100) * len(s) // 100) - 1))]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--candidates", help="Devices to consider (default: all, as `sizing quote` does).")
    p.add_argument("--distinct", action="store_true", help="A different budget per request: nothing is shared.")
    a = p.parse_args()
    job = {**JOB, **({"candidates": a.candidates} if a.candidates else {})}

    from sizing.quote.build import build_quote
    t0 = time.perf_counter()
    build_quote(job["model"], samples="1.28e6", tokens=None, epochs="90", deadline="24h", qps=None, latency_ms=None,
                batch=None, seq_len=None, precision=None, budget=None, currency="USD", fx=None,
                candidates=a.candidates, prices=None, horizon=None, pue=None, kwh_price=None, node_cost=None,
                max_devices=None, hwdb_files=(), progress=None)
    alone = time.perf_counter() - t0

    server = make_server("127.0.0.1", 0, create_app({"estimate": estimate, "quote": quote}), threaded=True)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)      # no line per request
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api/quote"
    print(f"one ResNet-50 quote through build_quote alone: {alone:.2f} s "
          f"({'all candidates' if not a.candidates else a.candidates})")
    print(f"{'round':>5} {'requests':>8} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'errors':>6}  {'p95 / 2 s':>9} "
          f"{'cpu s':>6}")
    try:
        for n in range(a.rounds):
            bodies = [{**job, "budget": 1e9 + i + n * a.requests} if a.distinct else job for i in range(a.requests)]
            cpu = time.process_time()
            with ThreadPoolExecutor(max_workers=a.requests) as pool:
                results = list(pool.map(lambda b: post(url, b), bodies))
            cpu = time.process_time() - cpu
            times = [t for t, _ in results]
            errors = sum(not ok for _, ok in results)
            p95 = percentile(times, 0.95)
            print(f"{n + 1:>5} {a.requests:>8} {statistics.median(times):>7.2f} {p95:>7.2f} {max(times):>7.2f} "
                  f"{errors:>6}  {p95 / 2:>9.2f} {cpu:>6.2f}")
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
