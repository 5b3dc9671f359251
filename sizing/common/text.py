"""User text made safe for the medium it lands in (the writers and the CLI apply these; nothing else escapes).

- ``terminal``: control characters (C0, DEL, C1: ESC sequences that retitle a window, a newline that forges a
  second line) written as visible escapes (\\x1b, \\n), so a name prints as one inert line.
- ``csv_cell``: a text cell that a spreadsheet would run as a formula (it begins with =, +, -, @, a tab or a
  carriage return) gets a leading apostrophe, as OWASP's CSV-injection guidance recommends; numbers pass as they
  are.
- ``markdown``: text inert in a Markdown table cell or paragraph (the writers put it in cells or after a list or
  heading marker, never at a line's start): the characters that make links, images, emphasis, code, raw HTML and
  table pipes backslash-escaped, bare URLs kept from autolinking, on one line.
"""
from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~])")
_AUTOLINK = re.compile(r"(?i)(:)(?=//)|(?<=www)(\.)")


def terminal(text) -> str:
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), str(text))


def csv_cell(value):
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def markdown(text) -> str:
    escaped = _MARKDOWN.sub(r"\\\1", terminal(text))
    return " ".join(_AUTOLINK.sub(lambda m: "\\" + m.group(), escaped).split())
