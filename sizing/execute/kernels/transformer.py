"""Kernels of rotary_embedding, scaled_dot_product_attention and mixture_of_experts (sizing/ops/transformer.py).

Rotary: Hugging Face's rotate_half layout, each head's feature j < r/2 paired with j + r/2 at angle
t * 10000^(-2j/r); the cos/sin tables are computed once per call in numpy (not counted, as the formula says).
Attention: the multihead_attention core on q, k, v laid side by side. Mixture of experts: Mixtral's block,
tokens grouped by expert so that each expert's three products are one GEMM each.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ...model.ops.transformer import adapted
from .common import BACK, FLOPS, KERNELS, OpKernel, added, matmul2, mul_into, scale_into
from .elementwise import (SIGMOID, SILU, activation_backward, activation_forward, softmax_backward,
    softmax_forward)
from .sequence import attention_backward, attention_forward

ROPE_BASE = 10000.0


# ---------------------------------------------------------------- rotary position embedding

@njit(cache=True)
def rotate(x, cos, sin, heads, inverse, out, cnt, slot):
    """x (B, T, heads * d): each head's pairs (j, j + r/2), j < r/2 = cos.shape[1], rotated by the angle
    (inverse: its negative); features past r are copied. 4 multiplies and 2 adds per pair."""
    nb, nt, width = x.shape
    d, half = width // heads, cos.shape[1]
    sign = -1.0 if inverse else 1.0
    out[:] = x
    for b in range(nb):
        for t in range(nt):
            for h in range(heads):
                base = h * d
                for j in range(half):
                    x1, x2 = x[b, t, base + j], x[b, t, base + half + j]
                    c, s = cos[t, j], sign * sin[t, j]
                    out[b, t, base + j] = x1 * c - x2 * s
                    out[b, t, base + half + j] = x2 * c + x1 * s
    cnt[slot] += 3 * nb * nt * heads * 2 * half


def _angles(node):
    b, t, width = node.in_types[0].shape
    heads = node.kwargs["num_heads"]
    r = node.kwargs["rotary_dim"] or width // heads
    freq = ROPE_BASE ** (-np.arange(0, r, 2) / r)
    angle = np.outer(np.arange(t), freq)
    return np.cos(angle), np.sin(angle), heads


def _rotary_forward(node, xs, p, cnt, seed):
    cos, sin, heads = _angles(node)
    y = np.empty_like(xs[0])
    rotate(xs[0], cos.astype(y.dtype), sin.astype(y.dtype), heads, False, y, cnt, FLOPS)
    return y, None


def _rotary_backward(node, saved, gy, need, p, grads, cnt):
    cos, sin, heads = _angles(node)
    gx = np.empty_like(gy)
    rotate(gy, cos.astype(gy.dtype), sin.astype(gy.dtype), heads, True, gx, cnt, BACK)
    return [gx]


KERNELS["rotary_embedding"] = OpKernel(_rotary_forward, _rotary_backward)


# ---------------------------------------------------------------- scaled dot-product attention

def _sdpa_dims(node):
    """(heads, kv heads, qk head_dim, v head_dim, keys per query, scale, soft cap) of an SDPA node."""
    a = node.kwargs
    q, k, v = (t.shape for t in node.in_types)
    heads = a["num_heads"]
    kv = a["num_kv_heads"] or heads
    dh = q[2] // heads
    return heads, kv, dh, v[2] // kv, min(q[1], a["window"] or q[1]), 1.0 / math.sqrt(dh), a["softcap"] or 0.0


def _sdpa_forward(node, xs, p, cnt, seed):
    a = node.kwargs
    q, k, v = xs
    nb, nt, _ = q.shape
    heads, kv, dh, dv, w, scale, cap = _sdpa_dims(node)
    qkv = np.concatenate([q, k, v], axis=2)                      # side by side: a copy
    has_drop = a["dropout"] > 0
    probs = np.empty((nb, heads, nt, w), q.dtype)
    capped = np.empty_like(probs) if cap else probs[:0]
    dropped = np.empty_like(probs) if has_drop else probs[:0]
    o = np.empty((nb, nt, heads * dv), q.dtype)
    attention_forward(qkv, heads, kv, dh, dv, w, a["causal"], scale, cap, probs, capped, dropped, a["dropout"], seed,
                      o, cnt)
    return o, (qkv, probs, capped, dropped, seed)


def _sdpa_backward(node, saved, gy, need, p, grads, cnt):
    a = node.kwargs
    qkv, probs, capped, dropped, seed = saved
    heads, kv, dh, dv, w, scale, cap = _sdpa_dims(node)
    dqkv = np.empty_like(qkv)
    attention_backward(qkv, probs, capped, dropped, a["dropout"], seed, gy, heads, kv, dh, dv, w, scale, cap,
                       tuple(need), dqkv, cnt)
    ends = np.cumsum([t.shape[2] for t in node.in_types])
    parts = np.split(dqkv, ends[:-1], axis=2)
    return [np.ascontiguousarray(g) if n else None for g, n in zip(parts, need)]


KERNELS["scaled_dot_product_attention"] = OpKernel(_sdpa_forward, _sdpa_backward)


# ---------------------------------------------------------------- mixture of experts

@njit(cache=True)
def _best(values, allowed, taken, lo, hi):
    """Index and value of the largest values[j], lo <= j < hi, not yet taken and allowed (one pass)."""
    best, arg = -np.inf, lo
    for j in range(lo, hi):
        if allowed[j] and not taken[j] and values[j] > best:
            best, arg = values[j], j
    return arg, best


@njit(cache=True)
def route(scores, choice, k, norm, n_group, topk_group, group_top, factor, chosen, normed, weights, cnt):
    """Per token: with groups, each group scored by the sum of its group_top best ``choice`` values (group_top
    passes of m - 1 comparisons, group_top - 1 adds) and the topk_group best groups kept (topk_group passes of
    n_group - 1); then the k largest ``choice`` values among the kept groups' experts (k passes of n - 1
    comparisons), weighted by their ``scores``, with ``norm`` renormalised to sum 1 ((k - 1) adds and k
    divides) and scaled by ``factor`` when it is not 1 (k multiplies); ``normed`` keeps the weights before the
    scaling (what the renormalisation's backward reads)."""
    nt, n = scores.shape
    m = n // n_group
    for t in range(nt):
        allowed = np.ones(n, np.bool_)
        if n_group > 1:
            group_score = np.empty(n_group)
            for g in range(n_group):
                taken = np.zeros(n, np.bool_)
                total = 0.0
                for i in range(group_top):
                    arg, best = _best(choice[t], allowed, taken, g * m, (g + 1) * m)
                    taken[arg] = True
                    total = best if i == 0 else total + best
                group_score[g] = total
            kept = np.zeros(n_group, np.bool_)
            for i in range(topk_group):
                arg, best = _best(group_score, np.ones(n_group, np.bool_), kept, 0, n_group)
                kept[arg] = True
            for j in range(n):
                allowed[j] = kept[j // m]
        taken = np.zeros(n, np.bool_)
        total = 0.0
        for i in range(k):
            arg, best = _best(choice[t], allowed, taken, 0, n)
            taken[arg] = True
            chosen[t, i] = arg
            weights[t, i] = scores[t, arg]
            total += scores[t, arg]
        if norm:
            for i in range(k):
                weights[t, i] /= total
        normed[t] = weights[t]
        if factor != 1.0:
            for i in range(k):
                weights[t, i] *= factor
    groups = n_group * (group_top * (m - 1) + group_top - 1) + topk_group * (n_group - 1) if n_group > 1 else 0
    cnt[FLOPS] += nt * (groups + k * (n - 1) + (2 * k - 1 if norm else 0) + (k if factor != 1.0 else 0))


@njit(cache=True)
def combine(out_rows, tokens, slot_of, weights, y, filled, cnt):
    """y[token] = sum over its k experts of weight * expert output: k*e multiplies, (k - 1)*e adds per token
    (the first expert's term is written, the others added)."""
    e = y.shape[1]
    for r in range(out_rows.shape[0]):
        t = tokens[r]
        w = weights[t, slot_of[r]]
        if filled[t]:
            for j in range(e):
                y[t, j] += w * out_rows[r, j]
            cnt[FLOPS] += 2 * e
        else:
            for j in range(e):
                y[t, j] = w * out_rows[r, j]
            filled[t] = True
            cnt[FLOPS] += e


@njit(cache=True)
def combine_backward(g, out_rows, tokens, slot_of, weights, d_out, d_weight, want_out, want_weight, cnt):
    """Per routed row, as asked: d(expert output) = weight * g (e multiplies), d(weight) = <g, expert output>
    (2e)."""
    e = g.shape[1]
    for r in range(out_rows.shape[0]):
        t = tokens[r]
        w = weights[t, slot_of[r]]
        acc = 0.0
        for j in range(e):
            if want_out:
                d_out[r, j] = w * g[t, j]
            if want_weight:
                acc += g[t, j] * out_rows[r, j]
        d_weight[t, slot_of[r]] = acc
    cnt[BACK] += (want_out + 2 * want_weight) * e * out_rows.shape[0]


@njit(cache=True)
def route_backward(probs, chosen, weights, d_weight, d_probs, cnt):
    """Through the renormalisation w_i = p_i / s: dp_i = (dw_i - sum_j dw_j w_j) / s for the chosen (k mults,
    k - 1 adds, then a subtract and a divide each: 4k - 1); 0 for the others."""
    nt, k = weights.shape
    d_probs[:] = 0
    for t in range(nt):
        total = 0.0
        for i in range(k):
            total += probs[t, chosen[t, i]]
        dot = 0.0
        for i in range(k):
            dot += d_weight[t, i] * weights[t, i]
        for i in range(k):
            d_probs[t, chosen[t, i]] = (d_weight[t, i] - dot) / total
    cnt[BACK] += nt * (4 * k - 1)


@njit(cache=True)
def scatter_rows(rows, tokens, out, cnt):
    """out[token] += rows[r] for the routed rows of one expert, into an out whose rows hold the router's term:
    the sum over a token's experts and the router, e adds per routed row."""
    for r in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            out[tokens[r], j] += rows[r, j]
    cnt[BACK] += rows.size


def _plan(chosen, n):
    """Per expert: the routed (token, slot) rows, tokens grouped by expert."""
    out = []
    for j in range(n):
        tokens, slots = np.nonzero(chosen == j)
        out.append((tokens.astype(np.int64), slots.astype(np.int64)))
    return out


def _adapter(p, role, j):
    """(A, B) of a role's LoRA adapter: the router's, or expert j's."""
    prefix = "gate" if role == "gate" else f"experts.{role}"
    a, b = p[f"{prefix}.lora_A.weight"], p[f"{prefix}.lora_B.weight"]
    return (a, b) if role == "gate" else (a[j], b[j])


def _plus_adapter(y, x, p, role, j, roles, kept, cnt):
    """y + B (A x) when ``role`` has an adapter (A x kept under the role's name), else y."""
    if role not in roles:
        return y
    a, b = _adapter(p, role, j)
    kept[role] = matmul2(x, a.T, cnt, False)
    return added(y, matmul2(kept[role], b.T, cnt, False), cnt, FLOPS)


def _moe_forward(node, xs, p, cnt, seed):
    a = node.kwargs
    n, k = a["num_experts"], a["top_k"]
    roles = adapted(a)
    x = xs[0]
    x2 = x.reshape(-1, x.shape[-1])
    router = {}
    logits = _plus_adapter(matmul2(x2, p["gate.weight"].T, cnt, False), x2, p, "gate", None, roles, router, cnt)
    probs = np.empty_like(logits)
    if a["scoring"] == "sigmoid":
        activation_forward(logits.reshape(-1), probs.reshape(-1), SIGMOID, cnt)
    else:
        softmax_forward(logits.reshape(-1, n, 1), probs.reshape(-1, n, 1), cnt)
    choice = probs
    if a["score_bias"]:                         # the correction bias steers the choice, not the weights
        choice = probs + p["gate.e_score_correction_bias"]
        cnt[FLOPS] += probs.size
    chosen, weights = np.empty((len(x2), k), np.int64), np.empty((len(x2), k), x.dtype)
    normed = np.empty_like(weights)
    route(probs, choice, k, a["norm_topk_prob"], a["n_group"], a["topk_group"], a["group_top"],
          a["routed_scaling_factor"], chosen, normed, weights, cnt)
    y, filled = np.empty_like(x2), np.zeros(len(x2), np.bool_)
    experts = []
    for j, (tokens, slots) in enumerate(_plan(chosen, n)):
        xj, kept = x2[tokens], {}
        h1 = _plus_adapter(matmul2(xj, p["experts.w1.weight"][j].T, cnt, False), xj, p, "w1", j, roles, kept, cnt)
        h3 = _plus_adapter(matmul2(xj, p["experts.w3.weight"][j].T, cnt, False), xj, p, "w3", j, roles, kept, cnt)
        act = np.empty_like(h1)
        activation_forward(h1.reshape(-1), act.reshape(-1), SILU, cnt)
        m = act.copy()
        mul_into(m.reshape(-1), h3.reshape(-1), cnt, FLOPS)
        out = _plus_adapter(matmul2(m, p["experts.w2.weight"][j].T, cnt, False), m, p, "w2", j, roles, kept, cnt)
        combine(out, tokens, slots, weights, y, filled, cnt)
        experts.append((tokens, slots, xj, h1, h3, act, m, out, kept))
    return y.reshape(x.shape), (x2, probs, chosen, normed, weights, experts, router)


def _adapter_backward(dy, x, p, role, j, kept, dw, cnt):
    """Through y += B (A x): dB = dy^T (A x) and dA = (dy B)^T x into ``dw[role]``; returns d(A x) = dy B."""
    d_ax = matmul2(dy, _adapter(p, role, j)[1], cnt, True)
    dw.setdefault(role, ([], []))
    dw[role][0].append(matmul2(d_ax.T, x, cnt, True))
    dw[role][1].append(matmul2(dy.T, kept[role], cnt, True))
    return d_ax


def _through_adapter(dx, d_ax, p, role, j, cnt):
    """dx plus the adapter's input gradient d(A x) A (when the role has one)."""
    if d_ax is None:
        return dx
    return added(dx, matmul2(d_ax, _adapter(p, role, j)[0], cnt, True), cnt, BACK)


def _moe_backward(node, saved, gy, need, p, grads, cnt):
    """Backward as autograd takes it: with LoRA (frozen router and experts) only the gradients the adapters and
    the input need (the op's formula: inner, routing)."""
    x2, probs, chosen, normed, weights, experts, router = saved
    a = node.kwargs
    base = grads is not None and a["lora_rank"] is None
    tuned = adapted(a) if grads is not None else ()
    inner = need[0] or base or bool({"w1", "w3"} & set(tuned))
    routing = need[0] or base or "gate" in tuned
    g2 = gy.reshape(x2.shape)
    d_weight = np.zeros_like(weights)
    parts, dw = [], {}
    for j, (tokens, slots, xj, h1, h3, act, m, out, kept) in enumerate(experts):
        d_out = np.empty_like(out)
        combine_backward(g2, out, tokens, slots, weights, d_out, d_weight, inner or "w2" in tuned, routing, cnt)
        d_a2 = _adapter_backward(d_out, m, p, "w2", j, kept, dw, cnt) if "w2" in tuned else None
        dh1 = dh3 = d_a1 = d_a3 = None
        if inner:
            dm = _through_adapter(matmul2(d_out, p["experts.w2.weight"][j], cnt, True), d_a2, p, "w2", j, cnt)
            d_act, dh3 = dm.copy(), dm.copy()
            mul_into(d_act.reshape(-1), h3.reshape(-1), cnt, BACK)
            mul_into(dh3.reshape(-1), act.reshape(-1), cnt, BACK)
            dh1 = np.empty_like(h1)
            activation_backward(h1.reshape(-1), d_act.reshape(-1), dh1.reshape(-1), SILU, cnt)
            d_a1 = _adapter_backward(dh1, xj, p, "w1", j, kept, dw, cnt) if "w1" in tuned else None
            d_a3 = _adapter_backward(dh3, xj, p, "w3", j, kept, dw, cnt) if "w3" in tuned else None
        parts.append((dh1, dh3, d_out, d_a1, d_a3))
    d_logits = d_ag = None
    if routing:
        factor = a["routed_scaling_factor"]
        if factor != 1.0:                       # through the scaling
            scale_into(d_weight.reshape(-1), factor, cnt, BACK)
        d_probs = np.zeros_like(probs)
        if a["norm_topk_prob"]:
            route_backward(probs, chosen, normed, d_weight, d_probs, cnt)
        else:                                   # the weights are the chosen probabilities themselves: no arithmetic
            np.put_along_axis(d_probs, chosen, d_weight, axis=1)
        d_logits = np.empty_like(probs)
        if a["scoring"] == "sigmoid":
            activation_backward(probs.reshape(-1), d_probs.reshape(-1), d_logits.reshape(-1), SIGMOID, cnt)
        else:
            softmax_backward(probs.reshape(-1, probs.shape[1], 1), d_probs.reshape(-1, probs.shape[1], 1),
                             d_logits.reshape(-1, probs.shape[1], 1), cnt)
        if "gate" in tuned:
            d_ag = _adapter_backward(d_logits, x2, p, "gate", None, router, dw, cnt)
    if base:
        grads["gate.weight"].put(matmul2(d_logits.T, x2, cnt, True))
        dws = {"w1": [], "w3": [], "w2": []}
        for (tokens, slots, xj, h1, h3, act, m, out, _), (dh1, dh3, d_out, *_) in zip(experts, parts):
            dws["w1"].append(matmul2(dh1.T, xj, cnt, True))
            dws["w3"].append(matmul2(dh3.T, xj, cnt, True))
            dws["w2"].append(matmul2(d_out.T, m, cnt, True))
        for name, mats in dws.items():
            grads[f"experts.{name}.weight"].put(np.stack(mats))
    for role, (d_a, d_b) in dw.items():
        prefix = "gate" if role == "gate" else f"experts.{role}"
        stack = (lambda mats: mats[0]) if role == "gate" else np.stack
        grads[f"{prefix}.lora_A.weight"].put(stack(d_a))
        grads[f"{prefix}.lora_B.weight"].put(stack(d_b))
    if not need[0]:
        return [None]
    # the router's term, then each expert's rows
    dx = _through_adapter(matmul2(d_logits, p["gate.weight"], cnt, True), d_ag, p, "gate", None, cnt)
    for j, ((tokens, *_), (dh1, dh3, _, d_a1, d_a3)) in enumerate(zip(experts, parts)):
        both = added(_through_adapter(matmul2(dh1, p["experts.w1.weight"][j], cnt, True), d_a1, p, "w1", j, cnt),
                     _through_adapter(matmul2(dh3, p["experts.w3.weight"][j], cnt, True), d_a3, p, "w3", j, cnt),
                     cnt, BACK)
        scatter_rows(both, tokens, dx, cnt)
    return [dx.reshape(gy.shape)]


def _moe_refuse(node):
    return ("with adapters on only some experts (lora_experts): the kernels adapt every expert"
            if node.kwargs["lora_experts"] else None)


KERNELS["mixture_of_experts"] = OpKernel(_moe_forward, _moe_backward, _moe_refuse)
