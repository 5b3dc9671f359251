"""Embedding lookups and learned additive tables (positional and token-type embeddings).

A lookup is a gather: zero FLOPs by rule; its traffic is the ids read and the rows gathered.
Backward of a lookup is a scatter-add of the output gradient into the table: 1 add per output element.
"""
from __future__ import annotations

from ..cost import Cost
from .registry import Arg, Call, ShapeError, any_int, numel, optional, pos_float, pos_int, register


def _embedding_shape(a, s):
    x = s[0]
    if a["padding_idx"] is not None and not -a["num_embeddings"] <= a["padding_idx"] < a["num_embeddings"]:
        raise ShapeError(f"padding_idx {a['padding_idx']} is outside [0, {a['num_embeddings']})")
    return x + (a["embedding_dim"],)


@register("embedding", Arg("num_embeddings", pos_int), Arg("embedding_dim", pos_int),
          Arg("padding_idx", optional(any_int), None), Arg("max_norm", optional(pos_float), None),
          shape=_embedding_shape, weights=lambda a, s: {"weight": (a["num_embeddings"], a["embedding_dim"])},
          takes_ids=True)
def _embedding(call: Call) -> Cost:
    """Gather rows of a (num_embeddings, embedding_dim) table: 0 FLOPs; backward scatter-adds the gradient
    into the table (1 add per output element). Reads the ids (int64) and the gathered rows only.
    Source: torch.nn.Embedding."""
    n = call.out_elems
    return Cost(backward_flops=n if call.trainable else 0,
                bytes_read=call.in_elems() * call.index_itemsize + n * call.itemsize,
                bytes_written=n * call.itemsize)


def _table_shape(rows_needed):
    def shape(a, s):
        x = s[0]
        if len(x) != 3:
            raise ShapeError(f"needs (batch, seq_len, dim), got {list(x)}")
        need = rows_needed(x)
        if a["num_embeddings"] < need:
            raise ShapeError(f"num_embeddings={a['num_embeddings']} is smaller than the {need} rows used "
                             f"(sequence length {x[1]})")
        return x
    return shape


def _table_cost(call: Call) -> Cost:
    """x + table[index] broadcast over the batch: 1 add per element forward. Backward: the input gradient
    passes through (0); the table gradient sums over the batch (1 add per element)."""
    n = call.out_elems
    used = numel(call.output[1:])
    return Cost(flops=n, backward_flops=n if call.trainable else 0,
                bytes_read=(n + used) * call.itemsize, bytes_written=n * call.itemsize)


def _table_weights(a, s):
    return {"weight": (a["num_embeddings"], s[0][-1])}


# learned absolute positions, row t added at position t (GPT-2 wpe, BERT position_embeddings)
register("positional_embedding", Arg("num_embeddings", pos_int), shape=_table_shape(lambda x: x[1]),
         weights=_table_weights)(_table_cost)
# token types (BERT token_type_embeddings); the synthetic input uses type 0 throughout
register("token_type_embedding", Arg("num_embeddings", pos_int), shape=_table_shape(lambda x: 1),
         weights=_table_weights)(_table_cost)
