"""Graph-level rules, each against an independent route: folded repeats against the same model written
out layer by layer, tied and frozen weights against closed forms, memory against the ZeRO paper, and the
activations kept for backward of a tiny model worked by hand."""
from __future__ import annotations

import copy

import pytest
import yaml

from sizing.common.errors import SizingError
from sizing.model.estimate import estimate_graph
from sizing.model.graph import MAX_NODES, build
from sizing.common.yamlsafe import loads


def estimate_spec(spec: dict, **overrides):
    data, lines = loads(yaml.safe_dump(spec, sort_keys=False), "t.yaml")
    return estimate_graph(build(data, lines, "t.yaml", **overrides))


def summary(est) -> dict[str, int]:
    """Every total the estimate reports: costs, kept activations, the four memory parts, optimizer FLOPs."""
    return {**est.totals.as_dict(), "input_kept": est.input_kept, "trainable": est.trainable_params,
            "optimizer_flops": est.optimizer_flops, **{f"memory_{k}": v for k, v in est.memory.as_dict().items()}}


# ---------------------------------------------------------------- folded repeats against unrolled layers

def folded(case: dict, repeat: int) -> dict:
    block = {"params": {"width": case["width"]}, "layers": case["block"]}
    if "output" in case:
        block["output"] = case["output"]
    use = {"block": "blk", "name": "blk", "repeat": repeat}
    return {"input": case["input"], "defaults": case["defaults"], "blocks": {"blk": block},
            "layers": case["pre"] + [use] + case["post"]}


def unrolled(case: dict, repeat: int) -> dict:
    """The same model with no block: every iteration written out with explicit inputs."""
    def value(v):
        return case["width"] if v == "$width" else v

    layers = copy.deepcopy(case["pre"])
    src = layers[-1]["name"] if layers else "input"
    for k in range(repeat):
        rename = {"input": src, **{layer["name"]: f"it{k}_{layer['name']}" for layer in case["block"]}}
        previous = src
        for layer in case["block"]:
            refs = layer.get("inputs", [previous])
            refs = [refs] if isinstance(refs, str) else refs
            layers.append({**{key: value(v) for key, v in layer.items()}, "name": rename[layer["name"]],
                           "inputs": [rename.get(r, r) for r in refs]})
            previous = rename[layer["name"]]
        src = rename[case.get("output", case["block"][-1]["name"])]
    for layer in case["post"]:
        refs = layer["inputs"]
        layers.append({**layer, "inputs": [src if r == "blk" else r for r in refs]})
    return {"input": case["input"], "defaults": case["defaults"], "layers": layers}


CASES = {
    # pre-norm residual MLP; the block output is read twice after the block (fan-out across the group's end)
    "residual_mlp": dict(
        input=[6], width=16, defaults={"batch": 3, "dtype": "fp32", "optimizer": "adamw"},
        pre=[{"op": "linear", "name": "stem", "out_features": 8}],
        block=[{"op": "layernorm", "name": "ln"}, {"op": "linear", "name": "up", "out_features": "$width"},
               {"op": "gelu", "name": "act"}, {"op": "linear", "name": "down", "out_features": 8},
               {"op": "dropout", "name": "drop", "p": 0.1}, {"op": "add", "name": "res", "inputs": ["drop", "input"]}],
        post=[{"op": "relu", "name": "r", "inputs": ["blk"]}, {"op": "add", "name": "skip", "inputs": ["r", "blk"]},
              {"op": "linear", "name": "head", "out_features": 3, "inputs": ["skip"]}]),
    # the first iteration changes the width (4 -> 6) and reads the model input (no input gradient)
    "first_iteration_differs": dict(
        input=[4], width=6, defaults={"batch": 2, "dtype": "bf16", "optimizer": "adam"}, pre=[],
        block=[{"op": "linear", "name": "fc", "out_features": "$width"}, {"op": "tanh", "name": "act"}],
        post=[{"op": "softmax", "name": "sm", "inputs": ["blk"]}]),
    # conv stride 2: 16 -> 8 -> 4 -> 2 -> 1 -> 1: expanded while the shape changes, then folded
    "conv_stride_2": dict(
        input=[3, 16, 16], width=4, defaults={"batch": 2, "dtype": "fp32", "optimizer": "sgd"}, pre=[],
        block=[{"op": "conv2d", "name": "c", "out_channels": "$width", "kernel_size": 3, "stride": 2, "padding": 1},
               {"op": "batchnorm2d", "name": "bn"}, {"op": "relu", "name": "act"}],
        post=[{"op": "flatten", "name": "fl", "inputs": ["blk"]}, {"op": "linear", "name": "fc", "out_features": 5,
                                                                   "inputs": ["fl"]}]),
    # the block input is read three times; its output is a middle layer; a frozen layer and a dangling one
    "fan_out_and_output": dict(
        input=[5], width=5, defaults={"batch": 2, "dtype": "fp16", "optimizer": "momentum"},
        pre=[{"op": "linear", "name": "stem", "out_features": 5, "trainable": False}],
        block=[{"op": "linear", "name": "a", "out_features": "$width"},
               {"op": "linear", "name": "b", "inputs": "input", "out_features": 5, "trainable": False},
               {"op": "mul", "name": "m", "inputs": ["a", "b", "input"]}, {"op": "sigmoid", "name": "side"}],
        output="m", post=[{"op": "relu", "name": "r", "inputs": ["blk"]}]),
    # attention over (batch, seq, embed)
    "attention": dict(
        input=[4, 8], width=2, defaults={"batch": 2, "dtype": "fp32", "optimizer": "adamw"}, pre=[],
        block=[{"op": "layernorm", "name": "ln"}, {"op": "multihead_attention", "name": "att", "num_heads": "$width",
                                                   "dropout": 0.1},
               {"op": "add", "name": "res", "inputs": ["att", "input"]}],
        post=[{"op": "linear", "name": "head", "out_features": 3, "inputs": ["blk"]}]),
}


@pytest.mark.parametrize("repeat", [1, 2, 3, 7])
@pytest.mark.parametrize("name", sorted(CASES))
def test_folded_repeat_equals_unrolled_layers(name, repeat):
    case = CASES[name]
    fold, flat = estimate_spec(folded(case, repeat)), estimate_spec(unrolled(case, repeat))
    assert summary(fold) == summary(flat)
    assert sum(n.repeat for n in fold.graph.nodes) == len(flat.graph.nodes)


def test_conv_stride_2_is_expanded_until_its_shape_settles():
    g = estimate_spec(folded(CASES["conv_stride_2"], 9)).graph
    spatial = [n.out.shape[2] for n in g.nodes if n.name.endswith(".c")]
    # iterations 0..3 change the shape; 4 is the first that keeps it, seen as such when 5 gets 4's input type
    assert spatial == [8, 4, 2, 1, 1, 1]
    (group,) = g.groups
    assert group.name == "blk.5-8" and group.repeat == 4


def test_repeat_a_million_costs_what_ten_do():
    """Totals are affine in the repeat count, T(R) = base + R * unit, exactly; the graph does not grow."""
    case = CASES["residual_mlp"]
    est = {r: estimate_spec(folded(case, r)) for r in (1, 2, 10, 10 ** 6)}
    t = {r: summary(e) for r, e in est.items()}
    unit = {k: t[2][k] - t[1][k] for k in t[1]}
    base = {k: t[1][k] - unit[k] for k in t[1]}
    flat = {r: summary(estimate_spec(unrolled(case, r))) for r in (2, 3)}
    assert unit == {k: flat[3][k] - flat[2][k] for k in unit}          # one iteration, from unrolled layers
    assert unit["flops"] > 0 and unit["memory_activations"] > 0
    for k in unit:
        assert t[10 ** 6][k] - base[k] == 10 ** 5 * (t[10][k] - base[k]) == 10 ** 6 * unit[k], k
    assert len(est[10 ** 6].graph.nodes) == len(est[10].graph.nodes)
    assert [g.repeat for g in est[10 ** 6].graph.groups] == [10 ** 6 - 1]


@pytest.mark.parametrize("repeat", [1, 3])
def test_model_ending_in_a_block_outputs_its_last_tensor(repeat):
    case = dict(CASES["residual_mlp"], post=[])
    g = estimate_spec(folded(case, repeat)).graph
    flat = estimate_spec(unrolled(case, repeat)).graph
    assert g.node(g.output) is g.nodes[-1] and g.output.startswith("blk.") and g.output.endswith(".res")
    assert g.warnings == flat.warnings == ()


def test_block_that_keeps_changing_shape_is_refused_past_the_node_limit():
    spec = {"input": [4], "blocks": {"grow": {"layers": [
        {"op": "linear", "name": "new", "out_features": 1},
        {"op": "concat", "name": "cat", "inputs": ["input", "new"], "dim": 1}]}},
        "layers": [{"block": "grow", "name": "g", "repeat": 10 ** 6}]}
    with pytest.raises(SizingError) as info:
        estimate_spec(spec)
    msg = str(info.value)
    assert msg.startswith("t.yaml:") and f"passes {MAX_NODES} layers" in msg and "block 'grow'" in msg
    assert "still changes shape" in msg and "fewer repeats" in msg
    spec["layers"][0]["repeat"] = 100                  # below the limit it is simply expanded
    assert estimate_spec(spec).graph.nodes[-1].out.shape == (1, 104)


# ---------------------------------------------------------------- tie

def lm(tie: bool, bias: bool = False, vocab: int = 50) -> dict:
    head = {"op": "linear", "name": "head", "out_features": vocab, "bias": bias}
    if tie:
        head["tie"] = "wte"
    return {"input": {"shape": [6], "dtype": "int64"}, "defaults": {"batch": 2},
            "layers": [{"op": "embedding", "name": "wte", "num_embeddings": 50, "embedding_dim": 8},
                       {"op": "layernorm", "name": "ln"}, head]}


@pytest.mark.parametrize("bias", [False, True])
def test_tie_counts_the_shared_weight_once(bias):
    tied, free = summary(estimate_spec(lm(True, bias))), summary(estimate_spec(lm(False, bias)))
    shared = 50 * 8
    assert free["params"] == shared + 2 * 8 + shared + (50 if bias else 0)     # wte, ln, head (+ bias)
    assert tied["params"] == free["params"] - shared
    assert tied["memory_weights"] == 4 * tied["params"]
    assert tied["memory_gradients"] == 4 * tied["params"] and tied["memory_optimizer"] == 8 * tied["params"]
    same = ("macs", "flops", "bytes_read", "bytes_written", "memory_activations")
    assert {k: tied[k] for k in same} == {k: free[k] for k in same}      # sharing changes storage,
    assert tied["backward_flops"] == free["backward_flops"] + shared     # and sums the two gradients of the weight


def test_tie_rejects_a_shape_mismatch():
    with pytest.raises(SizingError, match=r"weight shape \[49, 8\] differs from 'wte' weight \[50, 8\]"):
        estimate_spec(lm(True, vocab=49))


# ---------------------------------------------------------------- trainable: false

def mlp(frozen: str | None) -> dict:
    layers = [{"op": "linear", "name": "l1", "out_features": 8}, {"op": "relu", "name": "r"},
              {"op": "linear", "name": "l2", "out_features": 8}, {"op": "linear", "name": "l3", "out_features": 3}]
    for layer in layers:
        if layer["name"] == frozen:
            layer["trainable"] = False
    return {"input": [4], "defaults": {"batch": 2, "optimizer": "adamw"}, "layers": layers}


def backward(est) -> dict[str, int]:
    return {r.node.name: r.cost.backward_flops for r in est.layers}


def test_frozen_layer_has_no_weight_gradient_nor_optimizer_memory():
    free, frozen = estimate_spec(mlp(None)), estimate_spec(mlp("l2"))
    p2 = 8 * 8 + 8
    macs2 = 2 * 8 * 8                                      # rows * in * out
    weight_grad = 2 * macs2 + 2 * 8                        # dW = 2 MACs per MAC, db = 1 add per output element
    assert backward(free)["l2"] - backward(frozen)["l2"] == weight_grad
    assert backward(frozen)["l2"] == 2 * macs2             # the input gradient is still computed
    assert {k: v for k, v in backward(free).items() if k != "l2"} == \
           {k: v for k, v in backward(frozen).items() if k != "l2"}
    assert free.totals.params == frozen.totals.params
    assert free.trainable_params - frozen.trainable_params == p2
    assert free.memory.weights == frozen.memory.weights
    assert free.memory.gradients - frozen.memory.gradients == 4 * p2
    assert free.memory.optimizer - frozen.memory.optimizer == 8 * p2
    assert free.optimizer_flops - frozen.optimizer_flops == 16 * p2


def test_frozen_first_layer_stops_gradients_before_the_first_trainable_weight():
    est = estimate_spec(mlp("l1"))
    b = backward(est)
    assert b["l1"] == 0 and b["r"] == 0                    # nothing upstream needs a gradient
    assert b["l2"] == 2 * (2 * 8 * 8) + 2 * 8              # weight and bias gradients only, no dx
    assert b["l3"] == 2 * (2 * 8 * 3) * 2 + 2 * 3          # dx and dW, and the bias


# ---------------------------------------------------------------- memory (ZeRO accounting)

PLAIN = {"input": [10], "layers": [{"op": "linear", "name": "a", "out_features": 7},
                                   {"op": "linear", "name": "b", "out_features": 3, "bias": False}]}


@pytest.mark.parametrize("dtype, optimizer, per_param", [
    ("bf16", "adam", (2, 2, 12)), ("fp16", "adamw", (2, 2, 12)),      # ZeRO: 2 + 2 + K, K = 12 -> 16
    ("fp32", "adam", (4, 4, 8)), ("fp32", "adamw", (4, 4, 8)),        # no master copy: m and v in fp32
    ("fp32", "sgd", (4, 4, 0)), ("fp32", "momentum", (4, 4, 4)), ("bf16", "sgd", (2, 2, 4)),
    ("fp64", "adam", (8, 8, 16)),
])
def test_bytes_per_parameter(dtype, optimizer, per_param):
    est = estimate_spec(PLAIN, dtype=dtype, optimizer=optimizer)
    p = est.totals.params
    assert p == 10 * 7 + 7 + 7 * 3
    assert (est.memory.weights, est.memory.gradients, est.memory.optimizer) == tuple(b * p for b in per_param)


def test_zero_paper_figure_gpt2_xl():
    """ZeRO (Rajbhandari et al. 2020, section 3.1): a 1.5B-parameter model trained with mixed-precision Adam
    needs 16 bytes per parameter, 24 GB, for weights, gradients and optimizer states."""
    spec = {"input": [1000], "layers": [{"op": "linear", "out_features": 1_500_000, "bias": False}]}
    est = estimate_spec(spec, dtype="fp16", optimizer="adam")
    assert est.totals.params == 1_500_000_000
    assert est.memory.weights + est.memory.gradients + est.memory.optimizer == 24 * 10 ** 9


def test_batchnorm_buffers_are_fp32_beside_the_weights():
    spec = {"input": [3, 4, 4], "layers": [{"op": "conv2d", "out_channels": 6, "kernel_size": 1, "bias": False},
                                           {"op": "batchnorm2d"}]}
    est = estimate_spec(spec, dtype="bf16", optimizer="sgd")
    params, buffers = 6 * 3 + 2 * 6, 2 * 6                 # conv weight, bn weight+bias; running mean+var
    assert (est.totals.params, est.totals.buffers) == (params, buffers)
    assert est.memory.weights == 2 * params + 4 * buffers
    assert est.memory.gradients == 2 * params and est.memory.optimizer == 4 * params


# ---------------------------------------------------------------- activations kept for backward, by hand

TINY = {"input": [4], "defaults": {"batch": 2}, "layers": [
    {"op": "linear", "name": "fc1", "out_features": 8},     # keeps its input: the model input (2, 4)
    {"op": "relu", "name": "r1"},                           # keeps its output (2, 8)
    {"op": "linear", "name": "fc2", "out_features": 8},     # keeps its input: r1's output, already kept
    {"op": "add", "name": "sum", "inputs": ["fc2", "r1"]},  # keeps nothing
    {"op": "layernorm", "name": "ln"},                      # keeps its input (2, 8) + mean, rstd per row (fp32)
    {"op": "dropout", "name": "drop", "p": 0.1},            # keeps a 1-byte mask per element (2, 8)
    {"op": "softmax", "name": "sm"},                        # keeps its output (2, 8)
]}


@pytest.mark.parametrize("dtype, size", [("fp32", 4), ("bf16", 2)])
def test_activation_bytes_of_a_tiny_model_by_hand(dtype, size):
    est = estimate_spec(TINY, dtype=dtype)
    model_input, r1, ln_in, sm_out = 2 * 4, 2 * 8, 2 * 8, 2 * 8
    stats, mask = 2 * 2 * 4, 2 * 8
    assert est.input_kept == model_input * size
    assert est.memory.activations == (model_input + r1 + ln_in + sm_out) * size + stats + mask
    kept = {r.node.name: r.cost.saved_bytes for r in est.layers}
    assert kept == {"fc1": 0, "r1": r1 * size, "fc2": 0, "sum": ln_in * size, "ln": stats, "drop": mask,
                    "sm": sm_out * size}
