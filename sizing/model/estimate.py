"""``sizing.estimate(spec)``: the library call behind ``sizing estimate`` (the JSON output is ``to_dict()``)."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from importlib import resources
from typing import Callable

from . import finetune as finetune_mod
from . import graph as graph_mod
from .cost import Cost, total
from .counting import LayerCost, count, trained_params, updated_params
from ..common.errors import SizingError
from .graph import Graph
from .importers import load_spec
from .memory import Memory, optimizer_flops, training_memory


def zoo_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("sizing.zoo").iterdir() if p.name.endswith(".yaml"))


def resolve(spec: str) -> str:
    """A spec path as given, or a zoo model by name ('resnet50'). Errors name what exists."""
    if os.path.exists(spec) or os.sep in spec or spec.endswith((".yaml", ".yml")):
        return spec
    candidate = resources.files("sizing.zoo") / f"{spec}.yaml"
    if candidate.is_file():
        return str(candidate)
    from ..common.errors import closest
    raise SizingError(f"no such file, and no zoo model named '{spec}'{closest(spec, zoo_names())} "
                      f"(zoo: {', '.join(zoo_names())})", spec)


def load_graph(spec: str | os.PathLike, allow_unmapped: bool = False, finetune: tuple | None = None,
               **overrides) -> Graph:
    """Graph of a YAML spec, a Hugging Face config.json or an ONNX file (by the file's type, sizing.model.importers);
    ``finetune``: (method, rank, targets) for sizing.model.finetune.apply."""
    spec = os.fspath(spec)
    path = resolve(spec)
    loaded = load_spec(path, allow_unmapped)
    data = loaded.data if finetune is None else finetune_mod.apply(loaded.data, *finetune)
    g = graph_mod.build(data, loaded.lines, spec if not os.path.exists(spec) else path, **overrides)
    return replace(g, warnings=loaded.warnings + g.warnings)


@dataclass(frozen=True)
class Estimate:
    graph: Graph
    layers: tuple[LayerCost, ...]
    totals: Cost
    input_kept: int
    memory: Memory
    optimizer_flops: int

    @property
    def settings(self):
        return self.graph.settings

    @cached_property
    def trainable_params(self) -> int:
        """Params of the layers whose weights train (computed once: the planner asks for it per layout)."""
        return sum(map(trained_params, self.layers))

    def derived(self, key, make: Callable[[], object]):
        """``make()``, computed once per ``key`` for this estimate and kept on it (as ``trainable_params`` is): the
        planner asks for the same device-independent sums of one estimate on every candidate device."""
        memo = self.__dict__.setdefault("_derived", {})
        if key not in memo:
            memo[key] = make()
        return memo[key]

    def to_dict(self) -> dict:
        t, s = self.totals, self.settings
        return {
            "model": self.graph.name,
            "source": self.graph.source,
            "batch": s["batch"],
            "dtype": s["dtype"],
            "seq_len": s["seq_len"],
            "optimizer": {"name": s["optimizer"], "flops": self.optimizer_flops},
            "input_shape": list(self.graph.input.shape),
            "params": t.params,
            "trainable_params": self.trainable_params,
            "buffers": t.buffers,
            "forward": {"macs": t.macs, "flops": t.flops, "bytes": t.bytes_read + t.bytes_written},
            "backward": {"flops": t.backward_flops},
            "training_step": {"flops": t.flops + t.backward_flops,
                              "flops_with_optimizer": t.flops + t.backward_flops + self.optimizer_flops},
            "memory_bytes": self.memory.as_dict(),
            "layers": [
                {"name": r.node.name, "op": r.node.op, "repeat": r.node.repeat,
                 "output_shape": list(r.node.out.shape), "params": r.cost.params, "macs": r.cost.macs,
                 "flops": r.cost.flops, "backward_flops": r.cost.backward_flops,
                 "bytes": r.cost.bytes_read + r.cost.bytes_written, "activation_bytes": r.cost.saved_bytes,
                 **({"note": r.note} if r.note else {})}
                for r in self.layers],
            "warnings": list(self.graph.warnings),
        }


def estimate(spec: str | os.PathLike, batch: int | None = None, dtype: str | None = None, optimizer: str | None = None,
             seq_len: int | None = None) -> Estimate:
    """Exact counts and training memory of a spec (a path or a zoo name); None keeps the spec's default."""
    g = load_graph(spec, batch=batch, dtype=dtype, optimizer=optimizer, seq_len=seq_len)
    return estimate_graph(g)


def estimator(spec: str | os.PathLike, allow_unmapped: bool = False, finetune: tuple | None = None,
              **overrides) -> Callable[[int], Estimate]:
    """The spec's Estimate at any batch (the planner's micro-batches; None: the spec's own): the file is read once,
    each batch's graph built and counted once. ``overrides`` (dtype, optimizer, seq_len) as for ``estimate``;
    ``finetune`` as for ``load_graph``."""
    spec = os.fspath(spec)
    path = resolve(spec)
    loaded = load_spec(path, allow_unmapped)
    data = loaded.data if finetune is None else finetune_mod.apply(loaded.data, *finetune)
    source = spec if not os.path.exists(spec) else path

    @lru_cache(maxsize=None)
    def at(batch: int | None) -> Estimate:
        g = graph_mod.build(data, loaded.lines, source, batch=batch, **overrides)
        return finetuned(estimate_graph(replace(g, warnings=loaded.warnings + g.warnings)), finetune)
    return at


def finetuned(est: Estimate, finetune: tuple | None) -> Estimate:
    """The estimate as fine-tuning leaves it (sizing.model.finetune.finished: QLoRA's 4-bit base weights in the
    memory, and what the count leaves out said); without ``finetune``, as counted."""
    return finetune_mod.finished(est, finetune) if finetune else est


def estimate_graph(g: Graph) -> Estimate:
    rows, input_kept = count(g)
    t = total(r.cost for r in rows)
    updated = updated_params(rows)
    mem = training_memory(t.params, updated, t.buffers, t.saved_bytes + input_kept, g.settings["dtype"],
                          g.settings["optimizer"])
    return Estimate(g, tuple(rows), t, input_kept, mem, optimizer_flops(updated, g.settings["optimizer"]))
