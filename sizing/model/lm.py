"""Language-model figures of a causal (decoder) model: training FLOPs per token beside 6*N, prefill and decode
FLOPs, KV-cache bytes, and the weights + KV cache an inference batch holds.

The forward FLOPs of one sequence of T tokens are, for every graph of per-token layers and attention, a
quadratic F(T) = c0 + c1*T + c2*T^2: c1 is what each token costs whatever the context (projections, MLP,
norms, lm_head), c2 what each (query, key) pair costs (scale, mask, softmax and the two products of every
layer, the full T x T matrix as dense kernels count it), c0 what a sequence costs once (a pooler). The three
coefficients are read off exact counts at T = 1, 2, 3 and checked at T = 4 (``fit_quadratic``). Then
- prefill of a P-token prompt = F(P), as counted (dense causal attention, logits for every position);
- decode of one token whose query meets L cached positions (itself included) = c1 + c2 * L (the graph's count;
  serving decodes latent attention with absorbed weights, sizing/predict/serving.py);
- training FLOPs per token = (forward + backward) / (batch * T) at the estimate's size, beside the
  approximation 6 * N per token (C = 6 N D: Kaplan et al. 2020, arXiv:2001.08361, section 2.1, with N there the
  non-embedding params; here N = all params, as Hoffmann et al. 2022 use it, the active ones for a mixture of
  experts), with their difference; a partly frozen model (LoRA, QLoRA) is also set beside 6N - 2N_frozen, as its
  frozen weights (the active ones) take no weight gradient (2 FLOPs per weight and token of the 6);
- KV cache per token = 2 (k and v) * kv_heads * head_dim per causal attention layer, at the cache precision
  (latent attention: its latent and rotary key, ``latent_attention``);
- inference memory = weights (params at the compute dtype, buffers fp32) + batch * context * KV per token.
Forward FLOPs are those of the graph as built: dropout layers of a config that trains with dropout count 1
FLOP per element, which an inference kernel skips.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

from ..common.errors import SizingError
from .graph import DTYPES, Graph
from .ops.transformer import expert_params

KV_ITEMSIZE = {**DTYPES, "fp8": 1, "int8": 1}
ATTENTION = ("scaled_dot_product_attention", "multihead_attention")


def fit_quadratic(flops_at: Callable[[int], int]) -> tuple[Fraction, Fraction, Fraction]:
    """(c0, c1, c2) with F(T) = c0 + c1 T + c2 T^2 through T = 1, 2, 3 (finite differences), checked at T = 4."""
    f1, f2, f3 = (flops_at(t) for t in (1, 2, 3))
    c2 = Fraction(f3 - 2 * f2 + f1, 2)
    c1 = f2 - f1 - 3 * c2
    c0 = f1 - c1 - c2
    if c0 + 4 * c1 + 16 * c2 != flops_at(4):
        raise ValueError("forward FLOPs are not a quadratic in the sequence length")
    return c0, c1, c2


LAYOUT = ("reshape", "narrow", "concat", "expand")      # ops that only lay a token's values out


@dataclass(frozen=True)
class LatentAttention:
    """A causal attention layer whose keys and values are one linear's up-projection of a narrower per-token
    latent (DeepSeek's multi-head latent attention, arXiv:2405.04434, section 2.1): ``latent`` the linear's input
    width (kv_lora_rank), ``rope`` the width of the keys' other per-token part (the shared rotary key,
    qk_rope_head_dim), ``heads``, ``d`` and ``dv`` the attention's query/key and value head widths, ``repeat``
    the layer's copies. An engine caches latent + rope values per token and layer and decodes with the
    up-projection absorbed into the query and the output (vLLM, SGLang, DeepSeek's own)."""
    heads: int
    latent: int
    rope: int
    d: int
    dv: int
    repeat: int

    @property
    def cached(self) -> int:
        return self.latent + self.rope


def _laid_out_from(by_name: dict, name: str) -> set[str]:
    """The tensors ``name`` is laid out from through reshape / narrow / concat / expand only."""
    node = by_name.get(name)
    if node is None or node.op not in LAYOUT:
        return {name}
    return set().union(*(_laid_out_from(by_name, i) for i in node.inputs))


def _token_width(node) -> int:
    """Values per token of a node's output (batch and sequence the first two axes)."""
    width = 1
    for x in node.out.shape[2:]:
        width *= x
    return width


def latent_attention(graph: Graph, node) -> LatentAttention | None:
    """``node`` (a causal scaled_dot_product_attention) as latent attention: its values and part of its keys laid
    out from one bias-free linear that its queries do not use and whose input is narrower than its output; the
    keys' other sources add their own per-token width (before any expand over the heads). None otherwise."""
    if node.op != "scaled_dot_product_attention" or not node.kwargs["causal"]:
        return None
    by_name = {n.name: n for n in graph.nodes}
    q, k, v = (_laid_out_from(by_name, i) for i in node.inputs)
    up = by_name.get(next(iter(v))) if len(v) == 1 else None
    if up is None or up.op != "linear" or up.kwargs["bias"] or up.name not in k or up.name in q:
        return None
    latent = up.in_types[0].shape[-1]
    if latent >= _token_width(up):
        return None
    h = node.kwargs["num_heads"]
    rope = sum(_token_width(by_name[s]) for s in k - {up.name} if s in by_name)
    return LatentAttention(h, latent, rope, node.in_types[1].shape[-1] // h, node.in_types[2].shape[-1] // h,
                           node.repeat)


def kv_cache_elems_per_token(graph: Graph) -> int:
    """Elements one token adds to the cache: kv_heads * (head_dim + v head_dim) per causal attention layer
    (2 * kv_heads * head_dim where they are equal), and for latent attention (``latent_attention``) the latent and
    the rotary key, kv_lora_rank + qk_rope_head_dim, as the engines cache it (transformers' own cache holds every
    head's expanded keys and values instead)."""
    elems = 0
    for n in graph.nodes:
        if n.op not in ATTENTION or not n.kwargs["causal"]:
            continue
        mla = latent_attention(graph, n)
        if mla is not None:
            width = mla.cached
        elif n.op == "scaled_dot_product_attention":
            width = n.in_types[1].shape[-1] + n.in_types[2].shape[-1]
        else:
            a, e = n.kwargs, n.in_types[0].shape[-1]
            width = 2 * (a["num_kv_heads"] or a["num_heads"]) * (e // a["num_heads"])
        elems += width * n.repeat
    return elems


def inactive_params(graph: Graph) -> int:
    """Params of the experts a token does not use: (num_experts - top_k) experts per mixture-of-experts layer."""
    return sum((n.kwargs["num_experts"] - n.kwargs["top_k"]) * expert_params(n.kwargs, n.in_types[0].shape[-1])
               * n.repeat for n in graph.nodes if n.op == "mixture_of_experts")


def is_causal_lm(graph: Graph) -> bool:
    """Token ids in, and at least one causal attention layer: a model that decodes with a KV cache."""
    return graph.input.ids and kv_cache_elems_per_token(graph) > 0


def _exact(x: Fraction | int) -> int | str:
    """An int, or an exact fraction written 'p/q' (JSON stays exact)."""
    x = Fraction(x)
    return int(x) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


@dataclass(frozen=True)
class LMFigures:
    batch: int
    context: int                      # the sequence length: prompt length for prefill, cached positions for decode
    dtype: str                        # weights precision
    kv_dtype: str                     # KV cache precision
    params: int
    active_params: int                # params a token passes through (all of them unless mixture of experts)
    training_flops_per_token: Fraction
    per_token_flops: Fraction         # c1: forward FLOPs of a token, context aside
    per_pair_flops: Fraction          # c2: forward FLOPs of one (query, key) pair over all layers
    per_sequence_flops: Fraction      # c0: forward FLOPs a sequence costs once (0 for a decoder LM)
    kv_bytes_per_token: int
    weights_bytes: int
    frozen_params: int = 0            # active params that take no weight gradient (a LoRA or QLoRA base)

    @property
    def six_n(self) -> int:
        return 6 * self.active_params

    @property
    def frozen_reference(self) -> int:
        """6N - 2N_frozen: the forward (2N) and input gradients (2N) of every active weight, the weight gradients
        (2N) of the trained ones only."""
        return self.six_n - 2 * self.frozen_params

    @property
    def prefill_flops(self) -> Fraction:
        t = self.context
        return self.per_sequence_flops + self.per_token_flops * t + self.per_pair_flops * t * t

    @property
    def decode_flops(self) -> Fraction:
        return self.per_token_flops + self.per_pair_flops * self.context

    @property
    def kv_bytes_per_sequence(self) -> int:
        return self.kv_bytes_per_token * self.context

    @property
    def inference_bytes(self) -> int:
        return self.weights_bytes + self.batch * self.kv_bytes_per_sequence

    def to_dict(self) -> dict:
        counted = self.training_flops_per_token
        return {
            "batch": self.batch, "context": self.context, "dtype": self.dtype, "kv_dtype": self.kv_dtype,
            "params": self.params, "active_params": self.active_params,
            "training_flops_per_token": {"counted": _exact(counted), "six_n": self.six_n,
                                         "difference": _exact(counted - self.six_n),
                                         **({"frozen_params": self.frozen_params,
                                             "six_n_less_frozen": self.frozen_reference,
                                             "difference_less_frozen": _exact(counted - self.frozen_reference)}
                                            if self.frozen_params else {})},
            "prefill_flops": _exact(self.prefill_flops),
            "decode_flops_per_token": _exact(self.decode_flops),
            "forward_flops_fit": {"per_sequence": _exact(self.per_sequence_flops),
                                  "per_token": _exact(self.per_token_flops),
                                  "per_token_pair": _exact(self.per_pair_flops)},
            "kv_cache_bytes": {"per_token": self.kv_bytes_per_token, "per_sequence": self.kv_bytes_per_sequence},
            "inference_memory_bytes": {"weights": self.weights_bytes,
                                       "kv_cache": self.batch * self.kv_bytes_per_sequence,
                                       "total": self.inference_bytes},
        }


def figures(est, forward_flops_at: Callable[[int], int], kv_dtype: str | None = None) -> LMFigures:
    """Figures of an Estimate of a causal LM; ``forward_flops_at(T)`` is the forward FLOPs of one sequence of T
    tokens of the same model (batch 1). ``kv_dtype`` (default: the estimate's dtype) is the cache precision,
    one of KV_ITEMSIZE."""
    g, t = est.graph, est.totals
    batch, seq = g.settings["batch"], g.input.shape[1]
    dtype = g.settings["dtype"]
    if kv_dtype is not None and kv_dtype not in KV_ITEMSIZE:
        raise SizingError(f"KV cache precision '{kv_dtype}' is not one of {', '.join(KV_ITEMSIZE)}")
    c0, c1, c2 = fit_quadratic(forward_flops_at)
    return LMFigures(
        batch=batch, context=seq, dtype=dtype, kv_dtype=kv_dtype or dtype, params=t.params,
        active_params=t.params - inactive_params(g),
        training_flops_per_token=Fraction(t.flops + t.backward_flops, batch * seq),
        per_token_flops=c1, per_pair_flops=c2, per_sequence_flops=c0,
        kv_bytes_per_token=kv_cache_elems_per_token(g) * KV_ITEMSIZE[kv_dtype or dtype],
        weights_bytes=t.params * DTYPES[dtype] + t.buffers * 4,
        frozen_params=max(0, t.params - est.trainable_params - inactive_params(g)) if t.params > est.trainable_params
        else 0)


def for_spec(spec: str, est, allow_unmapped: bool = False) -> LMFigures | None:
    """Figures of ``est``, an estimate of ``spec``, when it is a causal language model; None for other models, and
    for one that cannot be rebuilt at other sequence lengths (a spec with fixed reshape sizes)."""
    from .counting import count
    from .estimate import load_graph

    if not is_causal_lm(est.graph):
        return None

    def forward_flops_at(t: int) -> int:
        rows, _ = count(load_graph(spec, allow_unmapped, batch=1, seq_len=t))
        return sum(r.cost.flops for r in rows)
    try:
        return figures(est, forward_flops_at)
    except SizingError:
        return None
