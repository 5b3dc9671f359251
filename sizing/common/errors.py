"""The one error type the user sees: a single line naming file, line or layer, field and what is valid."""
from __future__ import annotations


class SizingError(Exception):
    """A problem in the user's input. ``str()`` is the one-line message the CLI prints."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    def located(self, file: str | None = None, line: int | None = None) -> "SizingError":
        """The same error with a file and line filled in where they were unknown."""
        return SizingError(self.message, self.file or file, self.line or line)

    def __str__(self) -> str:
        """One line of at most 600 characters: control characters in quoted values are escaped, and a huge
        quoted value is cut from the middle (the location leads and what is valid ends the line)."""
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in f"{where}{self.message}")
        return text if len(text) <= 600 else f"{text[:300]} ... {text[-250:]}"


def closest(word: str, choices) -> str:
    """'; did you mean X?' for the closest of ``choices``, or '' when none is close."""
    import difflib

    match = difflib.get_close_matches(str(word), sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""
