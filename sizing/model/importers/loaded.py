"""What an importer gives: spec data, as a YAML spec loads to, with where it came from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Loaded:
    data: Any                                   # spec data, as a YAML spec loads to
    lines: dict = field(default_factory=dict)   # path of keys -> line (YAML only)
    warnings: tuple[str, ...] = ()              # e.g. the ONNX nodes left out of partial totals
    origin: str = "YAML spec"                   # what the data was made from, for --emit-yaml's header
