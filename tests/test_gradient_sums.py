"""Gradient sums that autograd performs and the per-op formulas leave out (issue 16, found by comparison with
autograd): the k gradients of a tied weight summed into one, and the three input gradients of separate q, k
and v linears. Each is checked by hand (a closed form written here), against the audit's published figure,
and against the Numba kernels' executed counts through `sizing check`'s machinery."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import sizing
from sizing.execute.check import check
from sizing.execute.model import Model
from sizing.model.counting import count
from sizing.model.estimate import estimate_graph, resolve
from sizing.model.graph import build
from sizing.common.yamlsafe import loads
from test_check import executed, graph_of, spec_file


def zoo_data(name: str):
    with open(resolve(name)) as f:
        return loads(f.read(), name)


def backward_of(data, lines, **overrides) -> int:
    return estimate_graph(build(data, lines, "t.yaml", **overrides)).totals.backward_flops


# ---------------------------------------------------------------- tied weights

def test_gpt2_small_backward_adds_the_tied_gradients():
    """The audit's autograd figure for GPT-2 small at its defaults (batch 1, seq 1024): 585,111,026,432. The
    same model untied (lm_head owning its weight) needs no sum: the difference is exactly V x E."""
    e = sizing.estimate("gpt2_small")
    assert (e.settings["batch"], e.settings["seq_len"]) == (1, 1024)
    assert e.totals.backward_flops == 585_111_026_432
    data, lines = zoo_data("gpt2_small")
    untied = copy.deepcopy(data)
    head = untied["layers"][-1]
    assert head["name"] == "lm_head" and head.pop("tie") == "wte"
    assert e.totals.backward_flops - backward_of(untied, lines) == 50257 * 768 == 38_597_376
    wte = next(r for r in e.layers if r.node.name == "wte")
    assert wte.cost.backward_flops == 1024 * 768 + 50257 * 768      # its scatter-adds, then the sum


THREE_WAY = """
input: {shape: [5], dtype: int64}
defaults: {batch: 2}
layers:
  - {op: embedding, name: wte, num_embeddings: 11, embedding_dim: 8, padding_idx: 0}
  - {op: layernorm, name: ln}
  - {op: linear, name: head, out_features: 11, bias: false, tie: wte}
  - {op: linear, name: head2, inputs: ln, out_features: 11, tie: head%s}
  - {op: add, name: out, inputs: [head, head2]}
"""


@pytest.mark.parametrize("frozen,users", [("", 3)])
def test_a_weight_tied_three_ways_gets_k_minus_1_sums(frozen, users):
    """wte, head (tied to wte) and head2 (tied to head: a chain) share one 11 x 8 weight: 2 sums of 88 on wte,
    besides the 2 x 5 x 8 = 80 scatter-adds. The kernels do the same adds, counted on the same layer. (A frozen
    user of a trainable shared weight is refused: tests/test_hostile.py.)"""
    graph = graph_of(THREE_WAY % frozen)
    rows, _ = count(graph)
    assert rows[0].cost.backward_flops == 2 * 5 * 8 + (users - 1) * 11 * 8
    assert sum(r.cost.params for r in rows) == 11 * 8 + 2 * 8 + 11
    for row, got in zip(rows, executed(Model(graph, np.float64))):
        assert got == (row.cost.macs, row.cost.flops, row.cost.backward_flops), row.node.name


def test_sizing_check_executes_the_tied_sums(tmp_path):
    """`sizing check` (counts, finite-difference gradients of the shared weight, a falling loss) on the
    three-way tie: exact, and its executed wte backward holds the two sums."""
    r = check(spec_file(tmp_path, THREE_WAY % ""), steps=2)
    assert r.ok and r.exact
    wte = next(layer for layer in r.layers if layer.name == "wte")
    assert wte.executed[2] == 2 * 5 * 8 + 2 * 11 * 8


def test_a_dead_tied_layer_adds_no_sum():
    """emb is dead (nothing reads it): only head computes the weight's gradient, k = 1, no sum."""
    graph = graph_of("""
input: {shape: [5], dtype: int64}
defaults: {batch: 2}
layers:
  - {op: embedding, name: emb, num_embeddings: 11, embedding_dim: 8}
  - {op: embedding, name: emb2, inputs: input, num_embeddings: 7, embedding_dim: 8}
  - {op: linear, name: head, out_features: 11, bias: false, tie: emb}
""")
    rows, _ = count(graph)
    assert [r.cost.backward_flops for r in rows] == [0, 2 * 5 * 8, 2 * 2 * (2 * 5 * 8 * 11)]    # emb2: its scatter
    for row, got in zip(rows, executed(Model(graph, np.float64))):
        assert got[2] == row.cost.backward_flops, row.node.name


# ---------------------------------------------------------------- separate q, k, v

def test_bert_base_separate_qkv_adds_two_sums_per_element_per_layer():
    """HF BERT's query, key and value linears read the layer input: 2 more adds per element of it in each of
    the 12 layers than the fused projection; forward and params unchanged (109,482,240 published)."""
    data, lines = zoo_data("bert_base")
    fused = copy.deepcopy(data)
    attention = fused["blocks"]["encoder_layer"]["layers"][0]
    assert attention["op"] == "multihead_attention" and attention.pop("separate_qkv") is True
    for batch, seq in ((1, 128), (3, 37)):
        a = estimate_graph(build(data, lines, "t.yaml", batch=batch, seq_len=seq))
        b = estimate_graph(build(fused, lines, "t.yaml", batch=batch, seq_len=seq))
        assert a.totals.params == b.totals.params == 109_482_240
        assert (a.totals.macs, a.totals.flops) == (b.totals.macs, b.totals.flops)
        assert a.totals.backward_flops - b.totals.backward_flops == 12 * 2 * batch * seq * 768


def test_the_hf_bert_config_states_separate_projections():
    e = sizing.estimate("tests/data/hf/bert-base-uncased.json")
    assert {r.node.kwargs["separate_qkv"] for r in e.layers if r.node.op == "multihead_attention"} == {True}


SMALL_BERT = """
input: {shape: [$seq_len], dtype: int64}
defaults: {batch: 2, seq_len: 6}
blocks:
  layer:
    layers:
      - {op: multihead_attention, name: attention, num_heads: 2, dropout: 0.1, separate_qkv: %s}
      - {op: add, name: res, inputs: [attention, input]}
      - {op: layernorm, name: ln}
layers:
  - {op: embedding, name: emb, num_embeddings: 9, embedding_dim: 8}
  - {block: layer, name: enc, repeat: 3}
  - {op: linear, name: head, out_features: 9}
"""


def test_executed_separate_qkv_sums_are_2_b_t_e_per_layer(tmp_path):
    """Through `sizing check`: the attention layers' executed backward, separate minus fused, is
    2 * batch * seq * hidden per layer (3 layers), and both runs are exact with correct gradients."""
    runs = {}
    for separate in ("true", "false"):
        r = check(spec_file(tmp_path, SMALL_BERT % separate, f"{separate}.yaml"), steps=2)
        assert r.ok and r.exact, r.failures
        runs[separate] = sum(layer.executed[2] for layer in r.layers if layer.op == "multihead_attention")
    assert runs["true"] - runs["false"] == 3 * 2 * 2 * 6 * 8
