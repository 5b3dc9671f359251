"""Kernels of multi-head self-attention (grouped-query heads, causal mask, dropout) and the LSTM and GRU.

Attention: one GEMM projects q, k and v together; per (sample, head) the scores q k^T, scale, mask, softmax,
dropout and P @ v; one GEMM projects the output. Backward mirrors it with one fused GEMM for the q, k, v
weight gradient and one for the input gradient (with separate_qkv, three summed: HF BERT's query, key and
value linears); heads that share a kv head add their dK, dV.
LSTM / GRU run time-major: one GEMM for the input projection of all steps (and both directions), one
(batch, hidden) @ (hidden, gates*hidden) GEMM per step, a cell loop, and in backward one GEMM each for the
weight gradients over all steps. Gate order as PyTorch: LSTM (i, f, g, o), GRU (r, z, n).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .common import (BACK, FLOPS, KERNELS, OpKernel, add_into, add_rows, bias_grad, copy_block, count_product, dot,
    matmul2, mm, take_block)
from .elementwise import dropped_row, masked, softmax_backward, softmax_row, unmasked
from .vecmath import like, quotient, vtanh


# ---------------------------------------------------------------- multi-head attention

@njit(cache=True)
def _band_start(i, nt, w):
    """First key of query i's band of w keys: 0 while i < w, then i - w + 1 (the w keys ending at i)."""
    return max(0, i - w + 1)


@njit(cache=True)
def band_product(a, b, w, out, cnt, backward):
    """out (T, w) = a (T, d) @ b (T, d)^T over each row's band of keys (out[i, c] pairs row i with key
    _band_start(i) + c); with w = T one product of the full matrix. Counts T*w*d MACs."""
    nt = a.shape[0]
    if w == nt:
        mm(a, b.T, out, cnt, backward)
        return
    work = 0
    for i in range(nt):
        j0 = _band_start(i, nt, w)
        work += dot(a[i:i + 1], b[j0:j0 + w].T, out[i:i + 1], 0.0)
    count_product(cnt, work, backward)


@njit(cache=True)
def band_apply(p, b, w, out, cnt, backward):
    """out (T, d) = p (T, w) @ b over each row's band (P @ V, dS @ K). Counts T*w*d MACs."""
    nt = p.shape[0]
    if w == nt:
        mm(p, b, out, cnt, backward)
        return
    work = 0
    for i in range(nt):
        j0 = _band_start(i, nt, w)
        work += dot(p[i:i + 1], b[j0:j0 + w], out[i:i + 1], 0.0)
    count_product(cnt, work, backward)


@njit(cache=True)
def band_apply_t(p, b, w, out, cnt):
    """out (T, d) = p^T @ b over the bands (P^T dO, dS^T Q): each key's rows summed over the queries whose band
    holds it, one accumulated product (backward). Counts T*w*d MACs."""
    nt = p.shape[0]
    if w == nt:
        mm(p.T, b, out, cnt, True)
        return
    out[:] = 0
    work = 0
    for i in range(nt):
        j0 = _band_start(i, nt, w)
        work += dot(p[i:i + 1].T, b[i:i + 1], out[j0:j0 + w], 1.0)
    count_product(cnt, work, True)


@njit(cache=True)
def scale_into_row(row, factor):
    """row *= factor (factor of row's dtype), in vector lanes."""
    for c in range(row.size):
        row[c] *= factor


@njit(cache=True)
def _capped_row(row, scale, cap, t):
    """Soft-capped scores: t = tanh(row * scale / cap), row = t * cap (4 FLOPs per element)."""
    for c in range(row.size):
        t[c] = vtanh(quotient(row[c] * scale, cap))
        row[c] = t[c] * cap


@njit(cache=True)
def _mask_after(row, last):
    """The causal mask: row[c] += -inf past ``last`` (the query's own key), + 0 up to it (1 add per element)."""
    neg, zero = like(row, -np.inf), like(row, 0.0)
    for c in range(row.size):
        row[c] += neg if c > last else zero


@njit(cache=True)
def attention_forward(qkv, heads, kv_heads, dh, dv, w, causal, scale, softcap, probs, capped, dropped, drop_p,
                      seed, o, cnt):
    """qkv (B, T, H*dh + kv*dh + kv*dv) -> o (B, T, H*dv), each query scoring its band of w keys; keeps the
    probabilities (B, H, T, w), the soft-capped scores' tanh (with ``softcap`` > 0) and, with dropout (``drop_p``
    > 0), the dropped probabilities; the dropout mask is stream ``seed``'s draw at each score's flat index in
    (B, H, T, w), drawn again by the backward instead of kept."""
    nb, nt = qkv.shape[0], qkv.shape[1]
    has_drop = drop_p > 0
    e, group = heads * dh, heads // kv_heads
    vo = e + kv_heads * dh
    q, k, v = np.empty((nt, dh), qkv.dtype), np.empty((nt, dh), qkv.dtype), np.empty((nt, dv), qkv.dtype)
    s, ob = np.empty((nt, w), qkv.dtype), np.empty((nt, dv), qkv.dtype)
    sc, cap = like(s, scale), like(s, softcap)
    for b in range(nb):
        for h in range(heads):
            kh = h // group
            take_block(qkv[b], q, h * dh)
            take_block(qkv[b], k, e + kh * dh)
            take_block(qkv[b], v, vo + kh * dv)
            band_product(q, k, w, s, cnt, False)
            p = probs[b, h]
            for i in range(nt):                                        # one query's row while it is in cache
                j0 = _band_start(i, nt, w)
                row = s[i]
                if softcap > 0:
                    _capped_row(row, sc, cap, capped[b, h, i])                 # 4
                else:
                    scale_into_row(row, sc)                                    # 1
                if causal:
                    _mask_after(row, i - j0)                                   # 1
                softmax_row(row, p[i])                                 # 5
                if has_drop:                                                   # 1
                    dropped_row(p[i], dropped[b, h, i], drop_p, seed, ((b * heads + h) * nt + i) * w)
            band_apply(dropped[b, h] if has_drop else p, v, w, ob, cnt, False)
            copy_block(ob, o[b], h * dv)
    cnt[FLOPS] += nb * heads * nt * w * (1 + causal + (3 if softcap > 0 else 0) + 5 + has_drop)


@njit(cache=True)
def attention_backward(qkv, probs, capped, dropped, drop_p, seed, do, heads, kv_heads, dh, dv, w, scale,
                       softcap, need, dqkv, cnt):
    """dqkv (B, T, H*dh + kv*dh + kv*dv) from do (B, T, H*dv); need = (q, k, v) says which parts to compute (the
    rest of dqkv is left unset): dP, the softmax and the soft-capping only for q or k, each product only for the
    part that needs it."""
    nb, nt = qkv.shape[0], qkv.shape[1]
    e, group = heads * dh, heads // kv_heads
    vo = e + kv_heads * dh
    has_drop = drop_p > 0
    need_q, need_k, need_v = need
    q, k, v = np.empty((nt, dh), qkv.dtype), np.empty((nt, dh), qkv.dtype), np.empty((nt, dv), qkv.dtype)
    dob, dq = np.empty((nt, dv), qkv.dtype), np.empty((nt, dh), qkv.dtype)
    dk, dvb = np.empty((nt, dh), qkv.dtype), np.empty((nt, dv), qkv.dtype)
    dp, ds = np.empty((nt, w), qkv.dtype), np.empty((nt, w), qkv.dtype)
    sc = like(ds, scale)
    for b in range(nb):
        for h in range(heads):
            kh = h // group
            kc, vc = e + kh * dh, vo + kh * dv
            take_block(qkv[b], q, h * dh)
            take_block(qkv[b], k, kc)
            take_block(qkv[b], v, vc)
            take_block(do[b], dob, h * dv)
            p = probs[b, h]
            if need_v:
                band_apply_t(dropped[b, h] if has_drop else p, dob, w, dvb, cnt)
                _into_kv(dqkv, b, vc, dvb, h % group == 0, cnt)
            if not (need_q or need_k):
                continue
            band_product(dob, v, w, dp, cnt, True)
            if has_drop:                                               # the forward's mask again: 1
                for i in range(nt):
                    dropped_row(dp[i], dp[i], drop_p, seed, ((b * heads + h) * nt + i) * w)
                cnt[BACK] += nt * w
            softmax_backward(p.reshape(nt, w, 1), dp.reshape(nt, w, 1), ds.reshape(nt, w, 1), cnt)
            if softcap > 0:
                t = capped[b, h]
                for i in range(nt):
                    for c in range(w):                                 # * cap 1, * (1 - t*t) 3, / cap 1
                        ds[i, c] = ds[i, c] * softcap * (1.0 - t[i, c] * t[i, c]) / softcap
                cnt[BACK] += 5 * nt * w
            scale_into_row(ds.reshape(-1), sc)
            cnt[BACK] += nt * w                                        # the scale, 1
            if need_q:
                band_apply(ds, k, w, dq, cnt, True)
                copy_block(dq, dqkv[b], h * dh)
            if need_k:
                band_apply_t(ds, q, w, dk, cnt)
                _into_kv(dqkv, b, kc, dk, h % group == 0, cnt)


@njit(cache=True)
def _into_kv(dqkv, b, col, part, first, cnt):
    """A head's dK or dV into its kv head's columns: the group's first head writes, the others add."""
    nt, dh = part.shape
    if first:
        copy_block(part, dqkv[b], col)
        return
    for t in range(nt):
        for j in range(dh):
            dqkv[b, t, col + j] += part[t, j]
    cnt[BACK] += nt * dh


_QKV = ("q_proj", "k_proj", "v_proj")


def _qkv_columns(p):
    """(name, first, end) of q, k and v among the columns of the fused qkv projection."""
    start = 0
    for n in _QKV:
        rows = p[f"{n}.weight"].shape[0]
        yield n, start, start + rows
        start += rows


def _attn_forward(node, xs, p, cnt, seed):
    a = node.kwargs
    x = xs[0]
    nb, nt, e = x.shape
    heads = a["num_heads"]
    kv = a["num_kv_heads"] or heads
    x2 = x.reshape(nb * nt, e)
    wqkv = np.concatenate([p[f"{n}.weight"] for n in _QKV])
    qkv = matmul2(x2, wqkv.T, cnt, False)
    if a["bias"]:
        add_rows(qkv, np.concatenate([p[f"{n}.bias"] for n in _QKV]), cnt)
    qkv = qkv.reshape(nb, nt, -1)
    has_drop = a["dropout"] > 0
    probs = np.empty((nb, heads, nt, nt), x.dtype)
    dropped = np.empty_like(probs) if has_drop else probs[:0]
    o = np.empty((nb, nt, e), x.dtype)
    dh = e // heads
    attention_forward(qkv, heads, kv, dh, dh, nt, a["causal"], 1.0 / math.sqrt(dh), 0.0, probs, probs[:0],
                      dropped, a["dropout"], seed, o, cnt)
    o2 = o.reshape(nb * nt, e)
    y = matmul2(o2, p["out_proj.weight"].T, cnt, False)
    if a["bias"]:
        add_rows(y, p["out_proj.bias"], cnt)
    return y.reshape(x.shape), (x2, wqkv, qkv, probs, dropped, seed, o2)


def _attn_backward(node, saved, gy, need, p, grads, cnt):
    a = node.kwargs
    x2, wqkv, qkv, probs, dropped, seed, o2 = saved
    heads = a["num_heads"]
    kv = a["num_kv_heads"] or heads
    g2 = gy.reshape(o2.shape)
    if grads is not None:
        grads["out_proj.weight"].put(matmul2(g2.T, o2, cnt, True))
        if a["bias"]:
            grads["out_proj.bias"].put(bias_grad(g2, cnt))
    do = matmul2(g2, p["out_proj.weight"], cnt, True).reshape(gy.shape)
    dqkv = np.empty(qkv.shape, gy.dtype)
    dh = gy.shape[2] // heads
    attention_backward(qkv, probs, probs[:0], dropped, a["dropout"], seed, do, heads, kv, dh, dh, qkv.shape[1],
                       1.0 / math.sqrt(dh), 0.0, (True, True, True), dqkv, cnt)
    d2 = dqkv.reshape(x2.shape[0], -1)
    if grads is not None:
        dw = matmul2(d2.T, x2, cnt, True)
        db = bias_grad(d2, cnt) if a["bias"] else None
        for n, lo, hi in _qkv_columns(p):
            grads[f"{n}.weight"].put(dw[lo:hi])
            if db is not None:
                grads[f"{n}.bias"].put(db[lo:hi])
    if not need[0]:
        return [None]
    if not a["separate_qkv"]:
        return [matmul2(d2, wqkv, cnt, True).reshape(gy.shape)]
    dx = None                                           # three linears: dx_q + dx_k + dx_v
    for n, lo, hi in _qkv_columns(p):
        part = matmul2(np.ascontiguousarray(d2[:, lo:hi]), p[f"{n}.weight"], cnt, True)
        if dx is None:
            dx = part
        else:
            add_into(dx.reshape(-1), part.reshape(-1), cnt, BACK)
    return [dx.reshape(gy.shape)]


KERNELS["multihead_attention"] = OpKernel(_attn_forward, _attn_backward)


# ---------------------------------------------------------------- LSTM and GRU cells (time-major)

@njit(cache=True)
def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


@njit(cache=True)
def lstm_forward(gx, goff, w_hh, b_ih, b_hh, has_bias, reverse, out, ooff, gates, cprev, cs, hprev, cnt):
    """gx (T, B, .) input projections at column goff; writes h into out (T, B, .) at column ooff."""
    nt, nb = gx.shape[0], gx.shape[1]
    nh = w_hh.shape[1]
    h, c = np.zeros((nb, nh), gx.dtype), np.zeros((nb, nh), gx.dtype)
    gh = np.empty((nb, 4 * nh), gx.dtype)
    for step in range(nt):
        t = nt - 1 - step if reverse else step
        hprev[t] = h
        cprev[t] = c
        mm(h, w_hh.T, gh, cnt, False)
        for b in range(nb):
            for j in range(4 * nh):
                v = gx[t, b, goff + j] + gh[b, j]                       # 1 per gate
                if has_bias:
                    v += b_ih[j] + b_hh[j]                              # 2 per gate
                gates[t, b, j] = math.tanh(v) if 2 * nh <= j < 3 * nh else _sigmoid(v)
            for u in range(nh):
                i, f, g, o = gates[t, b, u], gates[t, b, nh + u], gates[t, b, 2 * nh + u], gates[t, b, 3 * nh + u]
                c[b, u] = f * c[b, u] + i * g                           # 3
                tc = math.tanh(c[b, u])                                 # 1
                cs[t, b, u] = tc
                h[b, u] = o * tc                                        # 1
                out[t, b, ooff + u] = h[b, u]
    # per unit and step: 4 sums, 3 sigmoids (12), tanh(g), c (3), tanh(c), h: 22; bias adds 8
    cnt[FLOPS] += nt * nb * nh * (22 + (8 if has_bias else 0))


@njit(cache=True)
def lstm_backward(dout, ooff, w_hh, reverse, gates, cprev, cs, dgates, cnt):
    """dgates (T, B, 4H): gradients of the gate pre-activations; dh and dc flow back through the steps."""
    nt, nb = gates.shape[0], gates.shape[1]
    nh = w_hh.shape[1]
    dh_rec, dc = np.zeros((nb, nh), gates.dtype), np.zeros((nb, nh), gates.dtype)
    for step in range(nt):
        t = step if reverse else nt - 1 - step
        for b in range(nb):
            for u in range(nh):
                i, f, g, o = gates[t, b, u], gates[t, b, nh + u], gates[t, b, 2 * nh + u], gates[t, b, 3 * nh + u]
                tc = cs[t, b, u]
                dh = dout[t, b, ooff + u] + dh_rec[b, u]                # 1
                dcu = dc[b, u] + dh * o * (1.0 - tc * tc)               # 5
                dgates[t, b, u] = dcu * g * i * (1.0 - i)               # di 1, sigmoid' 3
                dgates[t, b, nh + u] = dcu * cprev[t, b, u] * f * (1.0 - f)
                dgates[t, b, 2 * nh + u] = dcu * i * (1.0 - g * g)      # dg 1, tanh' 3
                dgates[t, b, 3 * nh + u] = dh * tc * o * (1.0 - o)
                dc[b, u] = dcu * f                                      # 1
        mm(dgates[t], w_hh, dh_rec, cnt, True)                          # to h_{t-1} (h0 on the last step)
    cnt[BACK] += nt * nb * nh * 23


@njit(cache=True)
def gru_forward(gx, goff, w_hh, b_ih, b_hh, has_bias, reverse, out, ooff, gates, hn, hprev, cnt):
    """r, z, n kept in gates (T, B, 3H), W_hn h + b_hn in hn (T, B, H)."""
    nt, nb = gx.shape[0], gx.shape[1]
    nh = w_hh.shape[1]
    h = np.zeros((nb, nh), gx.dtype)
    gh = np.empty((nb, 3 * nh), gx.dtype)
    for step in range(nt):
        t = nt - 1 - step if reverse else step
        hprev[t] = h
        mm(h, w_hh.T, gh, cnt, False)
        for b in range(nb):
            for u in range(nh):
                ar = gx[t, b, goff + u] + gh[b, u]                      # 1
                az = gx[t, b, goff + nh + u] + gh[b, nh + u]            # 1
                an = gx[t, b, goff + 2 * nh + u]
                hnu = gh[b, 2 * nh + u]
                if has_bias:                                            # 6 bias adds
                    ar += b_ih[u] + b_hh[u]
                    az += b_ih[nh + u] + b_hh[nh + u]
                    an += b_ih[2 * nh + u]
                    hnu += b_hh[2 * nh + u]
                r, z = _sigmoid(ar), _sigmoid(az)                       # 8
                n = math.tanh(an + r * hnu)                             # 3
                gates[t, b, u], gates[t, b, nh + u], gates[t, b, 2 * nh + u] = r, z, n
                hn[t, b, u] = hnu
                h[b, u] = (1.0 - z) * n + z * h[b, u]                   # 4
                out[t, b, ooff + u] = h[b, u]
    cnt[FLOPS] += nt * nb * nh * (17 + (6 if has_bias else 0))


@njit(cache=True)
def gru_backward(dout, ooff, w_hh, reverse, gates, hn, hprev, dg_ih, dg_hh, cnt):
    nt, nb = gates.shape[0], gates.shape[1]
    nh = w_hh.shape[1]
    dh_rec, direct = np.zeros((nb, nh), gates.dtype), np.empty((nb, nh), gates.dtype)
    for step in range(nt):
        t = step if reverse else nt - 1 - step
        for b in range(nb):
            for u in range(nh):
                r, z, n = gates[t, b, u], gates[t, b, nh + u], gates[t, b, 2 * nh + u]
                dh = dout[t, b, ooff + u] + dh_rec[b, u]                # 1
                dn = dh * (1.0 - z) * (1.0 - n * n)                     # 2 + 3
                dz = dh * (hprev[t, b, u] - n) * z * (1.0 - z)          # 2 + 3
                direct[b, u] = dh * z                                   # 1
                dr = dn * hn[t, b, u] * r * (1.0 - r)                   # 1 + 3
                dg_ih[t, b, u] = dg_hh[t, b, u] = dr
                dg_ih[t, b, nh + u] = dg_hh[t, b, nh + u] = dz
                dg_ih[t, b, 2 * nh + u] = dn
                dg_hh[t, b, 2 * nh + u] = dn * r                        # 1
        mm(dg_hh[t], w_hh, dh_rec, cnt, True)
        for b in range(nb):
            for u in range(nh):
                dh_rec[b, u] += direct[b, u]                            # 1
    cnt[BACK] += nt * nb * nh * 18


def _rnn_dims(node):
    a = node.kwargs
    return a["hidden_size"], a["num_layers"], 2 if a["bidirectional"] else 1, 4 if node.op == "lstm" else 3


def _rnn_weights(p, layer, dirs):
    suffixes = ("", "_reverse")[:dirs]
    return [{k: p.get(f"{k}_l{layer}{s}") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            for s in suffixes]


def _time_major(x):
    return np.ascontiguousarray(x.transpose(1, 0, 2))


def _rnn_forward(node, xs, p, cnt, seed):
    nh, layers, dirs, ng = _rnn_dims(node)
    a = node.kwargs
    x = _time_major(xs[0])
    nt, nb = x.shape[:2]
    saved = []
    for layer in range(layers):
        ws = _rnn_weights(p, layer, dirs)
        w_ih = np.concatenate([w["weight_ih"] for w in ws])
        gx = matmul2(x.reshape(nt * nb, -1), w_ih.T, cnt, False).reshape(nt, nb, -1)
        out = np.empty((nt, nb, dirs * nh), x.dtype)
        states = []
        for d, w in enumerate(ws):
            has_bias = w["bias_ih"] is not None
            b_ih, b_hh = (w["bias_ih"], w["bias_hh"]) if has_bias else (w_ih[0], w_ih[0])
            gates = np.empty((nt, nb, ng * nh), x.dtype)
            extra, hprev = np.empty((nt, nb, nh), x.dtype), np.empty((nt, nb, nh), x.dtype)
            if node.op == "lstm":
                cs = np.empty((nt, nb, nh), x.dtype)
                lstm_forward(gx, d * ng * nh, w["weight_hh"], b_ih, b_hh, has_bias, d == 1, out, d * nh, gates,
                             extra, cs, hprev, cnt)
                states.append((gates, extra, cs, hprev))
            else:
                gru_forward(gx, d * ng * nh, w["weight_hh"], b_ih, b_hh, has_bias, d == 1, out, d * nh, gates,
                            extra, hprev, cnt)
                states.append((gates, extra, hprev))
        mask = None
        if a["dropout"] > 0 and layer < layers - 1:
            out, mask = masked(out, a["dropout"], seed + layer, cnt)
        saved.append((x, w_ih, states, mask))
        x = out
    return np.ascontiguousarray(x.transpose(1, 0, 2)), saved


def _rnn_backward(node, saved, gy, need, p, grads, cnt):
    nh, layers, dirs, ng = _rnn_dims(node)
    dout = _time_major(gy)
    nt, nb = dout.shape[:2]
    for layer in reversed(range(layers)):
        x, w_ih, states, mask = saved[layer]
        if mask is not None:
            dout = unmasked(dout, mask, cnt)
        ws = _rnn_weights(p, layer, dirs)
        suffixes = ("", "_reverse")[:dirs]
        d_ih = []
        for d, (w, state) in enumerate(zip(ws, states)):
            if node.op == "lstm":
                gates, cprev, cs, hprev = state
                dg = np.empty(gates.shape, gy.dtype)
                lstm_backward(dout, d * nh, w["weight_hh"], d == 1, gates, cprev, cs, dg, cnt)
                dg_ih = dg_hh = dg
            else:
                gates, hn, hprev = state
                dg_ih, dg_hh = np.empty(gates.shape, gy.dtype), np.empty(gates.shape, gy.dtype)
                gru_backward(dout, d * nh, w["weight_hh"], d == 1, gates, hn, hprev, dg_ih, dg_hh, cnt)
            d_ih.append(dg_ih.reshape(nt * nb, -1))
            if grads is not None:
                s = f"_l{layer}{suffixes[d]}"
                grads[f"weight_ih{s}"].put(matmul2(d_ih[-1].T, x.reshape(nt * nb, -1), cnt, True))
                grads[f"weight_hh{s}"].put(matmul2(dg_hh.reshape(nt * nb, -1).T, hprev.reshape(nt * nb, -1),
                                                   cnt, True))
                if f"bias_ih{s}" in grads:
                    grads[f"bias_ih{s}"].put(bias_grad(d_ih[-1], cnt))
                    grads[f"bias_hh{s}"].put(bias_grad(dg_hh.reshape(nt * nb, -1), cnt))
        if layer == 0 and not need[0]:
            return [None]
        both = d_ih[0] if dirs == 1 else np.concatenate(d_ih, axis=1)
        dout = matmul2(both, w_ih, cnt, True).reshape(nt, nb, -1)
    return [np.ascontiguousarray(dout.transpose(1, 0, 2))]


KERNELS["lstm"] = KERNELS["gru"] = OpKernel(_rnn_forward, _rnn_backward)
