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
from .registry import (Arg, ArgError, Call, ShapeError, boolean, choice, io_bytes, optional, pos_float, pos_int,
    probability, register)
from .sequence import _SOFTMAX_BWD, _SOFTMAX_FWD

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

_TANH_FWD, _TANH_BWD = ACTIVATIONS["tanh"][:2]
SOFTCAP_FWD = 2 + _TANH_FWD         # per score: / cap, tanh, * cap
SOFTCAP_BWD = 2 + _TANH_BWD         # per score: * cap, tanh's g * (1 - y*y), / cap


def _sdpa_dims(a, s) -> tuple[int, int, int, int, int, int]:
    """(batch, seq_len, num_heads, num_kv_heads, qk head_dim, v head_dim) of q, k, v inputs."""
    q, k, v = s
    if len(q) != 3 or len(k) != 3 or len(v) != 3 or not q[:2] == k[:2] == v[:2]:
        raise ShapeError(f"needs q (B, T, heads * head_dim), k (B, T, kv_heads * head_dim) and v (B, T, kv_heads * "
                         f"v_head_dim), got {list(q)}, {list(k)}, {list(v)}")
    h = a["num_heads"]
    kv = a["num_kv_heads"] or h
    if q[-1] % h or h % kv:
        raise ShapeError(f"q features {q[-1]} must divide into num_heads {h}, and num_heads into num_kv_heads {kv}")
    d = q[-1] // h
    if k[-1] != kv * d:
        raise ShapeError(f"k needs num_kv_heads * head_dim = {kv} * {d} = {kv * d} features, got {k[-1]}")
    if v[-1] % kv:
        raise ShapeError(f"v features {v[-1]} must divide into num_kv_heads {kv}")
    if a["window"] is not None and not a["causal"]:
        raise ShapeError("window (a sliding window over past keys) needs causal: true")
    return q[0], q[1], h, kv, d, v[-1] // kv


def band(a, t: int) -> int:
    """Keys each query scores: min(T, window), the whole sequence without a window."""
    return min(t, a["window"] or t)


def _sdpa_shape(a, s):
    b, t, h, kv, d, dv = _sdpa_dims(a, s)
    return (b, t, h * dv)


def _sdpa_note(call: Call) -> str | None:
    a = call.args
    if not a["causal"]:
        return None
    b, t, h, kv, d, dv = _sdpa_dims(a, call.inputs)
    w = band(a, t)
    masked = b * h * (w * (w - 1) // 2)
    window = f"sliding window {a['window']}: {w} keys per query; " if a["window"] and w < t else ""
    return (f"causal: {window}counted dense; a kernel that skips the {masked} masked scores would save "
            f"{masked * (d + dv)} MACs forward")


@register("scaled_dot_product_attention", Arg("num_heads", pos_int), Arg("num_kv_heads", optional(pos_int), None),
          Arg("causal", boolean, False), Arg("dropout", probability, 0.0), Arg("window", optional(pos_int), None),
          Arg("softcap", optional(pos_float), None),
          shape=_sdpa_shape, arity=(3, 3), saves=("inputs",), note=_sdpa_note, matrix=True)
def _sdpa(call: Call) -> Cost:
    """softmax(q k^T / sqrt(d)) v per head, kv head j serving the num_heads / num_kv_heads query heads of its
    group (GQA); v's head_dim dv may differ from q and k's d (DeepSeek's multi-head latent attention: d 192, dv
    128), and the output is (B, T, H * dv). Each query scores w = min(T, window) keys: all T (dense, as kernels
    compute the full matrix and mask it), or with a sliding ``window`` (Mistral, Gemma 2) the band of the w keys
    ending at the query (the first w - 1 queries score keys 0..w-1, the later ones masked), as a banded kernel
    computes it: S = B*H*T*w scores. MACs = S * (d + dv) (q k^T and P @ v). Other forward FLOPs per score:
    scale 1, soft-capping (Gemma 2: cap * tanh(s / cap)) 3 when ``softcap``, softmax 5, mask 1 if causal,
    dropout 1 if p > 0 (the multihead_attention accounting without the projections).
    Backward: dP = dO v^T (2 S dv) and dS through dropout (1), softmax (4), soft-capping (5: * cap, tanh's
    g (1 - y^2), / cap) and scale (1) when q or k needs a gradient; dQ = dS k and dK = dS^T q (2 S d each), dV
    = P^T dO (2 S dv), each when its input needs a gradient; dK and dV summed over each group's heads,
    (H - kv) * B * T * d (dv) adds.
    Kept: q, k, v (inputs) and the probabilities (plus the dropout mask, 1 byte per score, and the capped
    scores' tanh).
    Source: Vaswani et al. 2017; torch.nn.functional.scaled_dot_product_attention; Ainslie et al. 2023 (GQA);
    DeepSeek-AI 2024, arXiv:2405.04434 (MLA), section 2.1; Gemma Team 2024, arXiv:2408.00118 (soft-capping,
    local attention)."""
    a = call.args
    b, t, h, kv, d, dv = _sdpa_dims(a, call.inputs)
    scores = b * h * t * band(a, t)
    macs = scores * (d + dv)
    drop = 1 if a["dropout"] else 0
    cap = 1 if a["softcap"] else 0
    fwd = 2 * macs + (1 + _SOFTMAX_FWD + cap * SOFTCAP_FWD + (1 if a["causal"] else 0) + drop) * scores
    gq, gk, gv = call.grad_inputs
    back = 2 * scores * (d * (gq + gk) + dv * gv) + (h - kv) * b * t * (d * gk + dv * gv)
    if gq or gk:
        back += 2 * scores * dv + (_SOFTMAX_BWD + 1 + drop + cap * SOFTCAP_BWD) * scores
    saved = scores * (1 + cap) * call.itemsize + drop * scores
    return Cost(macs=macs, flops=fwd, backward_flops=back, saved_bytes=saved, **io_bytes(call))


# ---------------------------------------------------------------- mixture of experts

_SILU_FWD, _SILU_BWD = ACTIVATIONS["silu"][:2]
# router scoring: (forward, backward) FLOPs per expert logit, from the softmax op and the activation table
SCORING = {"softmax": (_SOFTMAX_FWD, _SOFTMAX_BWD), "sigmoid": ACTIVATIONS["sigmoid"][:2]}


# the products of a SwiGLU expert and the router, by the names of the op's weights: the router "gate" (hidden ->
# experts), w1 (the gate projection) and w3 (the up projection), hidden -> width, and w2 (down), width -> hidden
ROLES = ("gate", "w1", "w3", "w2")


def lora_targets(v):
    """A non-empty list of distinct roles (gate, w1, w3, w2)."""
    if not isinstance(v, (list, tuple)) or not v or not all(r in ROLES for r in v) or len(set(v)) != len(v):
        raise ArgError(f"a non-empty list of distinct names among {', '.join(ROLES)}")
    return tuple(r for r in ROLES if r in v)


def module_names(v):
    """A mapping of roles to the model's module names (a string, or null where a role is no module)."""
    if not isinstance(v, dict) or not set(v) <= set(ROLES) or not all(
            m is None or (isinstance(m, str) and m.isidentifier()) for m in v.values()):
        raise ArgError(f"a mapping of {', '.join(ROLES)} to module names (identifiers) or null")
    return tuple((r, v.get(r, r)) for r in ROLES)


def lora_experts(v):
    """A mapping of expert roles (w1, w3, w2) to the experts (indices from 0) whose product has adapters."""
    def indices(ix):
        return isinstance(ix, list) and ix and len(set(ix)) == len(ix) and all(
            isinstance(j, int) and not isinstance(j, bool) and j >= 0 for j in ix)
    if not isinstance(v, dict) or not v or not set(v) <= set(ROLES[1:]) or not all(map(indices, v.values())):
        raise ArgError("a mapping of w1, w3, w2 to non-empty lists of distinct expert indices (from 0)")
    return tuple((r, tuple(sorted(v[r]))) for r in ROLES if r in v)


def adapted_experts(a, role: str) -> int:
    """Experts whose ``role`` product has an adapter: the ones ``lora_experts`` lists for it, else all of them."""
    return len(dict(a["lora_experts"] or ()).get(role, range(a["num_experts"])))


def adapter_rows(a, role: str, tokens: int) -> int:
    """Rows through a role's adapters: every token through the router's; each of a token's k experts through its
    own, so tokens * k when every expert is adapted, and with m of the n experts adapted their share under
    balanced routing, ceil(tokens * k * m / n) (the routing of a batch is not known ahead)."""
    if role == "gate":
        return tokens
    return -(-tokens * a["top_k"] * adapted_experts(a, role) // a["num_experts"])


def adapted(a) -> tuple[str, ...]:
    """The roles with LoRA adapters: ``lora_targets`` (default all four) when ``lora_rank`` is set, else none."""
    return () if a["lora_rank"] is None else a["lora_targets"] or ROLES


def product_dims(a, hidden: int) -> dict[str, tuple[int, int]]:
    """(in, out) of each role's product: gate hidden -> experts, w1 and w3 hidden -> width, w2 width -> hidden."""
    f = a["intermediate_size"]
    return {"gate": (hidden, a["num_experts"]), "w1": (hidden, f), "w3": (hidden, f), "w2": (f, hidden)}


def expert_params(a, hidden: int) -> int:
    """Weights of one SwiGLU expert: w1 (gate), w3 (up): F x E each; w2 (down): E x F; plus r (in + out) per
    adapted product (LoRA's A, r x in, and B, out x r); with adapters on only some experts (``lora_experts``),
    the adapters' mean per expert, rounded down."""
    dims, n = product_dims(a, hidden), a["num_experts"]
    adapters = sum(adapted_experts(a, r) * a["lora_rank"] * sum(dims[r]) for r in adapted(a) if r != "gate")
    return 3 * hidden * a["intermediate_size"] + adapters // n


def _moe_shape(a, s):
    x = s[0]
    if len(x) < 2:
        raise ShapeError(f"needs (batch, ..., hidden), got {list(x)}")
    n, g = a["num_experts"], a["n_group"]
    if a["top_k"] > n:
        raise ShapeError(f"top_k {a['top_k']} is more than num_experts {n}")
    if n % g or a["topk_group"] > g or a["group_top"] > n // g or a["top_k"] > a["topk_group"] * (n // g):
        raise ShapeError(f"n_group {g} must divide num_experts {n}, topk_group {a['topk_group']} be at most n_group, "
                         f"group_top {a['group_top']} at most the {n // g if n % g == 0 else '?'} experts of a group, "
                         f"and the chosen groups hold at least top_k {a['top_k']} experts")
    if a["lora_targets"] is not None and a["lora_rank"] is None:
        raise ShapeError("lora_targets needs lora_rank (the adapters' rank r)")
    for role, experts in a["lora_experts"] or ():
        if role not in adapted(a) or experts[-1] >= n:
            raise ShapeError(f"lora_experts: {role} must be among the adapted products ({', '.join(adapted(a))}) "
                             f"and its experts below num_experts {n}")
    return x


def _moe_weights(a, s):
    n, e, f = a["num_experts"], s[0][-1], a["intermediate_size"]
    out = {"gate.weight": (n, e), "experts.w1.weight": (n, f, e), "experts.w3.weight": (n, f, e),
           "experts.w2.weight": (n, e, f)}
    dims, r = product_dims(a, e), a["lora_rank"]
    for role in adapted(a):
        i, o = dims[role]
        each = () if role == "gate" else (adapted_experts(a, role),)
        prefix = "gate" if role == "gate" else f"experts.{role}"
        out[f"{prefix}.lora_A.weight"] = (*each, r, i)
        out[f"{prefix}.lora_B.weight"] = (*each, o, r)
    return out


def _moe_frozen(a, s):
    """With adapters (``lora_rank``) the router and the experts' own weights are frozen: only the adapters train."""
    return frozenset(("gate.weight", "experts.w1.weight", "experts.w3.weight", "experts.w2.weight")
                     if a["lora_rank"] is not None else ())


def _moe_buffers(a, s):
    return {"gate.e_score_correction_bias": (a["num_experts"],)} if a["score_bias"] else {}


def _moe_note(call: Call) -> str:
    a, e = call.args, call.inputs[0][-1]
    inactive = (a["num_experts"] - a["top_k"]) * expert_params(a, e)
    return (f"{a['top_k']} of {a['num_experts']} experts per token: {call.weight_elems - inactive} of "
            f"{call.weight_elems} params active")


def router_flops(a) -> tuple[int, int]:
    """(forward, backward) FLOPs per token of the router past its logits. Forward: scoring (softmax 5 or sigmoid
    4 per expert), the correction bias added for the choice (``score_bias``: 1 per expert), with groups
    (``n_group`` > 1) each group's score as the sum of its ``group_top`` best (group_top passes of m - 1
    comparisons over its m experts, group_top - 1 adds) and the ``topk_group`` best groups (topk_group passes of
    n_group - 1), then the top k of the n experts (k passes of n - 1: the masked ones still compared), the
    renormalisation (k - 1 adds, k divides) with ``norm_topk_prob``, and the scaling (k multiplies) when
    ``routed_scaling_factor`` is not 1. Backward: scaling k, renormalisation 4k - 1, scoring (softmax 4, sigmoid
    3 per expert); the choice has no gradient. DeepSeek's 1e-20 guard on the renormalising sum is not counted (1
    add per token). Source: DeepSeek-AI 2024, arXiv:2405.04434 (V2, device-limited routing) and
    arXiv:2412.19437 (V3, sigmoid gating, section 2.1.2); transformers DeepseekV3TopkRouter."""
    n, k, g = a["num_experts"], a["top_k"], a["n_group"]
    fwd_score, bwd_score = SCORING[a["scoring"]]
    scale = 1 if a["routed_scaling_factor"] != 1 else 0
    norm = a["norm_topk_prob"]
    groups = g * (a["group_top"] * (n // g - 1) + a["group_top"] - 1) + a["topk_group"] * (g - 1) if g > 1 else 0
    fwd = fwd_score * n + a["score_bias"] * n + groups + k * (n - 1) + norm * (2 * k - 1) + scale * k
    return fwd, bwd_score * n + norm * (4 * k - 1) + scale * k


@register("mixture_of_experts", Arg("num_experts", pos_int), Arg("top_k", pos_int), Arg("intermediate_size", pos_int),
          Arg("norm_topk_prob", boolean, True), Arg("scoring", choice(*SCORING), "softmax"),
          Arg("score_bias", boolean, False), Arg("n_group", pos_int, 1), Arg("topk_group", pos_int, 1),
          Arg("group_top", pos_int, 1), Arg("routed_scaling_factor", pos_float, 1.0),
          Arg("lora_rank", optional(pos_int), None), Arg("lora_targets", optional(lora_targets), None),
          Arg("lora_experts", optional(lora_experts), None), Arg("modules", optional(module_names), None),
          shape=_moe_shape, weights=_moe_weights, buffers=_moe_buffers, frozen=_moe_frozen, saves=("inputs",),
          note=_moe_note, matrix=True)
def _moe(call: Call) -> Cost:
    """Sparse mixture of SwiGLU experts (Mixtral's block; DeepSeek's routed experts): router logits x G^T (G:
    num_experts x hidden), scores (softmax over the n experts, or DeepSeek-V3's sigmoid), the top k kept (within
    the best groups for DeepSeek's group-limited routing) and renormalised to sum 1 (``norm_topk_prob``;
    Qwen2-MoE keeps the raw probabilities), optionally scaled, each chosen expert computing
    w2 (silu(w1 x) * w3 x), the outputs summed weighted. Every token goes to exactly k experts, so with
    N tokens, hidden e and expert width F (no capacity limit, no token dropped, whatever the balance):
    MACs = N * (e*n + 3*k*e*F).
    Other forward FLOPs per token: the router's (``router_flops``), silu 5 and the product 1 per expert unit
    (6kF), weighting k*e and summing (k - 1)*e.
    Backward per token, each part when a gradient needs it: d(expert output) k*e; d(weight) 2*k*e and the
    router's (for the router's weights or the input); down projection dx 2kFe, product 2kF and silu 9kF (for the
    gate and up weights or the input); weight gradients (trainable) 2 * (3kFe + e*n); input gradient: gate and up
    dx 4kFe plus their sum k*e, the sum over experts (k - 1)*e, router dx 2*e*n and its add e.
    Kept per token: router scores n, the k routing weights and ids (int64), and per chosen expert the
    gate and up projections, their product (3F) and the output (e); plus the input.
    LoRA (``lora_rank`` r on ``lora_targets``, as PEFT adapts each expert's nn.Linear under transformers 4.x):
    the router and experts frozen (``modules`` only names them for --lora-targets), each adapted product
    (in -> out) adds B A x: per row (a token for the router, each of a token's k experts for w1, w3, w2)
    r (in + out) MACs and out adds; backward dB 2 r out, d(A x) 2 r out, dA 2 r in, and when the product's
    input needs a gradient 2 r in plus in adds; kept r per row. A token pays the adapters of its k experts
    only; every expert's adapters are weights. ``lora_experts`` limits a product's adapters to the experts it
    lists (a target naming experts.3.gate_proj): their weights only, and their share of the rows
    (``adapter_rows``).
    Traffic: the input, every expert's weights once (a batch large enough to reach every expert) and the output.
    Source: Jiang et al. 2024, arXiv:2401.04088 (Mixtral), section 2.1; transformers MixtralSparseMoeBlock;
    Shazeer et al. 2017; Hu et al. 2021 (LoRA), arXiv:2106.09685."""
    a = call.args
    n, k, f = a["num_experts"], a["top_k"], a["intermediate_size"]
    e = call.inputs[0][-1]
    tokens = call.in_elems() // e
    macs = tokens * (e * n + 3 * k * e * f)
    route_fwd, route_bwd = router_flops(a)
    per_token = route_fwd + (_SILU_FWD + 1) * k * f + (2 * k - 1) * e
    need_x = call.grad_inputs[0]
    base = call.trainable and a["lora_rank"] is None              # the router's and experts' own weights train
    tuned = adapted(a) if call.trainable else ()                  # the adapters that train
    inner = need_x or base or bool({"w1", "w3"} & set(tuned))     # gradients inside the experts
    routing = need_x or base or "gate" in tuned                   # gradients through the routing weights
    back = tokens * ((k * e if inner or "w2" in tuned else 0) + (2 * k * e + route_bwd if routing else 0)
                     + (2 * k * f * e + (2 + _SILU_BWD) * k * f if inner else 0))
    if base:
        back += 2 * tokens * (3 * k * f * e + e * n)
    if need_x:
        back += tokens * (4 * k * f * e + k * e + (k - 1) * e + 2 * e * n + e)
    saved = tokens * ((n + k + k * (3 * f + e)) * call.itemsize + k * call.index_itemsize)
    dims, r, extra = product_dims(a, e), a["lora_rank"], 0
    for role in adapted(a):
        i, o = dims[role]
        rows = adapter_rows(a, role, tokens)
        macs += rows * r * (i + o)
        extra += rows * o
        if role in tuned:
            back += rows * 2 * r * (2 * o + i)
            if (inner if role == "w2" else need_x):
                back += rows * (2 * r * i + i)
            saved += rows * r * call.itemsize
    return Cost(macs=macs, flops=2 * macs + tokens * per_token + extra, backward_flops=back, saved_bytes=saved,
                **io_bytes(call))
