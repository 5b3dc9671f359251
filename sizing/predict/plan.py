"""The library call behind `sizing estimate --device`: a loose device name, the shipped calibration and what the
user knows (device count or deadline, global batch, any pinned layout dimension) -> the planner's Prediction."""
from __future__ import annotations

from typing import Callable

from ..hardware.lookup import resolve_device
from .search import Pins, search
from .training import Prediction


def plan(at: Callable[[int], object], device_name: str, hwdb_files=(), *, devices: int | None = None,
         global_batch: int | None = None, samples: int | None = None, tokens: int | None = None, epochs: int = 1,
         precision: str | None = None, pins: Pins = Pins(), objective: str = "time",
         deadline_s: float | None = None, max_devices: int = 131072, network_gbs: float | None = None,
         pue: float | None = None, environ=None, executor: str = "sizing") -> Prediction:
    """Train the model ``at`` gives (its Estimate at any micro-batch; its dtype and optimizer) on the device a
    loose ``device_name`` means (hwdb id, name, or 'local'), with the shipped calibration: the planner
    (sizing/predict/search.py) finds the layout. SizingError, one line, when the device is unknown or lacks the
    precision, when a pin is impossible, or when nothing fits. ``executor``: whose CPU step a bench profile
    predicts ('sizing': ours, 'pytorch'; calibration ``factors``)."""
    from .calibration import shipped
    from .workload import Workload

    device, db = resolve_device(device_name, hwdb_files, environ)
    s = at(pins.micro_batch or 1).settings
    workload = Workload(dtype=s["dtype"], precision=precision, optimizer=s["optimizer"], samples=samples,
                        tokens=tokens, epochs=epochs)
    factors = shipped().factors(device, workload.compute_precision, db, network_gbs=network_gbs, pue=pue,
                                executor=executor)
    return search(at, workload, device, factors, pins, devices=devices, global_batch=global_batch,
                  deadline_s=deadline_s, objective=objective, max_devices=max_devices,
                  name=at(pins.micro_batch or 1).graph.name)


def plan_serve(model, device_name: str, request, hwdb_files=(), *, devices: int | None = None, dtype: str = "bf16",
               environ=None):
    """Serve a causal LM (``model``: sizing.predict.serving.Model) on the device a loose ``device_name`` means,
    with the shipped calibration's serving efficiency: on ``devices``, or the fewest that fit and meet the
    request's targets (sizing/predict/serving.py ``plan_serving``)."""
    from .calibration import shipped
    from .serving import matmul_precision, plan_serving

    device, db = resolve_device(device_name, hwdb_files, environ)
    cal = shipped()
    factors = cal.factors(device, matmul_precision(device, request.weights, dtype), db)
    return plan_serving(model, request, device, factors, cal.serving_efficiency, devices=devices, dtype=dtype)
