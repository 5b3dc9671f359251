"""Speed of `sizing check`'s kernels against PyTorch's CPU training step, and its JIT cache (issue 3 targets).

1. Training step (fp32, SGD, the loss `sizing check` picks) of the Numba kernels and of PyTorch
   (sizing/hardware/bench/torch_steps.py) for the same graph and batch, each in a fresh process, in alternating
   rounds; each side's best median over ``--steps`` timed steps after a warm-up step. Beside each, the
   performance model's prediction for that executor on this machine's `sizing bench` profile (device 'local';
   None without one, or for PyTorch when the profile has no PyTorch terms: run `sizing bench` where torch is
   importable), measured / predicted, and our throughput / PyTorch's (PyTorch's step time / ours).
2. The JIT cache: `sizing check SPEC --steps 1` twice in fresh processes sharing an empty NUMBA_CACHE_DIR;
   the first compiles every kernel it uses, the second must only load them.

PyTorch is not a dependency of sizing: give a python whose `import torch` works with --torch-python (its own
environment needs numpy and pyyaml; this checkout is put on its PYTHONPATH). Without one, the script says so
and prints our figures alone.

    python benchmarks/bench_check.py [--models lenet5 resnet18 ...] [--batch 1 8] [--steps 5] [--rounds 2]
        [--torch-python /path/to/venv/bin/python] [--cache-model lenet5 | --no-cache-run]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- ours (run in a fresh process)

CHECK_STEPS = 3         # `sizing check`'s default --steps: the instance it plans for them


def instance(spec: str, batch: int):
    """The graph `sizing check SPEC --batch B` runs at its default steps (sizing/execute/reduce.py ``plan``: cut
    down, batch first, when the full size would not fit in memory or would run past about a minute)."""
    from sizing.execute.reduce import plan
    from sizing.model.estimate import load_graph

    return plan(lambda **size: load_graph(spec, **size), batch, None, CHECK_STEPS, False)


def ours_worker(spec: str, batch: int, steps: int) -> None:
    import sizing.execute  # noqa: F401  (its BLAS settings before numpy loads BLAS)

    import numpy as np

    from sizing.execute.model import Model

    model = Model(instance(spec, batch).graph, np.float32)
    model.step(0.01)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        model.step(0.01)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"step_seconds": statistics.median(times)}))


# ---------------------------------------------------------------- PyTorch (run in its own interpreter)

def torch_worker(spec: str, batch: int, steps: int, kind: str) -> None:
    import torch

    from sizing.hardware.bench.torch_steps import trainer

    step = trainer(instance(spec, batch).graph, kind)
    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"step_seconds": statistics.median(times), "threads": torch.get_num_threads(),
                      "version": torch.__version__}))


def worker(python: str, mode: str, spec: str, batch: int, steps: int, env: dict, *extra) -> dict:
    env = {**os.environ, **env, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run([python, os.path.abspath(__file__), mode, spec, "--batch", str(batch), "--steps", str(steps),
                          *extra], capture_output=True, text=True, env=env)
    if run.returncode:
        raise RuntimeError(run.stderr.strip().splitlines()[-1])
    return json.loads(run.stdout)


def find_torch(given: str | None) -> str | None:
    for python in ([given] if given else [sys.executable]):
        if subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0:
            return python
    return None


# ---------------------------------------------------------------- the JIT cache

def cache_run(spec: str) -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        print(f"\nJIT cache: `sizing check {spec} --steps 1` twice in fresh processes, empty NUMBA_CACHE_DIR")
        for run in ("first (compiles)", "second (cached)"):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "sizing.cli", "check", spec, "--steps", "1", "--format",
                                  "json"], capture_output=True, text=True, env=env, check=True)
            wall = time.perf_counter() - t0
            first = json.loads(out.stdout)["first_step_seconds"]
            print(f"  {run:17} wall {wall:6.2f} s   first training step {first:6.3f} s")


def predicted(graph, executor: str) -> float | None:
    from sizing.execute.check import predicted_step_seconds

    return predicted_step_seconds(graph, executor)


def _ms(t) -> str:
    return f"{t * 1e3:9.1f}" if t else f"{'-':>9}"


def _ratio(a, b, width: int = 6) -> str:
    return f"{a / b:{width}.2f}" if a and b else f"{'-':>{width}}"


def main() -> None:
    from sizing.model.estimate import zoo_names

    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=list(zoo_names()))
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--torch-python")
    p.add_argument("--cache-model", default="lenet5")
    p.add_argument("--no-cache-run", action="store_true")
    p.add_argument("--torch-worker", metavar="SPEC")
    p.add_argument("--ours-worker", metavar="SPEC")
    p.add_argument("--loss")
    a = p.parse_args()
    if a.torch_worker:
        return torch_worker(a.torch_worker, a.batch[0], a.steps, a.loss)
    if a.ours_worker:
        return ours_worker(a.ours_worker, a.batch[0], a.steps)
    from sizing.model.estimate import load_graph, resolve
    from sizing.execute.loss import choose_loss

    python = find_torch(a.torch_python)
    print("PyTorch: " + (f"{python}" if python else "not importable here and no --torch-python given: "
                                                       "our figures only"))
    print("each model as `sizing check` runs it (its reduced instance where the full one is too big or slow); "
          "ms per training step (fp32, SGD), the best of the rounds' medians; pred: the performance model on this "
          "machine's bench profile (device 'local') for that executor; m/p: measured / predicted; ours/pt: our "
          "throughput / PyTorch's (PyTorch's step time / ours)")
    rows, seen = [], {}
    for spec in a.models:
        path, kind = resolve(spec), choose_loss(load_graph(spec))   # a path: the zoo is not on PYTHONPATH
        for batch in a.batch:
            inst = instance(path, batch)
            size = (spec, inst.graph.settings["batch"], inst.graph.settings["seq_len"])
            if size in seen:                # reduced to an instance already timed (gpt2_small: batch 8 -> 1)
                rows.append(rows[seen[size]][:1] + (batch,) + rows[seen[size]][2:])
                continue
            seen[size] = len(rows)
            best, note = {}, ""
            for r in range(a.rounds):
                print(f"{spec} batch {batch}, round {r + 1}/{a.rounds}", file=sys.stderr, flush=True)
                t = worker(sys.executable, "--ours-worker", path, batch, a.steps, {})["step_seconds"]
                best["sizing"] = min(best.get("sizing", t), t)
                if python:
                    try:
                        t = worker(python, "--torch-worker", path, batch, a.steps, {}, "--loss", kind)
                        best["pytorch"] = min(best.get("pytorch", t["step_seconds"]), t["step_seconds"])
                        note = f"torch {t['version']}, {t['threads']} threads"
                    except RuntimeError as e:
                        note = f"torch side failed: {e}"
            reduced = inst.describe()
            rows.append((spec, batch, best.get("pytorch"), predicted(inst.graph, "pytorch"), best["sizing"],
                         predicted(inst.graph, "sizing"), json.dumps(reduced) if reduced else "-", note))
    print(f"\n{'model':13} {'batch':>5} | {'PyTorch':>9} {'pred':>9} {'m/p':>6} | {'ours':>9} {'pred':>9} {'m/p':>6} | "
          f"{'ours/pt':>7}  reduced")
    within = {"pytorch": [], "sizing": []}
    for spec, batch, pt, pt_pred, ours, ours_pred, reduced, note in rows:
        print(f"{spec:13} {batch:5} | {_ms(pt)} {_ms(pt_pred)} {_ratio(pt, pt_pred)} | {_ms(ours)} {_ms(ours_pred)} "
              f"{_ratio(ours, ours_pred)} | {_ratio(pt, ours, 7)}  {reduced} {note}")
        for side, m, q in (("pytorch", pt, pt_pred), ("sizing", ours, ours_pred)):
            if m and q:
                within[side].append(m / q)
    for side, ratios in within.items():
        if ratios:
            geo = statistics.geometric_mean(ratios)
            worst = max(ratios, key=lambda x: max(x, 1 / x))
            ok = sum(1 for x in ratios if 1 / 1.2 <= x <= 1.2)
            print(f"{side}: measured / predicted geomean {geo:.2f}, worst {worst:.2f}, {ok}/{len(ratios)} within 20%")
    if not a.no_cache_run:
        cache_run(a.cache_model)


if __name__ == "__main__":
    main()
