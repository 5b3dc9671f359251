"""The planner against published training runs (sizing/predict/calibration.yaml).

Each run is predicted twice:
- typed as a user would type it: model, device, device count, tokens, sequence length (in the model), precision
  and global batch, nothing else; the planner finds the layout (the figure the targets are on);
- with every published layout flag pinned (tensor and pipeline parallel, ZeRO, recomputation, micro-batch), to
  show how much of the error is the layout choice.
For each: both sides as model FLOPs utilisation and the relative error of the prediction (predicted / published
- 1: the error of the throughput, inversely of the time), the layout the planner chose, and the median and worst
absolute error over the `validate` runs (targets: median <= 10%, worst <= 25%) and, apart, over the `calibrate`
runs the framework efficiency was fitted on; then the efficiency re-fitted from the calibrate runs against the
stored one, and the achieved fractions and SM counts (wave quantization) each device gets. The causes below peak
(wave quantization, the kernel issue floor, the usable share of memory) are stated in calibration.yaml, not fitted.

    python benchmarks/bench_calibration.py
"""
from __future__ import annotations

import statistics
import sys
import time

from sizing.hardware.devices import load_hwdb
from sizing.predict.calibration import shipped
from sizing.predict.published import compare, fit_efficiency, run_workload

MEDIAN_TARGET, WORST_TARGET = 0.10, 0.25


def runs_table(cal, db) -> dict[tuple[str, str], list[float]]:
    errors: dict[tuple[str, str], list[float]] = {}
    print(f"{'run':22} {'use':9} {'device':15} {'count':>6} {'published':>22} {'MFU pub':>7} {'user':>7} "
          f"{'error':>7} {'pinned':>7} {'error':>7}  planner's layout (typed as a user)")
    for run in cal.runs:
        user, pinned = compare(run, cal, db), compare(run, cal, db, typed="published")
        errors.setdefault((run.use, "user"), []).append(user.error)
        errors.setdefault((run.use, "published"), []).append(pinned.error)
        pub = f"{run.published} {run.value:g}"
        print(f"{run.id:22} {run.use:9} {run.device:15} {run.devices:6} {pub:>22} {user.published_mfu:7.3f} "
              f"{user.predicted_mfu:7.3f} {user.error:+7.1%} {pinned.predicted_mfu:7.3f} {pinned.error:+7.1%}  "
              f"{user.prediction.layout.describe()}")
    return errors


def fractions_table(cal, db) -> None:
    seen = list(dict.fromkeys(r.device for r in cal.runs))
    print(f"\n{'device':16} {'precision':9} {'compute':>8} {'memory':>7} {'SMs':>4}  where from")
    for device_id in seen:
        run = next(r for r in cal.runs if r.device == device_id)
        precision = run_workload(run).compute_precision
        f = cal.factors(cal.device(device_id, db), precision, db)
        print(f"{device_id:16} {precision:9} {f.compute_fraction:8.3f} {f.memory_fraction:7.3f} "
              f"{f.compute_units or '-':>4}  " + "; ".join(f.notes))


def main() -> int:
    cal, db = shipped(), load_hwdb(environ={})
    t0 = time.perf_counter()
    errors = runs_table(cal, db)
    elapsed = time.perf_counter() - t0
    print()
    for (use, typed), e in sorted(errors.items()):
        print(f"{use:9} runs ({len(e):2}), {'typed as a user' if typed == 'user' else 'published layout pinned':24}: "
              f"median |error| {statistics.median(map(abs, e)):5.1%}, worst {max(map(abs, e)):5.1%}, "
              f"mean signed {statistics.fmean(e):+.1%}")
    fitted = fit_efficiency(cal, db)
    print(f"framework efficiency: stored {cal.framework_efficiency:.3f}, re-fitted on the calibrate runs "
          f"{fitted:.3f}" + ("" if abs(fitted - cal.framework_efficiency) < 5e-4 else
                             "   <- update fitted.framework_efficiency in sizing/predict/calibration.yaml"))
    user = errors[("validate", "user")]
    median, worst = statistics.median(map(abs, user)), max(map(abs, user))
    met = median <= MEDIAN_TARGET and worst <= WORST_TARGET
    print(f"targets (validate, typed as a user): median <= {MEDIAN_TARGET:.0%} and worst <= {WORST_TARGET:.0%}: "
          f"{'met' if met else 'NOT met'} (median {median:.1%}, worst {worst:.1%})")
    fractions_table(cal, db)
    print(f"\n{len(cal.runs)} runs planned twice in {elapsed:.2f} s")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
