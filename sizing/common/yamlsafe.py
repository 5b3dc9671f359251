"""Safe YAML loading with limits and a line for every field.

Only ``yaml.SafeLoader`` is used. The document is composed first (aliases stay shared nodes, nothing is
expanded), its expanded size is measured against a limit (a "billion laughs" alias bomb is refused before
construction), duplicate keys, tags the safe loader cannot build (``!!python/...``) and over-long integers
are refused (PyYAML would silently keep the last of two keys), and every path of
keys and indices is mapped to its 1-based line so errors can point at it.
"""
from __future__ import annotations


import yaml

from .errors import SizingError
from .files import read_bounded

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
MAX_INT_CHARS = 40


def load(path: str) -> tuple[object, dict[tuple, int]]:
    """(data, lines): the document as plain Python data and a map from a path like ('layers', 3, 'op') to
    its line. Raises SizingError naming the file and line for every problem."""
    raw = read_bounded(path, MAX_FILE_BYTES, "a YAML spec")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SizingError(f"not UTF-8 text (byte {e.start})", path) from None
    return loads(text, path)


def loads(text: str, path: str = "<string>") -> tuple[object, dict[tuple, int]]:
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            raise SizingError("the file is empty; a spec needs at least 'input' and 'layers'", path)
        _check_size(node, path)
        lines: dict[tuple, int] = {}
        _walk(node, (), lines, path, set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(str(x) for x in (e.context, e.problem) if x)
        if "'\\t'" in what:
            what += " (indent with spaces, not tabs)"
        raise SizingError(f"invalid YAML: {what}", path, mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise SizingError(f"invalid YAML: {str(e).splitlines()[0]}", path) from None
    except RecursionError:
        raise SizingError("YAML nested too deeply", path) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines


def _check_size(root, path):
    """Expanded node count (aliases counted each time they are used), computed without expanding."""
    memo: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in memo:
            continue
        children = _children(node)
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in memo)
            continue
        memo[id(node)] = 1 + sum(memo[id(c)] for c in children)
        if memo[id(node)] > MAX_NODES:
            raise SizingError(f"YAML expands to more than {MAX_NODES} nodes (alias bomb or runaway file); "
                              "refused", path, node.start_mark.line + 1)


def _children(node):
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def _check_node(node, path):
    """Refuse, before anything is constructed, a tag the safe loader cannot build (``!!python/...``, custom
    tags) and an integer too long to be a size (Python refuses to parse one of over 4300 digits)."""
    line = node.start_mark.line + 1
    if node.tag not in yaml.SafeLoader.yaml_constructors:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise SizingError(f"YAML tag '{tag}' is not allowed: a spec holds plain values (mappings, lists, "
                          "strings, numbers, true/false, null)", path, line)
    if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_INT_CHARS:
        raise SizingError(f"a {len(node.value)}-character integer; numbers in a spec have at most "
                          f"{MAX_INT_CHARS} characters", path, line)


def _walk(node, where, lines, path, seen):
    lines.setdefault(where, node.start_mark.line + 1)
    if id(node) in seen:            # an alias: its lines are those of the anchor
        return
    seen.add(id(node))
    _check_node(node, path)
    if isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            _walk(child, where + (i,), lines, path, seen)
    elif isinstance(node, yaml.MappingNode):
        keys = set()
        for k, v in node.value:
            _check_node(k, path)
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key in keys and key is not None:
                raise SizingError(f"duplicate key '{key}'", path, k.start_mark.line + 1)
            keys.add(key)
            if key is not None:
                lines[where + (key,)] = k.start_mark.line + 1
                _walk(v, where + (key,), lines, path, seen)
