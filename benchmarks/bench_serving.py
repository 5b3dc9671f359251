"""The serving model (sizing/predict/serving.py) against published serving measurements
(sizing/predict/calibration.yaml ``serving``): each row's published figure (output tokens/s of a batch, time per
output token, time to first token) beside the prediction and the error (predicted / published - 1); the median
and worst absolute error per engine and figure, of the `validate` rows (target: within 15%) and apart of the
`calibrate` rows the serving efficiencies (prefill, decode) are fitted on; the efficiencies re-fitted against the
stored ones.

    python benchmarks/bench_serving.py
"""
from __future__ import annotations

import statistics
import sys

from sizing.hardware.devices import load_hwdb
from sizing.predict.calibration import shipped
from sizing.predict.published import compare_serving, fit_serving_efficiency

TARGET = 0.15


def main() -> int:
    cal, db = shipped(), load_hwdb(environ={})
    errors: dict[str, list[float]] = {"calibrate": [], "validate": []}
    groups: dict[tuple, list[float]] = {}
    print(f"{'run':38} {'use':9} {'figure':12} {'published':>10} {'predicted':>10} {'error':>7}  layout, bound")
    for run in cal.serving_runs:
        c = compare_serving(run, cal, db)
        p = c.prediction
        errors[run.use].append(c.error)
        load = "" if run.mode == "static" else " at 1 user" if run.concurrency == 1 else " under load"
        groups.setdefault((run.use, run.engine.name, run.published + load), []).append(c.error)
        print(f"{run.id:38} {run.use:9} {run.published:12} {run.value:10.2f} {c.predicted:10.2f} {c.error:+7.1%}  "
              f"TP {p.tensor_parallel} {p.device}, {run.weights}/{run.kv_cache} {run.mode} c={run.concurrency}, "
              f"prefill {p.bound_prefill}, decode {p.bound_decode}")
    for (use, engine, figure), e in sorted(groups.items()):
        print(f"  {use:9} {engine:7} {figure:22} ({len(e):3}): median |error| {statistics.median(map(abs, e)):.1%}, "
              f"worst {max(map(abs, e)):.1%}")
    for use, e in errors.items():
        print(f"{use:9} rows ({len(e):2}): median |error| {statistics.median(map(abs, e)):.1%}, "
              f"worst {max(map(abs, e)):.1%}")
    fitted, stored = fit_serving_efficiency(cal, db), cal.serving_efficiency
    same = all(abs(getattr(fitted, k) - getattr(stored, k)) < 5e-4 for k in ("prefill", "decode"))
    print(f"serving efficiency (prefill, decode): stored {stored.prefill:.3f}, {stored.decode:.3f}; re-fitted on the "
          f"calibrate rows {fitted.prefill:.3f}, {fitted.decode:.3f}" + ("" if same else "   <- update serving.fitted"))
    median = statistics.median(map(abs, errors["validate"]))
    print(f"target (validate median within {TARGET:.0%}): {'met' if median <= TARGET else 'NOT met'} "
          f"({median:.1%})")
    return 0 if median <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
