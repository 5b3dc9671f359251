"""A speed change must not change a byte: runs the same quotes and estimates (every quote format, training,
fine-tuning, serving, Korean and KRW, and the planner behind `estimate --device`) with the sizing package of this
tree and with that of another checkout (``--base``: e.g. ``git worktree add /tmp/base main``, or
``git archive main | tar -x -C /tmp/base``), and names every output that differs.

    python benchmarks/same_output.py --base /tmp/base
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TRAIN = ["resnet50", "--samples", "1.28e6", "--epochs", "90", "--deadline", "24h"]
RUNS = [*(["quote", *TRAIN, "--format", f] for f in ("json", "md", "html", "csv")),
        ["quote", *TRAIN, "--lang", "ko", "--currency", "KRW", "--fx", "1400", "--budget", "2e8", "--format", "md"],
        ["quote", "gpt2_small", "--tokens", "2e10", "--deadline", "3d", "--format", "json"],
        ["quote", "gpt2_small", "--finetune", "lora", "--lora-rank", "8", "--tokens", "1e8", "--deadline", "1d",
         "--format", "json"],
        ["quote", "bert_base", "--tokens", "3e9", "--deadline", "12h", "--global-batch", "512", "--format", "json"],
        ["quote", "vgg16", "--samples", "1.28e6", "--epochs", "10", "--deadline", "6h", "--candidates",
         "h100-sxm,a100,mi300x", "--format", "json"],
        ["quote", "lenet5", "--qps", "1000", "--latency-ms", "20", "--format", "json"],
        ["quote", "gpt2_small", "--concurrency", "32", "--prompt-tokens", "512", "--output-tokens", "128",
         "--format", "json"],
        ["estimate", "resnet50", "--device", "h100-sxm", "--samples", "1.28e6", "--epochs", "90", "--format", "json"],
        ["estimate", "gpt2_small", "--device", "h100", "--devices", "64", "--format", "json"],
        ["estimate", "bert_base", "--device", "a100", "--deadline", "2h", "--tokens", "1e9", "--format", "json"],
        ["estimate", "gpt2_small", "--device", "h100", "--inference", "--concurrency", "32", "--format", "json"]]


def output(root: Path, args: list[str]) -> tuple[bytes, int]:
    """(stdout, exit status) of ``python -m sizing.cli ARGS`` with the package under ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    run = subprocess.run([sys.executable, "-m", "sizing.cli", *args], cwd=root, env=env, capture_output=True,
                         check=False)
    return run.stdout, run.returncode


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True, type=Path, help="A checkout whose outputs are the reference.")
    a = p.parse_args()
    here = Path(__file__).resolve().parents[1]
    with ThreadPoolExecutor(max_workers=2) as pool:
        ours = list(pool.map(lambda r: output(here, r), RUNS))
        theirs = list(pool.map(lambda r: output(a.base.resolve(), r), RUNS))
    differ = [" ".join(r) for r, x, y in zip(RUNS, ours, theirs) if x != y]
    for line in differ:
        print(f"differs: sizing {line}")
    print(f"{len(RUNS) - len(differ)} of {len(RUNS)} outputs byte-identical")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
