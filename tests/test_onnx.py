"""ONNX import, and the ops it maps nodes to (pointwise, permute, unmapped).

ONNX graphs are built here with the onnx helper API (never downloaded), as PyTorch's exporter writes them:
a ResNet-style CNN (Conv without bias, BatchNormalization, residual Add, pools, Gemm) and a BERT-style encoder
(Gather embeddings, LayerNormalization, MatMul + Add projections, Reshape/Transpose heads, scaled scores,
GELU decomposed with Erf, the pooler). Each must give the counts of the same model written as a YAML spec by
hand (the CNN every figure; the encoder, written with multihead_attention, the params, MACs and forward FLOPs).
The ONNX tests skip when onnx is not installed (``pip install 'sizing[onnx]'``); the op tests always run.
"""
from __future__ import annotations

import json
import math
import sys

import pytest
import yaml
from click.testing import CliRunner

import sizing
from sizing.cli import main
from sizing.common.errors import SizingError
from sizing.model.ops.tensor import POINTWISE
from test_ops import _call, counted, covers, derivative, erf, exp, one, spec_rows

C = 3.0        # the constant of the *_scalar functions


def _sign_times(x, g):
    return g * (1.0 if x > 0.0 else -1.0)


# fn: (forward f(x), backward dx(x, y, g), the plain function for central differences)
FORMULAS = {
    "add_scalar": (lambda x: x + C, lambda x, y, g: g, lambda v: v + C),
    "mul_scalar": (lambda x: x * C, lambda x, y, g: g * C, lambda v: v * C),
    "pow_scalar": (_call(lambda v: v ** C), lambda x, y, g: g * C * _call(lambda v: v ** (C - 1))(x),
                   lambda v: v ** C),
    "neg": (lambda x: -x, lambda x, y, g: -g, lambda v: -v),
    "abs": (_call(abs), lambda x, y, g: _sign_times(x, g), abs),
    "exp": (exp, lambda x, y, g: g * y, math.exp),
    "log": (_call(math.log), lambda x, y, g: g / x, math.log),
    "sqrt": (_call(math.sqrt), lambda x, y, g: g / (2.0 * y), math.sqrt),
    "reciprocal": (lambda x: 1.0 / x, lambda x, y, g: -g * y * y, lambda v: 1.0 / v),
    "erf": (erf, lambda x, y, g: g * (2.0 / math.sqrt(math.pi)) * exp(-(x * x)), math.erf),
}


@covers("pointwise")
@pytest.mark.parametrize("fn", sorted(POINTWISE))
def test_pointwise_counts_equal_counted_formulas(fn):
    forward, backward, plain = FORMULAS[fn]
    fwd, bwd = POINTWISE[fn][:2]
    x, g = 0.7, 1.3
    assert counted(forward, x)[0] == fwd
    y = plain(x)
    n_back, dx = counted(backward, x, y, g)
    assert n_back == bwd
    assert dx == pytest.approx(g * derivative(plain, x), rel=1e-6)            # the formula is the derivative
    row = one("pointwise", [4, 8], hidden=True, fn=fn)
    assert (row.cost.flops, row.cost.backward_flops) == (fwd * 64, bwd * 64)


@covers("permute")
def test_permute_is_a_view_that_keeps_the_batch_first():
    row = one("permute", [3, 4, 5], dims=[0, 3, 1, 2])
    assert row.node.out.shape == (2, 5, 3, 4) and row.cost.flops == 0 and row.cost.backward_flops == 0
    for dims in ([1, 0, 2, 3], [0, 1, 1, 2], [0, 1, 2]):
        with pytest.raises(SizingError, match="dims"):
            one("permute", [3, 4, 5], dims=dims)


@covers("unmapped")
def test_unmapped_is_a_zero_that_says_so():
    rows = spec_rows([8], [{"op": "linear", "name": "a", "out_features": 6},
                           {"op": "unmapped", "name": "x", "onnx_op": "HardSwish", "shape": [3, 2]},
                           {"op": "flatten", "name": "f"}, {"op": "linear", "name": "b", "out_features": 2}])
    assert rows["x"].node.out.shape == (2, 3, 2) and rows["x"].cost.flops == 0
    assert "HardSwish is not mapped: counted as zero (totals are partial)" in rows["x"].note
    assert rows["b"].cost.macs == 2 * 6 * 2


# ---------------------------------------------------------------- graphs built with the onnx helper API

@pytest.fixture(scope="module")
def onnx():
    return pytest.importorskip("onnx")


class Net:
    """A graph under construction: nodes, zero-filled initializers, one input."""

    def __init__(self, onnx, x_shape, x_type=None):
        self.onnx, self.nodes, self.inits = onnx, [], []
        self.x_shape, self.x_type = x_shape, x_type or onnx.TensorProto.FLOAT

    def const(self, name, shape, values=None):
        import numpy as np
        array = np.zeros(shape, np.float32) if values is None else np.asarray(values)
        self.inits.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, name, **attrs):
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def save(self, path, out, opset=17):
        h = self.onnx.helper
        graph = h.make_graph(self.nodes, "main_graph", [h.make_tensor_value_info("x", self.x_type, self.x_shape)],
                             [h.make_tensor_value_info(out, self.onnx.TensorProto.FLOAT, None)], self.inits)
        self.onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", opset)]), str(path))
        return str(path)


def resnet_onnx(onnx, path):
    n = Net(onnx, ["N", 3, 32, 32])

    def conv(name, x, cin, cout, k, stride):
        return n.node("Conv", [x, n.const(f"{name}.w", (cout, cin, k, k))], name, kernel_shape=[k, k],
                      strides=[stride] * 2, pads=[k // 2] * 4)

    def bn(name, x, c):
        return n.node("BatchNormalization", [x, *(n.const(f"{name}.{p}", (c,)) for p in ("s", "b", "m", "v"))], name)

    x = n.node("Relu", [bn("bn1", conv("conv1", "x", 3, 8, 7, 2), 8)], "relu1")
    x = n.node("MaxPool", [x], "pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    y = n.node("Relu", [bn("b1bn1", conv("b1c1", x, 8, 8, 3, 1), 8)], "b1r1")
    y = bn("b1bn2", conv("b1c2", y, 8, 8, 3, 1), 8)
    x = n.node("Relu", [n.node("Add", [y, x], "b1add")], "b1out")
    y = n.node("Relu", [bn("b2bn1", conv("b2c1", x, 8, 16, 3, 2), 16)], "b2r1")
    y = bn("b2bn2", conv("b2c2", y, 16, 16, 3, 1), 16)
    down = bn("b2dbn", conv("b2down", x, 8, 16, 1, 2), 16)
    x = n.node("Relu", [n.node("Add", [y, down], "b2add")], "b2out")
    x = n.node("Flatten", [n.node("GlobalAveragePool", [x], "gap")], "flat")
    n.node("Gemm", [x, n.const("fc.w", (10, 16)), n.const("fc.b", (10,))], "fc", transB=1)
    return n.save(path, "fc")


def resnet_yaml() -> dict:
    def conv(name, out, k, stride, x=None):
        return {"op": "conv2d", "name": name, "out_channels": out, "kernel_size": k, "stride": stride,
                "padding": k // 2, "bias": False, **({"inputs": [x]} if x else {})}

    def block(p, x, width, stride, down):
        layers = [conv(f"{p}c1", width, 3, stride), {"op": "batchnorm2d", "name": f"{p}bn1"},
                  {"op": "relu", "name": f"{p}r1"}, conv(f"{p}c2", width, 3, 1),
                  {"op": "batchnorm2d", "name": f"{p}bn2"}]
        skip = x
        if down:
            layers += [conv(f"{p}down", width, 1, 2, x), {"op": "batchnorm2d", "name": f"{p}dbn"}]
            skip = f"{p}dbn"
        return layers + [{"op": "add", "name": f"{p}add", "inputs": [f"{p}bn2", skip]},
                         {"op": "relu", "name": f"{p}out"}]

    layers = [conv("conv1", 8, 7, 2), {"op": "batchnorm2d", "name": "bn1"}, {"op": "relu", "name": "relu1"},
              {"op": "maxpool2d", "name": "pool", "kernel_size": 3, "stride": 2, "padding": 1},
              *block("b1", "pool", 8, 1, False), *block("b2", "b1out", 16, 2, True),
              {"op": "adaptive_avgpool2d", "name": "gap", "output_size": 1}, {"op": "flatten", "name": "flat"},
              {"op": "linear", "name": "fc", "out_features": 10}]
    return {"name": "resnet", "input": [3, 32, 32], "layers": layers}


def bert_onnx(onnx, path, t=8, d=16, heads=2, layers=2, ffn=32, vocab=50):
    n = Net(onnx, ["N", t], onnx.TensorProto.INT64)
    dh = d // heads
    x = n.node("Gather", [n.const("word", (vocab, d)), "x"], "word_embeddings")
    pos = n.node("Gather", [n.const("pos", (16, d)), n.const("pos_ids", (1, t), [list(range(t))])], "pos_lookup")
    x = n.node("Add", [x, pos], "add_pos")
    tt = n.node("Gather", [n.const("tt", (2, d)), n.const("tt_ids", (1, t), [[0] * t])], "tt_lookup")
    x = n.node("Add", [x, tt], "add_tt")

    def ln(name, x):
        return n.node("LayerNormalization", [x, n.const(f"{name}.g", (d,)), n.const(f"{name}.b", (d,))], name, axis=-1,
                      epsilon=1e-12)

    def linear(name, x, fin, fout):
        return n.node("Add", [n.node("MatMul", [x, n.const(f"{name}.w", (fin, fout))], f"{name}_mm"),
                              n.const(f"{name}.b", (fout,))], name)

    def heads_of(name, x, perm):
        shape = n.const(f"{name}.shape", (4,), [1, t, heads, dh])
        return n.node("Transpose", [n.node("Reshape", [x, shape], f"{name}_split")], f"{name}_t", perm=perm)

    x = ln("emb_ln", x)
    for i in range(layers):
        q = heads_of(f"q{i}", linear(f"q{i}", x, d, d), [0, 2, 1, 3])
        k = heads_of(f"k{i}", linear(f"k{i}", x, d, d), [0, 2, 3, 1])
        v = heads_of(f"v{i}", linear(f"v{i}", x, d, d), [0, 2, 1, 3])
        s = n.node("Div", [n.node("MatMul", [q, k], f"scores{i}"), n.const(f"sqrt{i}", (), math.sqrt(dh))], f"scale{i}")
        ctx = n.node("MatMul", [n.node("Softmax", [s], f"softmax{i}", axis=-1), v], f"context{i}")
        ctx = n.node("Reshape", [n.node("Transpose", [ctx], f"merge{i}", perm=[0, 2, 1, 3]),
                                 n.const(f"merged{i}", (3,), [1, t, d])], f"merged_view{i}")
        x = ln(f"attn_ln{i}", n.node("Add", [linear(f"o{i}", ctx, d, d), x], f"attn_add{i}"))
        h = linear(f"up{i}", x, d, ffn)
        e = n.node("Erf", [n.node("Div", [h, n.const(f"r2_{i}", (), math.sqrt(2))], f"gelu_div{i}")], f"gelu_erf{i}")
        e = n.node("Add", [e, n.const(f"one{i}", (), 1.0)], f"gelu_add{i}")
        g = n.node("Mul", [n.node("Mul", [h, e], f"gelu_mul{i}"), n.const(f"half{i}", (), 0.5)], f"gelu{i}")
        x = ln(f"out_ln{i}", n.node("Add", [linear(f"down{i}", g, ffn, d), x], f"out_add{i}"))
    cls = n.node("Gather", [x, n.const("zero", (), 0)], "cls", axis=1)
    pooled = n.node("Gemm", [cls, n.const("pool.w", (d, d)), n.const("pool.b", (d,))], "pooler", transB=1)
    n.node("Tanh", [pooled], "pooler_tanh")
    return n.save(path, "pooler_tanh")


def bert_yaml(t=8, d=16, heads=2, layers=2, ffn=32, vocab=50) -> dict:
    block = [{"op": "multihead_attention", "name": "attention", "num_heads": heads},
             {"op": "add", "name": "attention_add", "inputs": ["attention", "input"]},
             {"op": "layernorm", "name": "attention_ln", "eps": 1.0e-12},
             {"op": "linear", "name": "up", "out_features": ffn}, {"op": "gelu", "name": "gelu"},
             {"op": "linear", "name": "down", "out_features": d},
             {"op": "add", "name": "out_add", "inputs": ["down", "attention_ln"]},
             {"op": "layernorm", "name": "out_ln", "eps": 1.0e-12}]
    return {"name": "bert", "input": {"shape": [t], "dtype": "int64"}, "blocks": {"layer": {"layers": block}},
            "layers": [{"op": "embedding", "name": "word", "num_embeddings": vocab, "embedding_dim": d},
                       {"op": "positional_embedding", "name": "pos", "num_embeddings": 16},
                       {"op": "token_type_embedding", "name": "tt", "num_embeddings": 2},
                       {"op": "layernorm", "name": "emb_ln", "eps": 1.0e-12},
                       {"block": "layer", "name": "encoder", "repeat": layers},
                       {"op": "select", "name": "cls", "dim": 1, "index": 0},
                       {"op": "linear", "name": "pooler", "out_features": d}, {"op": "tanh", "name": "pooler_tanh"}]}


def counts(e: sizing.Estimate, *keys) -> dict:
    d = e.to_dict()
    if keys:
        return {k: d[k] for k in keys}
    for k in ("model", "source", "warnings"):
        d.pop(k)
    for layer in d["layers"]:
        layer.pop("name")
    return d


def from_yaml(tmp_path, spec: dict, **sizes) -> sizing.Estimate:
    p = tmp_path / f"{spec['name']}.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return sizing.estimate(p, **sizes)


def test_resnet_style_export_counts_as_the_yaml_spec(onnx, tmp_path):
    path = resnet_onnx(onnx, tmp_path / "resnet.onnx")
    assert counts(sizing.estimate(path, batch=4)) == counts(from_yaml(tmp_path, resnet_yaml(), batch=4))


def test_bert_style_export_has_the_yaml_specs_params_macs_and_forward_flops(onnx, tmp_path):
    path = bert_onnx(onnx, tmp_path / "bert.onnx")
    a, b = sizing.estimate(path, batch=3), from_yaml(tmp_path, bert_yaml(), batch=3)
    assert a.totals.params == b.totals.params
    assert (a.totals.macs, a.totals.flops) == (b.totals.macs, b.totals.flops)
    ops = {r.node.op for r in a.layers}
    assert {"linear", "matmul", "permute", "pointwise", "positional_embedding", "token_type_embedding"} <= ops
    linears = [r for r in a.layers if r.node.op == "linear"]
    assert len(linears) == 2 * 6 + 1 and all(r.node.kwargs["bias"] for r in linears)    # MatMul + Add folded


@pytest.mark.parametrize("build", [resnet_onnx, bert_onnx])
def test_emitted_yaml_gives_identical_counts(onnx, tmp_path, build):
    path = build(onnx, tmp_path / "m.onnx")
    out = tmp_path / "m.yaml"
    r = CliRunner().invoke(main, ["estimate", path, "--batch", "2", "--emit-yaml", str(out), "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert counts(sizing.estimate(out)) == counts(sizing.estimate(path, batch=2))


def partial_onnx(onnx, path):
    n = Net(onnx, [1, 3, 8, 8])
    x = n.node("Conv", ["x", n.const("w", (4, 3, 3, 3)), n.const("b", (4,))], "conv", kernel_shape=[3, 3])
    x = n.node("HardSwish", [x], "hswish")
    x = n.node("ReduceMax", [n.node("LeakyRelu", [x], "leaky")], "rmax", axes=[2], keepdims=0)
    x = n.node("Flatten", [x], "flat")
    n.node("Gemm", [x, n.const("fc.w", (5, 24)), n.const("fc.b", (5,))], "fc", transB=1)
    return n.save(path, "fc", opset=17)


def test_unmapped_ops_are_listed_by_name(onnx, tmp_path):
    path = partial_onnx(onnx, tmp_path / "p.onnx")
    r = CliRunner().invoke(main, ["estimate", path])
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert "3 ONNX nodes have no mapping yet: HardSwish 'hswish', LeakyRelu 'leaky', ReduceMax 'rmax'" in r.output
    assert "--allow-unmapped" in r.output


def test_allow_unmapped_gives_partial_totals_that_say_so(onnx, tmp_path):
    path = partial_onnx(onnx, tmp_path / "p.onnx")
    r = CliRunner().invoke(main, ["estimate", path, "--allow-unmapped", "--format", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert any("partial totals: 3 ONNX nodes not mapped" in w for w in d["warnings"])
    assert d["params"] == 4 * 27 + 4 + 5 * 24 + 5                             # the conv and the fc
    assert d["forward"]["macs"] == 36 * 4 * 27 + 24 * 5
    notes = [layer["note"] for layer in d["layers"] if layer["op"] == "unmapped"]
    assert len(notes) == 3 and all("counted as zero" in n for n in notes)


def test_partial_graph_emits_loadable_yaml(onnx, tmp_path):
    path = partial_onnx(onnx, tmp_path / "p.onnx")
    r = CliRunner().invoke(main, ["estimate", path, "--allow-unmapped", "--emit-yaml", "-"])
    assert r.exit_code == 0, r.output
    text = r.output[r.output.index("# Written"):]
    assert "# warning: " in text and "onnx_op: HardSwish" in text
    p = tmp_path / "p.yaml"
    p.write_text(text)
    assert sizing.estimate(p).totals.macs == 36 * 4 * 27 + 24 * 5


@pytest.mark.parametrize("make,message", [
    (lambda onnx, p: p.write_bytes(b"\xff\x00 not a protobuf \x12\x34"), "not an ONNX model"),
    (lambda onnx, p: Net(onnx, ["N", "sequence"], onnx.TensorProto.INT64).save(p, "x"),
     "input 'x' dim 1 is symbolic ('sequence')"),
])
def test_bad_onnx_is_one_line(onnx, tmp_path, make, message):
    p = tmp_path / "bad.onnx"
    make(onnx, p)
    r = CliRunner().invoke(main, ["estimate", str(p)])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and message in r.output, r.output


def test_allow_unmapped_is_for_onnx_only():
    r = CliRunner().invoke(main, ["estimate", "lenet5", "--allow-unmapped"])
    assert r.exit_code == 2 and "--allow-unmapped applies to ONNX files" in r.output


def test_without_onnx_installed_the_error_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)             # import onnx now raises ImportError
    p = tmp_path / "m.onnx"
    p.write_bytes(b"")
    r = CliRunner().invoke(main, ["estimate", str(p)])
    assert r.exit_code == 2 and "pip install 'sizing[onnx]'" in r.output


def exporter_reshape_onnx(onnx, path, t=6, d=8, heads=2):
    """Heads split and merged by reshapes whose targets TorchScript's exporter computes from Shape: B and T
    gathered from the input's shape, head_dim = D / heads (Div, Cast), all unsqueezed and concatenated; ONNX's
    own shape inference leaves those reshapes without a shape."""
    n = Net(onnx, ["N", t, d])
    shape = n.node("Shape", ["x"], "shape")
    b, tt, dd = (n.node("Gather", [shape, n.const(f"i{k}", (), k)], f"dim{k}") for k in range(3))
    dh = n.node("Cast", [n.node("Div", [dd, n.const("h", (), heads)], "div")], "cast", to=onnx.TensorProto.INT64)
    axes = n.const("axes", (1,), [0])
    parts = [n.node("Unsqueeze", [v, axes], f"u{k}") for k, v in enumerate([b, tt, n.const("heads", (), heads), dh])]
    target = n.node("Concat", parts, "target", axis=0)
    q = n.node("MatMul", ["x", n.const("w", (d, d))], "proj")
    q = n.node("Transpose", [n.node("Reshape", [q, target], "split")], "heads_first", perm=[0, 2, 1, 3])
    s = n.node("Softmax", [n.node("MatMul", [q, n.node("Transpose", [q], "kt", perm=[0, 1, 3, 2])], "scores")], "p",
               axis=-1)
    c = n.node("Transpose", [n.node("MatMul", [s, q], "context")], "merge", perm=[0, 2, 1, 3])
    merged = n.node("Concat", [parts[0], parts[1], n.const("width", (1,), [d])], "merged_target", axis=0)
    n.node("Reshape", [c, merged], "merged")
    return n.save(path, "merged")


def test_reshape_targets_computed_from_shapes_are_folded(onnx, tmp_path):
    path = exporter_reshape_onnx(onnx, tmp_path / "r.onnx")
    e = sizing.estimate(path, batch=2)
    assert [r.node.op for r in e.layers] == ["linear", "reshape", "permute", "permute", "matmul", "softmax", "matmul",
                                            "permute", "reshape"]
    t, d, heads = 6, 8, 2
    assert e.totals.macs == 2 * (t * d * d + 2 * heads * t * t * (d // heads))
    assert e.layers[-1].node.out.shape == (2, t, d)
