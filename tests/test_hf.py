"""Hugging Face config.json import, the transformer ops it uses, and the language-model figures.

Independent routes:
- params equal the released checkpoints' ``num_parameters()``, published figures found outside this code
  (sources per model below);
- GPT-2 and BERT configs give exactly the counts of the hand-written zoo specs (models/*.yaml);
- forward MACs equal closed forms written here per token and per token pair, not through the op formulas;
- rotary FLOPs are tallied by a counting float running the rotation; scaled_dot_product_attention plus four
  linear projections equals multihead_attention; mixture-of-experts MACs equal a brute-force routing of random
  tokens to their top-k experts;
- the emitted YAML, loaded back, gives identical counts;
- KV cache bytes follow the vLLM paper's worked formula; decode and prefill agree with direct counts.
"""
from __future__ import annotations

import json
import math
import random
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

import sizing
from sizing.cli import main
from sizing.model.cost import Cost
from sizing.common.errors import SizingError
from sizing.model.lm import figures, fit_quadratic
from sizing.model.ops import REGISTRY, Call
from test_ops import F, Tally, covers, spec_rows

HF = Path(__file__).resolve().parent / "data" / "hf"

# config file: (published num_parameters(), where it is published)
PUBLISHED_PARAMS = {
    "gpt2.json": (124_439_808, "GPT2LMHeadModel.from_pretrained('gpt2').num_parameters(), lm_head tied"),
    "bert-base-uncased.json": (109_482_240, "BertModel.from_pretrained('bert-base-uncased').num_parameters() "
                                            "(with the pooler)"),
    "tinyllama-1.1b.json": (1_100_048_384, "TinyLlama/TinyLlama-1.1B: sum(p.numel() for p in model.parameters()), "
                                           "llama.cpp n_params"),
    "llama-2-7b.json": (6_738_415_616, "meta-llama/Llama-2-7b-hf: PEFT 'all params: 6738415616', KerasHub llama_7b_en"),
    "mistral-7b-v0.1.json": (7_241_732_096, "mistralai/Mistral-7B-v0.1: GGUF general.parameter_count"),
    "mixtral-8x7b-v0.1.json": (46_702_792_704, "mistralai/Mixtral-8x7B-v0.1: KerasHub mixtral_8_7b_en params, "
                                               "safetensors total"),
    "qwen2.5-0.5b.json": (494_032_768, "Qwen/Qwen2.5-0.5B: Qwen2ForCausalLM total parameters, GGUF n_params"),
    "pythia-160m.json": (162_322_944, "EleutherAI/pythia-160m: GPTNeoXForCausalLM num_parameters()"),
}


def est(name: str, **sizes) -> sizing.Estimate:
    return sizing.estimate(HF / name, **sizes)


def counts(e: sizing.Estimate) -> dict:
    """Every figure of an estimate but where it came from."""
    d = e.to_dict()
    for key in ("model", "source", "warnings"):
        d.pop(key)
    for layer in d["layers"]:
        layer.pop("name")
    return d


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_params_equal_released_checkpoints(name):
    published, source = PUBLISHED_PARAMS[name]
    assert est(name, seq_len=8).totals.params == published, source


def test_mixtral_active_params():
    # 2 of 8 experts per token: the 6 unused SwiGLU experts (3 x 4096 x 14336 each) of all 32 layers drop out;
    # "13B active parameters" (Jiang et al. 2024, arXiv:2401.04088, abstract).
    e = est("mixtral-8x7b-v0.1.json", seq_len=8)
    lm = figures(e, lambda t: est("mixtral-8x7b-v0.1.json", seq_len=t, batch=1).totals.flops)
    assert lm.active_params == 46_702_792_704 - 6 * 3 * 4096 * 14336 * 32 == 12_879_925_248
    moe = next(r for r in e.layers if r.node.op == "mixture_of_experts")
    assert "352354304 of 1409318912 params active" in moe.note


@pytest.mark.parametrize("config,zoo,seq_len", [("gpt2.json", "gpt2_small", 32),
                                                ("bert-base-uncased.json", "bert_base", 24)])
def test_config_counts_equal_the_zoo_spec(config, zoo, seq_len):
    a, b = est(config, seq_len=seq_len, batch=2), sizing.estimate(zoo, seq_len=seq_len, batch=2)
    assert counts(a) == counts(b)


# ---------------------------------------------------------------- closed forms, by hand

def llama_macs(t, layers, hidden, heads, kv, inter, vocab, experts=None) -> int:
    """Per token: q, o hidden^2 each, k, v hidden * kv * d each, a SwiGLU MLP 3 * hidden * inter (or the router
    and top-k of them), the lm_head; per token pair: q k^T and P v, heads * d each."""
    d = hidden // heads
    mlp = 3 * hidden * inter if experts is None else hidden * experts[0] + experts[1] * 3 * hidden * inter
    per_token = layers * (2 * hidden * hidden + 2 * hidden * kv * d + mlp) + hidden * vocab
    return t * per_token + layers * 2 * heads * d * t * t


@pytest.mark.parametrize("name,args", [
    ("tinyllama-1.1b.json", (22, 2048, 32, 4, 5632, 32000)),
    ("llama-2-7b.json", (32, 4096, 32, 32, 11008, 32000)),
    ("mistral-7b-v0.1.json", (32, 4096, 32, 8, 14336, 32000)),
    ("qwen2.5-0.5b.json", (24, 896, 14, 2, 4864, 151936)),
])
def test_llama_family_macs_closed_form(name, args):
    assert est(name, seq_len=96).totals.macs == llama_macs(96, *args)


def test_mixtral_macs_count_active_experts_only():
    assert est("mixtral-8x7b-v0.1.json", seq_len=40).totals.macs == llama_macs(40, 32, 4096, 32, 8, 14336, 32000,
                                                                                experts=(8, 2))


def test_pythia_macs_closed_form():
    # GPT-NeoX: fused q, k, v (3 hidden^2), dense hidden^2, MLP 2 * 4 hidden^2, untied embed_out; rotary makes
    # no products
    t, layers, hidden, vocab = 50, 12, 768, 50304
    per_token = layers * (4 * hidden * hidden + 2 * hidden * 3072) + hidden * vocab
    assert est("pythia-160m.json", seq_len=t).totals.macs == t * per_token + layers * 2 * hidden * t * t


def test_pythia_rotates_a_quarter_of_each_head():
    rotary = [r for r in est("pythia-160m.json", seq_len=10).layers if r.node.op == "rotary_embedding"]
    assert {r.node.kwargs["rotary_dim"] for r in rotary} == {16}                  # 64 * rotary_pct 0.25
    assert sum(r.cost.flops for r in rotary) == 12 * 2 * 10 * 12 * 16 * 3          # q and k, 12 heads each


# ---------------------------------------------------------------- the new ops, against other routes

@covers("rotary_embedding")
def test_rotary_flops_tallied_by_a_counting_float():
    heads, d, r, t = 2, 8, 4, 3
    tally, back = Tally(), Tally()
    for pos in range(t):
        for head in range(heads):
            for i in range(r // 2):                     # pairs (i, i + r/2), as rotate_half pairs them
                theta = pos * 10000 ** (-2 * i / r)
                c, s = math.cos(theta), math.sin(theta)  # plain floats: constants are free
                x1, x2 = F(1.0, tally), F(2.0, tally)
                x1 * c - x2 * s, x2 * c + x1 * s        # forward rotation
                g1, g2 = F(1.0, back), F(2.0, back)
                g1 * c + g2 * s, g2 * c - g1 * s        # backward: the inverse rotation
    row = spec_rows([t, heads * d], [{"op": "layernorm", "name": "pre"},
                                     {"op": "rotary_embedding", "name": "x", "num_heads": heads, "rotary_dim": r}],
                    batch=1)["x"]
    assert (row.cost.flops, row.cost.backward_flops, row.cost.params, row.cost.macs) == (tally.n, back.n, 0, 0)


def _cost(op, shapes, grads, **args) -> Cost:
    """The cost of one op on concrete shapes (fp32), every input needing a gradient as ``grads`` says."""
    opdef = REGISTRY[op]
    full = {a.name: a.check(args.get(a.name, a.default)) for a in opdef.args}
    weights = opdef.weights(full, shapes)
    out = opdef.shape(full, shapes)
    elems = sum(math.prod(s) for s in weights.values())
    return opdef.cost(Call(full, shapes, out, grads, bool(weights), 4, elems))


@covers("scaled_dot_product_attention")
@pytest.mark.parametrize("heads,kv,causal,dropout", [(4, 4, False, 0.0), (4, 2, True, 0.0), (6, 1, True, 0.1)])
def test_sdpa_plus_projections_equals_multihead_attention(heads, kv, causal, dropout):
    b, t, e = 2, 5, 24
    d = e // heads
    mha = _cost("multihead_attention", ((b, t, e),), (True,), num_heads=heads, num_kv_heads=kv, causal=causal,
                dropout=dropout, bias=False)
    core = _cost("scaled_dot_product_attention", ((b, t, e), (b, t, kv * d), (b, t, kv * d)), (True,) * 3,
                 num_heads=heads, num_kv_heads=kv, causal=causal, dropout=dropout)
    projections = [_cost("linear", ((b, t, e),), (True,), out_features=n, bias=False) for n in (e, kv * d, kv * d)]
    out_proj = _cost("linear", ((b, t, e),), (True,), out_features=e, bias=False)
    parts = [core, out_proj, *projections]
    assert mha.macs == sum(p.macs for p in parts)
    assert mha.flops == sum(p.flops for p in parts)
    assert mha.backward_flops == sum(p.backward_flops for p in parts)
    # kept: multihead_attention keeps q, k, v and the probabilities; here q, k, v are the core's inputs
    assert mha.saved_bytes == core.saved_bytes + 4 * b * t * (e + 2 * kv * d)


def test_sdpa_backward_only_for_inputs_that_need_it():
    b, t, e, h = 1, 4, 8, 2
    shapes = ((b, t, e),) * 3
    full = _cost("scaled_dot_product_attention", shapes, (True,) * 3, num_heads=h)
    only_v = _cost("scaled_dot_product_attention", shapes, (False, False, True), num_heads=h)
    nothing = _cost("scaled_dot_product_attention", shapes, (False,) * 3, num_heads=h)
    scores, d = b * h * t * t, e // h
    assert only_v.backward_flops == 2 * scores * d                           # dV = P^T dO
    assert full.backward_flops == 8 * scores * d + 5 * scores                 # + dP, softmax 4, scale 1, dQ, dK
    assert nothing.backward_flops == 0


@covers("mixture_of_experts")
def test_moe_macs_equal_brute_force_routing():
    # route random tokens to their top-k experts and count each expert's three products on the tokens it got
    rng = random.Random(0)
    b, t, e, f, n, k = 3, 7, 8, 6, 5, 2
    expert_macs = router_macs = 0
    for _ in range(b * t):
        logits = [rng.gauss(0, 1) for _ in range(n)]
        router_macs += n * e
        chosen = sorted(range(n), key=lambda j: -logits[j])[:k]
        for _ in chosen:
            expert_macs += f * e + f * e + e * f               # w1 x, w3 x, w2 h
    row = spec_rows([t, e], [{"op": "mixture_of_experts", "name": "x", "num_experts": n, "top_k": k,
                              "intermediate_size": f}], batch=b)["x"]
    assert row.cost.macs == router_macs + expert_macs
    assert row.cost.params == n * e + n * 3 * e * f


def test_moe_with_one_expert_is_a_swiglu_mlp_plus_a_router():
    b, t, e, f = 2, 3, 8, 6
    moe = _cost("mixture_of_experts", ((b, t, e),), (True,), num_experts=1, top_k=1, intermediate_size=f)
    rows = spec_rows([t, e], [{"op": "layernorm", "name": "pre"},
                              {"op": "linear", "name": "gate", "out_features": f, "bias": False},
                              {"op": "linear", "name": "up", "out_features": f, "bias": False, "inputs": ["pre"]},
                              {"op": "silu", "name": "act", "inputs": ["gate"]},
                              {"op": "mul", "name": "h", "inputs": ["act", "up"]},
                              {"op": "linear", "name": "down", "out_features": e, "bias": False}], batch=b)
    mlp = sum((rows[n].cost for n in ("gate", "up", "act", "h", "down")), Cost())
    tokens = b * t
    # router: e MACs per token; softmax over 1 logit 5, renormalise 1, weight the output e
    assert moe.macs == mlp.macs + tokens * e
    assert moe.flops == mlp.flops + tokens * (2 * e + 5 + 1 + e)


def test_moe_refuses_more_chosen_than_experts():
    with pytest.raises(SizingError, match="top_k 3 is more than num_experts 2"):
        spec_rows([4, 8], [{"op": "mixture_of_experts", "name": "x", "num_experts": 2, "top_k": 3,
                            "intermediate_size": 4}])


# ---------------------------------------------------------------- the two routes: config.json and emitted YAML

@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_emitted_yaml_gives_identical_counts(name, tmp_path):
    out = tmp_path / "model.yaml"
    r = CliRunner().invoke(main, ["estimate", str(HF / name), "--seq-len", "12", "--batch", "2", "--dtype", "bf16",
                                  "--emit-yaml", str(out), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert out.read_text().startswith("# Written by `sizing estimate --emit-yaml`")
    back = sizing.estimate(out)                   # no options: the YAML's defaults carry them
    assert counts(back) == counts(est(name, seq_len=12, batch=2, dtype="bf16"))


def test_a_model_folder_reads_its_config_json(tmp_path):
    (tmp_path / "config.json").write_text((HF / "qwen2.5-0.5b.json").read_text())
    e = sizing.estimate(tmp_path, seq_len=8)
    assert e.totals.params == PUBLISHED_PARAMS["qwen2.5-0.5b.json"][0] and e.graph.name == tmp_path.name


def test_emit_yaml_of_a_yaml_spec_round_trips(tmp_path):
    out = tmp_path / "bert.yaml"
    r = CliRunner().invoke(main, ["estimate", "bert_base", "--seq-len", "16", "--emit-yaml", str(out)])
    assert r.exit_code == 0, r.output
    assert counts(sizing.estimate(out)) == counts(sizing.estimate("bert_base", seq_len=16))


def test_emit_yaml_to_stdout_prints_only_the_spec():
    r = CliRunner().invoke(main, ["estimate", str(HF / "tinyllama-1.1b.json"), "--emit-yaml", "-"])
    assert r.exit_code == 0, r.output
    import yaml
    spec = yaml.safe_load(r.output)
    assert spec["defaults"] == {"seq_len": 2048, "dtype": "bf16"}          # the config's torch_dtype: bfloat16
    assert spec["layers"][1] == {"block": "decoder_layer", "name": "layers", "repeat": 22, "module": "model.layers"}


# ---------------------------------------------------------------- language-model figures

def test_fit_recovers_a_quadratic_and_refuses_others():
    assert fit_quadratic(lambda t: 7 + 5 * t + 3 * t * t) == (7, 5, 3)
    with pytest.raises(ValueError):
        fit_quadratic(lambda t: t ** 3)


def lm_figures(name, **sizes):
    e = est(name, **sizes)
    return figures(e, lambda t: est(name, seq_len=t, batch=1).totals.flops)


def test_per_pair_flops_closed_form():
    # per (query, key) pair and head: q.k and p.v, 2 * d MACs = 4d FLOPs, scale 1, softmax 5, causal mask 1
    # (docs/conventions.md); GPT-2 also drops out attention probabilities (1)
    assert lm_figures("tinyllama-1.1b.json", seq_len=16).per_pair_flops == 22 * 32 * (4 * 64 + 7)
    assert lm_figures("gpt2.json", seq_len=16).per_pair_flops == 12 * 12 * (4 * 64 + 8)


def test_prefill_and_decode_agree_with_direct_counts():
    fig = lm_figures("gpt2.json", seq_len=100)
    one_prompt = est("gpt2.json", seq_len=100, batch=1).totals.flops
    assert fig.prefill_flops == one_prompt and fig.per_sequence_flops == 0
    # a decoder LM's token: the per-token part and one pair per cached position (itself included)
    assert fig.decode_flops == fig.per_token_flops + 100 * fig.per_pair_flops
    # the first token: a one-token sequence, counted directly
    assert lm_figures("gpt2.json", seq_len=1).decode_flops == est("gpt2.json", seq_len=1, batch=1).totals.flops


def test_kv_cache_bytes_follow_the_vllm_formula():
    # Kwon et al. 2023 (vLLM, arXiv:2309.06180, section 3): KV cache per token = 2 (key and value) x hidden x
    # layers x 2 bytes (fp16); with grouped-query attention, hidden -> kv_heads x head_dim
    fig = lm_figures("llama-2-7b.json", seq_len=4096, batch=8, dtype="fp16")
    assert fig.kv_bytes_per_token == 2 * 4096 * 32 * 2 == 512 * 1024
    assert fig.kv_bytes_per_sequence == 4096 * 512 * 1024
    assert fig.inference_bytes == 6_738_415_616 * 2 + 8 * 4096 * 512 * 1024
    assert lm_figures("mistral-7b-v0.1.json", seq_len=64, dtype="bf16").kv_bytes_per_token == 2 * 8 * 128 * 32 * 2
    e = est("mistral-7b-v0.1.json", seq_len=64, dtype="bf16")
    fp8 = figures(e, lambda t: est("mistral-7b-v0.1.json", seq_len=t, batch=1).totals.flops, kv_dtype="fp8")
    assert fp8.kv_bytes_per_token == 2 * 8 * 128 * 32 and fp8.weights_bytes == 7_241_732_096 * 2
    with pytest.raises(SizingError, match="KV cache precision 'int4' is not one of"):
        figures(e, lambda t: 0, kv_dtype="int4")


def test_training_flops_per_token_beside_6n():
    fig = lm_figures("llama-2-7b.json", seq_len=2048)
    d = fig.to_dict()["training_flops_per_token"]
    assert d["six_n"] == 6 * 6_738_415_616
    # counted = 6N + attention's token pairs (forward c2 per pair; backward per pair and head 8d products,
    # softmax 4, scale 1) - the embedding lookup 6N charges as a product (0 forward, scatter-add backward)
    # + elementwise work (norms, rotary, SiLU, residual adds), under 0.1% of 6N
    t, layers, heads, d_head = 2048, 32, 32, 128
    attention = t * (fig.per_pair_flops + layers * heads * (8 * d_head + 5))
    elementwise = d["difference"] - attention + 6 * 32000 * 4096
    assert 0 < elementwise < d["six_n"] // 1000
    assert Fraction(d["counted"]) == Fraction(sum(est("llama-2-7b.json", seq_len=2048).totals.as_dict()[k]
                                                  for k in ("flops", "backward_flops")), 2048)


def test_lora_training_flops_beside_6n_less_the_frozen_weight_gradients():
    """PEFT's Llama-2-7b LoRA r=8 on q_proj, v_proj trains 4,194,304 params; the 6,738,415,616 base weights are
    frozen, so the reference is 6 (N + adapters) - 2 N_base."""
    r = CliRunner().invoke(main, ["estimate", str(HF / "llama-2-7b.json"), "--finetune", "lora", "--lora-rank", "8",
                                  "--lora-targets", "q_proj,v_proj", "--seq-len", "256", "--format", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)["language_model"]["training_flops_per_token"]
    base, adapters = 6_738_415_616, 4_194_304
    assert d["frozen_params"] == base and d["six_n"] == 6 * (base + adapters)
    assert d["six_n_less_frozen"] == 6 * (base + adapters) - 2 * base
    # the frozen embedding lookup, which the reference charges 4 FLOPs per weight, costs 0 forward and has no input
    # gradient; what is left is attention's token pairs at 256 and elementwise work
    left = Fraction(d["difference_less_frozen"]) + 4 * 32000 * 4096
    assert 0 < left < Fraction(d["six_n_less_frozen"], 20)
    full = json.loads(CliRunner().invoke(main, ["estimate", str(HF / "llama-2-7b.json"), "--seq-len", "256",
                                                "--format", "json"]).stdout)["language_model"]
    assert "frozen_params" not in full["training_flops_per_token"]


def test_cli_prints_language_model_figures():
    r = CliRunner().invoke(main, ["estimate", str(HF / "qwen2.5-0.5b.json"), "--seq-len", "256", "--format", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)["language_model"]
    assert d["context"] == 256 and d["kv_cache_bytes"]["per_token"] == 2 * 2 * 64 * 24 * 2     # bf16 (torch_dtype)
    table = CliRunner().invoke(main, ["estimate", str(HF / "qwen2.5-0.5b.json"), "--seq-len", "256"]).output
    assert "language model: context 256" in table and "vs 6N" in table
    bert = json.loads(CliRunner().invoke(main, ["estimate", "bert_base", "--format", "json"]).output)
    assert "language_model" not in bert                            # an encoder has no KV cache to decode with


# ---------------------------------------------------------------- bad input

def write(tmp_path, data) -> Path:
    p = tmp_path / "config.json"
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


def base_llama() -> dict:
    return json.loads((HF / "tinyllama-1.1b.json").read_text())


@pytest.mark.parametrize("data,message", [
    ({**base_llama(), "model_type": "mamba"},
     "model_type 'mamba' is not supported (supported: bert, deepseek_v2, deepseek_v3, falcon, gemma, gemma2, "
     "gemma3_text, gpt2, gpt_neox, llama, mistral, mixtral, olmo2, phi, phi3, qwen2, qwen2_moe, qwen3, qwen3_moe)"),
    ({**base_llama(), "model_type": "deepseek_v3"}, "missing key 'qk_nope_head_dim' (a deepseek_v3 config needs it)"),
    ({"hidden_size": 8}, "missing key 'model_type'"),
    ({k: v for k, v in base_llama().items() if k != "intermediate_size"},
     "missing key 'intermediate_size' (a llama config needs it)"),
    ({**base_llama(), "hidden_size": "2048"}, "'hidden_size': must be a positive integer, got '2048'"),
    ({**base_llama(), "num_key_value_heads": 5},
     "'num_attention_heads' 32 is not divisible by 'num_key_value_heads' 5"),
    ({**base_llama(), "hidden_act": "gelu_fast"}, "'hidden_act': 'gelu_fast' is not supported"),
    ({**base_llama(), "model_type": "mixtral", "num_local_experts": 4}, "missing key 'num_experts_per_tok'"),
    ([1, 2], "a config.json is a JSON object"),
    ('{"model_type": "llama",\n "hidden_size": }', "config.json:2: invalid JSON"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, data, message):
    path = write(tmp_path, data)
    r = CliRunner().invoke(main, ["estimate", str(path)])
    assert r.exit_code == 2
    assert r.output.startswith("error: ") and r.output.count("\n") == 1
    assert message in r.output


def test_too_long_a_context_for_learned_positions(tmp_path):
    r = CliRunner().invoke(main, ["estimate", str(HF / "gpt2.json"), "--seq-len", "2048"])
    assert r.exit_code == 2 and "num_embeddings=1024 is smaller than the 2048 rows used" in r.output
