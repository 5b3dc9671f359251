"""The performance model against published measurements (sizing/predict/calibration.yaml).

Prints, for every published training run, the published figure, both sides as model FLOPs utilisation and the
relative error of the prediction (predicted / published - 1: the error of the throughput, inversely of the time);
the median absolute error over the `validate` runs (target: at most 20%) and, apart, over the `calibrate` runs the
framework efficiency was fitted on; the efficiency re-fitted from the calibrate runs against the stored one; the
achieved fractions each device gets; and the cost of one prediction for a tiny and a 10^11-parameter model on
10^4 devices (their ratio should be near 1: nothing in the model loops over devices or steps).

    python benchmarks/bench_calibration.py
"""
from __future__ import annotations

import statistics
import sys
import time

from sizing.predict.published import compare, fit_efficiency, run_setup, transformer_spec
from sizing.predict.calibration import shipped
from sizing.hardware.devices import load_hwdb
from sizing.model.estimate import estimate_graph
from sizing.model.graph import build
from sizing.predict.setup import Setup
from sizing.predict.training import predict
from sizing.predict.workload import Workload

TARGET = 0.20


def runs_table(cal, db) -> dict[str, list[float]]:
    errors: dict[str, list[float]] = {"calibrate": [], "validate": []}
    print(f"{'run':22} {'use':9} {'device':16} {'count':>6} {'published':>24} {'MFU pub':>8} {'MFU pred':>8} "
          f"{'error':>7}  bound")
    for run in cal.runs:
        c = compare(run, cal, db)
        errors[run.use].append(c.error)
        pub = f"{run.published} {run.value:g}"
        print(f"{run.id:22} {run.use:9} {run.device:16} {run.devices:6} {pub:>24} {c.published_mfu:8.3f} "
              f"{c.predicted_mfu:8.3f} {c.error:+7.1%}  {c.prediction.bound}")
    return errors


def fractions_table(cal, db) -> None:
    seen = []
    for run in cal.runs:
        if run.device not in seen:
            seen.append(run.device)
    print(f"\n{'device':16} {'precision':9} {'compute':>8} {'memory':>7}  where from")
    for device_id in seen:
        run = next(r for r in cal.runs if r.device == device_id)
        workload, _, _ = run_setup(run)
        f = cal.factors(cal.device(device_id, db), workload.compute_precision, db)
        print(f"{device_id:16} {workload.compute_precision:9} {f.compute_fraction:8.3f} {f.memory_fraction:7.3f}  "
              + "; ".join(f.notes))


def scale_check(cal, db) -> float:
    """Seconds for one prediction (graph and estimate included) of a tiny and a huge model; their ratio."""
    device = db["h100-sxm"]
    timings = []
    for layers, d_model, heads, devices in ((2, 64, 4, 1), (80, 32768, 256, 10_000)):
        spec = transformer_spec("scale", layers, d_model, heads, 4 * d_model, 32000, 2048)
        workload = Workload(batch=4, dtype="bf16", tokens=10 ** 12)
        t0 = time.perf_counter()
        for _ in range(5):
            est = estimate_graph(build(spec, {}, "scale check", **workload.estimate_args()))
            pred = predict(est, workload, device, Setup(devices=devices, zero=3, recompute=True),
                           cal.factors(device, "bf16", db))
        timings.append((time.perf_counter() - t0) / 5)
        print(f"  {est.trainable_params:>18,} params on {devices:>6} devices: {timings[-1] * 1e3:7.2f} ms per "
              f"prediction (step {pred.step_seconds:.3g} s, {pred.steps:,} steps)")
    return timings[1] / timings[0]


def main() -> int:
    cal, db = shipped(), load_hwdb(environ={})
    t0 = time.perf_counter()
    errors = runs_table(cal, db)
    elapsed = time.perf_counter() - t0
    for use in ("calibrate", "validate"):
        e = errors[use]
        print(f"\nmedian absolute error, {use} runs ({len(e)}): {statistics.median(map(abs, e)):.1%}"
              f"   (max {max(map(abs, e)):.1%}; mean signed {statistics.fmean(e):+.1%})")
    fitted = fit_efficiency(cal, db)
    print(f"framework efficiency: stored {cal.framework_efficiency:.3f}, re-fitted on the calibrate runs "
          f"{fitted:.3f}" + ("" if abs(fitted - cal.framework_efficiency) < 5e-4 else
                             "   <- update fitted.framework_efficiency in sizing/predict/calibration.yaml"))
    median_validate = statistics.median(map(abs, errors["validate"]))
    print(f"target: validate median absolute error <= {TARGET:.0%}: "
          f"{'met' if median_validate <= TARGET else 'NOT met'} ({median_validate / TARGET:.2f} of the target)")
    fractions_table(cal, db)
    print(f"\n{len(cal.runs)} runs predicted in {elapsed:.2f} s\nscale:")
    ratio = scale_check(cal, db)
    print(f"  huge / tiny time ratio: {ratio:.2f}")
    return 0 if median_validate <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
