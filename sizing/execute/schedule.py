"""The order a graph runs in: plain layers and folded groups (each group's body ``repeat`` times, iteration
k+1 taking iteration k's output), and which copy of a tensor a layer reads. Tensors are keyed (name, copy).

Pure Python: the PyTorch side of benchmarks/bench_check.py walks graphs with it too.
"""
from __future__ import annotations

from ..model.graph import Graph, Group


class Schedule:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.groups = {g.name: g for g in graph.groups}
        self.index = {n.name: i for i, n in enumerate(graph.nodes)}

    def segments(self) -> list[tuple[Group | None, list[int]]]:
        """(group or None, node indices) in graph order."""
        out, seen = [], set()
        for i, n in enumerate(self.graph.nodes):
            if n.group is None:
                out.append((None, [i]))
            elif n.group not in seen:
                seen.add(n.group)
                out.append((self.groups[n.group], [j for j, m in enumerate(self.graph.nodes) if m.group == n.group]))
        return out

    def key(self, name: str, group: Group | None, k: int) -> tuple[str, int]:
        """The tensor that a layer of iteration k of ``group`` (None: outside groups) reads as ``name``."""
        if group is not None and name == group.input and k > 0:
            return group.output, k - 1
        node = self.graph.nodes[self.index[name]] if name in self.index else None
        if node is None or node.group is None:
            return name, 0
        if group is not None and node.group == group.name:
            return name, k
        return name, self.groups[node.group].repeat - 1      # a group's result read after it: the last copy

    def output(self) -> tuple[str, int]:
        return self.key(self.graph.output, None, 0)
