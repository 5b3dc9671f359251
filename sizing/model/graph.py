"""The layer graph: immutable nodes with inferred shapes, in topological order.

Built from a loaded spec (see docs/spec.md). Blocks are instantiated with their parameters; a repeat
is expanded only while its iterations differ: once an iteration's input shape equals the one before,
every later iteration is identical, and the rest of the repeat is one *group* of nodes that stands for
``repeat`` copies. So ``repeat: 1000000`` costs what ``repeat: 3`` does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..common.errors import SizingError, closest
from .expr import ExprError, substitute
from .ops import REGISTRY, ArgError, ShapeError, numel
from .ops.registry import REQUIRED

MAX_NODES = 20_000          # nodes materialised after folding repeats
MAX_REPEAT = 10 ** 12
MAX_ELEMENTS = 10 ** 15     # elements of one tensor, batch included
DTYPES = {"fp64": 8, "fp32": 4, "bf16": 2, "fp16": 2}
INPUT_DTYPES = {"float32": False, "float": False, "int64": True, "long": True}
TOP_KEYS = ("name", "description", "input", "defaults", "blocks", "layers", "output")
DEFAULT_KEYS = ("batch", "dtype", "seq_len", "optimizer")
LAYER_KEYS = ("op", "name", "inputs", "trainable", "tie", "module")
BLOCK_USE_KEYS = ("block", "name", "inputs", "repeat", "module")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")


def one_of(value, choices) -> bool:
    """``value in choices`` for any YAML value: a list or a mapping (unhashable) is never one of them."""
    return isinstance(value, str) and value in choices


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    ids: bool = False          # integer token ids rather than floating-point values

    def __str__(self):
        return "[" + ", ".join(map(str, self.shape)) + "]" + (" ids" if self.ids else "")


@dataclass(frozen=True)
class Node:
    name: str                           # global, unique: 'layer1.0.conv1'
    op: str
    args: tuple[tuple[str, Any], ...]   # normalised, every argument present
    inputs: tuple[str, ...]             # tensor names: 'input' or another node's name
    in_types: tuple[TensorType, ...]
    out: TensorType
    repeat: int = 1                     # identical copies this node stands for (folded repeats)
    group: str | None = None            # the folded group it belongs to
    tie: str | None = None              # node whose 'weight' this one shares
    trainable: bool = True
    line: int | None = None

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)


@dataclass(frozen=True)
class Group:
    """A folded repeat: its nodes run ``repeat`` times, iteration k+1 taking iteration k's output. (Also an
    unfolded iteration of a block use, ``Graph.iterations``: repeat 1, its nodes named under ``name``.)"""
    name: str
    repeat: int
    input: str
    output: str


@dataclass(frozen=True)
class Graph:
    name: str
    source: str
    input: TensorType
    nodes: tuple[Node, ...]
    output: str
    groups: tuple[Group, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)   # batch, dtype, seq_len, optimizer
    warnings: tuple[str, ...] = ()
    iterations: tuple[Group, ...] = ()      # every block use's unfolded iterations (its nodes: "name.<layer>")

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


@dataclass
class _Scope:
    """Names visible to layers of one list: local name -> (tensor name, type); the last output."""
    tensors: dict[str, tuple[str, TensorType]]
    last: str
    prefix: str
    vars: dict[str, Any]
    group: str | None = None
    repeat: int = 1


class Builder:
    def __init__(self, data: Any, lines: dict, source: str, overrides: Mapping[str, Any]):
        self.data, self.lines, self.source = data, lines, source
        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        self.nodes: list[Node] = []
        self.groups: list[Group] = []
        self.iterations: list[Group] = []
        self.consumed: set[str] = set()

    # ------------------------------------------------------------ errors
    def error(self, where: tuple, message: str) -> SizingError:
        line = None
        for cut in range(len(where), -1, -1):
            if where[:cut] in self.lines:
                line = self.lines[where[:cut]]
                break
        return SizingError(message, self.source, line)

    @staticmethod
    def field(where: tuple) -> str:
        out = ""
        for part in where:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out

    def check_keys(self, where, mapping, allowed, what):
        for key in mapping:
            if not one_of(key, allowed):
                field = f"{self.field(where)}: " if where else ""
                raise self.error(where + (key,), f"{field}unknown {what} key '{key}'"
                                 f"{closest(key, allowed)} (valid: {', '.join(allowed)})")

    # ------------------------------------------------------------ top level
    def build(self) -> Graph:
        d = self.data
        if not isinstance(d, dict):
            raise self.error((), "a spec is a mapping with 'input' and 'layers' (see docs/spec.md)")
        self.check_keys((), d, TOP_KEYS, "top-level")
        for key in ("input", "layers"):
            if key not in d:
                raise self.error((), f"missing '{key}' (a spec needs 'input' and 'layers')")
        settings = self.settings(d.get("defaults") or {})
        name = d.get("name", "model")
        if not isinstance(name, str) or not name.isprintable():
            raise self.error(("name",), f"name: must be a string of printable characters, got {name!r}")
        self.blocks = d.get("blocks") or {}
        if not isinstance(self.blocks, dict):
            raise self.error(("blocks",), "blocks: must be a mapping of block name -> {params, layers}")
        for bname, block in self.blocks.items():
            self.check_block(bname, block)
        in_type = self.input_type(d["input"], settings)
        layers = d["layers"]
        if not isinstance(layers, list) or not layers:
            raise self.error(("layers",), "layers: must be a non-empty list of {op: ...} or {block: ...} items")
        scope = _Scope({"input": ("input", in_type)}, "input", "", {"seq_len": settings.get("seq_len")})
        self.run_layers(layers, ("layers",), scope, top=True)
        out = scope.tensors[scope.last][0]      # a block use's local name stands for its last tensor
        if "output" in d:
            if not one_of(d["output"], scope.tensors) or d["output"] == "input":
                raise self.error(("output",), f"output: no layer named '{d['output']}'"
                                 f"{closest(d['output'], scope.tensors)}")
            out = scope.tensors[d["output"]][0]
        warnings = tuple(f"{self.source}: layer '{n.name}' ({n.op}) is not used by any later layer nor the output"
                         for n in self.nodes if n.name not in self.consumed and n.name != out)
        return Graph(name, self.source, in_type, tuple(self.nodes), out, tuple(self.groups), settings, warnings,
                     tuple(self.iterations))

    def settings(self, defaults) -> dict[str, Any]:
        if not isinstance(defaults, dict):
            raise self.error(("defaults",), "defaults: must be a mapping (batch, dtype, seq_len, optimizer)")
        self.check_keys(("defaults",), defaults, DEFAULT_KEYS, "defaults")
        s = {"batch": 1, "dtype": "fp32", "seq_len": None, "optimizer": "adamw", **defaults, **self.overrides}
        for key in ("batch", "seq_len"):
            v = s[key]
            if (v is not None or key == "batch") and (isinstance(v, bool) or not isinstance(v, int)
                                                      or not 0 < v <= 10 ** 9):
                raise self.error(("defaults", key), f"{key}: must be an integer from 1 to 10^9, got {v!r}")
        if not one_of(s["dtype"], DTYPES):
            raise self.error(("defaults", "dtype"), f"dtype: '{s['dtype']}' is not one of {', '.join(DTYPES)}")
        if not one_of(s["optimizer"], OPTIMIZERS):
            raise self.error(("defaults", "optimizer"),
                             f"optimizer: '{s['optimizer']}' is not one of {', '.join(OPTIMIZERS)}")
        return s

    def input_type(self, spec, settings) -> TensorType:
        where = ("input",)
        ids = False
        if isinstance(spec, dict):
            self.check_keys(where, spec, ("shape", "dtype"), "input")
            dtype = spec.get("dtype", "float32")
            if not one_of(dtype, INPUT_DTYPES):
                raise self.error(where + ("dtype",), f"input.dtype: '{dtype}' is not one of "
                                 f"{', '.join(INPUT_DTYPES)}")
            ids = INPUT_DTYPES[dtype]
            if "shape" not in spec:
                raise self.error(where, "input: missing 'shape' (one sample's shape, e.g. [3, 224, 224])")
            spec, where = spec["shape"], where + ("shape",)
        try:
            shape = substitute(spec, {"seq_len": settings.get("seq_len")}) if isinstance(spec, list) else spec
        except ExprError as e:
            raise self.error(where, f"input: {e}") from None
        if not isinstance(shape, list) or not shape or any(
                isinstance(x, bool) or not isinstance(x, int) or x <= 0 for x in shape):
            raise self.error(where, f"input: one sample's shape must be a list of positive integers "
                             f"(e.g. [3, 224, 224] or {{shape: [1024], dtype: int64}}), got {spec!r}")
        if ids and settings.get("seq_len") and len(shape) == 1:
            shape = [settings["seq_len"]]
        t = TensorType((settings["batch"], *shape), ids)
        self.check_size(where, t, "the model input")
        return t

    def check_size(self, where, t: TensorType, what: str):
        if numel(t.shape) > MAX_ELEMENTS:
            raise self.error(where, f"{what} would have {numel(t.shape)} elements {t}; the limit is 10^15")

    # ------------------------------------------------------------ blocks
    def check_block(self, bname, block):
        where = ("blocks", bname)
        if not isinstance(bname, str) or not isinstance(block, dict):
            raise self.error(where, f"blocks.{bname}: a block is a mapping with 'layers' (and 'params')")
        self.check_keys(where, block, ("params", "layers", "output"), "block")
        if not isinstance(block.get("layers"), list) or not block["layers"]:
            raise self.error(where, f"blocks.{bname}.layers: must be a non-empty list of layers")
        params = block.get("params") or {}
        if not isinstance(params, dict) or not all(
                isinstance(k, str) and k.isidentifier() and k not in BLOCK_USE_KEYS for k in params):
            raise self.error(where + ("params",), f"blocks.{bname}.params: a mapping of name -> default "
                             f"(null for a required parameter); names are identifiers other than "
                             f"{', '.join(BLOCK_USE_KEYS)}")
        if "output" in block and not isinstance(block["output"], str):
            raise self.error(where + ("output",), f"blocks.{bname}.output: the name of one of its layers")

    def run_layers(self, items, where, scope: _Scope, top: bool):
        for i, item in enumerate(items):
            w = where + (i,)
            if not isinstance(item, dict):
                raise self.error(w, f"{self.field(w)}: each layer is a mapping like {{op: linear, out_features: 10}}")
            if "block" in item:
                if not top:
                    raise self.error(w, f"{self.field(w)}: a block cannot use another block (write its layers)")
                self.use_block(item, w, scope, i)
            else:
                self.layer(item, w, scope, i, top)

    def use_block(self, item, where, scope: _Scope, index: int):
        bname = item["block"]
        if not one_of(bname, self.blocks):
            raise self.error(where + ("block",), f"{self.field(where)}: no block named '{bname}'"
                             f"{closest(bname, self.blocks)} (defined: {', '.join(self.blocks) or 'none'})")
        block = self.blocks[bname]
        self.check_keys(where, item, BLOCK_USE_KEYS + tuple(block.get("params") or {}), "block-use")
        params = dict(block.get("params") or {})
        for key, value in item.items():
            if key not in BLOCK_USE_KEYS:
                params[key] = value
        missing = [k for k, v in params.items() if v is None]
        if missing:
            raise self.error(where, f"{self.field(where)}: block '{bname}' needs parameter '{missing[0]}'")
        self.check_module(item, where, self.field(where))
        repeat = item.get("repeat", 1)
        if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
            raise self.error(where + ("repeat",), f"{self.field(where)}.repeat: must be an integer from 1 to 10^12,"
                             f" got {repeat!r}")
        name = self.local_name(item, where, scope, f"{bname}_{index}")
        (src, src_t), = self.resolve_inputs(item, where, scope, 1, 1)
        prefix = scope.prefix + name
        k, prev_in = 0, None
        while k < repeat:
            # iteration k+1 onwards is identical to k when k >= 1 and k's input type equals k-1's
            fold = k >= 1 and src_t == prev_in and repeat - k > 1
            label = f"{prefix}.{k}-{repeat - 1}" if fold else (f"{prefix}.{k}" if repeat > 1 else prefix)
            inner = _Scope({"input": (src, src_t)}, "input", label + ".", {**scope.vars, **params},
                           group=label if fold else None, repeat=repeat - k if fold else 1)
            self.run_layers(block["layers"], ("blocks", bname, "layers"), inner, top=False)
            out_name = inner.last
            if "output" in block:
                if block["output"] not in inner.tensors:
                    raise self.error(("blocks", bname, "output"), f"blocks.{bname}.output: no layer named "
                                     f"'{block['output']}'")
                out_name = block["output"]
            out, out_t = inner.tensors[out_name]
            if fold:
                self.groups.append(Group(label, repeat - k, src, out))
                k = repeat
            else:
                self.iterations.append(Group(label, 1, src, out))
                k += 1
            prev_in, src, src_t = src_t, out, out_t
            if len(self.nodes) > MAX_NODES:
                raise self.error(where, f"{self.field(where)}: the graph passes {MAX_NODES} layers; block '{bname}'"
                                 f" still changes shape after {k} of its {repeat} repeats, so they cannot be folded "
                                 "(use fewer repeats: a block folds only once its output shape equals its input shape)")
        scope.tensors[name] = (src, src_t)
        scope.last = name

    # ------------------------------------------------------------ layers
    def local_name(self, item, where, scope: _Scope, default: str) -> str:
        name = item.get("name", default)
        if not isinstance(name, str) or not name.isprintable() or not name or "." in name or name == "input":
            raise self.error(where + ("name",), f"{self.field(where)}.name: must be a non-empty string of printable "
                             f"characters without '.', other than 'input', got {name!r}")
        if name in scope.tensors:
            raise self.error(where + ("name",), f"{self.field(where)}: the name '{name}' is used twice")
        return name

    def resolve_inputs(self, item, where, scope: _Scope, lo: int, hi: int | None):
        refs = item.get("inputs", [scope.last])
        if isinstance(refs, str):
            refs = [refs]
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
            raise self.error(where + ("inputs",), f"{self.field(where)}.inputs: a layer name or a list of names")
        n = len(refs)
        if n < lo or (hi is not None and n > hi):
            want = f"exactly {lo}" if lo == hi else f"at least {lo}"
            raise self.error(where + ("inputs",), f"{self.field(where)}: takes {want} input(s), got {n}")
        out = []
        for r in refs:
            if r not in scope.tensors:
                raise self.error(where + ("inputs",), f"{self.field(where)}.inputs: no earlier layer named '{r}'"
                                 f"{closest(r, scope.tensors)} (a layer can take only layers above it, so the "
                                 "graph has no cycles)")
            out.append(scope.tensors[r])
        return out

    def layer(self, item, where, scope: _Scope, index: int, top: bool):
        op_name = item.get("op")
        if not one_of(op_name, REGISTRY):
            raise self.error(where + ("op",), f"{self.field(where)}: unknown op '{op_name}'"
                             f"{closest(op_name, REGISTRY)} (see docs/spec.md for the list)")
        op = REGISTRY[op_name]
        label = f"{self.field(where)} ({op_name})"
        self.check_keys(where, item, LAYER_KEYS + tuple(op.arg_names()), f"{op_name} argument")
        name = self.local_name(item, where, scope, f"{op_name}_{index}")
        label = f"{self.field(where)} ({op_name} '{scope.prefix}{name}')"
        args = {}
        for arg in op.args:
            if arg.name not in item:
                if arg.default is REQUIRED:
                    raise self.error(where, f"{label}: missing argument '{arg.name}'")
                args[arg.name] = arg.check(arg.default)
                continue
            try:
                args[arg.name] = arg.check(substitute(item[arg.name], scope.vars))
            except ExprError as e:
                raise self.error(where + (arg.name,), f"{label}.{arg.name}: {e}") from None
            except ArgError as e:
                raise self.error(where + (arg.name,), f"{label}.{arg.name}: must be {e}, got "
                                 f"{substitute(item[arg.name], scope.vars)!r}") from None
        lo, hi = op.arity
        sources = self.resolve_inputs(item, where, scope, lo, hi)
        for src, t in sources:
            if t.ids != op.takes_ids:
                need = "token ids (int64)" if op.takes_ids else "floating-point values"
                raise self.error(where, f"{label}: needs {need}, but '{src}' gives {t}"
                                 + ("; start with an embedding" if t.ids else ""))
        shapes = tuple(t.shape for _, t in sources)
        try:
            out_shape = tuple(op.shape(args, shapes))
        except ShapeError as e:
            srcs = ", ".join(f"'{s}' {t}" for s, t in sources)
            raise self.error(where, f"{label}: {e} (input from {srcs})") from None
        out = TensorType(out_shape)
        if any(d <= 0 for d in out_shape):
            raise self.error(where, f"{label}: output shape {list(out_shape)} has a size below 1")
        self.check_size(where, out, label)
        trainable = item.get("trainable", True)
        if not isinstance(trainable, bool):
            raise self.error(where + ("trainable",), f"{label}.trainable: must be true or false")
        self.check_module(item, where, label)
        tie = self.tie(item, where, label, top, op, args, shapes, trainable)
        gname = scope.prefix + name
        node = Node(gname, op_name, tuple(args.items()), tuple(s for s, _ in sources),
                    tuple(t for _, t in sources), out, scope.repeat, scope.group, tie, trainable,
                    self.lines.get(where))
        self.consumed.update(node.inputs)
        self.nodes.append(node)
        scope.tensors[name] = (gname, out)
        scope.last = name

    def check_module(self, item, where, label: str):
        """A layer's or block use's ``module`` (what --lora-targets matches) is a dotted module name."""
        module = item.get("module", "x")
        if not isinstance(module, str) or not all(part.isidentifier() or part.isdigit() for part in module.split(".")):
            raise self.error(where + ("module",), f"{label}.module: must be a module name (identifiers joined by "
                             f"'.', as shared_expert.gate_proj), got {module!r}")

    def tie(self, item, where, label, top, op, args, shapes, trainable: bool):
        """The node whose weight this layer shares: an earlier top-level layer with a weight of the same shape and the
        same ``trainable`` (one shared tensor either trains or not)."""
        if "tie" not in item:
            return None
        target = item["tie"]
        if not top:
            raise self.error(where + ("tie",), f"{label}.tie: ties are allowed only between top-level layers")
        node = next((n for n in self.nodes if n.name == target and n.group is None), None)
        if node is None:
            raise self.error(where + ("tie",), f"{label}.tie: no earlier top-level layer named '{target}'")
        mine = op.weights(args, shapes).get("weight")
        theirs = REGISTRY[node.op].weights(node.kwargs, tuple(t.shape for t in node.in_types)).get("weight")
        if mine is None or mine != theirs:
            raise self.error(where + ("tie",), f"{label}.tie: weight shape {list(mine or [])} differs from "
                             f"'{target}' weight {list(theirs or [])}")
        if trainable != node.trainable:
            raise self.error(where + ("tie",), f"{label}.tie: '{target}' is trainable: {str(node.trainable).lower()} "
                             f"and this layer trainable: {str(trainable).lower()}; a shared weight either trains "
                             "or not: give both the same trainable")
        return node.name


def build(data, lines, source: str, **overrides) -> Graph:
    """Graph of a loaded spec; ``overrides`` (batch, dtype, seq_len, optimizer) replace the spec's defaults."""
    return Builder(data, lines, source, overrides).build()
