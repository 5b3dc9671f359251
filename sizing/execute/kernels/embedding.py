"""Kernels of embedding (a gather; backward scatter-adds into the table) and the learned additive tables
(positional_embedding adds row t at position t, token_type_embedding adds row 0)."""
from __future__ import annotations

import numpy as np
from numba import njit

from .common import BACK, FLOPS, KERNELS, OpKernel


@njit(cache=True)
def gather(ids, table, y):
    """y[q] = table[ids[q]]: a copy, no arithmetic."""
    for q in range(ids.size):
        y[q] = table[ids[q]]


@njit(cache=True)
def scatter_add(ids, g, acc, skip, cnt):
    """acc[ids[q]] += g[q] for every id but ``skip`` (padding_idx, -1 for none): 1 add per element added."""
    done = 0
    for q in range(ids.size):
        if ids[q] != skip:
            acc[ids[q]] += g[q]
            done += 1
    cnt[BACK] += done * g.shape[1]


def _embedding_forward(node, xs, p, cnt, seed):
    ids = xs[0].reshape(-1)
    table = p["weight"]
    y = np.empty((ids.size, table.shape[1]), table.dtype)
    gather(ids, table, y)
    return y.reshape(xs[0].shape + (table.shape[1],)), ids


def _embedding_backward(node, ids, gy, need, p, grads, cnt):
    if grads is not None:
        pad = node.kwargs["padding_idx"]
        skip = -1 if pad is None else pad % node.kwargs["num_embeddings"]
        acc = grads["weight"].zeros()
        scatter_add(ids, gy.reshape(ids.size, -1), acc, skip, cnt)
        grads["weight"].put(acc)
    return [None]


def _embedding_refuse(node):
    if node.kwargs["max_norm"] is not None:
        return "max_norm (a renormalisation of the rows it reads)"
    return None


KERNELS["embedding"] = OpKernel(_embedding_forward, _embedding_backward, _embedding_refuse)


@njit(cache=True)
def add_table(x, table, positional, y, cnt):
    """y[b, t] = x[b, t] + table[t if positional else 0]: 1 add per element."""
    nb, nt, nd = x.shape
    for b in range(nb):
        for t in range(nt):
            row = t if positional else 0
            for d in range(nd):
                y[b, t, d] = x[b, t, d] + table[row, d]
    cnt[FLOPS] += x.size


@njit(cache=True)
def table_grad(g, positional, acc, cnt):
    """acc[t or 0] += g[b, t] summed over the batch (and time for token types): 1 add per element."""
    nb, nt, nd = g.shape
    for b in range(nb):
        for t in range(nt):
            row = t if positional else 0
            for d in range(nd):
                acc[row, d] += g[b, t, d]
    cnt[BACK] += g.size


def _table_forward(node, xs, p, cnt, seed):
    y = np.empty_like(xs[0])
    add_table(xs[0], p["weight"], node.op == "positional_embedding", y, cnt)
    return y, None


def _table_backward(node, saved, gy, need, p, grads, cnt):
    if grads is not None:
        acc = grads["weight"].zeros()
        table_grad(gy, node.op == "positional_embedding", acc, cnt)
        grads["weight"].put(acc)
    return [gy if need[0] else None]


KERNELS["positional_embedding"] = KERNELS["token_type_embedding"] = OpKernel(_table_forward, _table_backward)
