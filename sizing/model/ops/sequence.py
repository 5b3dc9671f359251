"""Sequence ops: multi-head self-attention (with grouped-query heads) and the LSTM and GRU recurrences.

Tensors are batch-first: (batch, seq_len, features).
"""
from __future__ import annotations

from ..cost import Cost
from .elementwise import ACTIVATIONS
from .registry import Arg, ArgError, Call, ShapeError, boolean, io_bytes, optional, pos_int, probability, register

_SIGMOID, _TANH = ACTIVATIONS["sigmoid"][0], ACTIVATIONS["tanh"][0]
_SOFTMAX_FWD, _SOFTMAX_BWD = 5, 4       # as the softmax op (elementwise.py)


# ---------------------------------------------------------------- multi-head attention

def _heads(a, x):
    e, h = x[-1], a["num_heads"]
    kv = a["num_kv_heads"] or h
    if e % h:
        raise ShapeError(f"embed_dim {e} is not divisible by num_heads {h}")
    if h % kv:
        raise ShapeError(f"num_heads {h} is not divisible by num_kv_heads {kv}")
    return e, h, kv, e // h


def _attn_shape(a, s):
    x = s[0]
    if len(x) != 3:
        raise ShapeError(f"needs (batch, seq_len, embed_dim), got {list(x)}")
    _heads(a, x)
    return x


def _attn_weights(a, s):
    e, h, kv, d = _heads(a, s[0])
    w = {"q_proj.weight": (e, e), "k_proj.weight": (kv * d, e), "v_proj.weight": (kv * d, e),
         "out_proj.weight": (e, e)}
    if a["bias"]:
        w.update({"q_proj.bias": (e,), "k_proj.bias": (kv * d,), "v_proj.bias": (kv * d,), "out_proj.bias": (e,)})
    return w


def _attn_parts(call: Call):
    b, t, _ = call.inputs[0]
    e, h, kv, d = _heads(call.args, call.inputs[0])
    proj = b * t * e * (2 * e + 2 * kv * d)            # q, out: e*e each; k, v: e*kv*d each
    scores = b * h * t * t                               # elements of the score matrix
    return b, t, e, h, kv, d, proj, scores


def _causal_note(call: Call) -> str | None:
    if not call.args["causal"]:
        return None
    b, t, e, h, kv, d, proj, scores = _attn_parts(call)
    masked = b * h * (t * (t - 1) // 2)
    return (f"causal: counted dense; a kernel that skips the {masked} masked scores would save "
            f"{2 * masked * d} MACs forward")


@register("multihead_attention", Arg("num_heads", pos_int), Arg("num_kv_heads", optional(pos_int), None),
          Arg("causal", boolean, False), Arg("bias", boolean, True), Arg("dropout", probability, 0.0),
          Arg("separate_qkv", boolean, False), shape=_attn_shape, weights=_attn_weights, saves=("inputs",),
          note=_causal_note, matrix=True)
def _attention(call: Call) -> Cost:
    """Self-attention: q, k, v projections of x (k, v with num_kv_heads * head_dim outputs, GQA), scores
    q k^T / sqrt(d) per head, softmax, probabilities @ v, output projection.
    MACs = B*T*E*(2E + 2*kv*d) [projections] + 2 * B*H*T*T*d [scores and P@V], with the full T x T score
    matrix as dense kernels compute it (causal adds the mask, 1 FLOP per score, and saves nothing).
    Other forward FLOPs per score element: scale 1, softmax 5, mask 1 if causal, dropout 1 if p > 0;
    bias adds per projected element.
    Backward: out-projection dx, its MACs again; q/k/v dx when the input needs it: one fused product
    (torch.nn.MultiheadAttention's packed in_proj_weight), or with separate_qkv three products (Hugging Face
    BERT's query, key and value linears) whose sums add 2 FLOPs per element of x;
    weight gradients 2x the projection MACs when trainable; scores and P@V 2x each (dQ, dK,
    dP, dV); softmax 4, scale 1, dropout 1 per score; GQA sums dK, dV over the heads that share a kv head.
    Saved: q, k, v, probabilities (and the dropout mask, 1 byte per score). Source: Vaswani et al. 2017;
    torch.nn.MultiheadAttention; Ainslie et al. 2023 (GQA)."""
    a = call.args
    b, t, e, h, kv, d, proj, scores = _attn_parts(call)
    macs = proj + 2 * scores * d
    extra = (1 if a["causal"] else 0) + (1 if a["dropout"] else 0)
    bias = b * t * (2 * e + 2 * kv * d) if a["bias"] else 0
    fwd = 2 * macs + (1 + _SOFTMAX_FWD + extra) * scores + bias
    back = 0
    if call.grad_inputs[0] or call.trainable:
        out_proj = b * t * e * e
        back += 2 * out_proj                              # d(attention output) through out_proj
        back += 2 * 4 * scores * d                        # dP, dV, dQ, dK: 4 products of B*H*T*T*d MACs
        back += (_SOFTMAX_BWD + 1 + (1 if a["dropout"] else 0)) * scores
        back += 2 * (h - kv) * b * t * d                  # GQA: sum dK and dV over each group's heads
        if call.grad_inputs[0]:
            back += 2 * (proj - out_proj)                 # dx through the q, k, v projections
            if a["separate_qkv"]:
                back += 2 * b * t * e                     # dx_q + dx_k + dx_v: two adds per element
        if call.trainable:
            back += 2 * proj + bias                       # all four weight gradients and bias sums
    qkv = b * t * (e + 2 * kv * d)
    saved = (qkv + scores) * call.itemsize + (scores if a["dropout"] else 0)
    return Cost(macs=macs, flops=fwd, backward_flops=back, saved_bytes=saved, **io_bytes(call))


# ---------------------------------------------------------------- LSTM and GRU
# per hidden unit per time step: (gates, forward elementwise FLOPs without biases, bias adds, backward
# elementwise FLOPs, elements kept), each built from the activation table (sigmoid 4 / 3, tanh 1 / 3):
# LSTM forward: sum ih+hh 4, sigmoid x3 = 12, tanh(g) 1, c = f*c + i*g 3, tanh(c) 1, h = o*tanh(c) 1 -> 22;
#       biases b_ih, b_hh on 4 gates -> 8; kept: 4 gates, c, tanh(c) -> 6.
# LSTM backward: dh = dout + dh_next 1; h = o*tanh(c): do, d tanh(c) 2; tanh(c)' 3; dc += that 1;
#       c = f*c_prev + i*g: di, df, dg, dc_prev 4; sigmoid' x3 = 9, tanh(g)' 3 -> 23 (the gate sums pass through).
# GRU forward: sum ih+hh for r, z 2, r * (W_hn h) 1, + W_in x 1, sigmoid x2 = 8, tanh 1, (1-z)*n + z*h 4 -> 17;
#       biases on 3 gates twice -> 6; kept: 3 gates, W_hn h + b_hn, h_prev -> 5.
# GRU backward: dh = dout + dh_next 1; h' = (1-z)*n + z*h: 1-z, dn, h-n, dz, dh*z 5; tanh(n)' 3;
#       r * (W_hn h): dr, d(W_hn h) 2; sigmoid' x2 = 6; dh_prev = dh*z + W_hh^T dgates 1 -> 18.
_SIGMOID_BWD, _TANH_BWD = ACTIVATIONS["sigmoid"][1], ACTIVATIONS["tanh"][1]
_CELLS = {
    "lstm": (4, 3 * _SIGMOID + _TANH + 4 + 3 + _TANH + 1, 8,
             1 + 2 + _TANH_BWD + 1 + 4 + 3 * _SIGMOID_BWD + _TANH_BWD, 6),
    "gru": (3, 2 * _SIGMOID + _TANH + 2 + 1 + 1 + 4, 6,
            1 + 5 + _TANH_BWD + 2 + 2 * _SIGMOID_BWD + 1, 5),
}


def _num_layers(v):
    """1 to 1000 stacked layers: each is enumerated (its weights are named per layer, as PyTorch's), so a
    huge count from a typo must not run for minutes."""
    if pos_int(v) > 1000:
        raise ArgError("a positive integer up to 1000")
    return v


def _rnn_shape(a, s):
    x = s[0]
    if len(x) != 3:
        raise ShapeError(f"needs (batch, seq_len, input_size) (batch first), got {list(x)}")
    dirs = 2 if a["bidirectional"] else 1
    return (x[0], x[1], dirs * a["hidden_size"])


def _rnn_weights(cell):
    gates = _CELLS[cell][0]

    def weights(a, s):
        h, dirs = a["hidden_size"], 2 if a["bidirectional"] else 1
        w = {}
        for layer in range(a["num_layers"]):
            size_in = s[0][-1] if layer == 0 else dirs * h
            for suffix in ("", "_reverse")[:dirs]:
                w[f"weight_ih_l{layer}{suffix}"] = (gates * h, size_in)
                w[f"weight_hh_l{layer}{suffix}"] = (gates * h, h)
                if a["bias"]:
                    w[f"bias_ih_l{layer}{suffix}"] = (gates * h,)
                    w[f"bias_hh_l{layer}{suffix}"] = (gates * h,)
        return w
    return weights


def _rnn_cost_fn(cell):
    gates, unit_fwd, unit_bias, unit_back, unit_saved = _CELLS[cell]

    def cost(call: Call) -> Cost:
        a = call.args
        b, t, first_in = call.inputs[0]
        h, dirs = a["hidden_size"], 2 if a["bidirectional"] else 1
        steps = b * t * dirs                        # (sample, time step, direction) cells per layer
        macs = fwd = back = saved = mask = 0
        for layer in range(a["num_layers"]):
            size_in = first_in if layer == 0 else dirs * h
            dropped = b * t * size_in if layer > 0 and a["dropout"] else 0   # PyTorch drops each later layer's input
            mask += dropped                                                  # as the dropout op: 1 byte per element
            m_in, m_hh = steps * gates * h * size_in, steps * gates * h * h
            macs += m_in + m_hh
            bias = steps * unit_bias * h if a["bias"] else 0
            fwd += 2 * (m_in + m_hh) + steps * unit_fwd * h + bias + dropped
            if call.grad_inputs[0] or call.trainable:
                back += 2 * m_hh + steps * unit_back * h + dropped       # dh_prev through W_hh; cell; dropout
                if layer > 0 or call.grad_inputs[0]:
                    back += 2 * m_in                             # dx through W_ih
                if call.trainable:
                    back += 2 * (m_in + m_hh) + bias             # weight gradients and bias sums
            saved += steps * unit_saved * h + (b * t * size_in if layer > 0 else 0)
        return Cost(macs=macs, flops=fwd, backward_flops=back, saved_bytes=saved * call.itemsize + mask,
                    **io_bytes(call))
    cost.__doc__ = (f"{cell.upper()}, batch first, every layer and direction run over all T steps: "
                    f"MACs = B*T*dirs*{gates}H*(input + H) per layer; per unit and step {unit_fwd} elementwise "
                    f"FLOPs (+{unit_bias} bias adds); dropout (p > 0) on every layer's input but the first, 1 FLOP "
                    f"per element each way; backward: dh_prev and dx products, {unit_back} elementwise FLOPs per "
                    f"unit and step (the cell's chain rule), weight gradients. Source: torch.nn.{cell.upper()} "
                    f"equations.")
    return cost


for _cell in _CELLS:
    register(_cell, Arg("hidden_size", pos_int), Arg("num_layers", _num_layers, 1), Arg("bias", boolean, True),
             Arg("bidirectional", boolean, False), Arg("dropout", probability, 0.0),
             shape=_rnn_shape, weights=_rnn_weights(_cell), saves=("inputs",), matrix=True)(_rnn_cost_fn(_cell))
