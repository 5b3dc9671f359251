"""Progress of long work on stderr (the Numba check, the benchmark): ``progress(done, total, label)`` callables;
results stay on stdout."""
from __future__ import annotations


def progress_bar(stream):
    """A ``progress(done, total, label)`` that redraws one line on ``stream`` (a terminal), erased at the end;
    None when ``stream`` is not a terminal."""
    if not stream.isatty():
        return None
    width = 30

    def show(done: int, total: int, label: str) -> None:
        filled = width * done // total
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}"[:100].ljust(100))
        if done == total:
            stream.write("\r" + " " * 100 + "\r")
        stream.flush()

    return show


def progress_lines(stream):
    """A ``progress(done, total, label)`` that writes one line per call (a log, a pipe): '[done/total] label'."""
    def show(done: int, total: int, label: str) -> None:
        stream.write(f"[{done}/{total}] {label}\n")
        stream.flush()

    return show
