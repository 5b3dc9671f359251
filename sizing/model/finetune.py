"""Fine-tuning as a spec transform: the spec data of a model (as a YAML spec or an importer gives it) with its base
frozen and LoRA adapters attached to the targeted linear layers (Hu et al. 2021, "LoRA", arXiv:2106.09685;
Dettmers et al. 2023, "QLoRA", arXiv:2305.14314), so the one graph builder and counting rules count them.

A targeted linear layer X (in -> out) becomes: X_base (the frozen original), X_lora_A (linear in -> r, no bias),
X_lora_B (linear r -> out, no bias) on the same input, and an add named X of the two, so whatever read X reads the
sum: h = W x + B A x (the scaling alpha / r is not counted). Trainable parameters r (in + out) per target, as PEFT
prints them. A mixture of experts whose router or experts are targeted (by their module names, ``expert_modules``)
gets the op's own adapters (``lora_rank``, ``lora_targets``) on every expert, its base frozen. docs/conventions.md
states the memory of each method.
"""
from __future__ import annotations

import copy

from ..common.errors import SizingError, closest
from .ops.transformer import ROLES

METHODS = ("full", "lora", "qlora")
ALL_LINEAR = "all-linear"
# bits per frozen linear weight under QLoRA: NF4 (4) + double quantization (Dettmers et al. 2023, section 3:
# 0.127 bits per parameter for blocks of 64 with fp8 second-level constants in blocks of 256)
NF4_BITS = 4.127


def _layer_lists(data) -> list[list]:
    """The spec's top-level layers and each block's layers."""
    return [data.get("layers") or []] + [b.get("layers") or [] for b in (data.get("blocks") or {}).values()
                                         if isinstance(b, dict)]


def _items(data, op: str) -> list[dict]:
    """Every layer of op ``op`` in the spec's layers and blocks."""
    return [item for items in _layer_lists(data) for item in items if isinstance(item, dict) and item.get("op") == op]


def expert_modules(item: dict) -> dict[str, str]:
    """A mixture of experts' module names by role (gate: the router; w1, w3, w2: each expert's gate, up and down
    projections): its ``modules`` (the importer's Hugging Face names), else the op's own weight names; a role
    whose module is null (DeepSeek's router, a bare parameter) has none."""
    given = item.get("modules") if isinstance(item.get("modules"), dict) else {}
    return {role: given.get(role, role) for role in ROLES if isinstance(given.get(role, role), str)}


def module_of(item: dict):
    """The module a layer stands for, which --lora-targets matches: its ``module`` (the importer's Hugging Face
    path inside the decoder layer, as shared_expert.gate_proj), else its name."""
    return item.get("module", item.get("name"))


def matches(target: str, module: str) -> bool:
    """PEFT's rule for a list of target_modules (check_target_module_exists): the module's name is the target or
    ends with '.' + target."""
    return module == target or module.endswith("." + target)


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
    linears = _items(data, "linear")
    names = sorted({m for m in map(module_of, linears) if isinstance(m, str)}
                   | {m for item in _items(data, "mixture_of_experts") for m in expert_modules(item).values()})
    if targets in (None, ALL_LINEAR):
        head = {module_of(item) for item in linears if item.get("name") in head_names(data)}
        wanted = set(names) - head
    else:
        given = [t.strip() for t in targets.split(",") if t.strip()]
        unknown = [t for t in given if not any(matches(t, m) for m in names)]
        if unknown or not given:
            bad = unknown[0] if unknown else targets
            raise SizingError(f"--lora-targets: '{bad}' is not a linear layer of the model{closest(bad, names)}; "
                              f"it has {', '.join(names) or 'none'} (or give {ALL_LINEAR})")
        wanted = {m for m in names if any(matches(t, m) for t in given)}
    for items in _layer_lists(data):
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
        roles = [role for role, module in expert_modules(item).items() if module in wanted] \
            if item.get("op") == "mixture_of_experts" else []
        if roles:       # adapters on the experts (and router) it names; its own weights stay frozen
            frozen.update(trainable=True, lora_rank=rank, lora_targets=roles)
        name = item.get("name")
        adapted = item.get("op") == "linear" and module_of(item) in wanted
        if adapted and "inputs" not in item and before is not None and not before.get("name"):
            before["name"] = previous = f"lora_input_{k}"          # name the unnamed layer the adapters read
        if adapted:
            source = item.get("inputs", previous)
            base = {**frozen, "name": f"{name}_base", "inputs": source}
            base.pop("module", None)
            lora_a = {"op": "linear", "name": f"{name}_lora_A", "out_features": rank, "bias": False,
                      "inputs": source}
            lora_b = {"op": "linear", "name": f"{name}_lora_B", "out_features": item["out_features"], "bias": False}
            out += [base, lora_a, lora_b, {"op": "add", "name": name, "inputs": [f"{name}_base", f"{name}_lora_B"]}]
        else:
            out.append(frozen)
        before = out[-1]
        previous = name or previous
    items[:] = out


def nf4_params(row, head: set) -> int:
    """Params of a row that QLoRA stores in NF4 (bitsandbytes replaces the frozen nn.Linear modules but the
    head): a frozen linear layer's; a mixture of experts' frozen experts, and its router where the router is a
    module (not DeepSeek's bare parameter)."""
    n = row.node
    if n.op == "linear":
        return row.cost.params if not n.trainable and n.name not in head else 0
    if n.op != "mixture_of_experts" or (n.trainable and n.kwargs["lora_rank"] is None):
        return 0
    a, e = n.kwargs, n.in_types[0].shape[-1]
    router = dict(a["modules"] or ()).get("gate", "gate") is not None
    return a["num_experts"] * e * (3 * a["intermediate_size"] + router) * n.repeat


def qlora_memory(est):
    """``est`` with QLoRA's memory: frozen linear weights (``nf4_params``) in NF4 with double quantization
    (``NF4_BITS`` per parameter), everything else at the compute precision; the adapters' optimizer state in
    paged memory (QLoRA's paged AdamW: NVIDIA unified memory, moved to host RAM when the GPU runs short), so not
    on the device."""
    from dataclasses import replace

    from .graph import DTYPES

    size = DTYPES[est.settings["dtype"]]
    head = {est.layers[-1].node.name} if est.layers and est.layers[-1].node.op == "linear" else set()
    quantized = sum(nf4_params(r, head) for r in est.layers)
    weights = -(-int(quantized * NF4_BITS) // 8) + (est.totals.params - quantized) * size + est.totals.buffers * 4
    return replace(est, memory=replace(est.memory, weights=weights, optimizer=0))
