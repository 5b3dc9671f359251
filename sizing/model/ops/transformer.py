"""Transformer pieces that imported language models need: rotary position embedding, scaled dot-product
attention over separately projected q, k, v (grouped-query heads), and a mixture of SwiGLU experts.

Tensors are batch-first, heads flattened into the feature dim: q is (B, T, num_heads * head_dim). A
Llama-style attention is written as linear q/k/v projections, ``rotary_embedding`` on q and k,
``scaled_dot_product_attention`` and a linear output projection, so each projection keeps its own bias flag
(Qwen2 has q/k/v biases and no output bias) and the projections are counted by the linear formula.
"""
from __future__ import annotations

from ..cost import Cost
from .elementwise import ACTIVATIONS
from .registry import Arg, Call, ShapeError, boolean, io_bytes, optional, pos_int, probability, register
from .sequence import _SOFTMAX_BWD, _SOFTMAX_FWD, _causal_note

ROTATION_FLOPS = 3      # per rotated element, forward and backward (see _rotary)


# ---------------------------------------------------------------- rotary position embedding

def _rotary_dims(a, x) -> tuple[int, int]:
    """(head_dim, rotary_dim) of a (B, T, num_heads * head_dim) tensor."""
    if len(x) != 3:
        raise ShapeError(f"needs (batch, seq_len, num_heads * head_dim), got {list(x)}")
    if x[-1] % a["num_heads"]:
        raise ShapeError(f"features {x[-1]} are not divisible by num_heads {a['num_heads']}")
    d = x[-1] // a["num_heads"]
    r = a["rotary_dim"] or d
    if r > d or r % 2:
        raise ShapeError(f"rotary_dim {r} must be even and at most head_dim {d}")
    return d, r


def _rotary_shape(a, s):
    _rotary_dims(a, s[0])
    return s[0]


@register("rotary_embedding", Arg("num_heads", pos_int), Arg("rotary_dim", optional(pos_int), None),
          shape=_rotary_shape)
def _rotary(call: Call) -> Cost:
    """Rotary position embedding (RoPE) of each head's first rotary_dim features (default: all of head_dim):
    each pair (x1, x2) becomes (x1 cos - x2 sin, x2 cos + x1 sin), 4 multiplies and 2 adds per pair, so
    3 FLOPs per rotated element (the sign of Hugging Face's rotate_half folded into sin, as Meta's complex
    form does); features past rotary_dim pass through (0). Backward is the inverse rotation: 3 FLOPs per
    rotated element. No weights; nothing kept (the op is linear in x); the cos/sin tables (T * rotary_dim,
    computed once per sequence length and cached) are not counted.
    Source: Su et al. 2021, arXiv:2104.09864 (RoFormer), eq. 34; transformers apply_rotary_pos_emb."""
    d, r = _rotary_dims(call.args, call.inputs[0])
    rotated = call.out_elems // d * r
    back = ROTATION_FLOPS * rotated if call.grad_inputs[0] else 0
    return Cost(flops=ROTATION_FLOPS * rotated, backward_flops=back, **io_bytes(call))


# ---------------------------------------------------------------- scaled dot-product attention

def _sdpa_dims(a, s) -> tuple[int, int, int, int, int]:
    """(batch, seq_len, num_heads, num_kv_heads, head_dim) of q, k, v inputs."""
    q, k, v = s
    if len(q) != 3 or k != v or len(k) != 3 or q[:2] != k[:2]:
        raise ShapeError(f"needs q (B, T, heads * head_dim) and k, v of one shape (B, T, kv_heads * head_dim), "
                         f"got {list(q)}, {list(k)}, {list(v)}")
    h = a["num_heads"]
    kv = a["num_kv_heads"] or h
    if q[-1] % h or h % kv:
        raise ShapeError(f"q features {q[-1]} must divide into num_heads {h}, and num_heads into num_kv_heads {kv}")
    d = q[-1] // h
    if k[-1] != kv * d:
        raise ShapeError(f"k and v need num_kv_heads * head_dim = {kv} * {d} = {kv * d} features, got {k[-1]}")
    return q[0], q[1], h, kv, d


def _sdpa_shape(a, s):
    _sdpa_dims(a, s)
    return s[0]


@register("scaled_dot_product_attention", Arg("num_heads", pos_int), Arg("num_kv_heads", optional(pos_int), None),
          Arg("causal", boolean, False), Arg("dropout", probability, 0.0),
          shape=_sdpa_shape, arity=(3, 3), saves=("inputs",), note=_causal_note, matrix=True)
def _sdpa(call: Call) -> Cost:
    """softmax(q k^T / sqrt(d)) v per head, kv head j serving the num_heads / num_kv_heads query heads of its
    group (GQA). With S = B*H*T*T scores: MACs = 2 * S * d (q k^T and P @ v), the full T x T matrix as dense
    kernels compute it; other forward FLOPs per score: scale 1, softmax 5, mask 1 if causal, dropout 1 if
    p > 0 (the multihead_attention accounting without the projections).
    Backward: dP = dO v^T and dS through softmax (4 per score), scale (1) and dropout (1) when q or k needs a
    gradient; dQ = dS k, dK = dS^T q, dV = P^T dO, each 2 * S * d FLOPs when its input needs a gradient; dK
    and dV summed over each group's heads, (H - kv) * B * T * d adds each.
    Kept: q, k, v (inputs) and the probabilities (plus the dropout mask, 1 byte per score).
    Source: Vaswani et al. 2017; torch.nn.functional.scaled_dot_product_attention; Ainslie et al. 2023."""
    a = call.args
    b, t, h, kv, d = _sdpa_dims(a, call.inputs)
    scores = b * h * t * t
    macs = 2 * scores * d
    drop = 1 if a["dropout"] else 0
    fwd = 2 * macs + (1 + _SOFTMAX_FWD + (1 if a["causal"] else 0) + drop) * scores
    gq, gk, gv = call.grad_inputs
    group_sum = (h - kv) * b * t * d
    product = 2 * scores * d                            # FLOPs of one of dP, dQ, dK, dV
    back = product * (gq + gk + gv) + group_sum * (gk + gv)
    if gq or gk:
        back += product + (_SOFTMAX_BWD + 1 + drop) * scores
    saved = scores * call.itemsize + drop * scores
    return Cost(macs=macs, flops=fwd, backward_flops=back, saved_bytes=saved, **io_bytes(call))


# ---------------------------------------------------------------- mixture of experts

_SILU_FWD, _SILU_BWD = ACTIVATIONS["silu"][:2]


def expert_params(a, hidden: int) -> int:
    """Weights of one SwiGLU expert: w1 (gate), w3 (up): F x E each; w2 (down): E x F."""
    return 3 * hidden * a["intermediate_size"]


def _moe_shape(a, s):
    x = s[0]
    if len(x) < 2:
        raise ShapeError(f"needs (batch, ..., hidden), got {list(x)}")
    if a["top_k"] > a["num_experts"]:
        raise ShapeError(f"top_k {a['top_k']} is more than num_experts {a['num_experts']}")
    return x


def _moe_weights(a, s):
    n, e, f = a["num_experts"], s[0][-1], a["intermediate_size"]
    return {"gate.weight": (n, e), "experts.w1.weight": (n, f, e), "experts.w3.weight": (n, f, e),
            "experts.w2.weight": (n, e, f)}


def _moe_note(call: Call) -> str:
    a, e = call.args, call.inputs[0][-1]
    inactive = (a["num_experts"] - a["top_k"]) * expert_params(a, e)
    return (f"{a['top_k']} of {a['num_experts']} experts per token: {call.weight_elems - inactive} of "
            f"{call.weight_elems} params active")


@register("mixture_of_experts", Arg("num_experts", pos_int), Arg("top_k", pos_int), Arg("intermediate_size", pos_int),
          Arg("norm_topk_prob", boolean, True), shape=_moe_shape, weights=_moe_weights, saves=("inputs",), note=_moe_note, matrix=True)
def _moe(call: Call) -> Cost:
    """Sparse mixture of SwiGLU experts (Mixtral's block): router logits x G^T (G: num_experts x hidden),
    p = softmax over the n experts, the top k kept and renormalised to sum 1 (``norm_topk_prob``; Qwen2-MoE
    keeps the raw probabilities: no renormalisation forward or backward), each chosen expert computing
    w2 (silu(w1 x) * w3 x), the outputs summed weighted by p. Every token goes to exactly k experts, so with
    N tokens, hidden e and expert width F (no capacity limit, no token dropped, whatever the balance):
    MACs = N * (e*n + 3*k*e*F).
    Other forward FLOPs per token: softmax 5n, top-k selection k(n - 1) comparisons, renormalisation
    (k - 1) + k, silu 5 and the product 1 per expert unit (6kF), weighting k*e and summing (k - 1)*e.
    Backward per token, when anything needs a gradient: d(expert output) k*e and d(weight) 2*k*e, down
    projection dx 2kFe, product 2kF, silu 9kF, renormalisation 4k - 1 and softmax 4n; weight gradients
    (trainable) 2 * (3kFe + e*n); input gradient: gate and up dx 4kFe plus their sum k*e, the sum over
    experts (k - 1)*e, router dx 2*e*n and its add e.
    Kept per token: router probabilities n, the k routing weights and ids (int64), and per chosen expert the
    gate and up projections, their product (3F) and the output (e); plus the input.
    Traffic: the input, every expert's weights once (a batch large enough to reach every expert) and the output.
    Source: Jiang et al. 2024, arXiv:2401.04088 (Mixtral), section 2.1; transformers MixtralSparseMoeBlock;
    Shazeer et al. 2017."""
    a = call.args
    n, k, f = a["num_experts"], a["top_k"], a["intermediate_size"]
    e = call.inputs[0][-1]
    tokens = call.in_elems() // e
    macs = tokens * (e * n + 3 * k * e * f)
    norm = a["norm_topk_prob"]
    per_token = (_SOFTMAX_FWD * n + k * (n - 1) + norm * (2 * k - 1) + (_SILU_FWD + 1) * k * f + (2 * k - 1) * e)
    back = 0
    if call.grad_inputs[0] or call.trainable:
        back += tokens * (3 * k * e + 2 * k * f * e + (2 + _SILU_BWD) * k * f + norm * (4 * k - 1) + _SOFTMAX_BWD * n)
    if call.trainable:
        back += 2 * tokens * (3 * k * f * e + e * n)
    if call.grad_inputs[0]:
        back += tokens * (4 * k * f * e + k * e + (k - 1) * e + 2 * e * n + e)
    saved = tokens * ((n + k + k * (3 * f + e)) * call.itemsize + k * call.index_itemsize)
    return Cost(macs=macs, flops=2 * macs + tokens * per_token, backward_flops=back, saved_bytes=saved,
                **io_bytes(call))
