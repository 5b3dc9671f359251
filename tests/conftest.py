"""Shared test setup: every test runs as on a fresh machine.

Numba compiles every kernel the suite runs (float32, and float64 for the gradient checks) on a clean clone, most
of CI's time: at LLVM's -O1 that takes about 30% less than at Numba's default -O3 (the tests run tiny models, so
kernel speed does not matter to them; the kernels compute the same values, and every count is exact either way).
Those kernels go to a disk cache of their own, so a user's `sizing check` or `sizing bench` never loads them. A
NUMBA_OPT set by whoever runs the tests is left alone, and with it their cache."""
import os

import pytest

if "NUMBA_OPT" not in os.environ:
    os.environ["NUMBA_OPT"] = "1"
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                 ".numba-test-cache")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No bench profile (XDG cache) or SIZING_HWDB of the machine running the tests leaks in or is written."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SIZING_HWDB", raising=False)
