"""Fine-tuning as a spec transform: the spec data of a model (as a YAML spec or an importer gives it) with its base
frozen and LoRA adapters attached to the targeted linear layers (Hu et al. 2021, "LoRA", arXiv:2106.09685;
Dettmers et al. 2023, "QLoRA", arXiv:2305.14314), so the one graph builder and counting rules count them.

A targeted linear layer X (in -> out) becomes: X_base (the frozen original), X_lora_A (linear in -> r, no bias),
X_lora_B (linear r -> out, no bias) on the same input, and an add named X of the two, so whatever read X reads the
sum: h = W x + B A x (the scaling alpha / r is not counted). Trainable parameters r (in + out) per target, as PEFT
prints them. A mixture of experts whose router or experts are targeted (by their module names, ``expert_modules``)
gets the op's own adapters (``lora_rank``, ``lora_targets``, and ``lora_experts`` when a target names some experts),
its base frozen. Targets match the full module names the Hugging Face model has (``_modules``), so a target naming
one decoder layer splits the repeated layers into runs of alike copies. docs/conventions.md states the memory of
each method.
"""
from __future__ import annotations

import copy
import itertools
import re

from ..common.errors import SizingError, closest
from .ops.transformer import ROLES

METHODS = ("full", "lora", "qlora")
ALL_LINEAR = "all-linear"
DEFAULT_RANK = 8
# bits per frozen linear weight under QLoRA: NF4 (4) + double quantization (Dettmers et al. 2023, section 3:
# 0.127 bits per parameter for blocks of 64 with fp8 second-level constants in blocks of 256)
NF4_BITS = 4.127
EXPERTS = "experts"          # a mixture of experts' nn.ModuleList of experts (transformers 4.x)
MAX_MODULES = 10 ** 6        # module names a numbered target or a regular expression is matched against
REGEX = frozenset("*+?[](){}|^$\\")   # a --lora-targets with one of these is a regular expression


def _layer_lists(data) -> list[list]:
    """The spec's top-level layers and each block's layers."""
    return [data.get("layers") or []] + [b.get("layers") or [] for b in (data.get("blocks") or {}).values()
                                         if isinstance(b, dict)]


def expert_modules(item: dict) -> dict[str, str]:
    """A mixture of experts' module names by role (gate: the router; w1, w3, w2: each expert's gate, up and down
    projections): its ``modules`` (the importer's Hugging Face names), else the op's own weight names; a role
    whose module is null (DeepSeek's router, a bare parameter) has none."""
    given = item.get("modules") if isinstance(item.get("modules"), dict) else {}
    return {role: given.get(role, role) for role in ROLES if isinstance(given.get(role, role), str)}


def module_of(item: dict):
    """The module a layer stands for, which --lora-targets matches: its ``module`` (the importer's Hugging Face
    path inside the decoder layer, as mlp.shared_expert.gate_proj), else its name."""
    return item.get("module", item.get("name"))


def matches(target: str, module: str) -> bool:
    """PEFT's rule for a list of target_modules (check_target_module_exists): the module's name is the target or
    ends with '.' + target."""
    return module == target or module.endswith("." + target)


def _count(value, default: int = 1) -> int:
    """A positive integer as given (repeat, num_experts), else ``default`` (the graph builder refuses it)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else default


def _own_modules(item, every: bool):
    """(path, role, expert) of the linear modules a layer is: a linear layer's module (role and expert None); a
    mixture of experts' router, <module>.<gate>, and each expert's projections, <module>.experts.<j>.<w1>
    (transformers 4.x: one nn.Linear per expert and projection). ``every`` false: expert 0 alone, standing for
    all (expert None)."""
    if not isinstance(item, dict):
        return
    if item.get("op") == "linear" and isinstance(module_of(item), str):
        yield module_of(item), None, None
    elif item.get("op") == "mixture_of_experts" and isinstance(module_of(item), str):
        for role, name in expert_modules(item).items():
            if role == "gate":
                yield f"{module_of(item)}.{name}", role, None
                continue
            for j in range(_count(item.get("num_experts")) if every else 1):
                yield f"{module_of(item)}.{EXPERTS}.{j}.{name}", role, j if every else None


def _uses(data):
    """(top-level index, block use, block layers, path of each copy): a use's copies are <module>.<k>, numbered
    from 0 across the uses of one ``module`` (the decoder layers' nn.ModuleList, model.layers.k), else
    <name>.<k> (<name> when it has one copy), as the graph builder names them."""
    blocks, numbered = data.get("blocks") or {}, {}
    for t, item in enumerate(data.get("layers") or []):
        if not isinstance(item, dict) or "block" not in item:
            continue
        block = blocks.get(item["block"]) if isinstance(item["block"], str) else None
        if not isinstance(block, dict) or not isinstance(block.get("layers"), list):
            continue
        repeat, prefix = _count(item.get("repeat")), item.get("module")
        if isinstance(prefix, str):
            first = numbered.get(prefix, 0)
            numbered[prefix] = first + repeat
            yield t, item, block["layers"], lambda k, p=prefix, f=first: f"{p}.{f + k}"
        else:
            name = item.get("name", f"{item['block']}_{t}")
            yield t, item, block["layers"], lambda k, n=name, r=repeat: f"{n}.{k}" if r > 1 else n


def _modules(data, every: bool):
    """(full name, where) of each linear module of the model, where = (top-level index, copy, layer index, role,
    expert). ``every`` false: copy 0 of each block use and expert 0 of each mixture of experts, standing for all
    (copy and expert None), enough for a target without numbered parts, which matches every copy or none."""
    for t, item in enumerate(data.get("layers") or []):
        if isinstance(item, dict) and "block" not in item:
            for path, role, j in _own_modules(item, every):
                yield path, (t, None, None, role, j)
    for t, use, layers, path_of in _uses(data):
        for k in range(_count(use.get("repeat")) if every else 1):
            for i, item in enumerate(layers):
                for path, role, j in _own_modules(item, every):
                    yield f"{path_of(k)}.{path}", (t, k if every else None, i, role, j)


def _head(data) -> set[int]:
    """Top-level indices of the output head, which PEFT's all-linear leaves out (get_output_embeddings()): the
    last layer when it is linear, and a linear layer to the vocabulary of the model's embedding (lm_head, before
    Gemma 2's soft-capping)."""
    layers = data.get("layers") or []
    vocab = {item.get("num_embeddings") for item in layers if isinstance(item, dict) and item.get("op") == "embedding"}
    return {t for t, item in enumerate(layers) if isinstance(item, dict) and item.get("op") == "linear" and (
        t == len(layers) - 1 or item.get("out_features") in vocab)}


def _targets(targets: str) -> tuple[list, bool]:
    """--lora-targets as (text, predicate on a full module name) per target, and whether they can tell the copies
    of a layer or the experts apart (a regular expression, or a name with a numbered part, as layers.5.mlp.down_proj):
    a value with any of ``REGEX`` is one regular expression matched whole, as PEFT matches a target_modules string
    (re.fullmatch); else comma-separated names, each matched as PEFT matches a list (``matches``)."""
    if REGEX & set(targets):
        try:
            pattern = re.compile(targets)
        except re.error as e:
            raise SizingError(f"--lora-targets: '{targets}' is not a valid regular expression ({e})") from None
        return [(targets, lambda name: pattern.fullmatch(name) is not None)], True
    given = [t.strip() for t in targets.split(",") if t.strip()]
    numbered = any(part.isdigit() for t in given for part in t.split("."))
    return [(t, lambda name, t=t: matches(t, name)) for t in given], numbered


def _unknown(target: str, data, regex: bool) -> SizingError:
    """The error for a target that names no linear module: the modules' own names, the closest of the names it
    could have given (every dotted tail of a module's full name), and how the full names run."""
    names = [name for name, _ in _modules(data, False)]
    tails = {".".join(n.split(".")[i:]) for n in names for i in range(len(n.split(".")))}
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
    lists: dict[str, int] = {}          # copies in each module list (model.layers: 0 to layers - 1)
    for _, use, _, _ in _uses(data):
        if isinstance(use.get("module"), str):
            lists[use["module"]] = lists.get(use["module"], 0) + _count(use.get("repeat"))
    runs = ", ".join(f"{prefix}.0 to {n - 1}" for prefix, n in lists.items() if n > 1)
    example = next((n for n in names if n.count(".") > 1), None)
    full = f"full names as {example}" + (f", {runs}" if runs else "") + "; " if example else ""
    what = f"the regular expression '{target}' matches no" if regex else f"'{target}' is not a"
    return SizingError(f"--lora-targets: {what} linear layer of the model{'' if regex else closest(target, tails)}; "
                       f"it has {', '.join(leaves) or 'none'} ({full}or give {ALL_LINEAR})")


def apply(data, method: str, rank: int | None = None, targets: str | None = None):
    """The spec data for ``method`` (full: unchanged): every layer frozen and adapters on the linear modules
    ``targets`` names (``_targets``: PEFT's rules against the full names the Hugging Face model has, ``_modules``;
    ``all-linear`` or None: every one but the head); a block use whose copies differ (a target naming one layer)
    is split into runs of alike copies. SizingError naming the model's linear modules when a target matches none."""
    if method not in METHODS:
        raise SizingError(f"--finetune: one of {', '.join(METHODS)}, got {method!r}")
    if method == "full":
        if rank is not None or targets is not None:
            raise SizingError("--lora-rank and --lora-targets go with --finetune lora or qlora")
        return data
    rank = DEFAULT_RANK if rank is None else rank
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise SizingError(f"--lora-rank: a positive integer, got {rank!r}")
    if not isinstance(data, dict):
        return data
    data = copy.deepcopy(data)
    if targets in (None, ALL_LINEAR):
        head = _head(data)
        chosen = [w for _, w in _modules(data, False) if not (w[2] is None and w[0] in head)]
    else:
        given, every = _targets(targets)
        regex = bool(REGEX & set(targets))
        if not given:
            raise _unknown(targets, data, regex)
        if every and _module_count(data) > MAX_MODULES:
            raise SizingError(f"--lora-targets: '{targets}' names numbered modules, and the model has more than "
                              f"{MAX_MODULES:,} to match; name them without numbers, or give {ALL_LINEAR}")
        found = list(_modules(data, every))
        for text, hit in given:
            if not any(hit(name) for name, _ in found):
                raise _unknown(text, data, regex)
        chosen = [w for name, w in found if any(hit(name) for _, hit in given)]
    _adapt(data, chosen, rank)
    return data


def _module_count(data) -> int:
    """Linear modules of the model, every copy and expert counted (without listing them)."""
    def per(item) -> int:
        if not isinstance(item, dict) or not isinstance(module_of(item), str):
            return 0
        if item.get("op") == "linear":
            return 1
        if item.get("op") != "mixture_of_experts":
            return 0
        roles = expert_modules(item)
        return ("gate" in roles) + (len(roles) - ("gate" in roles)) * _count(item.get("num_experts"))
    top = sum(per(item) for item in data.get("layers") or [] if isinstance(item, dict) and "block" not in item)
    return top + sum(_count(use.get("repeat")) * sum(map(per, layers)) for _, use, layers, _ in _uses(data))


def _pattern(marks: dict, layers: list) -> tuple:
    """The adapters of one copy as a hashable value: (layer index, role, experts) sorted, experts None for all of
    a mixture's experts (or a plain linear layer's role None)."""
    out = []
    for (i, role), experts in marks.items():
        n = _count(layers[i].get("num_experts")) if role not in (None, "gate") else None
        whole = experts is None or n is None or experts == set(range(n))
        out.append((i, role, None if whole else tuple(sorted(experts))))
    return tuple(sorted(out, key=lambda x: (x[0], ROLES.index(x[1]) if x[1] else -1)))


def _mark(marks: dict, i, role, j):
    """Add (layer i, role, expert j) to a copy's marks: expert None takes them all."""
    key = (i, role)
    if j is None:
        marks[key] = None
    elif key not in marks:
        marks[key] = {j}
    elif marks[key] is not None:
        marks[key].add(j)


def _adapt(data, chosen: list, rank: int):
    """Freeze the model and attach adapters where ``chosen`` says ((top index, copy, layer index, role, expert)
    each, copy None for every copy): each block used with one set of adapters is changed in place; a block whose
    copies differ gets a variant per set (<block>_lora_<n>), and each use is split into runs of alike copies."""
    layers = data.get("layers") or []
    _name_all(data)
    top: dict = {}
    per_use: dict[int, dict] = {}
    for t, k, i, role, j in chosen:
        if i is None:
            _mark(top, t, role, j)
        else:
            _mark(per_use.setdefault(t, {}).setdefault(k, {}), i, role, j)
    blocks = data.get("blocks") or {}
    originals = {name: copy.deepcopy(b["layers"]) for name, b in blocks.items() if isinstance(b, dict)
                 and isinstance(b.get("layers"), list)}
    runs: dict[int, list] = {}
    for t, use, body, _ in list(_uses(data)):
        marks, repeat = per_use.get(t, {}), _count(use.get("repeat"))
        if None in marks or not marks:          # every copy alike
            runs[t] = [(repeat, _pattern(marks.get(None, {}), body))]
        else:
            patterns = (_pattern(marks.get(k, {}), body) for k in range(repeat))
            runs[t] = [(len(list(g)), p) for p, g in itertools.groupby(patterns)]
    used: dict[str, list] = {}
    for t, pieces in runs.items():
        used.setdefault(layers[t]["block"], [])
        for _, p in pieces:
            if p not in used[layers[t]["block"]]:
                used[layers[t]["block"]].append(p)
    variant = {}
    for name, patterns in used.items():
        for n, p in enumerate(patterns):
            vname = _fresh(f"{name}_lora_{n}", blocks) if n else name
            if vname != name:
                blocks[vname] = {**copy.deepcopy(blocks[name]), "layers": copy.deepcopy(originals[name])}
            variant[name, p] = vname
            _attach(blocks[vname]["layers"], _by_index(p), rank)
    for name in set(originals) - set(used):      # blocks no use reaches are frozen too
        _attach(blocks[name]["layers"], {}, rank)
    out, moved, renamed = [], {}, {}
    taken = {x.get("name") for x in layers if isinstance(x, dict)}
    first = {t: int(path_of(0).rsplit(".", 1)[-1]) if isinstance(use.get("module"), str) else 0
             for t, use, _, path_of in _uses(data)}
    for t, item in enumerate(layers):
        if t not in runs:
            moved[t] = len(out)
            out.append(item)
            continue
        pieces, start = runs[t], 0
        taken.discard(item["name"])             # its runs replace it
        for n, (count, p) in enumerate(pieces):
            piece = {**item, "block": variant[item["block"], p], "repeat": count}
            if len(pieces) > 1:          # named by its first copy: layers_5 is model.layers.5 onwards
                stem = item["module"].rsplit(".", 1)[-1] if isinstance(item.get("module"), str) else item["name"]
                piece["name"] = _fresh(f"{stem}_{first[t] + start}", taken)
                taken.add(piece["name"])
                renamed[item["name"]] = piece["name"]
            if n:
                piece.pop("inputs", None)
            out.append(piece)
            start += count
    marks = {moved[t]: mark for t, mark in _by_index(_pattern(top, layers)).items()}
    layers[:] = [_renamed(item, renamed) for item in out]
    if renamed.get(data.get("output")):
        data["output"] = renamed[data["output"]]
    _attach(layers, marks, rank)


def _renamed(item, renamed: dict):
    """A top-level layer reading a split block use by its old name reads the use's last run instead."""
    refs = item.get("inputs") if isinstance(item, dict) else None
    if isinstance(refs, str) and refs in renamed:
        return {**item, "inputs": renamed[refs]}
    if isinstance(refs, list) and any(isinstance(r, str) and r in renamed for r in refs):
        return {**item, "inputs": [renamed.get(r, r) if isinstance(r, str) else r for r in refs]}
    return item


def _by_index(pattern: tuple) -> dict:
    """A copy's pattern by layer index: True for a linear layer, {role: experts or None} for a mixture."""
    out: dict = {}
    for i, role, experts in pattern:
        if role is None:
            out[i] = True
        else:
            out.setdefault(i, {})[role] = None if experts is None else list(experts)
    return out


def _fresh(name: str, taken) -> str:
    """``name``, or name_2, name_3 ... when it is taken."""
    n, out = 1, name
    while out in taken:
        n += 1
        out = f"{name}_{n}"
    return out


def _name_all(data):
    """Give every unnamed layer and block use the name the graph builder would (<op>_<index>, <block>_<index>),
    so the layers attached or uses split before them do not rename them."""
    for items in _layer_lists(data):
        for k, item in enumerate(items):
            if isinstance(item, dict) and "name" not in item and ("op" in item or "block" in item):
                item["name"] = f"{item.get('op') or item.get('block')}_{k}"


def _attach(items: list, marks: dict, rank: int):
    """Freeze every layer of ``items`` and replace each marked linear layer (``marks[index]`` True) by its base,
    adapters and sum; give each marked mixture of experts its adapters (``marks[index]``: role -> the experts,
    None for all)."""
    out, previous = [], "input"
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            out.append(item)
            continue
        frozen = {**item, "trainable": False} if "op" in item else dict(item)
        mark = marks.get(k)
        if isinstance(mark, dict):   # adapters on the experts (and router) it names; its own weights stay frozen
            some = {role: experts for role, experts in mark.items() if experts is not None}
            frozen.update(trainable=True, lora_rank=rank, lora_targets=[r for r in ROLES if r in mark],
                          **({"lora_experts": some} if some else {}))
        name = item.get("name")
        if mark is True:
            source = item.get("inputs", previous)
            base = {**frozen, "name": f"{name}_base", "inputs": source}
            base.pop("module", None)
            lora_a = {"op": "linear", "name": f"{name}_lora_A", "out_features": rank, "bias": False,
                      "inputs": source}
            lora_b = {"op": "linear", "name": f"{name}_lora_B", "out_features": item["out_features"], "bias": False}
            out += [base, lora_a, lora_b, {"op": "add", "name": name, "inputs": [f"{name}_base", f"{name}_lora_B"]}]
        else:
            out.append(frozen)
        previous = name or previous
    items[:] = out


def finished(est, tune: tuple):
    """The Estimate of a fine-tuned graph (``tune``: method, rank, targets as ``apply`` took them): QLoRA's memory
    (``qlora_memory``), and with all-linear a warning for the attention inside multihead_attention layers (GPT-2's,
    BERT's), whose projections PEFT adapts too (GPT-2's c_attn, E -> E + 2 kv d, and c_proj; BERT's query, key,
    value and output dense) but the op here takes no adapters: r (in + out) each, the params the count is short."""
    from dataclasses import replace

    method, rank, targets = tune
    est = qlora_memory(est) if method == "qlora" else est
    inner = [r.node for r in est.layers if r.node.op == "multihead_attention"]
    if method == "full" or targets not in (None, ALL_LINEAR) or not inner:
        return est
    r = 8 if rank is None else rank
    short = 0
    for n in inner:
        e = n.in_types[0].shape[-1]
        kv = (n.kwargs["num_kv_heads"] or n.kwargs["num_heads"]) * (e // n.kwargs["num_heads"])
        qkv = 2 * e + 2 * (e + kv) if n.kwargs["separate_qkv"] else e + e + 2 * kv
        short += r * (qkv + 2 * e) * n.repeat
    note = (f"{ALL_LINEAR}: the attention projections inside {sum(n.repeat for n in inner)} multihead_attention "
            f"layer(s) ({inner[0].name}) get no adapters here, where PEFT adapts them too (GPT-2's c_attn and "
            f"c_proj, BERT's query, key, value and output dense): {short:,} trainable params fewer than PEFT prints")
    return replace(est, graph=replace(est.graph, warnings=(*est.graph.warnings, note)))


def head_rows(rows) -> set[str]:
    """Names of the output head's rows, which bitsandbytes keeps at 16 bits (transformers' get_keys_to_not_convert:
    the output embedding): ``_head``'s rule on the counted rows, a top-level linear layer that is the last row or
    projects to an embedding's vocabulary (a LoRA-adapted head's base too)."""
    vocab = {r.node.kwargs["num_embeddings"] for r in rows if r.node.op == "embedding"}
    return {r.node.name for k, r in enumerate(rows) if r.node.op == "linear" and "." not in r.node.name and (
        k == len(rows) - 1 or r.node.kwargs["out_features"] in vocab)}


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
    on the device, as a warning says."""
    from dataclasses import replace

    from ..common.units import iec
    from .graph import DTYPES

    size = DTYPES[est.settings["dtype"]]
    head = head_rows(est.layers)
    quantized = sum(nf4_params(r, head) for r in est.layers)
    weights = -(-int(quantized * NF4_BITS) // 8) + (est.totals.params - quantized) * size + est.totals.buffers * 4
    paged = (f"qlora: the adapters' optimizer state ({iec(est.memory.optimizer)}) is in paged memory (QLoRA's paged "
             "AdamW, moved to host RAM when the GPU runs short), not counted on the device")
    return replace(est, graph=replace(est.graph, warnings=(*est.graph.warnings, paged)),
                   memory=replace(est.memory, weights=weights, optimizer=0))
