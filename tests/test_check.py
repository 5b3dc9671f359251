"""`sizing check`: the Numba kernels against independent routes.

- executed counts against sizing.model.counting's formulas, over specs that use every op of the registry;
- each kernel's forward output against a plain-numpy reference written from PyTorch's definitions (the
  transposed convolution as the adjoint of the convolution);
- backprop against central finite differences (float64) for every op with weights and every graph feature
  (folded repeats, tied weights, frozen layers, fan-out);
- the checks can fail: a kernel that does extra work or returns a wrong gradient is caught;
- the command: JSON keys, exit codes, reduced instances, NaN, ops without a kernel.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from sizing.execute.check import check
from sizing.cli import main
from sizing.model.counting import count, updated_params
from sizing.common.errors import SizingError
from sizing.execute.gradcheck import TOLERANCE, gradient_check
from sizing.execute.kernels import KERNELS, OpKernel
from sizing.execute.model import Model, NoKernel
from sizing.execute.reduce import gradient_instance, plan, shrink
from sizing.model.graph import build
from sizing.model.ops import REGISTRY
from sizing.common.yamlsafe import loads

IMAGE = """
name: every_image_op
input: [3, 9, 9]
defaults: {batch: 2}
layers:
  - {op: conv2d, name: c1, out_channels: 4, kernel_size: 3, padding: 1, padding_mode: reflect}
  - {op: groupnorm, name: gn, num_groups: 2}
  - {op: relu6, name: r6}
  - {op: conv2d, name: c2, out_channels: 4, kernel_size: 3, stride: 2, padding: 1, groups: 2, bias: false}
  - {op: batchnorm2d, name: bn}
  - {op: silu, name: si}
  - {op: conv_transpose2d, name: ct, out_channels: 4, kernel_size: 3, stride: 2, padding: 1}
  - {op: maxpool2d, name: mp, kernel_size: 3, stride: 2, padding: 1, ceil_mode: true}
  - {op: avgpool2d, name: ap, kernel_size: 2, stride: 1, padding: 1, count_include_pad: false}
  - {op: conv2d, name: dw, out_channels: 8, kernel_size: 3, padding: same, groups: 4, padding_mode: circular}
  - {op: adaptive_avgpool2d, name: aap, output_size: [3, 2]}
  - {op: adaptive_avgpool2d, name: gate, output_size: 1}
  - {op: sigmoid, name: sg}
  - {op: mul, name: scaled, inputs: [aap, sg]}
  - {op: add, name: plus, inputs: [scaled, gate, aap]}
  - {op: concat, name: cat, inputs: [plus, scaled], dim: 1}
  - {op: relu, name: r}
  - {op: flatten, name: fl}
  - {op: linear, name: l1, out_features: 12}
  - {op: tanh, name: th}
  - {op: gelu, name: ge}
  - {op: gelu, name: get, approximate: tanh}
  - {op: dropout, name: do, p: 0.3}
  - {op: reshape, name: rs, shape: [3, 4]}
  - {op: softmax, name: sm, dim: 1}
  - {op: narrow, name: na, dim: 2, start: 1, length: 2}
  - {op: select, name: se, dim: 1, index: -1}
  - {op: identity, name: id}
  - {op: linear, name: head, out_features: 5}
"""

SEQUENCE = """
name: every_sequence_op
input: {shape: [$seq_len], dtype: int64}
defaults: {batch: 2, seq_len: 5}
blocks:
  layer:
    layers:
      - {op: layernorm, name: ln}
      - {op: multihead_attention, name: attn, num_heads: 4, num_kv_heads: 2, causal: true, dropout: 0.1}
      - {op: add, name: res1, inputs: [attn, input]}
      - {op: rmsnorm, name: rms}
      - {op: linear, name: up, out_features: 16}
      - {op: gelu, name: act, approximate: tanh}
      - {op: linear, name: down, out_features: 8}
      - {op: add, name: res2, inputs: [down, res1]}
layers:
  - {op: embedding, name: wte, num_embeddings: 11, embedding_dim: 8, padding_idx: 0}
  - {op: positional_embedding, name: wpe, num_embeddings: 7}
  - {op: token_type_embedding, name: tte, num_embeddings: 2}
  - {block: layer, name: h, repeat: 3}
  - {op: multihead_attention, name: plain, num_heads: 2, bias: false, separate_qkv: true}
  - {op: lstm, name: lstm, hidden_size: 6, num_layers: 2, bidirectional: true, dropout: 0.2}
  - {op: gru, name: gru, hidden_size: 5, bias: false}
  - {op: linear, name: a, out_features: 6}
  - {op: reshape, name: b, shape: [6, -1]}
  - {op: matmul, name: mm, inputs: [a, b]}
  - {op: reshape, name: a4, inputs: a, shape: [1, -1, 6]}
  - {op: linear, name: c, inputs: gru, out_features: 12, trainable: false}
  - {op: reshape, name: b4, shape: [2, 6, 5]}
  - {op: matmul, name: mm4, inputs: [a4, b4]}
  - {op: reshape, name: fl4, shape: [5, 10]}
  - {op: concat, name: both, inputs: [mm, fl4], dim: -1}
  - {op: linear, name: proj, out_features: 8}
  - {op: layernorm, name: lnf, bias: false}
  - {op: linear, name: lm_head, out_features: 11, bias: false, tie: wte}
"""

CONV1D = """
name: conv1d_bn1d
input: [4, 10]
defaults: {batch: 3}
layers:
  - {op: conv1d, name: c1, out_channels: 6, kernel_size: 3, padding: same, dilation: 2}
  - {op: batchnorm1d, name: bn1}
  - {op: tanh, name: t1}
  - {op: conv1d, name: c2, out_channels: 6, kernel_size: 2, stride: 2, padding: 1, padding_mode: replicate}
  - {op: flatten, name: f}
  - {op: batchnorm1d, name: bn2, momentum: null, affine: false}
  - {op: linear, name: l, out_features: 3}
  - {op: sigmoid, name: out}
"""

TRANSFORMER = """
name: llama_like
input: {shape: [$seq_len], dtype: int64}
defaults: {batch: 2, seq_len: 6}
layers:
  - {op: embedding, name: emb, num_embeddings: 13, embedding_dim: 8}
  - {op: rmsnorm, name: n1}
  - {op: linear, name: q, out_features: 8}
  - {op: linear, name: k, inputs: n1, out_features: 4, bias: false}
  - {op: linear, name: v, inputs: n1, out_features: 4}
  - {op: rotary_embedding, name: rq, inputs: q, num_heads: 4}
  - {op: rotary_embedding, name: rk, inputs: k, num_heads: 2, rotary_dim: 2}
  - {op: scaled_dot_product_attention, name: att, inputs: [rq, rk, v], num_heads: 4, num_kv_heads: 2, causal: true,
     dropout: 0.1}
  - {op: linear, name: o, out_features: 8, bias: false}
  - {op: add, name: res, inputs: [o, emb]}
  - {op: mixture_of_experts, name: moe, num_experts: 4, top_k: 2, intermediate_size: 6}
  - {op: mixture_of_experts, name: raw, num_experts: 3, top_k: 2, intermediate_size: 5, norm_topk_prob: false}
  - {op: add, name: moes, inputs: [moe, raw]}
  - {op: scaled_dot_product_attention, name: att2, inputs: [moes, res, moes], num_heads: 2}
  - {op: linear, name: vs, inputs: res, out_features: 4, bias: false}
  - {op: scaled_dot_product_attention, name: local, inputs: [att2, res, vs], num_heads: 2, causal: true, window: 3,
     softcap: 2.0}
  - {op: reshape, name: heads, shape: [-1, 2, 2]}
  - {op: narrow, name: first, dim: -1, start: 0, length: 1}
  - {op: expand, name: wide, shape: [-1, -1, 4]}
  - {op: reshape, name: flat, shape: [-1, 8]}
  - {op: mixture_of_experts, name: grouped, num_experts: 8, top_k: 2, intermediate_size: 3, scoring: sigmoid,
     score_bias: true, n_group: 4, topk_group: 2, group_top: 2, routed_scaling_factor: 2.5}
  - {op: add, name: both_moe, inputs: [grouped, moes]}
  - {op: linear, name: head, out_features: 13}
"""

POINTWISE = """
name: imported
input: [3, 4]
defaults: {batch: 2}
layers:
  - {op: linear, name: lin, out_features: 4}
  - {op: pointwise, name: e, fn: exp}
  - {op: pointwise, name: s, fn: sqrt}
  - {op: pointwise, name: r, inputs: e, fn: reciprocal}
  - {op: pointwise, name: l, inputs: e, fn: log}
  - {op: pointwise, name: a, inputs: lin, fn: abs}
  - {op: pointwise, name: n, fn: neg}
  - {op: pointwise, name: pw, inputs: lin, fn: pow_scalar}
  - {op: pointwise, name: m, fn: mul_scalar}
  - {op: pointwise, name: ad, fn: add_scalar}
  - {op: pointwise, name: er, inputs: lin, fn: erf}
  - {op: add, name: total, inputs: [s, r, l, n, ad, er]}
  - {op: permute, name: perm, dims: [0, 2, 1]}
  - {op: flatten, name: fl}
  - {op: linear, name: head, out_features: 3}
"""

LARGE_IMAGE = """
name: large_maps
input: [2, 65, 65]
defaults: {batch: 2}
layers:
  - {op: conv2d, name: a, out_channels: 3, kernel_size: 3, padding: 1}
  - {op: relu, name: r}
  - {op: conv2d, name: b, out_channels: 4, kernel_size: 3, padding: 1, bias: false}
  - {op: adaptive_avgpool2d, name: p, output_size: 1}
  - {op: flatten, name: f}
  - {op: linear, name: head, out_features: 3}
"""   # 65 x 65 maps: the convolutions take samples one by one, and backward accumulates dW over two chunks

DEPTHWISE = """
name: depthwise_edges
input: [4, 15]
defaults: {batch: 3}
layers:
  - {op: conv1d, name: a, out_channels: 4, kernel_size: 3, padding: 2, dilation: 2, groups: 4, padding_mode: reflect}
  - {op: conv1d, name: b, out_channels: 8, kernel_size: 3, stride: 2, padding: 1, groups: 4, bias: false,
     padding_mode: replicate}
  - {op: tanh, name: t}
  - {op: reshape, name: r, shape: [8, 2, 4]}
  - {op: conv2d, name: c, out_channels: 16, kernel_size: 2, stride: 2, padding: 1, groups: 8, padding_mode: circular}
  - {op: conv2d, name: d, out_channels: 16, kernel_size: 3, padding: 1, groups: 16}
  - {op: flatten, name: f}
  - {op: linear, name: out, out_features: 3}
"""   # the direct depthwise loops: 1-D and 2-D, dilation, stride 2, channel multiplier 2, every padding mode

LORA_MOE = """
name: lora_moe
input: [5, 8]
defaults: {batch: 2}
layers:
  - {op: mixture_of_experts, name: down_only, num_experts: 4, top_k: 2, intermediate_size: 6, lora_rank: 2,
     lora_targets: [w2]}
  - {op: mixture_of_experts, name: gate_only, inputs: input, num_experts: 3, top_k: 2, intermediate_size: 5,
     lora_rank: 3, lora_targets: [gate]}
  - {op: mixture_of_experts, name: up_only, inputs: input, num_experts: 2, top_k: 1, intermediate_size: 4,
     lora_rank: 1, lora_targets: [w1, w3], routed_scaling_factor: 2.0}
  - {op: add, name: s, inputs: [down_only, gate_only, up_only]}
  - {op: mixture_of_experts, name: every, num_experts: 4, top_k: 2, intermediate_size: 6, lora_rank: 2,
     scoring: sigmoid, norm_topk_prob: false}
  - {op: mixture_of_experts, name: frozen, num_experts: 3, top_k: 1, intermediate_size: 4, trainable: false}
  - {op: linear, name: head, out_features: 3, trainable: false}
"""   # LoRA on frozen experts: the first three read the model input (no input gradient), so each computes only
#       what its adapters need (w2's: the expert outputs' gradient; the router's: the routing weights'; w1 and
#       w3's: the experts' insides); 'every' adapts all four products and passes its input a gradient

SPECS = {"image": IMAGE, "sequence": SEQUENCE, "conv1d": CONV1D, "transformer": TRANSFORMER, "pointwise": POINTWISE,
         "large_image": LARGE_IMAGE, "depthwise": DEPTHWISE, "lora_moe": LORA_MOE}
NO_KERNEL = {"unmapped"}          # an imported node with a shape and no semantics: refused by name



def graph_of(text: str, **overrides):
    data, lines = loads(text, "t.yaml")
    return build(data, lines, "t.yaml", **overrides)


def spec_file(tmp_path, text: str, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def executed(model: Model) -> list[tuple[int, int, int]]:
    for layer in model.layers:
        layer.cnt[:] = 0
    model.step(0.01)
    return [tuple(int(v) for v in layer.cnt) for layer in model.layers]


# ---------------------------------------------------------------- counts against the analytic formulas

def test_the_specs_run_every_op_of_the_registry():
    used = {n.op for text in SPECS.values() for n in graph_of(text).nodes}
    assert used == set(KERNELS) == set(REGISTRY) - NO_KERNEL


def test_an_op_without_a_kernel_is_refused_by_name():
    text = "input: [4]\nlayers:\n  - {op: unmapped, name: odd, onnx_op: Foo, shape: [4]}\n"
    with pytest.raises(NoKernel, match="layer 'odd': op 'unmapped' has no kernel"):
        Model(graph_of(text), np.float64)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_executed_counts_equal_the_analytic_ones(name):
    graph = graph_of(SPECS[name])
    model = Model(graph, np.float64)
    rows, _ = count(graph)
    for row, got in zip(rows, executed(model)):
        assert got == (row.cost.macs, row.cost.flops, row.cost.backward_flops), row.node.name


DEAD_BRANCHES = """
input: [6]
defaults: {batch: 3}
blocks:
  mlp: {layers: [{op: linear, name: fc, out_features: 6}, {op: tanh, name: t},
                 {op: linear, name: probe, out_features: 2}, {op: add, name: res, inputs: [t, input]}]}
layers:
  - {op: linear, name: first, out_features: 6}
  - {op: relu, name: r}
  - {op: linear, name: side, inputs: r, out_features: 3}
  - {op: softmax, name: side_act}
  - {block: mlp, name: body, inputs: r, repeat: 3}
  - {op: linear, name: out, out_features: 4}
"""


def test_a_dead_branch_runs_forward_and_has_no_backward():
    """Layers no path takes to the output ('side', 'side_act', each copy's 'probe') get no gradient; 'r', read by
    'side' and by the block's first copy twice (fc, res), gets one gradient sum, not two. Executed counts equal
    the analytic ones, dead layers included."""
    graph = graph_of(DEAD_BRANCHES)
    rows, _ = count(graph)
    by_name = {row.node.name.split(".")[-1]: row.cost for row in rows}
    for dead in ("side", "side_act", "probe"):
        assert by_name[dead].backward_flops == 0 and by_name[dead].saved_bytes == 0 and by_name[dead].flops > 0
    assert by_name["r"].backward_flops == 3 * 6 + 3 * 6            # relu's select, one sum of two gradients
    model = Model(graph, np.float64)
    for row, got in zip(rows, executed(model)):
        assert got == (row.cost.macs, row.cost.flops, row.cost.backward_flops), row.node.name
    assert updated_params(rows) == received_gradients(model) < sum(r.cost.params for r in rows)


def received_gradients(model: Model) -> int:
    """Elements of the weights a training step gave a gradient (the executor's own record)."""
    model.loss_and_gradients(timed=False)
    return sum(w.size for _, w, grad in model.weights() if not grad.fresh)


def test_a_dead_layer_s_tied_weight_still_gets_the_live_layer_s_gradient():
    text = """
input: {shape: [5], dtype: int64}
defaults: {batch: 2}
layers:
  - {op: embedding, name: emb, num_embeddings: 11, embedding_dim: 8}
  - {op: embedding, name: emb2, inputs: input, num_embeddings: 7, embedding_dim: 8}
  - {op: linear, name: unused, out_features: 3}
  - {op: linear, name: head, inputs: emb2, out_features: 11, bias: false, tie: emb}
"""
    graph = graph_of(text)
    rows, _ = count(graph)
    assert [r.backward for r in rows] == [False, True, False, True]
    assert updated_params(rows) == received_gradients(Model(graph, np.float64)) == 11 * 8 + 7 * 8


def test_a_folded_repeat_runs_every_copy():
    """repeat: 5 folds to one group of 4 copies; the kernels do 5 times one copy's work, plus the gradient
    sum where copy k's output feeds both layers of copy k+1 that read it (4 copies x 3 x 6 elements)."""
    text = """
input: [6]
defaults: {batch: 3}
blocks:
  mlp: {layers: [{op: linear, name: fc, out_features: 6}, {op: relu, name: r},
                 {op: add, name: res, inputs: [r, input]}]}
layers:
  - {op: linear, name: first, out_features: 6}
  - {block: mlp, name: body, repeat: REPEAT}
  - {op: linear, name: out, out_features: 2}
"""
    one, five = graph_of(text.replace("REPEAT", "1")), graph_of(text.replace("REPEAT", "5"))
    assert [g.repeat for g in five.groups] == [4]
    work_one, work_five = executed(Model(one, np.float64)), executed(Model(five, np.float64))
    body = lambda g, work: [w for n, w in zip(g.nodes, work) if n.name.startswith("body")]
    per_copy = np.sum(body(one, work_one), axis=0)
    assert np.array_equal(np.sum(body(five, work_five), axis=0), 5 * per_copy + [0, 0, 4 * 3 * 6])
    assert gradient_check(Model(five, np.float64)).ok


# ---------------------------------------------------------------- gradients against finite differences

@pytest.mark.parametrize("name", sorted(SPECS))
def test_gradients_match_finite_differences(name):
    graph = graph_of(SPECS[name])
    result = gradient_check(Model(graph, np.float64))
    trainable = [n for n in graph.nodes if n.trainable and REGISTRY[n.op].weights(
        n.kwargs, tuple(t.shape for t in n.in_types))]
    assert len(result.tensors) >= len(trainable)
    assert result.max_rel_error < TOLERANCE, result.worst


def test_a_wrong_gradient_is_caught(monkeypatch):
    original = KERNELS["linear"]

    def skewed(node, saved, gy, need, p, grads, cnt):
        return original.backward(node, saved, gy * 1.001, need, p, grads, cnt)

    monkeypatch.setitem(KERNELS, "linear", OpKernel(original.forward, skewed))
    result = gradient_check(Model(graph_of(CONV1D), np.float64))
    assert not result.ok
    assert 5e-4 < result.max_rel_error < 2e-3           # every weight at or before it is 1e-3 off


# ---------------------------------------------------------------- forward outputs against numpy

def run_one(layer: str, input_shape: list, **overrides):
    """(input, weights, output) of a one-layer model in float64."""
    text = f"input: {input_shape}\ndefaults: {{batch: 2}}\nlayers:\n  - {layer}\n"
    model = Model(graph_of(text, **overrides), np.float64, seed=3)
    y, _ = model.forward(model.x, seed=0)
    return model.x, model.layers[0].params[0], y


def conv_ref(x, w, b, stride, pad, dilation, groups, mode="constant"):
    """Direct convolution (cross-correlation) of PyTorch's conv2d over an np.pad-ed input."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), mode=mode)
    cout, cg, kh, kw = w.shape
    oh = (xp.shape[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (xp.shape[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((x.shape[0], cout, oh, ow))
    for o in range(cout):
        g = o // (cout // groups)
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dilation[0]::stride[0], j * dilation[1]::stride[1]]
                out[:, o] += np.einsum("bchw,c->bhw", patch[:, :, :oh, :ow], w[o, :, i, j])
    return out + (0 if b is None else b[None, :, None, None])


@pytest.mark.parametrize("args, mode, size", [
    ("stride: 2, padding: 1", "constant", 7),
    ("padding: 2, dilation: 2, groups: 2", "constant", 7),
    ("padding: 1, padding_mode: reflect, bias: false", "reflect", 7),
    ("padding: 1, padding_mode: replicate", "edge", 7),
    ("padding: 1, padding_mode: circular, stride: [1, 2]", "wrap", 7),
    ("padding: 1", "constant", 33),                      # 33 x 33 outputs: samples one by one
    # depthwise (groups = in_channels): the direct loops; channel multiplier 2; every padding mode
    ("groups: 4, stride: 2, padding: 1", "constant", 7),
    ("groups: 4, out_channels: 8, padding: 2, dilation: 2, padding_mode: reflect", "reflect", 8),
    ("groups: 4, padding: 1, stride: [2, 1], padding_mode: circular, bias: false", "wrap", 7),
    ("groups: 4, padding: 1, padding_mode: replicate", "edge", 6),
])
def test_conv2d_forward(args, mode, size):
    layer = f"{{op: conv2d, kernel_size: 3, {args if 'out_channels' in args else args + ', out_channels: 4'}}}"
    x, p, y = run_one(layer, [4, size, size - 1])
    a = graph_of(f"input: [4, {size}, {size - 1}]\nlayers: [{layer}]").nodes[0].kwargs
    ref = conv_ref(x, p["weight"], p.get("bias"), a["stride"], a["padding"], a["dilation"], a["groups"], mode)
    assert np.allclose(y, ref)


def test_conv1d_forward():
    x, p, y = run_one("{op: conv1d, out_channels: 3, kernel_size: 3, padding: same, dilation: 2}", [2, 9])
    ref = conv_ref(x[:, :, None, :], p["weight"][:, :, None, :], p["bias"], (1, 1), (0, 2), (1, 2), 1)
    assert np.allclose(y, ref[:, :, 0, :])


def test_conv_transpose2d_is_the_adjoint_of_conv2d():
    """<convT(x), z> = <x, conv(z)> with the same weight, stride, padding, dilation and groups (no bias)."""
    layer = "{op: conv_transpose2d, out_channels: 6, kernel_size: 3, stride: 2, padding: 1, groups: 2, bias: false}"
    x, p, y = run_one(layer, [4, 5, 4])
    z = np.random.default_rng(1).standard_normal(y.shape)
    assert math.isclose(np.sum(y * z), np.sum(x * conv_ref(z, p["weight"], None, (2, 2), (1, 1), (1, 1), 2)))


def test_pooling_forward():
    x, _, y = run_one("{op: maxpool2d, kernel_size: 3, stride: 2, padding: 1}", [2, 6, 5])
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    ref = np.max([xp[:, :, i:i + 5:2, j:j + 5:2][:, :, :3, :3] for i in range(3) for j in range(3)], axis=0)
    assert np.array_equal(y, ref)
    x, _, y = run_one("{op: avgpool2d, kernel_size: 2, padding: 1, count_include_pad: false}", [2, 4, 4])
    xp, ones = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), np.pad(np.ones((4, 4)), 1)
    sums = sum(xp[:, :, i::2, j::2][:, :, :3, :3] for i in range(2) for j in range(2))
    counts = sum(ones[i::2, j::2][:3, :3] for i in range(2) for j in range(2))
    assert np.allclose(y, sums / counts)
    x, _, y = run_one("{op: adaptive_avgpool2d, output_size: [2, 3]}", [2, 5, 7])
    rows = [(0, 3), (2, 5)]                            # floor(i*5/2), ceil((i+1)*5/2)
    cols = [(0, 3), (2, 5), (4, 7)]
    ref = np.array([[x[:, :, r0:r1, c0:c1].mean(axis=(2, 3)) for c0, c1 in cols] for r0, r1 in rows])
    assert np.allclose(y, ref.transpose(2, 3, 0, 1))


def test_norms_forward():
    x, p, y = run_one("{op: batchnorm2d}", [3, 4, 5])
    mean, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
    assert np.allclose(y, (x - mean) / np.sqrt(var + 1e-5))
    x, p, y = run_one("{op: groupnorm, num_groups: 2}", [4, 3, 3])
    g = x.reshape(2, 2, -1)
    ref = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    assert np.allclose(y, ref)
    x, p, y = run_one("{op: rmsnorm, eps: 0.001}", [3, 6])
    assert np.allclose(y, x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-3) * p["weight"])


def test_activations_forward():
    erf = np.vectorize(math.erf)
    refs = {"relu6": lambda v: np.clip(v, 0, 6), "silu": lambda v: v / (1 + np.exp(-v)),
            "gelu": lambda v: 0.5 * v * (1 + erf(v / math.sqrt(2))),
            "gelu, approximate: tanh": lambda v: 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))),
            "softmax": lambda v: np.exp(v) / np.exp(v).sum(-1, keepdims=True)}
    for op, ref in refs.items():
        x, _, y = run_one(f"{{op: {op}}}", [7])
        assert np.allclose(y, ref(x * 1.0)), op


def attention_ref(x, p, heads, kv, causal):
    b, t, e = x.shape
    d = e // heads
    proj = {n: x @ p[f"{n}_proj.weight"].T + p[f"{n}_proj.bias"] for n in "qkv"}
    out = np.zeros_like(x)
    for h in range(heads):
        g = h // (heads // kv)
        q, k, v = proj["q"][..., h * d:(h + 1) * d], proj["k"][..., g * d:(g + 1) * d], proj["v"][..., g * d:(g + 1) * d]
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d) + (np.triu(np.full((t, t), -np.inf), 1) if causal else 0)
        w = np.exp(s - s.max(-1, keepdims=True))
        out[..., h * d:(h + 1) * d] = (w / w.sum(-1, keepdims=True)) @ v
    return out @ p["out_proj.weight"].T + p["out_proj.bias"]


def test_attention_forward():
    x, p, y = run_one("{op: multihead_attention, num_heads: 4, num_kv_heads: 2, causal: true}", [5, 8])
    assert np.allclose(y, attention_ref(x, p, 4, 2, True))


def sdpa_ref(q, k, v, heads, kv, window=None, softcap=None):
    """Causal attention per head with numpy, keys j of query i where i - window < j <= i, Gemma 2's
    cap * tanh(s / cap) on the scaled scores; v's head_dim may differ from q's."""
    t, d, dv = q.shape[1], q.shape[2] // heads, v.shape[2] // kv
    i, j = np.arange(t)[:, None], np.arange(t)[None, :]
    allowed = (j <= i) & ((i - j < window) if window else True)
    out = np.zeros((q.shape[0], t, heads * dv))
    for h in range(heads):
        g = h // (heads // kv)
        s = q[..., h * d:(h + 1) * d] @ k[..., g * d:(g + 1) * d].transpose(0, 2, 1) / math.sqrt(d)
        if softcap:
            s = softcap * np.tanh(s / softcap)
        s = np.where(allowed, s, -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        out[..., h * dv:(h + 1) * dv] = (w / w.sum(-1, keepdims=True)) @ v[..., g * dv:(g + 1) * dv]
    return out


@pytest.mark.parametrize("window,softcap", [(None, None), (3, None), (2, 1.5), (9, None)])
def test_sdpa_forward_window_softcap_and_a_wider_v(window, softcap):
    """q and k of head_dim 4 (3 heads, 1 kv head), v of head_dim 5 (as MLA's v differs from its q/k), a sliding
    window (9 >= T: the whole sequence) and soft-capping: the kernel equals the masked numpy attention."""
    extra = (f", window: {window}" if window else "") + (f", softcap: {softcap}" if softcap else "")
    text = f"""
input: [7, 21]
defaults: {{batch: 2}}
layers:
  - {{op: narrow, name: q, dim: -1, start: 0, length: 12}}
  - {{op: narrow, name: k, inputs: input, dim: -1, start: 12, length: 4}}
  - {{op: narrow, name: v, inputs: input, dim: -1, start: 16, length: 5}}
  - {{op: scaled_dot_product_attention, name: a, inputs: [q, k, v], num_heads: 3, num_kv_heads: 1, causal: true{extra}}}
"""
    model = Model(graph_of(text), np.float64, seed=3)
    y, _ = model.forward(model.x, seed=0)
    x = model.x
    assert y.shape == (2, 7, 15)
    assert np.allclose(y, sdpa_ref(x[..., :12], x[..., 12:16], x[..., 16:], 3, 1, window, softcap))


def test_expand_repeats_a_size_one_dim():
    x, _, y = run_one("{op: expand, shape: [-1, 3, 4]}", [5, 1, 4])
    assert y.shape == (2, 5, 3, 4) and np.array_equal(y, np.broadcast_to(x, (2, 5, 3, 4)))


def test_grouped_sigmoid_routing_forward():
    """DeepSeek-V3's router: sigmoid scores, the correction bias steering the choice only, each of 4 groups
    scored by its 2 best, the 2 best groups kept, the top 2 experts among them, renormalised and scaled by 2.5."""
    text = ("input: [5, 6]\ndefaults: {batch: 2}\nlayers:\n  - {op: mixture_of_experts, num_experts: 8, top_k: 2, "
            "intermediate_size: 3, scoring: sigmoid, score_bias: true, n_group: 4, topk_group: 2, group_top: 2, "
            "routed_scaling_factor: 2.5}\n")
    model = Model(graph_of(text), np.float64, seed=3)
    p = model.layers[0].params[0]
    p["gate.e_score_correction_bias"][:] = np.random.default_rng(1).normal(0, 0.5, 8)
    y, _ = model.forward(model.x, seed=0)
    x2 = model.x.reshape(-1, 6)
    scores = 1 / (1 + np.exp(-(x2 @ p["gate.weight"].T)))
    choice = scores + p["gate.e_score_correction_bias"]
    ref = np.zeros_like(x2)
    for t, row in enumerate(x2):
        group_score = np.sort(choice[t].reshape(4, 2), axis=1)[:, -2:].sum(1)
        groups = np.argsort(-group_score)[:2]
        masked = np.where(np.isin(np.arange(8) // 2, groups), choice[t], -np.inf)
        top = np.argsort(-masked)[:2]
        for j in top:
            h1, h3 = p["experts.w1.weight"][j] @ row, p["experts.w3.weight"][j] @ row
            weight = 2.5 * scores[t, j] / scores[t, top].sum()
            ref[t] += weight * (p["experts.w2.weight"][j] @ (h1 / (1 + np.exp(-h1)) * h3))
    assert np.allclose(y.reshape(-1, 6), ref)


def recurrent_ref(cell, x, p, hidden, layers, dirs):
    """PyTorch's LSTM / GRU equations, step by step, every layer and direction."""
    sig = lambda v: 1 / (1 + np.exp(-v))
    for layer in range(layers):
        outs = []
        for d, suffix in enumerate(("", "_reverse")[:dirs]):
            w = {k: p[f"{k}_l{layer}{suffix}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            h = c = np.zeros((x.shape[0], hidden))
            out = np.zeros((x.shape[0], x.shape[1], hidden))
            for t in (range(x.shape[1] - 1, -1, -1) if d else range(x.shape[1])):
                gi, gh = x[:, t] @ w["weight_ih"].T + w["bias_ih"], h @ w["weight_hh"].T + w["bias_hh"]
                if cell == "lstm":
                    i, f, g, o = np.split(gi + gh, 4, axis=1)
                    c = sig(f) * c + sig(i) * np.tanh(g)
                    h = sig(o) * np.tanh(c)
                else:
                    (ir, iz, i_n), (hr, hz, hn) = np.split(gi, 3, axis=1), np.split(gh, 3, axis=1)
                    r, z = sig(ir + hr), sig(iz + hz)
                    h = (1 - z) * np.tanh(i_n + r * hn) + z * h
                out[:, t] = h
            outs.append(out)
        x = np.concatenate(outs, axis=2)
    return x


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_forward(cell):
    x, p, y = run_one(f"{{op: {cell}, hidden_size: 3, num_layers: 2, bidirectional: true}}", [4, 5])
    assert np.allclose(y, recurrent_ref(cell, x, p, 3, 2, 2))


def test_rotary_forward():
    """Hugging Face's apply_rotary_pos_emb (rotate_half) on each head's first rotary_dim features."""
    x, _, y = run_one("{op: rotary_embedding, num_heads: 2, rotary_dim: 4}", [5, 12])
    heads = x.reshape(2, 5, 2, 6)
    rot, rest = heads[..., :4], heads[..., 4:]
    angle = np.arange(5)[:, None] * 10000.0 ** (-np.arange(0, 4, 2) / 4)
    cos, sin = np.tile(np.cos(angle), 2)[None, :, None], np.tile(np.sin(angle), 2)[None, :, None]
    half = np.concatenate([-rot[..., 2:], rot[..., :2]], axis=-1)
    assert np.allclose(y, np.concatenate([rot * cos + half * sin, rest], axis=-1).reshape(x.shape))


@pytest.mark.parametrize("norm", [True, False])
def test_mixture_of_experts_forward(norm):
    """Mixtral's block: softmax router, top k renormalised (Qwen2-MoE: not), SwiGLU experts, weighted sum."""
    x, p, y = run_one("{op: mixture_of_experts, num_experts: 4, top_k: 2, intermediate_size: 5, norm_topk_prob: "
                      f"{str(norm).lower()}}}", [3, 6])
    x2 = x.reshape(-1, 6)
    logits = x2 @ p["gate.weight"].T
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ref = np.zeros_like(x2)
    for t, row in enumerate(x2):
        top = np.argsort(-probs[t])[:2]
        for j in top:
            h1, h3 = p["experts.w1.weight"][j] @ row, p["experts.w3.weight"][j] @ row
            weight = probs[t, j] / (probs[t, top].sum() if norm else 1.0)
            ref[t] += weight * (p["experts.w2.weight"][j] @ (h1 / (1 + np.exp(-h1)) * h3))
    assert np.allclose(y.reshape(-1, 6), ref)


def test_matmul_broadcasts_and_embedding_gathers():
    text = """
input: {shape: [4], dtype: int64}
defaults: {batch: 2}
layers:
  - {op: embedding, name: e, num_embeddings: 9, embedding_dim: 6}
  - {op: reshape, name: a, shape: [1, 4, 6]}
  - {op: reshape, name: b, inputs: e, shape: [2, 6, 2]}
  - {op: matmul, name: m, inputs: [a, b]}
"""
    model = Model(graph_of(text), np.float64)
    y, _ = model.forward(model.x, seed=0)
    table = model.layers[0].params[0]["weight"]
    e = table[model.x]
    assert np.allclose(y, np.matmul(e.reshape(2, 1, 4, 6), e.reshape(2, 2, 6, 2)))


# ---------------------------------------------------------------- training

def test_the_loss_falls_on_a_fixed_batch():
    model = Model(graph_of(IMAGE.replace("batch: 2", "batch: 8")), np.float64)
    losses = [model.step(0.05) for _ in range(6)]
    assert losses[-1] < losses[0]


# ---------------------------------------------------------------- instances

STACK = """
input: {shape: [$seq_len], dtype: int64}
blocks:
  layer: {layers: [{op: layernorm}, {op: multihead_attention, name: a, num_heads: 2}, {op: add, inputs: [a, input]}]}
layers:
  - {op: embedding, num_embeddings: 11, embedding_dim: 8}
  - {block: layer, name: h, repeat: 3}
  - {op: linear, out_features: 11}
"""


def test_a_big_spec_is_reduced_batch_then_seq_len_then_repeats(monkeypatch):
    import sizing.execute.reduce as reduce

    monkeypatch.setattr(reduce, "TIME_BUDGET_S", 0.0)        # nothing fits: every reduction is taken
    load = lambda **size: graph_of(STACK, **size)
    inst = plan(load, 8, 64, 3, full=False)
    assert inst.describe() == {"batch": {"from": 8, "to": 1}, "seq_len": {"from": 64, "to": 1},
                               "repeat": {"h.1-2": {"from": 2, "to": 1}}}
    assert [n.op for n in inst.graph.nodes] == [n.op for n in load(batch=8, seq_len=64).nodes]
    assert plan(load, 8, 64, 3, full=True).describe() is None


def test_shrink_divides_hidden_widths_and_keeps_depthwise_and_classes():
    text = """
input: [3, 8, 8]
defaults: {batch: 2}
layers:
  - {op: conv2d, name: c1, out_channels: 8, kernel_size: 3, padding: 1}
  - {op: batchnorm2d}
  - {op: relu}
  - {op: conv2d, name: dw, out_channels: 16, kernel_size: 3, groups: 8}
  - {op: adaptive_avgpool2d, output_size: 1}
  - {op: flatten}
  - {op: linear, name: hidden, out_features: 12}
  - {op: linear, name: head, out_features: 5}
"""
    small = shrink(graph_of(text), 4)
    node = {n.name: n for n in small.nodes}
    assert node["c1"].out.shape[1] == 2 and node["hidden"].out.shape == (2, 3) and node["head"].out.shape == (2, 5)
    assert node["dw"].kwargs["groups"] == 2 and node["dw"].out.shape[1] == 4
    assert gradient_check(Model(small, np.float64)).ok
    with pytest.raises(SizingError, match="layer 'rs'"):
        shrink(graph_of(IMAGE), 2)                         # reshape [3, 4] cannot take 12 / 2 features


def test_shrink_keeps_each_narrow_view_its_share_of_a_fused_projection():
    """A fused q/k/v of 8 + 2 + 2 features, split by narrow views: at half width the parts are 4 + 1 + 1 from
    0, 4 and 5, and the gradient check of the narrowed graph passes (the views' backward is right)."""
    text = """
input: [8]
defaults: {batch: 2}
layers:
  - {op: linear, name: qkv, out_features: 12}
  - {op: narrow, name: q, dim: -1, start: 0, length: 8}
  - {op: narrow, name: k, inputs: qkv, dim: -1, start: 8, length: 2}
  - {op: narrow, name: v, inputs: qkv, dim: -1, start: 10, length: 2}
  - {op: concat, name: kv, inputs: [k, v], dim: -1}
  - {op: concat, name: all, inputs: [q, kv], dim: -1}
  - {op: linear, name: head, out_features: 3}
"""
    small = shrink(graph_of(text), 2)
    node = {n.name: n.kwargs for n in small.nodes}
    assert [(node[p]["start"], node[p]["length"]) for p in "qkv"] == [(0, 4), (4, 1), (5, 1)]
    assert gradient_check(Model(small, np.float64)).ok
    with pytest.raises(SizingError, match="layer 'k'"):
        shrink(graph_of(text.replace("start: 8, length: 2", "start: 9, length: 1")), 2)   # 9 / 2 is no share


def test_the_gradient_instance_is_small():
    load = lambda **size: graph_of(STACK, **size)
    inst = gradient_instance(load, 8, 40, None)
    assert inst.graph.settings["batch"] == 2 and inst.graph.settings["seq_len"] == 16
    assert inst.graph.groups[0].repeat == 2



def test_the_gradient_instance_narrows_until_the_measured_differences_fit():
    """A measurement over the plan's budget narrows the instance further (a machine slower than the plan, or a
    loaded one); the plan alone keeps every width here; an explicit --shrink is never measured."""
    load = lambda **size: graph_of(STACK, **size)
    assert gradient_instance(load, 8, 40, None).describe() is not None and "width" not in \
        gradient_instance(load, 8, 40, None).describe()
    seen = []

    def measure(g):                             # 4 minutes at the embedding's 8 wide, a quarter of it per halving
        width = g.nodes[0].out.shape[-1]
        seen.append(width)
        return 240.0 * (width / 8) ** 2
    inst = gradient_instance(load, 8, 40, None, measure)
    assert seen == [8, 4, 2]                    # 240 s, 60 s, then 15 s: within half the minute's budget
    assert inst.describe()["width"] == {"divided_by": 4} and inst.graph.nodes[0].out.shape[-1] == 2
    assert gradient_instance(load, 8, 40, 2, measure).describe()["width"] == {"divided_by": 2} and len(seen) == 3


# ---------------------------------------------------------------- the command

TINY = """
name: tiny
input: [6]
defaults: {batch: 4}
layers:
  - {op: linear, name: l1, out_features: 8}
  - {op: relu, name: r1}
  - {op: linear, name: l2, out_features: 3}
"""


def test_check_json_has_the_issue_keys(tmp_path):
    result = CliRunner().invoke(main, ["check", spec_file(tmp_path, TINY), "--format", "json", "--steps", "2"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    for key in ("model", "batch", "steps", "reduced", "exact", "loss", "step_seconds", "achieved_gflops",
                "predicted_step_seconds", "layers"):
        assert key in d
    assert d["exact"] and d["reduced"] is None and len(d["loss"]) == 2 and d["gradient_check"]["max_rel_error"] < 1e-4
    for key in ("name", "op", "analytic_macs", "executed_macs", "analytic_flops", "executed_flops",
                "analytic_backward_flops", "executed_backward_flops", "seconds"):
        assert key in d["layers"][0]
    assert "step 1/2" in result.stderr


def test_estimate_then_check(tmp_path):
    result = CliRunner().invoke(main, ["estimate", spec_file(tmp_path, TINY), "--check", "--format", "json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["forward"]["macs"] == sum(l["executed_macs"] for l in d["check"]["layers"])


def test_a_count_difference_fails_with_exit_1(tmp_path, monkeypatch):
    original = KERNELS["linear"]

    def extra_work(node, xs, p, cnt, seed):
        cnt[1] += 1
        return original.forward(node, xs, p, cnt, seed)

    monkeypatch.setitem(KERNELS, "linear", OpKernel(extra_work, original.backward))
    result = CliRunner().invoke(main, ["check", spec_file(tmp_path, TINY), "--steps", "1"])
    assert result.exit_code == 1
    assert "layer 'l1' (linear) flops: analytic 416, executed 417" in result.stdout


def test_the_loss_must_really_fall(tmp_path):
    """The automatic learning rate gives a first-order fall of 5% a step (lr = 0.05 L / |g|^2); a learning rate
    too small to move the loss by 1% over the steps fails the check (exit 1) and says so."""
    from sizing.execute.check import auto_lr
    assert auto_lr(2.0, 4.0) == pytest.approx(0.025) and auto_lr(1.0, 0.0) == 0.01
    good = json.loads(CliRunner().invoke(main, ["check", spec_file(tmp_path, TINY), "--format", "json"]).stdout)
    assert good["loss_fell"] and good["loss"][0] - good["loss"][-1] >= 0.01 * good["loss"][0]
    result = CliRunner().invoke(main, ["check", spec_file(tmp_path, TINY), "--lr", "1e-9"])
    assert result.exit_code == 1 and "the loss did not fall by 1% over 3 steps" in result.stdout


def test_nan_stops_the_run_and_names_the_layer(tmp_path):
    result = CliRunner().invoke(main, ["check", spec_file(tmp_path, TINY), "--lr", "1e30"])
    assert result.exit_code == 1
    assert "NaN or Inf in the output of layer 'l2' (linear) at step 2" in result.stderr


def test_a_layer_without_a_kernel_is_named(tmp_path):
    text = "input: {shape: [3], dtype: int64}\nlayers:\n  - {op: embedding, num_embeddings: 5, embedding_dim: 2, max_norm: 1}\n"
    result = CliRunner().invoke(main, ["check", spec_file(tmp_path, text)])
    assert result.exit_code == 2
    assert "max_norm" in result.stderr and "Traceback" not in result.output


def test_a_fresh_process_runs_the_cached_kernels(tmp_path):
    """A new process loads the kernels from the disk cache (the first run here compiled them); the first
    kernel of TINY is a product whose parallel part comes from a cached callee."""
    check_in_a_new_process(spec_file(tmp_path, TINY))


def check_in_a_new_process(spec: str, **env):
    """`sizing check SPEC --steps 1` in a fresh process (``env`` added to this one's): it passes, counts exact."""
    run = subprocess.run([sys.executable, "-m", "sizing.cli", "check", spec, "--steps", "1", "--format", "json"],
                         capture_output=True, text=True, env={**os.environ, **env})
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout)["exact"]


NORMED = TINY.replace("{op: relu, name: r1}", "{op: layernorm, name: n1}")


def test_cached_kernels_run_under_another_thread_count(tmp_path):
    """A kernel loaded from the disk cache keeps the thread count it was compiled with (Numba freezes globals):
    layernorm's backward, compiled here, wrote one weight-gradient part per compiled thread into a buffer its
    caller sized for the running process's, so a process with NUMBA_NUM_THREADS=1 corrupted the heap and
    aborted (free(): invalid next size)."""
    assert "layernorm" in NORMED
    spec = spec_file(tmp_path, NORMED)
    assert check(spec, steps=1).exact                      # compiled (or loaded) at this process's thread count
    check_in_a_new_process(spec, NUMBA_NUM_THREADS="1")


def test_library_call(tmp_path):
    r = check(spec_file(tmp_path, TINY), steps=2, lr=0.1)
    assert r.ok and r.exact and r.loss[1] < r.loss[0] and r.batch == 4
