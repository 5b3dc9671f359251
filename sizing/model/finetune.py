"""Fine-tuning as a spec transform: the spec data of a model (as a YAML spec or an importer gives it) with its base
frozen and LoRA adapters attached to the targeted linear layers (Hu et al. 2021, "LoRA", arXiv:2106.09685;
Dettmers et al. 2023, "QLoRA", arXiv:2305.14314), so the one graph builder and counting rules count them.

A targeted linear layer X (in -> out) becomes: X_base (the frozen original), X_lora_A (linear in -> r, no bias),
X_lora_B (linear r -> out, no bias) on the same input, and an add named X of the two, so whatever read X reads the
sum: h = W x + B A x (the scaling alpha / r is not counted). Trainable parameters r (in + out) per target, as PEFT
prints them. docs/conventions.md states the memory of each method.
"""
from __future__ import annotations

import copy

from ..common.errors import SizingError, closest

METHODS = ("full", "lora", "qlora")
ALL_LINEAR = "all-linear"
# bits per frozen linear weight under QLoRA: NF4 (4) + double quantization (Dettmers et al. 2023, section 3:
# 0.127 bits per parameter for blocks of 64 with fp8 second-level constants in blocks of 256)
NF4_BITS = 4.127


def _linear_layers(data) -> list[tuple[list, int, dict]]:
    """(the list holding it, its index, the layer) for every linear layer of the spec's layers and blocks."""
    out = []
    lists = [data.get("layers") or []] + [b.get("layers") or [] for b in (data.get("blocks") or {}).values()
                                           if isinstance(b, dict)]
    for items in lists:
        for i, item in enumerate(items):
            if isinstance(item, dict) and item.get("op") == "linear":
                out.append((items, i, item))
    return out


def head_names(data) -> set[str]:
    """The output head: the last linear layer of the top-level layers when it is the last layer (PEFT's
    all-linear leaves it out)."""
    layers = data.get("layers") or []
    last = layers[-1] if layers else None
    return {last.get("name")} if isinstance(last, dict) and last.get("op") == "linear" else set()


def apply(data, method: str, rank: int | None = None, targets: str | None = None):
    """The spec data for ``method`` (full: unchanged); SizingError naming the model's linear layers when a
    target matches none of them."""
    if method not in METHODS:
        raise SizingError(f"--finetune: one of {', '.join(METHODS)}, got {method!r}")
    if method == "full":
        if rank is not None or targets is not None:
            raise SizingError("--lora-rank and --lora-targets go with --finetune lora or qlora")
        return data
    rank = 8 if rank is None else rank
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise SizingError(f"--lora-rank: a positive integer, got {rank!r}")
    if not isinstance(data, dict):
        return data
    data = copy.deepcopy(data)
    linears = _linear_layers(data)
    names = sorted({item.get("name") for _, _, item in linears if item.get("name")})
    head = head_names(data)
    if targets in (None, ALL_LINEAR):
        wanted = set(names) - head
    else:
        wanted = {t.strip() for t in targets.split(",") if t.strip()}
        unknown = sorted(wanted - set(names))
        if unknown or not wanted:
            bad = unknown[0] if unknown else targets
            raise SizingError(f"--lora-targets: '{bad}' is not a linear layer of the model{closest(bad, names)}; "
                              f"it has {', '.join(names) or 'none'} (or give {ALL_LINEAR})")
    for items in [data.get("layers") or []] + [b.get("layers") or [] for b in (data.get("blocks") or {}).values()
                                               if isinstance(b, dict)]:
        _attach(items, wanted, rank)
    return data


def _attach(items: list, wanted: set, rank: int):
    """Freeze every layer of ``items`` and replace each wanted linear layer by its base, adapters and sum."""
    out = []
    previous, before = "input", None
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            out.append(item)
            continue
        frozen = {**item, "trainable": False} if "op" in item else dict(item)
        name = item.get("name")
        if item.get("op") == "linear" and name in wanted and "inputs" not in item and before is not None \
                and not before.get("name"):
            before["name"] = previous = f"lora_input_{k}"          # name the unnamed layer the adapters read
        if item.get("op") == "linear" and name in wanted:
            source = item.get("inputs", previous)
            base = {**frozen, "name": f"{name}_base", "inputs": source}
            lora_a = {"op": "linear", "name": f"{name}_lora_A", "out_features": rank, "bias": False,
                      "inputs": source}
            lora_b = {"op": "linear", "name": f"{name}_lora_B", "out_features": item["out_features"], "bias": False}
            out += [base, lora_a, lora_b, {"op": "add", "name": name, "inputs": [f"{name}_base", f"{name}_lora_B"]}]
        else:
            out.append(frozen)
        before = out[-1]
        previous = name or previous
    items[:] = out


def qlora_memory(est):
    """``est`` with QLoRA's memory: frozen linear weights (the output head aside) in NF4 with double quantization
    (``NF4_BITS`` per parameter), everything else at the compute precision; the adapters' optimizer state in
    paged memory (QLoRA's paged AdamW: NVIDIA unified memory, moved to host RAM when the GPU runs short), so not
    on the device."""
    from dataclasses import replace

    from .graph import DTYPES

    size = DTYPES[est.settings["dtype"]]
    head = {est.layers[-1].node.name} if est.layers and est.layers[-1].node.op == "linear" else set()
    quantized = sum(r.cost.params for r in est.layers
                    if r.node.op == "linear" and not r.node.trainable and r.node.name not in head)
    weights = -(-int(quantized * NF4_BITS) // 8) + (est.totals.params - quantized) * size + est.totals.buffers * 4
    return replace(est, memory=replace(est.memory, weights=weights, optimizer=0))
