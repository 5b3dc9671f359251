"""A Hugging Face ``config.json`` (a local file; never a download) as spec data, family by family.

Each family is written as its transformers modeling file builds it, so params equal the released checkpoints'
``num_parameters()``:
- llama, mistral, qwen2 (``LlamaForCausalLM`` and its copies): token embedding, pre-RMSNorm decoder layers of
  q/k/v projections (grouped-query heads), rotary embedding on q and k, causal attention, output projection,
  and a SwiGLU MLP (gate_proj, up_proj, silu, product, down_proj); final RMSNorm; lm_head, tied to the
  embedding when ``tie_word_embeddings``. Biases: llama ``attention_bias`` / ``mlp_bias``; qwen2 on q, k, v only.
- mixtral: llama's attention with a ``mixture_of_experts`` (``num_local_experts``, ``num_experts_per_tok``)
  in place of the MLP; qwen2_moe and qwen3_moe likewise (``num_experts``, ``moe_intermediate_size``, the
  top k renormalised only with ``norm_topk_prob``), qwen2_moe with a gated shared expert beside them.
- gpt2 (``GPT2LMHeadModel``): learned positions, pre-LayerNorm layers of biased attention and a 4x gelu MLP,
  dropout where the config has it, lm_head tied to wte.
- gpt_neox (``GPTNeoXForCausalLM``, Pythia): LayerNorm, one fused biased query_key_value projection split by
  views into q, k and v (each head's three are interleaved in the checkpoint; views cost nothing either way, and
  LoRA sees the fused module PEFT targets), partial rotary (``rotary_pct``), parallel residual, untied
  ``embed_out``.
- bert (``BertModel``, with the pooler): word, position and token-type embeddings, post-LayerNorm encoder
  layers (query, key and value are three linears: ``separate_qkv``), the pooler on the first token.
- gemma (``GemmaForCausalLM``): llama's layer with an explicit head_dim, a GeGLU MLP (``hidden_activation``),
  the embedding scaled by sqrt(hidden_size) and lm_head tied by default. Its RMSNorm scales by (1 + w): the same
  params; the E adds of 1 + w per call (on the weight, not per token) are not counted.
- phi3 (fused qkv_proj and gate_up_proj split by views), phi (Phi-2's parallel layer) and falcon (fused
  query_key_value, both decoder architectures): see their builders.
- gemma2 and gemma3_text (four norms a layer, local and global layers, soft-capping), deepseek_v2 and
  deepseek_v3 (multi-head latent attention, DeepSeekMoE, dense first layers): see their builders.
A sliding window (mistral, mixtral, phi3, the Gemma 2/3 local layers) bounds each query's keys; within it the
causal mask is counted dense.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

from ...common.errors import SizingError
from ...common.files import read_bounded
from ..ops.registry import REQUIRED, ArgError, any_int, boolean, pos_float, pos_int, probability
from ...common.yamlsafe import MAX_FILE_BYTES
from ..counting import count
from ..graph import build
from .loaded import Loaded

# hidden_act / activation_function -> our activation layer
ACTIVATIONS = {"silu": {"op": "silu"}, "swish": {"op": "silu"}, "relu": {"op": "relu"},
               "gelu": {"op": "gelu"}, "gelu_new": {"op": "gelu", "approximate": "tanh"},
               "gelu_pytorch_tanh": {"op": "gelu", "approximate": "tanh"}}


class Config:
    """Typed access to a config's keys: a missing or ill-typed key is a SizingError naming the key."""

    def __init__(self, data: dict, path: str, family: str):
        self.data, self.path, self.family = data, path, family
        self.notes: list[str] = []          # what the import leaves out, said as warnings

    def get(self, key: str, check: Callable[[Any], Any], default: Any = REQUIRED):
        value = self.data.get(key)
        if value is None:           # absent, or null as transformers writes an unset optional
            if default is REQUIRED:
                raise SizingError(f"missing key '{key}' (a {self.family} config needs it)", self.path)
            return default
        try:
            return check(value)
        except ArgError as e:
            raise SizingError(f"'{key}': must be {e}, got {value!r}", self.path) from None

    def activation(self, key: str, default: str) -> dict:
        name = self.get(key, str, default)
        if name not in ACTIVATIONS:
            raise SizingError(f"'{key}': '{name}' is not supported (supported: {', '.join(ACTIVATIONS)})", self.path)
        return ACTIVATIONS[name]

    def dropout(self, key: str) -> float:
        return self.get(key, probability, 0.0)

    def heads(self, hidden: int) -> tuple[int, int, int]:
        """(num_attention_heads, num_key_value_heads, head_dim)."""
        heads = self.get("num_attention_heads", pos_int)
        kv = self.get("num_key_value_heads", pos_int, heads)
        if self.data.get("head_dim") is None and hidden % heads:
            raise SizingError(f"'hidden_size' {hidden} is not divisible by 'num_attention_heads' {heads}", self.path)
        head_dim = self.get("head_dim", pos_int, hidden // heads)
        if heads % kv:
            raise SizingError(f"'num_attention_heads' {heads} is not divisible by 'num_key_value_heads' {kv}",
                              self.path)
        return heads, kv, head_dim


def _fraction(v):
    """A number in (0, 1] (rotary_pct)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
        raise ArgError("a number in (0, 1]")
    return float(v)


def _dropout(name: str, p: float) -> list[dict]:
    """A dropout layer when the config trains with one (p > 0), else nothing."""
    return [{"op": "dropout", "name": name, "p": p}] if p else []


def _head_norms(q: str, k: str, heads: tuple[int, int, int], eps: float) -> list[dict]:
    """Qwen3's q_norm and k_norm: an RMSNorm over each head's head_dim (one weight of head_dim shared by the
    heads), between the projection and the rotary: each projection viewed as (tokens, heads, head_dim), normed,
    viewed back."""
    h, kv, d = heads
    out = []
    for name, n in ((q, h), (k, kv)):
        out += [{"op": "reshape", "name": f"{name}_heads", "shape": [-1, n, d], "inputs": [name]},
                {"op": "rmsnorm", "name": f"{name[0]}_norm", "eps": eps},
                {"op": "reshape", "name": f"{name}_normed", "shape": [-1, n * d]}]
    return out


def _rotary_attention(norm: str, hidden: int, heads: tuple[int, int, int], biases: tuple[bool, bool],
                      rotary_dim: int | None, dropout: float, names: tuple[str, str, str, str],
                      head_norm_eps: float | None = None, window: int | None = None,
                      softcap: float | None = None) -> list[dict]:
    """q, k, v projections of the norm's output, rotary on q and k (``rotary_dim`` of each head; None: all of it,
    0: none, as transformers' int(head_dim x rotary_pct) rounds a tiny share to), causal attention (over a
    sliding ``window``, with Gemma 2's score ``softcap`` where given), output projection."""
    h, kv, d = heads
    qkv_bias, out_bias = biases
    q, k, v, out = names
    rot = {"rotary_dim": rotary_dim} if rotary_dim else {}
    normed = _head_norms(q, k, heads, head_norm_eps) if head_norm_eps is not None else []
    q_in, k_in = (f"{q}_normed", f"{k}_normed") if normed else (q, k)
    rotary = [] if rotary_dim == 0 else [
        {"op": "rotary_embedding", "name": f"{q}_rotary", "num_heads": h, **rot, "inputs": [q_in]},
        {"op": "rotary_embedding", "name": f"{k}_rotary", "num_heads": kv, **rot, "inputs": [k_in]}]
    qk = [q_in, k_in] if rotary_dim == 0 else [f"{q}_rotary", f"{k}_rotary"]
    return [
        {"op": "linear", "name": q, "out_features": h * d, "bias": qkv_bias, "inputs": [norm]},
        {"op": "linear", "name": k, "out_features": kv * d, "bias": qkv_bias, "inputs": [norm]},
        {"op": "linear", "name": v, "out_features": kv * d, "bias": qkv_bias, "inputs": [norm]},
        *normed,
        *rotary,
        {"op": "scaled_dot_product_attention", "name": "attn", "num_heads": h, "num_kv_heads": kv, "causal": True,
         "dropout": dropout, **({"window": window} if window else {}), **({"softcap": softcap} if softcap else {}),
         "inputs": [*qk, v]},
        {"op": "linear", "name": out, "out_features": hidden, "bias": out_bias},
    ]


def _mlp(norm: str, hidden: int, inter: int, act: dict, bias: bool, names: tuple[str, str]) -> list[dict]:
    """norm -> up -> activation -> down (GPT-2, GPT-NeoX, BERT feed-forward)."""
    up, down = names
    return [{"op": "linear", "name": up, "out_features": inter, "bias": bias, "inputs": [norm]},
            {**act, "name": "act"},
            {"op": "linear", "name": down, "out_features": hidden, "bias": bias}]


def _split(fused: str, *parts: tuple[str, int]) -> list[dict]:
    """A fused projection's output cut into consecutive (name, width) parts by ``narrow`` views."""
    out, start = [], 0
    for name, width in parts:
        out.append({"op": "narrow", "name": name, "dim": -1, "start": start, "length": width, "inputs": [fused]})
        start += width
    return out


def _head(c: Config, name: str, vocab: int, bias: bool, embedding: str, tied_by_default: bool) -> dict:
    """The output projection to the vocabulary, tied to ``embedding`` when ``tie_word_embeddings`` says (its
    default differs by family, as in each transformers config class)."""
    head = {"op": "linear", "name": name, "out_features": vocab, "bias": bias}
    if c.get("tie_word_embeddings", boolean, tied_by_default):
        head["tie"] = embedding
    return head


def _lm_spec(c: Config, embed: list[dict], block, layers, final_norm: dict, head: dict, seq_len: int,
             tail: tuple[dict, ...] = ()) -> dict:
    """The spec of a decoder: the embedding layers, the decoder layers, the final norm, the head and ``tail``
    (layers after the head). ``block`` is the decoder layer and ``layers`` how many; or ``block`` maps each kind of
    layer to its layers and ``layers`` lists every layer's kind (DeepSeek's dense first layers, Gemma 2's
    alternating sliding windows): each run of one kind is one repeated use, named layers_<its first index>."""
    if isinstance(block, dict):
        blocks, uses, start = {kind: {"layers": body} for kind, body in block.items()}, [], 0
        while start < len(layers):
            end = start
            while end < len(layers) and layers[end] == layers[start]:
                end += 1
            uses.append({"block": layers[start], "name": f"layers_{start}", "repeat": end - start})
            start = end
    else:
        blocks, uses = {"decoder_layer": {"layers": block}}, [{"block": "decoder_layer", "name": "layers",
                                                                "repeat": layers}]
    return {"name": _name(c), "input": {"shape": ["$seq_len"], "dtype": "int64"}, "defaults": _defaults(c, seq_len),
            "blocks": blocks, "layers": [*embed, *uses, final_norm, head, *tail]}


def _swiglu(norm: str, inter: int, hidden: int, act: dict, bias: bool = False, prefix: str = "",
            module: str = "") -> list[dict]:
    """LLaMA's gated MLP on the norm's output: down(act(gate x) * up x), its layers named <prefix>gate_proj ...;
    under a submodule (``module``: a shared expert's) the projections are <module>.gate_proj ... as modules."""
    def where(proj: str) -> dict:
        return {"module": f"{module}.{proj}"} if module else {}
    return [{"op": "linear", "name": f"{prefix}gate_proj", "out_features": inter, "bias": bias, "inputs": [norm],
             **where("gate_proj")},
            {"op": "linear", "name": f"{prefix}up_proj", "out_features": inter, "bias": bias, "inputs": [norm],
             **where("up_proj")},
            {**act, "name": f"{prefix}act", "inputs": [f"{prefix}gate_proj"]},
            {"op": "mul", "name": f"{prefix}gated", "inputs": [f"{prefix}act", f"{prefix}up_proj"]},
            {"op": "linear", "name": f"{prefix}down_proj", "out_features": hidden, "bias": bias, **where("down_proj")}]


# each expert's module names in transformers 4.x (Qwen2MoeMLP, Qwen3MoeMLP, DeepseekV2MLP, DeepseekV3MLP; Mixtral's
# w1, w3, w2 are the op's own); the router is nn.Linear 'gate' but for DeepSeek's (DeepseekV2MoEGate,
# DeepseekV3TopkRouter: a bare nn.Parameter, which PEFT cannot adapt)
QWEN_EXPERTS = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}


def _shared_expert(width: int, hidden: int, act: dict) -> list[dict]:
    """Qwen2-MoE's shared expert beside the routed ones (transformers Qwen2MoeSparseMoeBlock): a SwiGLU MLP of
    ``shared_expert_intermediate_size`` on every token, scaled by sigmoid(shared_expert_gate x) (one output),
    added to the routed experts' sum."""
    norm = "post_attention_layernorm"
    return [*_swiglu(norm, width, hidden, act, prefix="shared_", module="shared_expert"),
            {"op": "linear", "name": "shared_expert_gate", "out_features": 1, "bias": False, "inputs": [norm]},
            {"op": "sigmoid", "name": "shared_expert_weight"},
            {"op": "mul", "name": "shared_expert", "inputs": ["shared_down_proj", "shared_expert_weight"]},
            {"op": "add", "name": "experts_sum", "inputs": ["mlp", "shared_expert"]}]


GEMMA = ("gemma", "gemma2", "gemma3_text")


def _rms_decoder(c: Config, hidden: int, vocab: int, eps: float, block, kinds: list[str] | None = None,
                 tail: tuple[dict, ...] = ()) -> dict:
    """embed_tokens, the decoder layers (``kinds``: each layer's kind of ``block``, see _lm_spec), an RMSNorm and
    lm_head (tied to the embedding when the config says): the frame of LLaMA-style models. The Gemmas tie by
    default and scale the embedding by sqrt(hidden_size) (GemmaModel's normalizer: one multiply per element)."""
    gemma = c.family in GEMMA
    head = _head(c, "lm_head", vocab, False, "embed_tokens", gemma)
    embed = [{"op": "embedding", "name": "embed_tokens", "num_embeddings": vocab, "embedding_dim": hidden},
             *([{"op": "pointwise", "name": "normalizer", "fn": "mul_scalar"}] if gemma else [])]
    return _lm_spec(c, embed, block, kinds or c.get("num_hidden_layers", pos_int),
                    {"op": "rmsnorm", "name": "norm", "eps": eps}, head, c.get("max_position_embeddings", pos_int), tail)


def _window(c: Config) -> int | None:
    """The sliding window of every layer's attention: Mistral's and Mixtral's ``sliding_window`` (null: none);
    Qwen's applies only with ``use_sliding_window`` and only past ``max_window_layers``, which is not imported:
    such a config is counted dense and says so."""
    if c.family in ("mistral", "mixtral", "phi3"):
        return c.get("sliding_window", pos_int, None)
    if c.family.startswith("qwen") and c.get("use_sliding_window", boolean, False):
        c.notes.append("use_sliding_window: counted dense (the window of the layers past max_window_layers is not "
                       "imported)")
    return None


def _llama(c: Config) -> dict:
    hidden = c.get("hidden_size", pos_int)
    heads = c.heads(hidden)
    eps = c.get("rms_norm_eps", pos_float, 1e-6)
    vocab = c.get("vocab_size", pos_int)
    if c.family in ("qwen2", "qwen2_moe"):
        biases = (True, False)
    else:
        attention_bias = c.get("attention_bias", boolean, False)
        biases = (attention_bias, attention_bias)
    # Gemma's MLP reads hidden_activation (transformers falls back to gelu_pytorch_tanh, not hidden_act)
    act = c.activation("hidden_activation", "gelu_pytorch_tanh") if c.family == "gemma" else c.activation(
        "hidden_act", "silu")
    block = [{"op": "rmsnorm", "name": "input_layernorm", "eps": eps},
             *_rotary_attention("input_layernorm", hidden, heads, biases, None, c.dropout("attention_dropout"),
                                ("q_proj", "k_proj", "v_proj", "o_proj"),
                                eps if c.family in ("qwen3", "qwen3_moe") else None, _window(c)),
             {"op": "add", "name": "attn_add", "inputs": ["o_proj", "input"]},
             {"op": "rmsnorm", "name": "post_attention_layernorm", "eps": eps}]
    inter = c.get("intermediate_size", pos_int)
    if c.family in ("mixtral", "qwen2_moe", "qwen3_moe"):
        if act["op"] != "silu":
            raise SizingError(f"'hidden_act': {c.family} experts are SwiGLU here, so it must be 'silu'", c.path)
        if c.family != "mixtral" and (c.data.get("mlp_only_layers") or c.data.get("decoder_sparse_step", 1) != 1):
            raise SizingError("'mlp_only_layers' / 'decoder_sparse_step': dense layers between the experts are not "
                              "imported yet; every layer must be a mixture of experts", c.path)
        experts = ("num_local_experts", "block_sparse_moe") if c.family == "mixtral" else ("num_experts", "mlp")
        width = inter if c.family == "mixtral" else c.get("moe_intermediate_size", pos_int)
        # Mixtral always renormalises the top k; the Qwen MoE configs say (transformers' default: not)
        norm = True if c.family == "mixtral" else c.get("norm_topk_prob", boolean, False)
        block.append({"op": "mixture_of_experts", "name": experts[1], "intermediate_size": width,
                      "num_experts": c.get(experts[0], pos_int), "top_k": c.get("num_experts_per_tok", pos_int),
                      "norm_topk_prob": norm, **({} if c.family == "mixtral" else {"modules": dict(QWEN_EXPERTS)})})
        if c.family == "qwen2_moe":
            block += _shared_expert(c.get("shared_expert_intermediate_size", pos_int), hidden, act)
    else:
        mlp_bias = c.get("mlp_bias", boolean, False)
        block += _swiglu("post_attention_layernorm", inter, hidden, act, mlp_bias)
    block.append({"op": "add", "name": "mlp_add", "inputs": [block[-1]["name"], "attn_add"]})
    return _rms_decoder(c, hidden, vocab, eps, block)


def _phi3(c: Config) -> dict:
    """Phi-3 (Abdin et al. 2024, arXiv:2404.14219; transformers Phi3DecoderLayer): LLaMA's layer with fused
    projections: qkv_proj (heads + 2 kv heads of head_dim, no bias) split into q, k and v, and gate_up_proj
    (2 x intermediate) split into gate and up (``narrow`` views: the same params and MACs as separate
    projections, and LoRA sees the fused modules PEFT targets); partial rotary (``partial_rotary_factor``);
    dropout after each sublayer where the config has it; an untied lm_head unless the config ties it."""
    hidden = c.get("hidden_size", pos_int)
    h, kv, d = c.heads(hidden)
    eps = c.get("rms_norm_eps", pos_float, 1e-5)
    inter = c.get("intermediate_size", pos_int)
    rotary_dim = int(d * c.get("partial_rotary_factor", _fraction, 1.0))
    rot = {"rotary_dim": rotary_dim} if rotary_dim < d else {}
    resid = c.dropout("resid_pdrop")
    block = [{"op": "rmsnorm", "name": "input_layernorm", "eps": eps},
             {"op": "linear", "name": "qkv_proj", "out_features": (h + 2 * kv) * d, "bias": False},
             *_split("qkv_proj", ("q", h * d), ("k", kv * d), ("v", kv * d)),
             *([] if rotary_dim == 0 else [
                 {"op": "rotary_embedding", "name": "q_rotary", "num_heads": h, **rot, "inputs": ["q"]},
                 {"op": "rotary_embedding", "name": "k_rotary", "num_heads": kv, **rot, "inputs": ["k"]}]),
             {"op": "scaled_dot_product_attention", "name": "attn", "num_heads": h, "num_kv_heads": kv,
              "causal": True, "dropout": c.dropout("attention_dropout"),
              **({"window": _window(c)} if _window(c) else {}),
              "inputs": ["q", "k", "v"] if rotary_dim == 0 else ["q_rotary", "k_rotary", "v"]},
             {"op": "linear", "name": "o_proj", "out_features": hidden, "bias": False},
             *_dropout("resid_attn_dropout", resid)]
    block += [{"op": "add", "name": "attn_add", "inputs": [block[-1]["name"], "input"]},
              {"op": "rmsnorm", "name": "post_attention_layernorm", "eps": eps},
              {"op": "linear", "name": "gate_up_proj", "out_features": 2 * inter, "bias": False},
              *_split("gate_up_proj", ("gate", inter), ("up", inter)),
              {**c.activation("hidden_act", "silu"), "name": "act", "inputs": ["gate"]},
              {"op": "mul", "name": "gated", "inputs": ["act", "up"]},
              {"op": "linear", "name": "down_proj", "out_features": hidden, "bias": False},
              *_dropout("resid_mlp_dropout", resid)]
    block.append({"op": "add", "name": "mlp_add", "inputs": [block[-1]["name"], "attn_add"]})
    return _rms_decoder(c, hidden, c.get("vocab_size", pos_int), eps, block)


def _phi(c: Config) -> dict:
    """Phi-1/1.5/2 (transformers PhiDecoderLayer): one LayerNorm feeding attention and the MLP in parallel;
    biased q/k/v and dense, partial rotary (``partial_rotary_factor``), fc1 / gelu_new / fc2 with biases;
    residual = x + attention + MLP (each after resid_pdrop); a final LayerNorm and a biased lm_head."""
    hidden = c.get("hidden_size", pos_int)
    heads = c.heads(hidden)
    eps = c.get("layer_norm_eps", pos_float, 1e-5)
    vocab = c.get("vocab_size", pos_int)
    if c.get("qk_layernorm", boolean, False):
        raise SizingError("'qk_layernorm': true is not imported yet (no released Phi checkpoint uses it)", c.path)
    rotary_dim = int(heads[2] * c.get("partial_rotary_factor", _fraction, 0.5))
    resid = c.dropout("resid_pdrop")
    block = [{"op": "layernorm", "name": "input_layernorm", "eps": eps},
             *_rotary_attention("input_layernorm", hidden, heads, (True, True),
                                rotary_dim if rotary_dim < heads[2] else None, c.dropout("attention_dropout"),
                                ("q_proj", "k_proj", "v_proj", "dense")),
             *_dropout("attn_resid_dropout", resid)]
    attn_out = block[-1]["name"]
    block += [*_mlp("input_layernorm", hidden, c.get("intermediate_size", pos_int),
                    c.activation("hidden_act", "gelu_new"), True, ("fc1", "fc2")),
              *_dropout("mlp_resid_dropout", resid)]
    block.append({"op": "add", "name": "residual_add", "inputs": [attn_out, block[-1]["name"], "input"]})
    head = _head(c, "lm_head", vocab, True, "embed_tokens", False)
    embed = [{"op": "embedding", "name": "embed_tokens", "num_embeddings": vocab, "embedding_dim": hidden},
             *_dropout("embed_dropout", c.dropout("embd_pdrop"))]
    return _lm_spec(c, embed, block, c.get("num_hidden_layers", pos_int),
                    {"op": "layernorm", "name": "final_layernorm", "eps": eps}, head,
                    c.get("max_position_embeddings", pos_int))


def _falcon(c: Config) -> dict:
    """Falcon (Almazrouei et al. 2023, arXiv:2311.16867; transformers FalconDecoderLayer), both decoder
    architectures. Attention: one fused query_key_value projection split by views into q, k and v (the new
    architecture interleaves each kv group's queries, keys and values; views cost nothing either way), rotary on
    whole heads, causal attention, dense; k/v heads: ``num_kv_heads`` (new), 1 with ``multi_query``, else all.
    The MLP is dense_h_to_4h, gelu, dense_4h_to_h (``ffn_hidden_size``, default 4 x hidden); ``bias`` on every
    projection. Parallel layers (``parallel_attn`` or the new architecture): attention and MLP read LayerNorms of
    the same input (one norm, or ln_attn and ln_mlp when ``num_ln_in_parallel_attn`` is 2), output = x +
    attention + MLP; otherwise sequential with a post_attention_layernorm. ln_f; lm_head tied by default."""
    hidden = c.get("hidden_size", pos_int)
    heads = c.get("num_attention_heads", pos_int, None) or c.get("n_head", pos_int)
    layers = c.get("num_hidden_layers", pos_int, None) or c.get("n_layer", pos_int)
    if hidden % heads:
        raise SizingError(f"'hidden_size' {hidden} is not divisible by 'num_attention_heads' {heads}", c.path)
    if c.get("alibi", boolean, False):
        raise SizingError("'alibi': true (Falcon-RW) is not imported yet; rotary Falcon configs are", c.path)
    d = hidden // heads
    new_arch = c.get("new_decoder_architecture", boolean, False)
    kv = c.get("num_kv_heads", pos_int, heads) if new_arch else (1 if c.get("multi_query", boolean, True) else heads)
    if heads % kv:
        raise SizingError(f"'num_attention_heads' {heads} is not divisible by 'num_kv_heads' {kv}", c.path)
    eps = c.get("layer_norm_epsilon", pos_float, 1e-5)
    bias = c.get("bias", boolean, False)
    parallel = new_arch or c.get("parallel_attn", boolean, True)
    two_norms = new_arch and c.get("num_ln_in_parallel_attn", pos_int, 2) == 2
    drop = c.dropout("hidden_dropout")
    attn_norm = "ln_attn" if two_norms else "input_layernorm"
    block = [{"op": "layernorm", "name": attn_norm, "eps": eps},
             *([{"op": "layernorm", "name": "ln_mlp", "eps": eps, "inputs": ["input"]}] if two_norms else []),
             {"op": "linear", "name": "query_key_value", "out_features": (heads + 2 * kv) * d, "bias": bias,
              "inputs": [attn_norm]},
             *_split("query_key_value", ("query", heads * d), ("key", kv * d), ("value", kv * d)),
             {"op": "rotary_embedding", "name": "query_rotary", "num_heads": heads, "inputs": ["query"]},
             {"op": "rotary_embedding", "name": "key_rotary", "num_heads": kv, "inputs": ["key"]},
             {"op": "scaled_dot_product_attention", "name": "attn", "num_heads": heads, "num_kv_heads": kv,
              "causal": True, "dropout": c.dropout("attention_dropout"), "inputs": ["query_rotary", "key_rotary", "value"]},
             {"op": "linear", "name": "dense", "out_features": hidden, "bias": bias}]
    if parallel:
        mlp_in = "ln_mlp" if two_norms else attn_norm
    else:
        block += [*_dropout("attn_dropout", drop),
                  {"op": "add", "name": "attn_add", "inputs": ["attn_dropout" if drop else "dense", "input"]},
                  {"op": "layernorm", "name": "post_attention_layernorm", "eps": eps}]
        mlp_in = "post_attention_layernorm"
    block += [*_mlp(mlp_in, hidden, c.get("ffn_hidden_size", pos_int, 4 * hidden), c.activation("activation", "gelu"),
                    bias, ("dense_h_to_4h", "dense_4h_to_h")),
              *_dropout("mlp_dropout", drop)]
    residual = ["dense", "input"] if parallel else ["attn_add"]
    block.append({"op": "add", "name": "mlp_add", "inputs": [block[-1]["name"], *residual]})
    head = _head(c, "lm_head", c.get("vocab_size", pos_int), False, "word_embeddings", True)
    embed = [{"op": "embedding", "name": "word_embeddings", "num_embeddings": head["out_features"],
              "embedding_dim": hidden}]
    return _lm_spec(c, embed, block, layers, {"op": "layernorm", "name": "ln_f", "eps": eps}, head,
                    c.get("max_position_embeddings", pos_int, 2048))


def _olmo2(c: Config) -> dict:
    """OLMo 2 (Team OLMo 2024, arXiv:2501.00656; transformers Olmo2DecoderLayer): no norm before attention or
    the MLP; q_norm and k_norm (RMSNorm over the whole q and k projections) before the rotary; a norm on each
    sublayer's output before its residual add (post_attention_layernorm, post_feedforward_layernorm)."""
    hidden = c.get("hidden_size", pos_int)
    h, kv, d = c.heads(hidden)
    eps = c.get("rms_norm_eps", pos_float, 1e-6)
    vocab = c.get("vocab_size", pos_int)
    bias = c.get("attention_bias", boolean, False)
    inter = c.get("intermediate_size", pos_int)
    act = c.activation("hidden_act", "silu")
    block = [{"op": "linear", "name": "q_proj", "out_features": h * d, "bias": bias, "inputs": ["input"]},
             {"op": "linear", "name": "k_proj", "out_features": kv * d, "bias": bias, "inputs": ["input"]},
             {"op": "linear", "name": "v_proj", "out_features": kv * d, "bias": bias, "inputs": ["input"]},
             {"op": "rmsnorm", "name": "q_norm", "eps": eps, "inputs": ["q_proj"]},
             {"op": "rmsnorm", "name": "k_norm", "eps": eps, "inputs": ["k_proj"]},
             {"op": "rotary_embedding", "name": "q_rotary", "num_heads": h, "inputs": ["q_norm"]},
             {"op": "rotary_embedding", "name": "k_rotary", "num_heads": kv, "inputs": ["k_norm"]},
             {"op": "scaled_dot_product_attention", "name": "attn", "num_heads": h, "num_kv_heads": kv,
              "causal": True, "dropout": c.dropout("attention_dropout"), "inputs": ["q_rotary", "k_rotary", "v_proj"]},
             {"op": "linear", "name": "o_proj", "out_features": hidden, "bias": bias},
             {"op": "rmsnorm", "name": "post_attention_layernorm", "eps": eps},
             {"op": "add", "name": "attn_add", "inputs": ["post_attention_layernorm", "input"]},
             *_swiglu("attn_add", inter, hidden, act),
             {"op": "rmsnorm", "name": "post_feedforward_layernorm", "eps": eps},
             {"op": "add", "name": "mlp_add", "inputs": ["post_feedforward_layernorm", "attn_add"]}]
    return _rms_decoder(c, hidden, vocab, eps, block)


def _layer_kinds(c: Config, layers: int, default_sliding: Callable[[int], bool]) -> list[str]:
    """Each layer's attention, 'sliding' or 'full': the config's ``layer_types`` where it has them, else the
    family's rule (Gemma 2: even layers slide; Gemma 3: all but every ``sliding_window_pattern``-th)."""
    types = c.data.get("layer_types")
    if types is None:
        return ["sliding" if default_sliding(i) else "full" for i in range(layers)]
    if not isinstance(types, list) or len(types) != layers or any(
            t not in ("sliding_attention", "full_attention") for t in types):
        raise SizingError(f"'layer_types': a list of {layers} entries, each 'sliding_attention' or 'full_attention'",
                          c.path)
    return ["sliding" if t == "sliding_attention" else "full" for t in types]


def _gemma2(c: Config) -> dict:
    """Gemma 2 and Gemma 3 (text) (Gemma Team 2024, arXiv:2408.00118; 2025, arXiv:2503.19786; transformers
    Gemma2DecoderLayer, Gemma3DecoderLayer): Gemma's layer with a norm after each sublayer as well as before
    (input, post_attention, pre_feedforward, post_feedforward), local layers attending over a sliding window
    (``sliding_window``) and global ones over the whole sequence (Gemma 2 alternates, Gemma 3 keeps one global
    layer in ``sliding_window_pattern``), the attention scores soft-capped (``attn_logit_softcapping``: cap *
    tanh(s / cap)) and so the logits (``final_logit_softcapping``: a divide, tanh and multiply per logit after
    lm_head); Gemma 3 adds q_norm and k_norm over each head and drops the attention soft-capping."""
    hidden = c.get("hidden_size", pos_int)
    heads = c.heads(hidden)
    eps = c.get("rms_norm_eps", pos_float, 1e-6)
    layers = c.get("num_hidden_layers", pos_int)
    gemma3 = c.family == "gemma3_text"
    if gemma3:
        pattern = c.get("sliding_window_pattern", pos_int, 6)
        kinds = _layer_kinds(c, layers, lambda i: (i + 1) % pattern != 0)
    else:
        kinds = _layer_kinds(c, layers, lambda i: i % 2 == 0)
    window = c.get("sliding_window", pos_int, 4096)
    softcap = c.get("attn_logit_softcapping", pos_float, None if gemma3 else 50.0)
    bias = c.get("attention_bias", boolean, False)
    act = c.activation("hidden_activation", "gelu_pytorch_tanh")
    inter = c.get("intermediate_size", pos_int)

    def layer(w: int | None) -> list[dict]:
        return [{"op": "rmsnorm", "name": "input_layernorm", "eps": eps},
                *_rotary_attention("input_layernorm", hidden, heads, (bias, bias), None, c.dropout("attention_dropout"),
                                   ("q_proj", "k_proj", "v_proj", "o_proj"), eps if gemma3 else None, w, softcap),
                {"op": "rmsnorm", "name": "post_attention_layernorm", "eps": eps},
                {"op": "add", "name": "attn_add", "inputs": ["post_attention_layernorm", "input"]},
                {"op": "rmsnorm", "name": "pre_feedforward_layernorm", "eps": eps},
                *_swiglu("pre_feedforward_layernorm", inter, hidden, act),
                {"op": "rmsnorm", "name": "post_feedforward_layernorm", "eps": eps},
                {"op": "add", "name": "mlp_add", "inputs": ["post_feedforward_layernorm", "attn_add"]}]

    final_cap = c.get("final_logit_softcapping", pos_float, None if gemma3 else 30.0)
    tail = () if final_cap is None else (
        {"op": "pointwise", "name": "logits_scaled", "fn": "mul_scalar"}, {"op": "tanh", "name": "logits_tanh"},
        {"op": "pointwise", "name": "logits_capped", "fn": "mul_scalar"})
    blocks = {kind: layer(window if kind == "sliding" else None) for kind in sorted(set(kinds))}
    return _rms_decoder(c, hidden, c.get("vocab_size", pos_int), eps, blocks, kinds, tail)


def _mla(c: Config, hidden: int, eps: float) -> list[dict]:
    """DeepSeek's multi-head latent attention (DeepSeek-AI 2024, arXiv:2405.04434, section 2.1; transformers
    DeepseekV3Attention): queries through a low-rank q_a_proj (``q_lora_rank``; RMSNorm) and q_b_proj, or one
    q_proj without it; keys and values through one kv_a_proj_with_mqa to the latent (``kv_lora_rank``, RMSNorm)
    plus a rotary key of ``qk_rope_head_dim`` shared by every head, and kv_b_proj up to each head's no-rope key
    (``qk_nope_head_dim``) and value (``v_head_dim``). Each head's query and key are its no-rope part and its
    rotary part side by side (views, a concat and the shared key expanded over the heads); attention of
    head_dim nope + rope with values of v_head_dim; o_proj."""
    h = c.get("num_attention_heads", pos_int)
    nope, rope, dv = (c.get(k, pos_int) for k in ("qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"))
    latent = c.get("kv_lora_rank", pos_int)
    q_rank = c.get("q_lora_rank", pos_int, None)
    bias = c.get("attention_bias", boolean, False)
    d = nope + rope
    norm = "input_layernorm"
    query = ([{"op": "linear", "name": "q_a_proj", "out_features": q_rank, "bias": bias, "inputs": [norm]},
              {"op": "rmsnorm", "name": "q_a_layernorm", "eps": eps},
              {"op": "linear", "name": "q_b_proj", "out_features": h * d, "bias": False}] if q_rank else
             [{"op": "linear", "name": "q_proj", "out_features": h * d, "bias": False, "inputs": [norm]}])
    return [*query,
            {"op": "reshape", "name": "q_heads", "shape": [-1, h, d]},
            {"op": "narrow", "name": "q_nope", "dim": -1, "start": 0, "length": nope},
            {"op": "narrow", "name": "q_pe", "inputs": ["q_heads"], "dim": -1, "start": nope, "length": rope},
            {"op": "reshape", "name": "q_pe_flat", "shape": [-1, h * rope]},
            {"op": "rotary_embedding", "name": "q_rotary", "num_heads": h},
            {"op": "reshape", "name": "q_rotary_heads", "shape": [-1, h, rope]},
            {"op": "concat", "name": "q_full", "dim": -1, "inputs": ["q_nope", "q_rotary_heads"]},
            {"op": "reshape", "name": "query", "shape": [-1, h * d]},
            {"op": "linear", "name": "kv_a_proj_with_mqa", "out_features": latent + rope, "bias": bias,
             "inputs": [norm]},
            *_split("kv_a_proj_with_mqa", ("compressed_kv", latent), ("k_pe", rope)),
            {"op": "rmsnorm", "name": "kv_a_layernorm", "eps": eps, "inputs": ["compressed_kv"]},
            {"op": "linear", "name": "kv_b_proj", "out_features": h * (nope + dv), "bias": False},
            {"op": "reshape", "name": "kv_heads", "shape": [-1, h, nope + dv]},
            {"op": "narrow", "name": "k_nope", "dim": -1, "start": 0, "length": nope},
            {"op": "narrow", "name": "v_heads", "inputs": ["kv_heads"], "dim": -1, "start": nope, "length": dv},
            {"op": "reshape", "name": "value", "shape": [-1, h * dv]},
            {"op": "rotary_embedding", "name": "k_rotary", "num_heads": 1, "inputs": ["k_pe"]},
            {"op": "reshape", "name": "k_rotary_head", "shape": [-1, 1, rope]},
            {"op": "expand", "name": "k_shared", "shape": [-1, h, -1]},
            {"op": "concat", "name": "k_full", "dim": -1, "inputs": ["k_nope", "k_shared"]},
            {"op": "reshape", "name": "key", "shape": [-1, h * d]},
            {"op": "scaled_dot_product_attention", "name": "attn", "num_heads": h, "causal": True,
             "dropout": c.dropout("attention_dropout"), "inputs": ["query", "key", "value"]},
            {"op": "linear", "name": "o_proj", "out_features": hidden, "bias": bias}]


ROUTERS = {"greedy", "group_limited_greedy", "noaux_tc"}


def _deepseek_moe(c: Config, hidden: int, act: dict) -> list[dict]:
    """DeepSeekMoE (Dai et al. 2024, arXiv:2401.06066; V2 and V3 reports): ``n_routed_experts`` SwiGLU experts of
    ``moe_intermediate_size``, ``num_experts_per_tok`` per token, and ``n_shared_experts`` always-on experts
    (one SwiGLU of n_shared x moe_intermediate_size, as transformers builds them), added. The router
    (``topk_method``): greedy top k of the softmax; V2's group_limited_greedy keeps the ``topk_group`` of
    ``n_group`` groups with the best expert; V3's noaux_tc scores by sigmoid, adds the correction bias (a
    buffer) for the choice and ranks groups by their two best. The weights are renormalised with
    ``norm_topk_prob`` and scaled by ``routed_scaling_factor`` (V2 only when not renormalised, V3 always)."""
    method = c.get("topk_method", str, "greedy")
    if method not in ROUTERS:
        raise SizingError(f"'topk_method': one of {', '.join(sorted(ROUTERS))}, got {method!r}", c.path)
    scoring = c.get("scoring_func", str, "sigmoid" if method == "noaux_tc" else "softmax")
    if scoring not in ("softmax", "sigmoid"):
        raise SizingError(f"'scoring_func': 'softmax' or 'sigmoid', got {scoring!r}", c.path)
    norm = c.get("norm_topk_prob", boolean, False)
    factor = c.get("routed_scaling_factor", pos_float, 1.0)
    grouped = method != "greedy"
    moe = {"op": "mixture_of_experts", "name": "mlp", "num_experts": c.get("n_routed_experts", pos_int),
           "top_k": c.get("num_experts_per_tok", pos_int), "intermediate_size": c.get("moe_intermediate_size", pos_int),
           "norm_topk_prob": norm, "scoring": scoring, "score_bias": method == "noaux_tc",
           "n_group": c.get("n_group", pos_int, 1) if grouped else 1,
           "topk_group": c.get("topk_group", pos_int, 1) if grouped else 1, "group_top": 2 if method == "noaux_tc" else 1,
           "routed_scaling_factor": factor if (method == "noaux_tc" or not norm) else 1.0,
           "modules": {**QWEN_EXPERTS, "gate": None}, "inputs": ["post_attention_layernorm"]}
    shared = c.get("n_shared_experts", any_int, 0)
    if shared < 0:
        raise SizingError(f"'n_shared_experts': an integer >= 0, got {shared}", c.path)
    if not shared:
        return [moe]
    width = shared * moe["intermediate_size"]
    return [moe, *_swiglu("post_attention_layernorm", width, hidden, act, prefix="shared_experts_",
                          module="shared_experts"),
            {"op": "add", "name": "experts_sum", "inputs": ["mlp", "shared_experts_down_proj"]}]


def _mtp_params(c: Config, hidden: int, moe_layer: list[dict]) -> int:
    """Params of DeepSeek-V3's multi-token-prediction modules (arXiv:2412.19437, section 2.2), counted apart as
    the published 671B does: per module two RMSNorms (enorm, hnorm) and the projection M (hidden x 2 hidden)
    before one decoder layer, and the shared head's RMSNorm; the embedding and output head are the main model's
    (the checkpoint stores copies of them, 2 x vocab x hidden more)."""
    spec = {"input": [2, hidden], "defaults": {"batch": 1}, "blocks": {"layer": {"layers": moe_layer}},
            "layers": [{"block": "layer", "name": "mtp_layer"}]}
    rows, _ = count(build(spec, {}, c.path))            # the layer's params as the graph counts them
    return 3 * hidden + 2 * hidden * hidden + sum(r.cost.params for r in rows)


def _deepseek(c: Config) -> dict:
    """DeepSeek-V2 and V3 (arXiv:2405.04434, arXiv:2412.19437; transformers DeepseekV2/V3DecoderLayer): LLaMA's
    frame (RMSNorms, SwiGLU, an untied lm_head) with multi-head latent attention (_mla), dense MLPs in the first
    ``first_k_dense_replace`` layers and DeepSeekMoE (_deepseek_moe) in every ``moe_layer_freq``-th layer after;
    V3's multi-token-prediction modules (``num_nextn_predict_layers``) are reported apart, not counted."""
    hidden = c.get("hidden_size", pos_int)
    eps = c.get("rms_norm_eps", pos_float, 1e-6)
    layers = c.get("num_hidden_layers", pos_int)
    act = c.activation("hidden_act", "silu")
    first_dense = c.get("first_k_dense_replace", any_int, 0)
    freq = c.get("moe_layer_freq", pos_int, 1)
    routed = c.data.get("n_routed_experts") is not None
    attention = [{"op": "rmsnorm", "name": "input_layernorm", "eps": eps}, *_mla(c, hidden, eps),
                 {"op": "add", "name": "attn_add", "inputs": ["o_proj", "input"]},
                 {"op": "rmsnorm", "name": "post_attention_layernorm", "eps": eps}]
    dense = [*attention, *_swiglu("post_attention_layernorm", c.get("intermediate_size", pos_int), hidden, act)]
    dense.append({"op": "add", "name": "mlp_add", "inputs": ["down_proj", "attn_add"]})
    kinds = ["moe_layer" if routed and i >= first_dense and i % freq == 0 else "dense_layer" for i in range(layers)]
    blocks = {"dense_layer": dense}
    if "moe_layer" in kinds:
        moe = [*attention, *_deepseek_moe(c, hidden, act)]
        moe.append({"op": "add", "name": "mlp_add", "inputs": [moe[-1]["name"], "attn_add"]})
        blocks["moe_layer"] = moe
    blocks = {k: v for k, v in blocks.items() if k in kinds}
    spec = _rms_decoder(c, hidden, c.get("vocab_size", pos_int), eps, blocks, kinds)
    mtp = c.get("num_nextn_predict_layers", any_int, 0)
    if mtp > 0:
        per = _mtp_params(c, hidden, blocks[kinds[-1]])
        vocab = c.get("vocab_size", pos_int)
        c.notes.append(f"multi-token prediction: {mtp} module(s) of {per:,} params not counted (DeepSeek's published "
                       f"total leaves them out; the checkpoint adds {mtp * (per + 2 * vocab * hidden):,} with its "
                       f"copies of the embedding and head); training with them adds their forward and backward")
    return spec


def _gpt2(c: Config) -> dict:
    hidden = c.get("n_embd", pos_int)
    heads = c.get("n_head", pos_int)
    eps = c.get("layer_norm_epsilon", pos_float, 1e-5)
    vocab, positions = c.get("vocab_size", pos_int), c.get("n_positions", pos_int)
    resid = c.dropout("resid_pdrop")
    block = [{"op": "layernorm", "name": "ln_1", "eps": eps},
             {"op": "multihead_attention", "name": "attn", "num_heads": heads, "causal": True,
              "dropout": c.dropout("attn_pdrop")},
             *_dropout("attn_dropout", resid),
             {"op": "add", "name": "attn_add", "inputs": ["attn_dropout" if resid else "attn", "input"]},
             {"op": "layernorm", "name": "ln_2", "eps": eps},
             *_mlp("ln_2", hidden, c.get("n_inner", pos_int, 4 * hidden),
                   c.activation("activation_function", "gelu_new"), True, ("c_fc", "c_proj")),
             *_dropout("mlp_dropout", resid)]
    block.append({"op": "add", "name": "mlp_add", "inputs": [block[-1]["name"], "attn_add"]})
    head = _head(c, "lm_head", vocab, False, "wte", True)
    embed = [{"op": "embedding", "name": "wte", "num_embeddings": vocab, "embedding_dim": hidden},
             {"op": "positional_embedding", "name": "wpe", "num_embeddings": positions},
             *_dropout("drop", c.dropout("embd_pdrop"))]
    return _lm_spec(c, embed, block, c.get("n_layer", pos_int), {"op": "layernorm", "name": "ln_f", "eps": eps},
                    head, positions)


def _gpt_neox(c: Config) -> dict:
    hidden = c.get("hidden_size", pos_int)
    heads = c.heads(hidden)
    eps = c.get("layer_norm_eps", pos_float, 1e-5)
    vocab = c.get("vocab_size", pos_int)
    bias = c.get("attention_bias", boolean, True)
    rotary_dim = int(heads[2] * c.get("rotary_pct", _fraction, c.get("partial_rotary_factor", _fraction, 1.0)))
    hidden_drop = c.dropout("hidden_dropout")
    width = heads[0] * heads[2]
    attention = _rotary_attention("input_layernorm", hidden, heads, (bias, bias),
                                  rotary_dim if rotary_dim < heads[2] else None, c.dropout("attention_dropout"),
                                  ("query", "key", "value", "dense"))
    block = [{"op": "layernorm", "name": "input_layernorm", "eps": eps},
             {"op": "linear", "name": "query_key_value", "out_features": 3 * width, "bias": bias},
             *_split("query_key_value", ("query", width), ("key", width), ("value", width)),
             *attention[3:],                             # rotary, attention and dense on the three views
             *_dropout("post_attention_dropout", hidden_drop)]
    attn_out = block[-1]["name"]
    parallel = c.get("use_parallel_residual", boolean, True)
    if not parallel:
        block.append({"op": "add", "name": "attn_add", "inputs": [attn_out, "input"]})
    block += [{"op": "layernorm", "name": "post_attention_layernorm", "eps": eps,
               "inputs": ["input" if parallel else "attn_add"]},
              *_mlp("post_attention_layernorm", hidden, c.get("intermediate_size", pos_int),
                    c.activation("hidden_act", "gelu"), True, ("dense_h_to_4h", "dense_4h_to_h")),
              *_dropout("post_mlp_dropout", hidden_drop)]
    residual = [attn_out, "input"] if parallel else ["attn_add"]
    block.append({"op": "add", "name": "mlp_add", "inputs": [block[-1]["name"], *residual]})
    head = _head(c, "embed_out", vocab, False, "embed_in", False)
    embed = [{"op": "embedding", "name": "embed_in", "num_embeddings": vocab, "embedding_dim": hidden},
             *_dropout("emb_dropout", hidden_drop)]
    return _lm_spec(c, embed, block, c.get("num_hidden_layers", pos_int),
                    {"op": "layernorm", "name": "final_layer_norm", "eps": eps}, head,
                    c.get("max_position_embeddings", pos_int))


def _bert(c: Config) -> dict:
    hidden = c.get("hidden_size", pos_int)
    eps = c.get("layer_norm_eps", pos_float, 1e-12)
    drop = c.dropout("hidden_dropout_prob")
    block = [{"op": "multihead_attention", "name": "attention", "num_heads": c.get("num_attention_heads", pos_int),
              "dropout": c.dropout("attention_probs_dropout_prob"), "separate_qkv": True},
             *_dropout("attention_dropout", drop),
             {"op": "add", "name": "attention_add", "inputs": ["attention_dropout" if drop else "attention", "input"]},
             {"op": "layernorm", "name": "attention_ln", "eps": eps},
             *_mlp("attention_ln", hidden, c.get("intermediate_size", pos_int), c.activation("hidden_act", "gelu"),
                   True, ("intermediate", "output")),
             *_dropout("output_dropout", drop)]
    block += [{"op": "add", "name": "output_add", "inputs": [block[-1]["name"], "attention_ln"]},
              {"op": "layernorm", "name": "output_ln", "eps": eps}]
    positions = c.get("max_position_embeddings", pos_int)
    pad = c.get("pad_token_id", any_int, 0)
    layers = [{"op": "embedding", "name": "word_embeddings", "num_embeddings": c.get("vocab_size", pos_int),
               "embedding_dim": hidden, "padding_idx": pad},
              {"op": "positional_embedding", "name": "position_embeddings", "num_embeddings": positions},
              {"op": "token_type_embedding", "name": "token_type_embeddings",
               "num_embeddings": c.get("type_vocab_size", pos_int)},
              {"op": "layernorm", "name": "embeddings_ln", "eps": eps},
              *_dropout("embeddings_dropout", drop),
              {"block": "encoder_layer", "name": "encoder", "repeat": c.get("num_hidden_layers", pos_int)},
              {"op": "select", "name": "cls_token", "dim": 1, "index": 0},
              {"op": "linear", "name": "pooler", "out_features": hidden},
              {"op": "tanh", "name": "pooler_tanh"}]
    return {"name": _name(c), "input": {"shape": ["$seq_len"], "dtype": "int64"}, "defaults": _defaults(c, positions),
            "blocks": {"encoder_layer": {"layers": block}}, "layers": layers}


FAMILIES: dict[str, Callable[[Config], dict]] = {
    "llama": _llama, "mistral": _llama, "qwen2": _llama, "mixtral": _llama, "qwen2_moe": _llama, "qwen3": _llama,
    "qwen3_moe": _llama,
    "gemma": _llama, "gemma2": _gemma2, "gemma3_text": _gemma2, "deepseek_v2": _deepseek, "deepseek_v3": _deepseek,
    "olmo2": _olmo2, "falcon": _falcon, "phi3": _phi3, "phi": _phi, "gpt2": _gpt2, "gpt_neox": _gpt_neox, "bert": _bert,
}


TORCH_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def _defaults(c: Config, seq_len: int) -> dict:
    """The spec's defaults: the sequence length, and the precision the checkpoint is stored in (``torch_dtype``;
    fp32 when the config names none)."""
    dtype = TORCH_DTYPES.get(c.data.get("torch_dtype"))
    return {"seq_len": seq_len, **({"dtype": dtype} if dtype else {})}


def _name(c: Config) -> str:
    """The model's name: the config's _name_or_path, else the folder of a config.json, else the file's stem."""
    given = c.data.get("_name_or_path")
    if isinstance(given, str) and given and given.isprintable():
        return given
    folder, base = os.path.split(os.path.abspath(c.path))
    return os.path.basename(folder) if base == "config.json" and folder else os.path.splitext(base)[0]


# each family's module paths as transformers 4.x names them, which --lora-targets matches: the decoder layers'
# nn.ModuleList, and a layer's modules by our layer names (a name not listed is the module's path as it stands:
# the mixture of experts, 'mlp' or Mixtral's 'block_sparse_moe'); the top-level layers keep their names (lm_head)
# but BERT's pooler (_TOP_PATHS)
_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa",
              "kv_b_proj")
_MLP = ("gate_proj", "up_proj", "down_proj", "gate_up_proj", "shared_expert", "shared_expert_gate", "shared_experts",
        "fc1", "fc2")
_LLAMA_PATHS = {**{m: f"self_attn.{m}" for m in _ATTENTION}, **{m: f"mlp.{m}" for m in _MLP}}
_FALCON_PATHS = {"query_key_value": "self_attention.query_key_value", "dense": "self_attention.dense",
                 "dense_h_to_4h": "mlp.dense_h_to_4h", "dense_4h_to_h": "mlp.dense_4h_to_h"}
MODULE_PATHS: dict[str, tuple[str, dict]] = {
    "gpt2": ("transformer.h", {"c_fc": "mlp.c_fc", "c_proj": "mlp.c_proj"}),
    "gpt_neox": ("gpt_neox.layers", {"query_key_value": "attention.query_key_value", "dense": "attention.dense",
                                     "dense_h_to_4h": "mlp.dense_h_to_4h", "dense_4h_to_h": "mlp.dense_4h_to_h"}),
    "bert": ("encoder.layer", {"intermediate": "intermediate.dense", "output": "output.dense"}),
    "falcon": ("transformer.h", _FALCON_PATHS),
    "phi": ("model.layers", {**_LLAMA_PATHS, "dense": "self_attn.dense"}),
}
_TOP_PATHS = {"pooler": "pooler.dense"}


def _module_paths(spec: dict, family: str):
    """Give each linear layer and mixture of experts of ``spec`` its module path (``module``) inside its decoder
    layer, each use of a decoder layer its nn.ModuleList (copies numbered from 0 across the uses of one list, as
    model.layers.N), and BERT's pooler its dense: the full names PEFT's target_modules match."""
    prefix, paths = MODULE_PATHS.get(family, ("model.layers", _LLAMA_PATHS))
    for block in spec["blocks"].values():
        for item in block["layers"]:
            if item.get("op") in ("linear", "mixture_of_experts"):
                own = item.get("module", item["name"])
                head, _, rest = own.partition(".")
                item["module"] = paths.get(own) or (f"{paths[head]}.{rest}" if head in paths and rest else own)
    for item in spec["layers"]:
        if "block" in item:
            item["module"] = prefix
        elif item.get("name") in _TOP_PATHS:
            item["module"] = _TOP_PATHS[item["name"]]


def spec_from_config(data: Any, path: str) -> Loaded:
    """Spec data of a parsed config.json, with what the import leaves out as warnings. Errors name the key, or
    the supported families."""
    supported = ", ".join(sorted(FAMILIES))
    if not isinstance(data, dict):
        raise SizingError("a config.json is a JSON object with 'model_type'", path)
    family = data.get("model_type")
    if family is None:
        raise SizingError(f"missing key 'model_type'; not a Hugging Face config.json? (supported: {supported})", path)
    if not isinstance(family, str) or family not in FAMILIES:
        raise SizingError(f"model_type {family!r} is not supported (supported: {supported})", path)
    c = Config(data, path, family)
    spec = FAMILIES[family](c)
    _module_paths(spec, family)
    return Loaded(spec, warnings=tuple(c.notes), origin=f"Hugging Face config, model_type {family}")


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list) -> dict:
    """A JSON object whose keys are unique: json would keep the last of a repeated key silently."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def load(path: str) -> Loaded:
    """Spec data of a local config.json file (a key given twice is an error, not the last one silently)."""
    raw = read_bounded(path, MAX_FILE_BYTES, "a config.json")
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as e:
        raise SizingError(f"not UTF-8 text (byte {e.start})", path) from None
    except json.JSONDecodeError as e:
        raise SizingError(f"invalid JSON: {e.msg} (column {e.colno})", path, e.lineno) from None
    except RecursionError:
        raise SizingError("invalid JSON: nested too deeply", path) from None
    except _DuplicateKey as e:
        raise SizingError(f"key '{e}' is given twice (each key once)", path) from None
    except ValueError as e:             # an integer past Python's 4300-digit limit
        raise SizingError(f"invalid JSON: {str(e).split(';')[0]}", path) from None
    return spec_from_config(data, path)
