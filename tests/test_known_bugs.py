"""Known bugs of other FLOP counters, each worked by hand on a small case that ours must count right.

The other counters' figures quoted below were read once by a one-off script outside this suite (the suite
never imports them): torch 2.13.0 (CPU, torch.utils.flop_counter.FlopCounterMode), fvcore 0.1.5.post20221221
(FlopCountAnalysis), thop 0.1.1.post2209072238 (profile), ptflops 0.7.5 (get_model_complexity_info) and
torchinfo 1.8.0 (summary().total_mult_adds); calflops 0.3.2 was read in its source.
"""
from __future__ import annotations

import pytest

from sizing.model.ops import REGISTRY
from test_ops import one, spec_rows


def test_macs_are_not_labelled_flops():
    # Bug: fvcore's FlopCountAnalysis(nn.Linear(8, 3), x (2, 4, 8)).total() is 192 and thop's profile 192: one
    # multiply-add counted as one "FLOP" (thop and ptflops say MACs; papers then quote them as FLOPs), half of what
    # a device executes. (torchinfo's mult_adds is 54: 27 parameters x batch 2, missing the 4 rows per sample.)
    # By hand: 2 * 4 rows x 3 outputs x 8 inputs = 192 MACs; 384 FLOPs of products, plus 2 * 4 * 3 = 24 bias adds.
    row = one("linear", [4, 8], out_features=3).cost
    assert (row.macs, row.flops) == (192, 408)
    # a model: flops = 2 * macs + every other operation (bias adds, relu comparisons), never macs alone
    rows = spec_rows([4, 8], [{"op": "linear", "name": "fc1", "out_features": 6},
                              {"op": "relu", "name": "act"},
                              {"op": "linear", "name": "fc2", "out_features": 3, "bias": False}])
    macs = 2 * 4 * 6 * 8 + 2 * 4 * 3 * 6
    assert sum(r.cost.macs for r in rows.values()) == macs
    assert sum(r.cost.flops for r in rows.values()) == 2 * macs + 2 * 4 * 6 + 2 * 4 * 6


def test_attention_matmuls_are_counted():
    # Bug: nn.MultiheadAttention(8, 2) on x (2, 5, 8): thop and torchinfo count 0 in all; fvcore counts 2560
    # (the four projections only) and FlopCounterMode 5120 FLOPs (the projections only: the fused CPU attention
    # kernel is not counted); in eval mode under no_grad FlopCounterMode counts 0 (the fast path).
    # By hand, head_dim 4: projections 4 x (10 rows x 8 x 8) = 2560 MACs; per (sample, head) q k^T is
    # (5 x 4) @ (4 x 5) = 100 MACs and P v is (5 x 5) @ (5 x 4) = 100 MACs: 2 x 2 x 200 = 800 more.
    row = one("multihead_attention", [5, 8], num_heads=2).cost
    assert row.macs == 2560 + 800


@pytest.mark.parametrize("op,args,flops", [
    ("relu", {}, 64),                       # max(x, 0)
    ("gelu", {}, 5 * 64),                   # 0.5 * x * (1 + erf(x / sqrt 2))
    ("softmax", {"dim": -1}, 5 * 64),       # max, subtract, exp, sum, divide
    ("add", {"inputs": ["input", "input"]}, 64),
    ("layernorm", {}, 7 * 64 + 4 * 8),      # 8 rows of 8: 5 + weight + bias per element, 4 per row
])
def test_elementwise_ops_are_not_silent_zeros(op, args, flops):
    # Bug: on x (2, 4, 8) FlopCounterMode counts 0 for relu, gelu, softmax, layernorm and x + x; fvcore and
    # torchinfo 0 for relu, gelu and softmax; thop 0 for relu and gelu.
    assert one(op, [4, 8], **args).cost.flops == flops


def test_transposed_convolution_is_counted_from_the_input_side():
    # Bug: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1) on (2, 4, 5, 5) -> (2, 6, 10, 10):
    # thop counts 43200 and torchinfo 44400 (43200 + 1200 bias), from the output side: out pixels x in_channels x
    # taps, stride^2 = 4 times the products computed (fvcore counts 10800; FlopCounterMode 21600 FLOPs).
    # By hand: each of 2 x 4 x 5 x 5 input elements meets each of 6 x 3 x 3 taps once: 10800 MACs.
    row = one("conv_transpose2d", [4, 5, 5], out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1)
    output_side = 2 * 6 * 10 * 10 * 4 * 3 * 3
    assert row.cost.macs == 10800 == output_side // 2 ** 2


@pytest.mark.parametrize("cell,macs_per_step,flops_per_step", [
    # LSTM: 3 samples x 4 gates x 4 units x (5 inputs + 4 hidden) = 432 MACs a step; per unit 22 elementwise
    # FLOPs (3 sigmoids of 4, 2 tanh, 4 gate sums, c = f*c + i*g: 3, h = o * tanh c: 1) + 8 bias adds
    ("lstm", 3 * 16 * 9, 2 * 432 + 3 * 4 * 30),
    # GRU: 3 x 3 gates x 4 x 9 = 324 MACs a step; per unit 17 (2 sigmoids, tanh, 2 gate sums, r * (W_hn h),
    # + W_in x, (1 - z) * n + z * h: 4) + 6 bias adds
    ("gru", 3 * 12 * 9, 2 * 324 + 3 * 4 * 23),
])
def test_recurrent_layers_are_counted_once_per_time_step(cell, macs_per_step, flops_per_step):
    # Bug: fvcore counts nn.LSTM / nn.GRU as 0 (unsupported aten::lstm, fvcore issue #98), FlopCounterMode counts 0
    # on CPU, and torchinfo counted the cell once per sequence, whatever its length (torchinfo issue #32).
    costs = {t: one(cell, [t, 5], batch=3, hidden_size=4).cost for t in (1, 7)}
    assert (costs[1].macs, costs[1].flops) == (macs_per_step, flops_per_step)
    assert (costs[7].macs, costs[7].flops, costs[7].backward_flops) == \
           (7 * macs_per_step, 7 * flops_per_step, 7 * costs[1].backward_flops)


def test_depthwise_convolution_backward_is_twice_its_own_forward():
    # Bug: for nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False) on (2, 8, 6, 6) with an input that needs a
    # gradient, FlopCounterMode counts 10368 FLOPs forward but 93312 backward: its grad_input is counted as a dense
    # 8 -> 8 convolution (82944) where the groups are lost, plus the weight gradient (10368).
    # By hand: 2 x 8 channels x 36 positions x 9 taps = 5184 MACs forward; backward the input gradient and the
    # weight gradient cost 5184 MACs each: 20736 FLOPs.
    dw = one("conv2d", [8, 6, 6], hidden=True, out_channels=8, kernel_size=3, padding=1, groups=8, bias=False)
    assert (dw.cost.macs, dw.cost.backward_flops) == (5184, 20736)
    dense = one("conv2d", [8, 6, 6], hidden=True, out_channels=8, kernel_size=3, padding=1, bias=False)
    assert dense.cost.backward_flops == 8 * dw.cost.backward_flops


# ---------------------------------------------------------------- no silent zeros

# one representative layer per registered op: (one sample's input shape, layer arguments)
IDS = {"shape": [5], "dtype": "int64"}
REPRESENTATIVE = {
    "linear": ([4, 8], {"out_features": 3}),
    "conv1d": ([4, 9], {"out_channels": 4, "kernel_size": 3}),
    "conv2d": ([4, 6, 6], {"out_channels": 4, "kernel_size": 3}),
    "conv_transpose2d": ([4, 5, 5], {"out_channels": 6, "kernel_size": 3, "stride": 2}),
    "matmul": ([4, 4], {"inputs": ["input", "input"]}),
    "relu": ([4, 8], {}), "relu6": ([4, 8], {}), "sigmoid": ([4, 8], {}), "tanh": ([4, 8], {}),
    "silu": ([4, 8], {}), "gelu": ([4, 8], {}), "softmax": ([4, 8], {}), "dropout": ([4, 8], {"p": 0.1}),
    "identity": ([4, 8], {}),
    "add": ([4, 8], {"inputs": ["input", "input"]}), "mul": ([4, 8], {"inputs": ["input", "input"]}),
    "concat": ([4, 8], {"inputs": ["input", "input"]}),
    "flatten": ([4, 8], {}), "reshape": ([4, 8], {"shape": [8, 4]}), "select": ([4, 8], {"dim": 1, "index": 0}),
    "narrow": ([4, 8], {"dim": -1, "start": 2, "length": 4}),
    "expand": ([4, 1], {"shape": [-1, 8]}),
    "embedding": (IDS, {"num_embeddings": 10, "embedding_dim": 8}),
    "positional_embedding": ([5, 8], {"num_embeddings": 5}),
    "token_type_embedding": ([5, 8], {"num_embeddings": 2}),
    "batchnorm1d": ([4, 8], {}), "batchnorm2d": ([4, 3, 3], {}), "layernorm": ([4, 8], {}),
    "rmsnorm": ([4, 8], {}), "groupnorm": ([4, 3, 3], {"num_groups": 2}),
    "maxpool2d": ([4, 6, 6], {"kernel_size": 2}), "avgpool2d": ([4, 6, 6], {"kernel_size": 2}),
    "adaptive_avgpool2d": ([4, 6, 6], {"output_size": 2}),
    "multihead_attention": ([5, 8], {"num_heads": 2}),
    "lstm": ([5, 8], {"hidden_size": 4}), "gru": ([5, 8], {"hidden_size": 4}),
    "rotary_embedding": ([5, 8], {"num_heads": 2}),
    "scaled_dot_product_attention": ([5, 8], {"num_heads": 2, "inputs": ["input", "input", "input"]}),
    "mixture_of_experts": ([5, 8], {"num_experts": 4, "top_k": 2, "intermediate_size": 6}),
    "pointwise": ([4, 8], {"fn": "exp"}), "permute": ([4, 8], {"dims": [0, 2, 1]}),
    "unmapped": ([4, 8], {"onnx_op": "Foo", "shape": [4, 8]}),
}
# zero FLOPs by rule (docs/conventions.md): views, a copy (its traffic is counted) and a gather
ZERO_FLOPS = {"flatten", "reshape", "select", "narrow", "expand", "identity", "concat", "embedding", "permute", "unmapped"}


def representative(op):
    shape, args = REPRESENTATIVE[op]
    if shape is IDS:
        return spec_rows(IDS, [{"op": op, "name": "x", **args}])["x"].cost
    return one(op, shape, hidden=True, **args).cost


def test_no_silent_zeros():
    # Bug: counters that return 0 for an op they have no formula for (fvcore's "unsupported operator", thop's
    # modules without a hook, FlopCounterMode's ops outside its table) and report the total as if complete.
    assert set(REPRESENTATIVE) == set(REGISTRY), "add a representative case for every new op"
    zero = {op for op in REGISTRY if representative(op).flops == 0}
    assert zero == ZERO_FLOPS
    assert representative("embedding").backward_flops > 0               # the scatter-add into the table
    assert representative("concat").bytes_read > 0                      # a copy moves its inputs
    assert one("dropout", [4, 8], p=0).cost.flops == 0                   # p = 0 is the identity
