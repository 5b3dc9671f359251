"""The library call behind `sizing estimate --device`: a loose device name, the shipped calibration and the
user's options -> one training Prediction."""
from __future__ import annotations

from ..common.errors import SizingError
from ..hardware.lookup import resolve_device
from .fit import choose_layout
from .setup import Setup
from .training import Prediction, predict


def plan(est, device_name: str, hwdb_files=(), *, devices: int | None = None, samples: int | None = None,
         tokens: int | None = None, epochs: int = 1, precision: str | None = None, zero: int = 0,
         recompute: bool = False, network_gbs: float | None = None, pue: float | None = None,
         environ=None) -> Prediction:
    """Train ``est``'s graph (its batch, dtype and optimizer) on the device a loose ``device_name`` means (hwdb id,
    name, or 'local'), with the shipped calibration. SizingError when the device is unknown or lacks the
    precision, or when the workload does not fit: on ``devices`` (saying the smallest count that would fit) or on
    any count (saying what a device would need)."""
    from .calibration import shipped
    from .workload import Workload

    device, db = resolve_device(device_name, hwdb_files, environ)
    s = est.settings
    workload = Workload(batch=s["batch"], dtype=s["dtype"], precision=precision, optimizer=s["optimizer"],
                        samples=samples, tokens=tokens, epochs=epochs)
    setup = Setup(devices=devices, zero=zero, recompute=recompute)
    factors = shipped().factors(device, workload.compute_precision, db, network_gbs=network_gbs, pue=pue)
    pred = predict(est, workload, device, setup, factors)
    if not pred.fits:
        least, t, _ = choose_layout(est, workload, device, Setup(zero=zero, recompute=recompute))
        raise SizingError(f"{est.graph.name} does not fit: it {pred.why}; the fewest that fit are {least} "
                          f"(tensor parallelism {t}, ZeRO-{zero})" + ("; a higher --zero shards more" if zero < 3
                                                                        else ""))
    return pred
