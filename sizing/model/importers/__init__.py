"""Models from the ecosystem: a Hugging Face ``config.json`` or an ONNX file becomes the same spec data a YAML
spec loads to (a mapping with name, input, defaults, blocks, layers), so one graph builder and one set of op
formulas count all three, and ``sizing estimate --emit-yaml`` can write any of them as YAML.

Dispatch is on the file name: ``*.onnx`` -> ``onnx`` (needs the optional ``onnx`` package), ``*.json`` ->
``hf``, anything else -> the YAML loader. Nothing is ever downloaded.
"""
from __future__ import annotations

import os
import yaml

from ...common import yamlsafe
from ...common.errors import SizingError
from .loaded import Loaded


def load_spec(path: str, allow_unmapped: bool = False) -> Loaded:
    """The spec data of a file, by its type. ``allow_unmapped`` (ONNX only) counts the rest of a graph whose
    ops are not all mapped, and says so in the warnings."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")):
        path = os.path.join(path, "config.json")          # a Hugging Face model folder
    if path.endswith(".onnx"):
        from . import onnx
        return onnx.load(path, allow_unmapped)
    if allow_unmapped:
        raise SizingError("--allow-unmapped applies to ONNX files (*.onnx) only", path)
    if path.endswith(".json"):
        from . import hf
        return hf.load(path)
    data, lines = yamlsafe.load(path)
    return Loaded(data, lines)


def emit_yaml(loaded: Loaded, source: str, **overrides) -> str:
    """YAML text of the spec, its defaults replaced by the given (non-None) overrides, so that loading it back
    without options gives the counts the options gave."""
    data = dict(loaded.data)
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        data["defaults"] = {**(data.get("defaults") or {}), **given}
    header = f"# Written by `sizing estimate --emit-yaml` from {source} ({loaded.origin}).\n"
    header += "".join(f"# warning: {w}\n" for w in loaded.warnings)
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)


class _Dumper(yaml.SafeDumper):
    """Safe YAML in the zoo's layout: each layer (and block use) on one line, ``{op: linear, ...}``, and
    lists of numbers or names in brackets."""


def _mapping(dumper: yaml.SafeDumper, d: dict):
    return dumper.represent_mapping("tag:yaml.org,2002:map", d, flow_style="op" in d or "block" in d)


def _sequence(dumper: yaml.SafeDumper, items: list):
    flat = all(not isinstance(v, (dict, list)) for v in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flat)


_Dumper.add_representer(dict, _mapping)
_Dumper.add_representer(list, _sequence)
