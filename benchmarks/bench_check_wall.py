"""`sizing check`'s promise (issue 17): every zoo model at default settings within about a minute (its --help:
runs are reduced "for about a minute") on this machine, with warm caches.

Each model: `sizing check SPEC --format json` in a fresh process, its wall time from start to exit, beside what
the run reports: the count-and-speed instance's step and first step (the first loads or compiles the kernels),
and how the gradient check's instance was reduced (its widths divided by a power of two until its finite
differences fit half the budget). ``--rounds`` runs each model that many times and keeps the fastest (the first
run of a model in a fresh cache compiles; warm the cache with one round first). State the load beside the
figures: the check runs two threads, and a loaded machine stretches it.

    python benchmarks/bench_check_wall.py [--models lenet5 resnet18 ...] [--rounds 1] [--budget 60]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def timed_check(spec: str) -> tuple[float, dict]:
    """(wall seconds, the check's JSON) of one `sizing check SPEC` in a fresh process."""
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "sizing.cli", "check", spec, "--format", "json"],
                         capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if run.returncode not in (0, 1):        # 1: a check failed, still a timed run
        raise RuntimeError(f"{spec}: {run.stderr.strip().splitlines()[-1]}")
    return wall, json.loads(run.stdout)


def main() -> None:
    from sizing.model.estimate import zoo_names

    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=list(zoo_names()))
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--budget", type=float, default=60.0, help="the promised seconds (default: a minute)")
    a = p.parse_args()
    print(f"`sizing check MODEL` at default settings, fresh process, best wall of {a.rounds} round(s); load "
          f"{os.getloadavg()[0]:.2f} at the start")
    print(f"{'model':13} {'wall s':>7} {'/budget':>7} {'step s':>8} {'first s':>8}  gradient instance")
    walls = []
    for spec in a.models:
        best = None
        for _ in range(a.rounds):
            print(f"{spec} ...", file=sys.stderr, flush=True)
            wall, d = timed_check(spec)
            if best is None or wall < best[0]:
                best = (wall, d)
        wall, d = best
        walls.append(wall)
        grad = d["gradient_check"]["instance"]
        print(f"{spec:13} {wall:7.1f} {wall / a.budget:7.2f} {d['step_seconds']:8.3f} {d['first_step_seconds']:8.2f}"
              f"  {json.dumps(grad['reduced']) if grad['reduced'] else '-'}")
    over = [w for w in walls if w > a.budget]
    print(f"{len(walls) - len(over)}/{len(walls)} within {a.budget:.0f} s; longest {max(walls):.1f} s; load "
          f"{os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
