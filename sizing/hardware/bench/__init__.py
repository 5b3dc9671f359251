"""``sizing bench``: this machine's measured FLOPS and memory bandwidth against its physical peak (issue 4).

- ``cpu``: identity, SIMD level, the microarchitecture table with sources, theoretical-peak arithmetic.
- ``kernels``: the Numba kernels (FMA chains, clock chain, STREAM).
- ``measure``: the run (``run_bench``) and its raw repeats (``BenchResult``).
- ``report``: JSON, table.
- ``profile``: the result as a hwdb device record; the cached profile of this machine ('local').

Importing this package imports neither numpy nor numba; ``run_bench`` does.
"""
from __future__ import annotations

import json
import os
import sys

from ...common.errors import SizingError


def command(quick: bool, threads: int | None, fmt: str, save_to: str | None, no_save: bool, echo,
            chain=None, ours=None) -> None:
    """What `sizing bench` does: measure, print the table or JSON with ``echo`` (stdout), progress and what was
    saved on stderr; save the profile (unless ``no_save``) and, with ``save_to``, a record to that file.
    ``chain``: our executor's layer-call chains (measure.CallChain), timed when given; ``ours``: our executor by
    layer class (measure.LayerChains), timed when given and not ``quick``, and then PyTorch's too where torch
    is importable (torch_steps.torch_chains, in a child interpreter); where it is not, stderr says so."""
    from ..devices import local_profile_path, read_records
    from .measure import BenchConfig, run_bench, this_machine
    from .profile import check_profile, device_id_for, require_writable, to_device, write_device
    from ...common.progress import progress_bar
    from .report import table, to_dict

    if save_to == "" and no_save:
        raise SizingError("--save without a FILE keeps the profile that --no-save skips; give --save a FILE or "
                          "drop --no-save")
    if save_to and os.path.exists(save_to):
        read_records(save_to)            # a file that is not a hardware file is refused before measuring
    for path in ([] if no_save else [local_profile_path()]) + ([save_to] if save_to else []):
        require_writable(path)           # and a place no record can be written
    machine = this_machine()
    config = BenchConfig.for_machine(machine, quick=quick, threads=threads)
    layer_chains = []
    if ours is not None and not quick:
        from .torch_steps import torch_chains

        theirs = torch_chains()
        layer_chains = [ours] + ([theirs] if theirs else [])
        if theirs is None:
            echo("PyTorch is not importable here: the profile gets no PyTorch terms (run `sizing bench` from an "
                 "environment where `import torch` works to predict PyTorch's step too)", err=True)
    result = run_bench(config, machine, progress_bar(sys.stderr), chain, layer_chains)
    echo(json.dumps(to_dict(result), indent=2) if fmt == "json" else table(result))
    if not no_save:
        path = local_profile_path()
        _, problem = check_profile(path, machine)
        if problem:
            echo(f"replacing {path}: {problem}", err=True)
        write_device(to_device(result), path, keep_others=False)
        echo(f"saved this machine's profile (device 'local') to {path}", err=True)
    if save_to:
        device = to_device(result, device_id_for(save_to))
        write_device(device, save_to, keep_others=True)
        echo(f"saved device '{device.id}' to {save_to} (use it with --hwdb {save_to})", err=True)
