"""sizing: a model's FLOPs (work per step) against a device's FLOPS (work per second), exactly.

The library calls: ``estimate(spec, batch=...)`` (exact costs and memory, stage model), ``load_hwdb()`` (the device
records), ``plan(est, device, ...)`` (the performance model's prediction) and ``check(spec, ...)`` (a real Numba
training step against the estimate). The last three load on first use, so ``import sizing`` stays light."""
from .common.errors import SizingError
from .model.estimate import Estimate, estimate

__all__ = ["Estimate", "SizingError", "check", "estimate", "load_hwdb", "plan"]
__version__ = "0.1.0"

_LAZY = {"check": "execute.check", "load_hwdb": "hardware.devices", "plan": "predict.plan"}


def __getattr__(name):
    """PEP 562: the heavier library calls, imported when first asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module 'sizing' has no attribute {name!r}")
    from importlib import import_module
    return getattr(import_module(f".{_LAZY[name]}", __name__), name)
