"""An ONNX file as spec data: ONNX's own shape inference, then each node mapped to one of our ops.

Needs the optional ``onnx`` package (``pip install 'sizing[onnx]'``), imported only when an ONNX file is read.

The graph's first input (not an initializer) is the model input: its first dim is the batch (symbolic or
fixed), the others must be fixed. Nodes that do not depend on it (constants, shape arithmetic, lookups with
constant indices, other inputs such as masks) are not layers. Every other node maps to a layer, its inputs
named by the layers that made them; ONNX's inferred output shape is checked against our op's shape rule.
Patterns of exporters are read back as the module they came from: MatMul by a constant then Add of a 1-D
constant is a linear layer with a bias; Add of a constant table (or a Gather of one) is a positional or
token-type embedding. A node with no mapping is listed by type and name; with ``allow_unmapped`` it becomes an
``unmapped`` layer (zero cost, its inferred shape) and the totals say they are partial.
"""
from __future__ import annotations

import math
import os
from typing import Any

from ...common.errors import SizingError
from ...common.files import require_regular
from ..ops import REGISTRY, ArgError, ShapeError
from .loaded import Loaded

IDS, FLOATS = (6, 7), (1, 10, 11, 16)             # TensorProto elem types: int32, int64 / float, fp16, double, bf16
UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}
FUNCTIONS = {"Erf": "erf", "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Neg": "neg", "Abs": "abs",
             "Reciprocal": "reciprocal"}
VIEWS = ("Reshape", "Squeeze", "Unsqueeze", "Flatten")
PASS = ("Identity", "Dropout", "Cast")             # inference no-ops on the values we count
METADATA = ("Shape", "Size")                        # read only the input's shape
FOLD_OUTPUT_ELEMS = 10 ** 7      # what evaluating constants may materialise
FOLD_ELEMS = 4096                                   # constants up to this size are evaluated (shape arithmetic)


class Unmapped(Exception):
    """This node has no mapping (the message says why, when there is more to say than its type)."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise SizingError("reading ONNX files needs the onnx package: pip install 'sizing[onnx]'") from None
    return onnx


def _f32(value: float) -> float:
    """An ONNX float attribute (float32) as the decimal it was written as: 1e-12, not 9.999999960041972e-13."""
    return float(f"{value:.7g}")


def _layer_name(node, index: int, taken: set) -> str:
    """The node's name made a valid, unique layer name ('.' is our block separator)."""
    base = "".join(c if c.isprintable() and c != "." else "_" for c in node.name) or f"{node.op_type.lower()}_{index}"
    name, k = base, 2
    while name in taken or name == "input":
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


class Importer:
    """Walks a shape-inferred ONNX graph once, in its (topological) node order."""

    def __init__(self, model, path: str):
        onnx = _onnx()
        self.onnx, self.path = onnx, path
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        g = model.graph
        self.graph = g
        self.consts: dict[str, Any] = {t.name: t for t in g.initializer}       # TensorProto or a numpy array
        self.shapes: dict[str, tuple] = {}          # whole shapes; a symbolic first dim is the batch
        batch = next((i.type.tensor_type.shape.dim[0].dim_value for i in g.input if i.name not in self.consts
                      and i.type.tensor_type.shape.dim), 1)
        for vi in (*g.input, *g.value_info, *g.output):
            dims = vi.type.tensor_type.shape.dim
            if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims[1:]):
                self.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else batch for d in dims)
        self.consumers: dict[str, int] = {}
        for node in g.node:
            for i in node.input:
                self.consumers[i] = self.consumers.get(i, 0) + 1
        self.layer_of: dict[str, str] = {}          # tensor -> the layer that makes it ('input': the model input)
        self.tables: dict[str, tuple] = {}          # tensor -> shape of the constant table a lookup reads
        self.layers: list[dict] = []
        self.bias_free: dict[str, dict] = {}        # tensor -> the bias-free linear layer that made it
        self.unmapped: list[tuple[str, str, str]] = []
        self.taken: set[str] = set()
        self.input_ids = False

    # ------------------------------------------------------------ constants
    def const_dims(self, name: str) -> tuple | None:
        c = self.consts.get(name)
        if c is None:
            return None
        return tuple(c.dims) if hasattr(c, "dims") else tuple(c.shape)

    def const_value(self, name: str):
        c = self.consts[name]
        return self.onnx.numpy_helper.to_array(c) if hasattr(c, "dims") else c

    def scalar(self, name: str) -> float | None:
        dims = self.const_dims(name)
        return float(self.const_value(name).reshape(-1)[0]) if dims is not None and math.prod(dims) == 1 else None

    def static(self, node):
        """A node that does not depend on the model input: a lookup in a constant table is remembered (an Add
        of it is an embedding); a value computed from small constants (shape arithmetic) is evaluated, so that
        a reshape to it has a known target."""
        import numpy as np
        ins = [i for i in node.input if i]
        if node.op_type == "Gather" and ins[0] in self.consts and len(self.const_dims(ins[0])) == 2:
            self.tables[node.output[0]] = self.const_dims(ins[0])
        elif ins and ins[0] in self.tables:                 # a lookup reshaped, unsqueezed, cast
            self.tables[node.output[0]] = self.tables[ins[0]]
        elif node.op_type == "Identity" and ins[0] in self.consts:
            self.consts[node.output[0]] = self.consts[ins[0]]
        elif node.op_type == "Shape" and ins[0] in self.shapes:
            a = self.attrs(node)
            self.consts[node.output[0]] = np.array(self.shapes[ins[0]][a.get("start", 0):a.get("end")], np.int64)
        elif all(i in self.consts for i in ins) and sum(math.prod(self.const_dims(i)) for i in ins) <= FOLD_ELEMS:
            self.fold(node, ins)

    def fold(self, node, ins: list[str]):
        from onnx.reference import ReferenceEvaluator
        h = self.onnx.helper
        typeless = [h.make_value_info(n, self.onnx.TypeProto()) for n in (*ins, *node.output)]
        model = h.make_model(h.make_graph([node], "fold", typeless[:len(ins)], typeless[len(ins):]),
                             opset_imports=[h.make_opsetid("", self.opset)])
        try:
            values = ReferenceEvaluator(model).run(None, {i: self.const_value(i) for i in ins})
        except Exception:           # left unknown: only a reshape to it could need it, and says so
            return
        self.consts.update(zip(node.output, values))

    @staticmethod
    def attrs(node) -> dict:
        from onnx import helper
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    # ------------------------------------------------------------ the walk
    def run(self) -> dict:
        g = self.graph
        inputs = [i for i in g.input if i.name not in self.consts]
        if not inputs:
            raise SizingError("the ONNX graph has no input (is this an ONNX model?)", self.path)
        spec_input, batch = self.model_input(inputs[0])
        for index, node in enumerate(g.node):
            if not any(i in self.layer_of for i in node.input) or node.op_type in METADATA:
                self.static(node)
                continue
            self.map_node(node, index)
        out = g.output[0].name if g.output else None
        if out not in self.layer_of or self.layer_of[out] == "input":
            why = f" except through nodes with no mapping yet: {_listed(self.unmapped)}" if self.unmapped else ""
            raise SizingError(f"the graph's output {out!r} does not depend on its input {inputs[0].name!r}{why}",
                              self.path)
        name = g.name if g.name and g.name.isprintable() else os.path.splitext(os.path.basename(self.path))[0]
        spec = {"name": name, "input": spec_input, "defaults": {"batch": batch}, "layers": self.layers}
        if self.layer_of[out] != self.layers[-1]["name"]:
            spec["output"] = self.layer_of[out]
        return spec

    def model_input(self, vi) -> tuple[dict, int]:
        t = vi.type.tensor_type
        if t.elem_type not in IDS + FLOATS:
            raise SizingError(f"input {vi.name!r}: element type {t.elem_type} is neither float nor integer ids",
                              self.path)
        dims = list(t.shape.dim)
        if not dims:
            raise SizingError(f"input {vi.name!r} has no shape (sizing needs (batch, ...))", self.path)
        for k, d in enumerate(dims[1:], 1):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                raise SizingError(f"input {vi.name!r} dim {k} is symbolic ({d.dim_param!r}); sizing needs fixed sizes "
                                  "past the batch dim (export with a fixed shape)", self.path)
        self.layer_of[vi.name] = "input"
        shape = [d.dim_value for d in dims[1:]]
        self.input_ids = t.elem_type in IDS
        return ({"shape": shape, "dtype": "int64"} if self.input_ids else shape), (dims[0].dim_value or 1)

    def map_node(self, node, index: int):
        handler = HANDLERS.get(node.op_type)
        try:
            if handler is None:
                raise Unmapped("")
            layer = handler(self, node)
            if isinstance(layer, str):                  # an alias: the output is this input tensor
                self.layer_of[node.output[0]] = self.layer_of[layer]
                if layer in self.shapes:
                    self.shapes.setdefault(node.output[0], self.shapes[layer])
                return
            self.add_layer(node, index, layer)
        except Unmapped as e:
            self.unmapped.append((node.op_type, node.name or f"#{index}", str(e)))
            self.placeholder(node, index)

    def data_inputs(self, node) -> list[str]:
        return [i for i in node.input if i in self.layer_of]

    def add_layer(self, node, index: int, layer: dict, inputs: list[str] | None = None):
        inputs = self.data_inputs(node) if inputs is None else inputs
        self.check_shape(layer, inputs, node.output[0])
        layer = {"op": layer["op"], "name": _layer_name(node, index, self.taken), **{k: v for k, v in layer.items()
                                                                                     if k != "op"}}
        layer["inputs"] = [self.layer_of[i] for i in inputs]
        self.layers.append(layer)
        self.layer_of[node.output[0]] = layer["name"]
        if layer["op"] == "linear" and not layer["bias"]:
            self.bias_free[node.output[0]] = layer

    def check_shape(self, layer: dict, inputs: list[str], output: str):
        """Our op's shape rule must give ONNX's inferred shape; where inference gave none, ours is recorded."""
        op = REGISTRY[layer["op"]]
        shapes = tuple(self.shapes.get(i) for i in inputs)
        want = self.shapes.get(output)
        if any(s is None for s in shapes):
            return
        try:
            args = {a.name: a.check(layer.get(a.name, a.default)) for a in op.args}    # handlers give required args
            got = tuple(op.shape(args, shapes))
        except (ShapeError, ArgError) as e:
            raise Unmapped(f"as {layer['op']}: {e}") from None
        if want is None:
            self.shapes[output] = got
        elif got != want:
            raise Unmapped(f"as {layer['op']} it gives {list(got)}, ONNX infers {list(want)}")

    def placeholder(self, node, index: int):
        """An unmapped node as an 'unmapped' layer (used only when the user allows partial totals)."""
        inputs = [i for i in self.data_inputs(node) if self.layer_of[i] != "input" or not self.input_ids]
        shape = self.shapes.get(node.output[0])
        if shape is not None and inputs:
            try:
                self.add_layer(node, index, {"op": "unmapped", "onnx_op": node.op_type, "shape": list(shape[1:])},
                               inputs)
            except Unmapped:        # a shape no placeholder holds (a scalar, a changed batch dim): the node is
                return              # listed as unmapped already, and what reads it is unmapped too

    # ------------------------------------------------------------ helpers for handlers
    def weight(self, node, k: int) -> tuple:
        dims = self.const_dims(node.input[k]) if len(node.input) > k else None
        if dims is None:
            raise Unmapped(f"input {k} is not a constant (an initializer)")
        return dims

    def has(self, node, k: int) -> bool:
        return len(node.input) > k and node.input[k] != ""


# ---------------------------------------------------------------- handlers: node -> layer dict, or an alias

def _symmetric(pads: list, nd: int) -> list:
    if pads[:nd] != pads[nd:]:
        raise Unmapped(f"asymmetric pads {pads}")
    return pads[:nd]


def _window(imp: Importer, node, nd: int) -> dict:
    a = imp.attrs(node)
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto not in ("NOTSET", "VALID"):
        raise Unmapped(f"auto_pad {auto}")
    pads = _symmetric(list(a.get("pads", [0] * 2 * nd)), nd) if auto == "NOTSET" else [0] * nd
    return {"stride": list(a.get("strides", [1] * nd)), "padding": pads}


def _conv(imp: Importer, node):
    w = imp.weight(node, 1)
    nd = len(w) - 2
    if nd not in (1, 2):
        raise Unmapped(f"{nd}-D convolution")
    a = imp.attrs(node)
    return {"op": f"conv{nd}d", "out_channels": w[0], "kernel_size": list(a.get("kernel_shape", w[2:])),
            **_window(imp, node, nd), "dilation": list(a.get("dilations", [1] * nd)), "groups": a.get("group", 1),
            "bias": imp.has(node, 2)}


def _conv_transpose(imp: Importer, node):
    w = imp.weight(node, 1)
    a = imp.attrs(node)
    if len(w) != 4 or "output_shape" in a:
        raise Unmapped("only 2-D, without output_shape")
    g = a.get("group", 1)
    return {"op": "conv_transpose2d", "out_channels": w[1] * g, "kernel_size": list(a.get("kernel_shape", w[2:])),
            **_window(imp, node, 2), "output_padding": list(a.get("output_padding", [0, 0])),
            "dilation": list(a.get("dilations", [1, 1])), "groups": g, "bias": imp.has(node, 2)}


def _gemm(imp: Importer, node):
    a = imp.attrs(node)
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        raise Unmapped("transA, alpha or beta")
    w = imp.weight(node, 1)
    out = w[0] if a.get("transB", 0) else w[1]
    _weight_rows(imp, node, w[1] if a.get("transB", 0) else w[0])
    if imp.has(node, 2) and math.prod(imp.weight(node, 2)) != out:
        raise Unmapped("a bias C that is not one value per output")
    return {"op": "linear", "out_features": out, "bias": imp.has(node, 2)}


def _matmul(imp: Importer, node):
    if len(imp.data_inputs(node)) == 2:
        return {"op": "matmul"}
    if node.input[0] not in imp.layer_of or len(imp.weight(node, 1)) != 2:
        raise Unmapped("a constant left operand, or a constant of other than 2 dims")
    _weight_rows(imp, node, imp.weight(node, 1)[0])
    return {"op": "linear", "out_features": imp.weight(node, 1)[1], "bias": False}


def _weight_rows(imp: Importer, node, rows: int):
    """A weight whose input dimension differs from its input's features makes an invalid model (shape inference,
    not strict, lets it pass): refused, since the linear would count the input's features, not the weight's."""
    x = imp.shapes.get(node.input[0])
    if x and x[-1] != rows:
        who = repr(node.name) if node.name else f"making {node.output[0]!r}"
        raise SizingError(f"{node.op_type} node {who}: weight {node.input[1]!r} has {rows} input features, its input "
                          f"{node.input[0]!r} has {x[-1]}: not a valid model", imp.path)


def _const_operand(imp: Importer, node) -> tuple[str, str]:
    """(data input, constant input) of a binary node with one of each."""
    data = imp.data_inputs(node)
    if len(data) != 1 or len(node.input) != 2:
        raise Unmapped("")
    const = node.input[1] if node.input[0] == data[0] else node.input[0]
    return data[0], const


def _add(imp: Importer, node):
    if len(imp.data_inputs(node)) == 2:
        return {"op": "add"}
    x, c = _const_operand(imp, node)
    shape = imp.shapes.get(x)
    linear = imp.bias_free.get(x)
    dims = imp.const_dims(c)
    if (linear is not None and imp.consumers.get(x) == 1 and dims is not None
            and math.prod(dims) == linear["out_features"]):
        linear["bias"] = True                         # MatMul + Add: a linear layer with its bias
        return x
    if dims is not None and math.prod(dims) == 1:
        return {"op": "pointwise", "fn": "add_scalar"}
    if shape is None or len(shape) != 3:
        raise Unmapped("adds a constant tensor")
    if c in imp.tables:                                # a lookup: position ids or token types
        rows, width = imp.tables[c][0], imp.tables[c][-1]
        if width != shape[-1]:
            raise Unmapped(f"adds rows of a table {list(imp.tables[c])} to {list(shape)}")
        kind = "positional_embedding" if rows >= shape[1] else "token_type_embedding"
        return {"op": kind, "num_embeddings": rows}
    if dims is None:
        raise Unmapped("adds a tensor computed from constants or other graph inputs")
    if math.prod(dims) == shape[1] * shape[2] and tuple(dims[-2:]) == tuple(shape[1:]):
        return {"op": "positional_embedding", "num_embeddings": shape[1]}    # a learned (T, D) table added
    raise Unmapped(f"adds a constant of shape {list(dims)}")


def _scalar_op(fn: str, data_op: str | None = None):
    def handler(imp: Importer, node):
        if data_op and len(imp.data_inputs(node)) == 2:
            return {"op": data_op}
        x, c = _const_operand(imp, node)
        if node.op_type in ("Sub", "Div", "Pow") and node.input[0] != x:
            raise Unmapped("a constant divided or raised by a tensor")
        if imp.scalar(c) is None:
            raise Unmapped("an operand that is a constant tensor, not one value")
        return {"op": "pointwise", "fn": fn}
    return handler


def _function(imp: Importer, node):
    return {"op": "pointwise", "fn": FUNCTIONS[node.op_type]}


def _unary(imp: Importer, node):
    return {"op": UNARY[node.op_type]}


def _gelu(imp: Importer, node):
    approximate = imp.attrs(node).get("approximate", b"none")
    return {"op": "gelu", "approximate": approximate.decode() if isinstance(approximate, bytes) else approximate}


def _clip(imp: Importer, node):
    a = imp.attrs(node)
    lo = imp.scalar(node.input[1]) if imp.has(node, 1) else a.get("min")
    hi = imp.scalar(node.input[2]) if imp.has(node, 2) else a.get("max")
    if lo == 0 and hi == 6:
        return {"op": "relu6"}
    if lo == 0 and hi is None:
        return {"op": "relu"}
    raise Unmapped(f"clip to [{lo}, {hi}]")


def _softmax(imp: Importer, node):
    rank = len(imp.shapes.get(node.input[0], ())) or None
    axis = imp.attrs(node).get("axis", -1 if imp.opset >= 13 else 1)
    if rank is None or (imp.opset < 13 and axis % rank != rank - 1):
        raise Unmapped("softmax over several dims (opset < 13)")
    return {"op": "softmax", "dim": axis}


def _batchnorm(imp: Importer, node):
    rank = len(imp.shapes.get(node.input[0], ()))
    return {"op": "batchnorm2d" if rank == 4 else "batchnorm1d", "eps": _f32(imp.attrs(node).get("epsilon", 1e-5))}


def _layernorm(imp: Importer, node):
    a = imp.attrs(node)
    shape = imp.shapes.get(node.input[0])
    axis = a.get("axis", -1)
    layer = {"op": "layernorm", "eps": _f32(a.get("epsilon", 1e-5)), "bias": imp.has(node, 2)}
    if shape is not None and axis % len(shape) != len(shape) - 1:
        layer["normalized_shape"] = list(shape[axis:])
    return layer


def _pool(op: str):
    def handler(imp: Importer, node):
        a = imp.attrs(node)
        if len(a.get("kernel_shape", [])) != 2:
            raise Unmapped("only 2-D pooling")
        layer = {"op": op, "kernel_size": list(a["kernel_shape"]), **_window(imp, node, 2),
                 "ceil_mode": bool(a.get("ceil_mode", 0))}
        if op == "maxpool2d":
            layer["dilation"] = list(a.get("dilations", [1, 1]))
        else:
            layer["count_include_pad"] = bool(a.get("count_include_pad", 0))
        return layer
    return handler


def _global_pool(imp: Importer, node):
    return {"op": "adaptive_avgpool2d", "output_size": 1}


def _view(imp: Importer, node):
    x = node.input[0]
    shape = imp.shapes.get(x)
    out = imp.shapes.get(node.output[0]) or _view_shape(imp, node, shape)
    if shape is None or out is None:
        raise Unmapped("a view to a shape that is not known before running the graph")
    if out == shape:
        return x
    if node.op_type == "Flatten" and imp.attrs(node).get("axis", 1) == 1:
        return {"op": "flatten"}
    if out[0] != shape[0]:
        raise Unmapped("a reshape that moves the batch dim")
    return {"op": "reshape", "shape": list(out[1:])}


def _view_shape(imp: Importer, node, shape: tuple | None) -> tuple | None:
    """The output shape of a Reshape, Squeeze, Unsqueeze or Flatten by ONNX's rules, from the input's shape and
    a constant (or folded) target; None when either is unknown."""
    if shape is None:
        return None
    a = imp.attrs(node)
    if node.op_type == "Flatten":
        axis = a.get("axis", 1) % (len(shape) + 1)
        return math.prod(shape[:axis]), math.prod(shape[axis:])
    given = node.input[1] if len(node.input) > 1 and node.input[1] else None
    if given is not None and given not in imp.consts:
        return None
    values = [int(v) for v in imp.const_value(given).reshape(-1)] if given else list(a.get("axes", []))
    if node.op_type == "Reshape":
        target = [shape[i] if v == 0 else v for i, v in enumerate(values)]
        if -1 in target:
            target[target.index(-1)] = math.prod(shape) // -math.prod(target)
        return tuple(target)
    if node.op_type == "Unsqueeze":
        out = list(shape)
        for axis in sorted(v % (len(shape) + len(values)) for v in values):
            out.insert(axis, 1)
        return tuple(out)
    drop = {v % len(shape) for v in values} if values else {i for i, d in enumerate(shape) if d == 1}
    return tuple(d for i, d in enumerate(shape) if i not in drop)


def _transpose(imp: Importer, node):
    perm = imp.attrs(node).get("perm")
    if perm is None:
        raise Unmapped("a transpose that reverses every dim (the batch dim too)")
    return {"op": "permute", "dims": list(perm)}


def _pass(imp: Importer, node):
    return node.input[0]


def _concat(imp: Importer, node):
    if len(imp.data_inputs(node)) != len(node.input):
        raise Unmapped("concatenates a constant")
    return {"op": "concat", "dim": imp.attrs(node).get("axis")}


def _gather(imp: Importer, node):
    table, index = node.input[0], node.input[1]
    if table in imp.consts and index in imp.layer_of:
        if len(imp.weight(node, 0)) != 2:
            raise Unmapped("a lookup in a table of other than 2 dims")
        rows, width = imp.weight(node, 0)
        return {"op": "embedding", "num_embeddings": rows, "embedding_dim": width}
    axis = imp.attrs(node).get("axis", 0)
    if table in imp.layer_of and imp.const_dims(index) == ():
        return {"op": "select", "dim": axis, "index": int(imp.const_value(index))}
    raise Unmapped("a gather by computed or several indices")


HANDLERS = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "Gemm": _gemm, "MatMul": _matmul,
    "Add": _add, "Sub": _scalar_op("add_scalar"), "Mul": _scalar_op("mul_scalar", "mul"),
    "Div": _scalar_op("mul_scalar"), "Pow": _scalar_op("pow_scalar"),
    **{k: _function for k in FUNCTIONS}, **{k: _unary for k in UNARY}, "Gelu": _gelu, "Clip": _clip,
    "Softmax": _softmax, "BatchNormalization": _batchnorm, "LayerNormalization": _layernorm,
    "MaxPool": _pool("maxpool2d"), "AveragePool": _pool("avgpool2d"), "GlobalAveragePool": _global_pool,
    **{k: _view for k in VIEWS}, "Transpose": _transpose, **{k: _pass for k in PASS}, "Concat": _concat,
    "Gather": _gather,
}


def load(path: str, allow_unmapped: bool = False) -> Loaded:
    """Spec data of an ONNX file. Unmapped nodes are an error naming each one, unless ``allow_unmapped``."""
    onnx = _onnx()
    from google.protobuf.message import DecodeError

    require_regular(path, "an ONNX file")
    try:
        model = onnx.load(path, load_external_data=False)
    except OSError as e:
        raise SizingError(f"cannot read: {e.strerror or e}", path) from None
    except (DecodeError, ValueError, RuntimeError) as e:
        raise SizingError(f"not an ONNX model ({type(e).__name__})", path) from None
    _fix_batch(model)
    _bound_ranges(model, onnx, path)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as e:          # onnx raises InferenceError, ValidationError, RuntimeError by version
        raise SizingError(f"ONNX shape inference failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                          path) from None
    imp = Importer(model, path)
    spec = imp.run()
    listed = _listed(imp.unmapped)
    if imp.unmapped and not allow_unmapped:
        raise SizingError(f"{len(imp.unmapped)} ONNX nodes have no mapping yet: {listed}; "
                          "--allow-unmapped counts the rest (partial totals)", path)
    warnings = (f"{path}: partial totals: {len(imp.unmapped)} ONNX nodes not mapped, counted as zero: {listed}",
                ) if imp.unmapped else ()
    return Loaded(spec, warnings=warnings, origin=f"ONNX graph, opset {imp.opset}")


def _listed(unmapped: list[tuple[str, str, str]]) -> str:
    """The first six unmapped nodes as "Op 'name' (why)", and how many more (an empty op type shown as '')."""
    listed = ", ".join(f"{op or repr(op)} '{name}'" + (f" ({why})" if why else "") for op, name, why in unmapped[:6])
    return listed + (f" and {len(unmapped) - 6} more" if len(unmapped) > 6 else "")


def _bound_ranges(model, onnx, path):
    """A Range of constant start, limit and delta materialises ceil((limit - start) / delta) elements when shape
    inference or folding evaluates it: refuse one past FOLD_OUTPUT_ELEMS before anything allocates it (a 170-byte
    file could otherwise ask for gigabytes)."""
    values = {t.name: t for t in model.graph.initializer}
    values.update((n.output[0], a.t) for n in model.graph.node if n.op_type == "Constant" and n.output
                  for a in n.attribute if a.name == "value")
    for node in model.graph.node:
        if node.op_type != "Range" or len(node.input) != 3 or not all(i in values for i in node.input):
            continue
        try:
            start, limit, delta = (float(onnx.numpy_helper.to_array(values[i]).reshape(-1)[0]) for i in node.input)
        except (ValueError, IndexError, TypeError):
            continue
        count = 0 if delta == 0 else max(0, math.ceil((limit - start) / delta))
        if delta == 0 or count > FOLD_OUTPUT_ELEMS:
            raise SizingError(f"Range node '{node.name or node.output[0]}' would make "
                              f"{'endless' if delta == 0 else f'{count:,}'} elements from constants; at most "
                              f"{FOLD_OUTPUT_ELEMS:,} are evaluated", path)


def _fix_batch(model):
    """A symbolic batch dim of the model input becomes 1, so that shape inference gives whole shapes."""
    consts = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in consts:
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
        return
