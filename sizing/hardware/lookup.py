"""A device by a loose name, from the hardware database or this machine's bench profile."""
from __future__ import annotations


def resolve_device(name: str, hwdb_files=(), environ=None, say=None):
    """(device, database) for a loose device ``name``; 'local' is this machine's bench profile, re-measured when
    it is missing, corrupt or stale. A family name ('h100') means its most common part, and ``say`` (default: a
    line on stderr) is told which."""
    import sys

    from .devices import LOCAL_ID, find_device, load_hwdb

    db = load_hwdb(hwdb_files, environ)
    if name == LOCAL_ID:
        from .bench.profile import local_device
        db[LOCAL_ID] = local_device()
        return db[LOCAL_ID], db
    return find_device(db, name, say or (lambda text: print(text, file=sys.stderr))), db
