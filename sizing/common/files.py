"""Writing what the user asked for without losing what they had: a file that exists is kept unless --force, the
check happens before the work, a new file is created exclusively (of two runs racing for one name, the second
gets a one-line error), and an overwrite goes through a temporary file renamed into place, so a failed write
leaves the old file whole and no temporary behind (a device or FIFO the user names is written to, never
replaced)."""
from __future__ import annotations

import os
import stat
import tempfile

from .errors import SizingError


def require_regular(path: str, what: str) -> None:
    """SizingError, one line, unless ``path`` is a regular file: missing, a directory, or a pipe, socket or device
    (opening a FIFO with no writer would block forever)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise SizingError("no such file", path) from None
    except OSError as e:
        raise SizingError(f"cannot read: {e.strerror}", path) from None
    if stat.S_ISDIR(mode):
        raise SizingError(f"is a directory, not {what}", path)
    if not stat.S_ISREG(mode):
        raise SizingError(f"is not a regular file (a pipe, socket or device); give {what} as a file", path)


def read_bounded(path: str, limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (SizingError past that)."""
    require_regular(path, what)
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise SizingError(f"cannot read: {e.strerror}", path) from None
    if len(raw) > limit:
        raise SizingError(f"file is over {limit} bytes; {what} may be at most {limit} bytes", path)
    return raw


def _temporary(path: str, what: str) -> tuple[int, str]:
    """(fd, name) of a new temporary file beside ``path``, through which ``--force`` replaces a regular file;
    SizingError, one line, when its folder takes no new files (/proc, a read-only mount, a full disk)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        return tempfile.mkstemp(prefix=".sizing-", suffix=".tmp", dir=folder)
    except OSError:
        raise SizingError(f"{what}: cannot write {path}: --force replaces a file through a new temporary file in "
                          f"its folder, and {folder} takes no new files; write the output to another folder") from None


def check_writable(path: str, force: bool, what: str = "--output") -> None:
    """SizingError, one line, when ``path`` could not be written: it exists (without ``force``), is a directory,
    its directory is missing or not writable, or (``force`` on a regular file) no temporary file can be made
    beside it."""
    if os.path.isdir(path):
        raise SizingError(f"{what}: {path} is a directory; give a file name")
    if os.path.lexists(path) and not force:
        raise SizingError(f"{what}: {path} exists; add --force to overwrite it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SizingError(f"{what}: cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise SizingError(f"{what}: cannot write {path}: the folder {folder} is not writable")
    if force and os.path.isfile(path):
        fd, tmp = _temporary(path, what)
        os.close(fd)
        os.unlink(tmp)


def write_text(path: str, text: str, force: bool, what: str = "--output") -> None:
    """Write ``text`` to ``path``: exclusively when not ``force``, else through a temporary file and a rename."""
    created = False
    try:
        if not force:
            with open(path, "x", encoding="utf-8") as f:
                created = True
                f.write(text)
            return
        if os.path.exists(path) and not os.path.isfile(path):
            with open(path, "w", encoding="utf-8") as f:        # a device or FIFO: written, never replaced
                f.write(text)
            return
        fd, tmp = _temporary(path, what)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except FileExistsError:
        raise SizingError(f"{what}: {path} exists (written meanwhile?); add --force to overwrite it") from None
    except OSError as e:
        if created:
            os.unlink(path)                     # our own partial file: nothing of the user's is lost
        raise SizingError(f"{what}: cannot write {path}: {e.strerror or e}") from None
